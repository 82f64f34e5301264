"""The two learning tasks: what a batch is, the training loss, and the evaluation metric.

Smoke: next-frame prediction of 2D velocity. A batch is ``(x, y)`` with ``x`` [B, in, 2, H, W] and ``y``
[B, out, 2, H, W]. The model maps the last ``in`` frames (flattened to channels) to the next frame and is
rolled out autoregressively over ``out`` steps; the loss is the MSE over the rollout and the metric the
RMSE per rollout step, averaged over the steps.

Super-resolution: ``x`` [B, 3, 3, 16, 16, 16] (frame, component, z, y, x) to ``y`` [B, 3, 64, 64, 64];
L1 loss, MAE metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

Batch = tuple[torch.Tensor, torch.Tensor]


def rollout(model: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Feed predictions back as inputs: returns [B, steps, 2, H, W]."""
    window = x
    preds = []
    for _ in range(steps):
        nxt = model(window.flatten(1, 2))
        preds.append(nxt)
        window = torch.cat([window[:, 1:], nxt[:, None]], dim=1)
    return torch.stack(preds, dim=1)


@dataclass(frozen=True)
class SmokeTask:
    name: str = "smoke"
    model_task: str = "smoke"
    metric_name: str = "rmse"
    train_rollout: int | None = None  # steps in the training loss; None: all target frames

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        y = y[:, : self.train_rollout] if self.train_rollout else y
        return F.mse_loss(rollout(model, x, y.shape[1]), y)

    def errors(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        """Sum of squared errors per rollout step, and the number of values per step."""
        x, y = batch
        sq = (rollout(model, x, y.shape[1]) - y) ** 2
        return sq.transpose(0, 1).flatten(1).sum(dim=1), int(sq[:, 0].numel())

    @staticmethod
    def reduce(sums: torch.Tensor, count: int) -> float:
        return float(torch.sqrt(sums / count).mean())

    @staticmethod
    def equivariance_probe(batch: Batch) -> torch.Tensor:
        return batch[0].flatten(1, 2)


@dataclass(frozen=True)
class SuperResolutionTask:
    name: str = "turbulence"
    model_task: str = "sr"
    metric_name: str = "mae"

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return F.l1_loss(model(x), y)

    def errors(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        x, y = batch
        err = (model(x) - y).abs()
        return err.sum().reshape(1), int(err.numel())

    @staticmethod
    def reduce(sums: torch.Tensor, count: int) -> float:
        return float(sums.sum() / count)

    @staticmethod
    def equivariance_probe(batch: Batch) -> torch.Tensor:
        return batch[0]


TASKS = {"smoke": SmokeTask(), "turbulence": SuperResolutionTask()}


def task_for(dataset: str, train_rollout: int | None = None) -> SmokeTask | SuperResolutionTask:
    """The task object a run trains with (the smoke task carries its training rollout length)."""
    if dataset == "smoke":
        return SmokeTask(train_rollout=train_rollout)
    return TASKS[dataset]
