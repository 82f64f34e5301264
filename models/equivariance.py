"""Equivariance error of any bundled model, with the group acting on vector components as well as the grid."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from models import groups as G

Action = Literal["vector", "scalar"]


def _frames_of_vectors(x: torch.Tensor, matrix) -> torch.Tensor:
    """2D frames flattened to channels ``[B, F*2, H, W]``: each frame's (u, v) turns with the grid."""
    b, c, h, w = x.shape
    return G.rotate_vector(x.reshape(b, c // 2, 2, h, w), matrix, component_axis=2).reshape(x.shape)


def _window_of_vectors(x: torch.Tensor, matrix) -> torch.Tensor:
    """3D frames ``[B, F, 3, z, y, x]``: each frame's components turn with the grid."""
    return G.rotate_vector(x, matrix, component_axis=2)


# per model task (models/catalog.py): how the group acts on a model input, and the task's group
INPUT_ACTIONS = {"smoke": _frames_of_vectors, "sr": _window_of_vectors}
GROUPS = {"smoke": G.c4, "sr": G.octahedral}


def act_input(x: torch.Tensor, task: str, matrix, action: Action = "vector") -> torch.Tensor:
    """Apply one group element to a model input (smoke ``[B, F*2, H, W]``, SR ``[B, F, 3, z, y, x]``)."""
    if action == "scalar":
        return G.rotate_scalar(x, matrix)
    if task not in INPUT_ACTIONS:
        raise ValueError(f"unknown task {task!r}; allowed: {sorted(INPUT_ACTIONS)}")
    return INPUT_ACTIONS[task](x, matrix)


def act_output(y: torch.Tensor, matrix, action: Action = "vector") -> torch.Tensor:
    """Apply one group element to a model output ``[B, d, *space]`` (one vector field)."""
    if action == "scalar":
        return G.rotate_scalar(y, matrix)
    return G.rotate_vector(y, matrix, component_axis=1)


def default_group(task: str) -> G.RotationGroup:
    if task not in GROUPS:
        raise ValueError(f"unknown task {task!r}; allowed: {sorted(GROUPS)}")
    return GROUPS[task]()


@torch.no_grad()
def equivariance_error(
    model: nn.Module,
    x: torch.Tensor,
    task: str,
    action: Action = "vector",
    group: G.RotationGroup | None = None,
) -> float:
    """``max_g ||model(g.x) - g.model(x)|| / ||model(x)||`` over the model's group (or the task's).

    Runs in eval mode (batch norm uses running statistics, nothing is updated) and restores the mode.
    """
    group = group or getattr(model, "group", None) or default_group(task)
    was_training = model.training
    model.eval()
    try:
        y = model(x)
        scale = y.norm().clamp_min(torch.finfo(y.dtype).tiny)
        worst = 0.0
        for m in group.matrices[1:]:
            diff = model(act_input(x, task, m, action)) - act_output(y, m, action)
            worst = max(worst, float(diff.norm() / scale))
        return worst
    finally:
        model.train(was_training)
