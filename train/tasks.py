"""The two learning tasks: what a batch is, the training loss, and the evaluation metric.

Smoke: next-frame prediction of 2D velocity. A batch is ``(x, y)`` with ``x`` [B, in, 2, H, W] and ``y``
[B, out, 2, H, W]. The model maps the last ``in`` frames (flattened to channels) to the next frame and is
rolled out autoregressively over ``out`` steps; the loss is the MSE over the rollout and the metric the
RMSE per rollout step, averaged over the steps.

Super-resolution: ``x`` [B, 3, 3, 16, 16, 16] (frame, component, z, y, x) to ``y`` [B, 3, 64, 64, 64];
L1 loss, MAE metric.

Residual formulation (``residual=True``): the network predicts a correction to a trivial prediction, the
last input frame (smoke) or the upsampled middle lr frame (super-resolution; :mod:`train.baselines`). Both
trivial predictions commute with the rotation group, so the wrapped model is exactly as equivariant as the
network. ``errors`` / ``reduce`` score any module that takes the model input, baselines included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from models.expansion import expanded_once
from train.baselines import UpsampleMiddle, lr_to_hr_units, sr_factor
from train.kinds import MAE, RMSE

Batch = tuple[torch.Tensor, torch.Tensor]


def rollout(
    model: nn.Module, x: torch.Tensor, steps: int, residual: bool = False, step_scale: float = 1.0
) -> torch.Tensor:
    """Feed predictions back as inputs: returns [B, steps, 2, H, W]; ``residual``: the next frame is the last
    frame + ``step_scale`` * model (``step_scale``: the typical one-step change, so the network's target
    has unit size)."""
    window = x
    preds = []
    for _ in range(steps):
        nxt = model(window.flatten(1, 2))
        if residual:
            nxt = window[:, -1] + step_scale * nxt
        preds.append(nxt)
        window = torch.cat([window[:, 1:], nxt[:, None]], dim=1)
    return torch.stack(preds, dim=1)


@dataclass(frozen=True)
class SmokeTask:
    name: str = "smoke"
    model_task: str = "smoke"
    metric_name: str = RMSE
    train_rollout: int | None = None  # steps in the training loss; None: all target frames
    residual: bool = False  # the network predicts the change from the last input frame
    step_scale: float = 1.0  # residual: rms of a one-step change (training split), the network's unit

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        y = y[:, : self.train_rollout] if self.train_rollout else y
        return F.mse_loss(rollout(model, x, y.shape[1], self.residual, self.step_scale), y)

    def _squared(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return (rollout(model, x, y.shape[1], self.residual, self.step_scale) - y) ** 2

    @staticmethod
    def _sums(sq: torch.Tensor) -> tuple[torch.Tensor, int]:
        return sq.transpose(0, 1).flatten(1).sum(dim=1), int(sq[:, 0].numel())

    @staticmethod
    def _per_sample(sq: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(sq.flatten(2).mean(dim=2)).mean(dim=1)

    def errors(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        """Sum of squared errors per rollout step, and the number of values per step."""
        return self._sums(self._squared(model, batch))

    def sample_errors(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The metric of each sample on its own: [B] (RMSE per rollout step, averaged over the steps)."""
        return self._per_sample(self._squared(model, batch))

    def errors_and_samples(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int, torch.Tensor]:
        """:meth:`errors` and :meth:`sample_errors` from one rollout (the same bits as each alone)."""
        sq = self._squared(model, batch)
        return (*self._sums(sq), self._per_sample(sq))

    def as_module(self, model: nn.Module) -> nn.Module:
        """One step of the prediction as a module (for equivariance checks)."""
        return _Residual(model, _LastFrame(), self.step_scale) if self.residual else model

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
    metric_name: str = MAE
    reference: UpsampleMiddle | None = None  # residual: the network corrects this upsampling
    step_scale: float = 1.0  # residual: rms of (target - upsampling) on the training split

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out if self.reference is None else self.reference(x) + self.step_scale * out

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return F.l1_loss(self.predict(model, x), y)

    def _absolute(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return (self.predict(model, x) - y).abs()

    def errors(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        err = self._absolute(model, batch)
        return err.sum().reshape(1), int(err.numel())

    def sample_errors(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The MAE of each sample on its own: [B]."""
        return self._absolute(model, batch).flatten(1).mean(dim=1)

    def errors_and_samples(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int, torch.Tensor]:
        """:meth:`errors` and :meth:`sample_errors` from one prediction (the same bits as each alone)."""
        err = self._absolute(model, batch)
        return err.sum().reshape(1), int(err.numel()), err.flatten(1).mean(dim=1)

    def as_module(self, model: nn.Module) -> nn.Module:
        return model if self.reference is None else _Residual(model, self.reference, self.step_scale)

    @staticmethod
    def reduce(sums: torch.Tensor, count: int) -> float:
        return float(sums.sum() / count)

    @staticmethod
    def equivariance_probe(batch: Batch) -> torch.Tensor:
        return batch[0]


def residual_rms(train_set: Any, trivial: Any, target: Any, samples: int = 16) -> float:
    """Root-mean-square of ``target(y) - trivial(x)`` over the first training samples: what a residual
    network must predict, so that its output is of unit size."""
    x, y = next(iter(DataLoader(train_set, batch_size=min(samples, len(train_set)))))
    rms = float(torch.sqrt(((target(y) - trivial(x)) ** 2).mean()))
    if not rms > 0:
        raise ValueError("the trivial prediction is exact on the training samples: nothing to learn")
    return rms


class _LastFrame(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -2:]


class _Residual(nn.Module):
    """``base(x) + scale * net(x)``; exposes the network's group so equivariance checks use it."""

    def __init__(self, net: nn.Module, base: nn.Module, scale: float = 1.0):
        super().__init__()
        self.net, self.base, self.scale = net, base, scale
        if getattr(net, "group", None) is not None:
            self.group = net.group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.net(x)


def smoke_task(
    train_rollout: int | None = None, residual: bool = False, train_set: object = None, **_: Any
) -> SmokeTask:
    """The smoke task with its training rollout length; residual: scaled by the one-step change."""
    if not residual:
        return SmokeTask(train_rollout=train_rollout)
    scale = residual_rms(train_set, lambda x: x[:, -1], lambda y: y[:, 0])
    return SmokeTask(train_rollout=train_rollout, residual=True, step_scale=scale)


def sr_task(
    residual: bool = False, train_set: object = None, upsampler: str = "trilinear", **_: Any
) -> SuperResolutionTask:
    """The super-resolution task; residual: correcting ``upsampler`` (grid ratio and lr -> hr units from
    the training split)."""
    if not residual:
        return SuperResolutionTask()
    gain, offset = lr_to_hr_units(train_set)
    reference = UpsampleMiddle(sr_factor(train_set), upsampler, gain, offset)
    with torch.no_grad():
        scale = residual_rms(train_set, reference, lambda y: y)
    return SuperResolutionTask(reference=reference, step_scale=scale)


def score(
    model: nn.Module, task: SmokeTask | SuperResolutionTask, dataset: Dataset, batch_size: int,
    scale: float = 1.0, device: torch.device | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A split's metric (pooled, as ``errors``/``reduce`` define it) with per-sample values, their
    standard error and count, in physical units (``scale``: normalised -> physical); batches go to
    ``device`` (None: left on the CPU)."""
    model.eval()
    sums, count, per_sample = None, 0, []
    with torch.no_grad(), expanded_once(model):  # the weights are fixed: each kernel expanded once
        for batch in DataLoader(dataset, batch_size=batch_size):
            batch = batch if device is None else tuple(t.to(device) for t in batch)
            if hasattr(task, "errors_and_samples"):  # one prediction per batch, not two
                s, n, samples = task.errors_and_samples(model, batch)
            else:  # a task of one's own with the two methods only
                (s, n), samples = task.errors(model, batch), task.sample_errors(model, batch)
            sums, count = (s if sums is None else sums + s), count + n
            per_sample.append(samples)
    values = torch.cat(per_sample).double().cpu() * scale
    n = int(values.numel())
    se = float(values.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return {
        task.metric_name: task.reduce(sums, count) * scale,
        "sample_mean": float(values.mean()),
        "se": se,
        "n": n,
        "per_sample": [float(v) for v in values],
    }
