"""Flatness measures that do not depend on how the weights are written, and the shared coordinates.

A raw Hessian eigenvalue (or a sharpness along unit weight directions) changes when the same function is
written in other coordinates: for a linear reparameterisation ``w = A theta`` the Hessian becomes
``A^T H A``. The models here have such freedoms: RSteer's split and direct forms, an E2CNN coefficient
repeated at every kernel point, ``w_l(g) psi_l`` in RGCNN, any ReLU layer rescaled by ``a`` with the next
rescaled by ``1 / a``. (A conv in front of a batch norm is scale-free only with batch statistics; the
landscape uses running statistics, where rescaling it changes the function.) Two remedies, both used:

* one coordinate system per comparison (:func:`shared_form`): each model converted to its family's shared
  coordinates (``models.steerable.SHARED_STEERABLE``, ``models.nets.SHARED_GROUP``), so a raw Hessian
  compares functions written alike. In those coordinates every listed freedom is a rescaling of single
  coordinates (a diagonal ``A``; an E2CNN written as RSteer adds coordinates that are exactly 0).
* adaptive measures (Kwon et al. 2021, ASAM): perturbations scaled coordinate-wise by ``|theta|``. With
  ``theta' = D theta`` (``D`` diagonal, no zero entry) the loss along ``|theta'| * u`` equals the loss along
  ``|theta| * u`` and ``diag|theta'| H' diag|theta'| = S diag|theta| H diag|theta| S`` (``S`` the signs of
  ``D``), so the adaptive Hessian's eigenvalues and trace are invariant to every diagonal rescaling, and a
  coordinate at 0 carries no curvature. Not invariant to a rotation of coordinates: hence measured in the
  shared coordinates, where the freedoms above are diagonal.

:data:`INVARIANCE` says per reported number what it is invariant to; the landscape writes it beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from train.curvature import FlatLoss, hutchinson_trace, lanczos, random_directions, sharpness

Tensor = torch.Tensor

_FORM = "the storage form (RSteer split/direct, RGCNN bank scale: measured in the shared coordinates)"
_DIAGONAL = (
    "any rescaling of single shared coordinates (ReLU layer-wise rescaling, RGCNN w_l(g) psi_l, "
    "RSteer split/direct form, E2CNN coefficient scale, E2CNN written as RSteer)"
)
INVARIANCE: dict[str, str] = {
    "sharpness": f"{_FORM}; NOT to rescalings (unit directions)",
    "sharpness_filter_normalised": f"{_FORM}; rescaling of a whole output filter; NOT layer-wise balance",
    "sharpness_original": (
        f"{_FORM}; NOT to rescalings, and its directions shrink with the parameter count (the study "
        "code's variant, for comparison with its numbers only)"
    ),
    "max_eigenvalue": f"{_FORM}; NOT to rescalings (raw Hessian)",
    "top_eigenvalues": f"{_FORM}; NOT to rescalings (raw Hessian)",
    "trace": f"{_FORM}; NOT to rescalings (raw Hessian)",
    "min_ritz_value": f"{_FORM}; NOT to rescalings (raw Hessian); its sign is invariant",
    "negative_mass": f"{_FORM}; NOT to rescalings (raw Hessian)",
    "adaptive_max_eigenvalue": _DIAGONAL,
    "adaptive_top_eigenvalues": _DIAGONAL,
    "adaptive_trace": _DIAGONAL + " (the estimate: exactly where the coordinates keep their count)",
    "adaptive_sharpness": (
        "any positive rescaling of single shared coordinates (ReLU layer-wise rescaling, RGCNN w_l(g) "
        "psi_l, RSteer split/direct form, E2CNN coefficient scale); NOT to added coordinates (E2CNN "
        "written as RSteer draws other directions)"
    ),
    "loss": "every reparameterisation (a function value)",
    "mse_max_eigenvalue": f"{_FORM}; NOT to rescalings (raw Hessian of the MSE at the same weights)",
    "mse_trace": f"{_FORM}; NOT to rescalings (raw Hessian of the MSE at the same weights)",
    "mse_min_ritz_value": f"{_FORM}; NOT to rescalings; its sign is invariant",
    "mse_negative_mass": f"{_FORM}; NOT to rescalings (raw Hessian of the MSE at the same weights)",
}


def shared_form(model: nn.Module) -> tuple[nn.Module, str]:
    """``model`` (a copy) in its family's shared coordinates, and their description.

    Steerable nets (E2CNN, RSteer in either form) and group nets (CNN, GCNN, RGCNN) say how through
    ``shared_form()``; any other model is measured as trained.
    """
    convert = getattr(model, "shared_form", None)
    if convert is None:
        return model, "as trained"
    return convert(), model.shared_parameterisation


class AdaptiveHessian:
    """``diag|w0| H diag|w0|`` of a :class:`FlatLoss` at its ``w0``, shaped like one for
    :func:`train.curvature.lanczos` / :func:`train.curvature.hutchinson_trace` (``w0``, ``dim``, ``hvp``)."""

    def __init__(self, flat: FlatLoss):
        self.flat = flat
        self.w0 = flat.w0
        self.scale = flat.w0.abs()

    @property
    def dim(self) -> int:
        return self.flat.dim

    def hvp(self, w: Tensor, v: Tensor) -> Tensor:
        if not torch.equal(w, self.w0):
            raise ValueError("the adaptive Hessian is defined at w0 only")
        return self.scale * self.flat.hvp(self.w0, self.scale * v)


def adaptive_top_eigenvalues(flat: FlatLoss, k: int, steps: int, seed: int) -> tuple[np.ndarray, int]:
    """The ``k`` largest eigenvalues of the adaptive Hessian (descending), from ``steps`` Lanczos steps."""
    op = AdaptiveHessian(flat)
    gen = torch.Generator().manual_seed(seed)
    v0 = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.w0)
    result = lanczos(lambda v: op.hvp(op.w0, v), v0, min(steps, op.dim))
    return result.ritz()[0][::-1][:k].copy(), result.matvecs


def adaptive_trace(flat: FlatLoss, probes: int, seed: int) -> tuple[float, float]:
    """Hutchinson's trace of the adaptive Hessian: (mean, standard error)."""
    return hutchinson_trace(AdaptiveHessian(flat), probes, seed)  # type: ignore[arg-type]


def adaptive_directions(flat: FlatLoss, count: int, seed: int) -> list[Tensor]:
    """ASAM's perturbations: random unit vectors ``u`` scaled coordinate-wise by ``|w0|``."""
    return [flat.w0.abs() * u for u in random_directions(flat, count, seed)]


def adaptive_sharpness(flat: FlatLoss, count: int, seed: int, displacements: Sequence[float]) -> float:
    """Sharpness phi over :func:`adaptive_directions` (average, not ASAM's worst case: no inner ascent)."""
    return float(sharpness(flat, adaptive_directions(flat, count, seed), displacements)["sharpness"])


def invariant_measures(
    flat: FlatLoss, top_k: int, steps: int, probes: int, directions: int, displacements: Sequence[float],
    seed: int,
) -> dict[str, Any]:  # fmt: skip
    """The adaptive measures of ``flat`` (built on the shared coordinates: :func:`shared_form`)."""
    top, matvecs = adaptive_top_eigenvalues(flat, top_k, steps, seed)
    trace, trace_err = adaptive_trace(flat, probes, seed + 2)
    return {
        "adaptive_top_eigenvalues": top.tolist(), "adaptive_max_eigenvalue": float(top[0]),
        "adaptive_trace": trace, "adaptive_trace_stderr": trace_err,
        "adaptive_sharpness": adaptive_sharpness(flat, directions, seed, displacements),
        "adaptive_hvp_count": matvecs + probes,
    }  # fmt: skip


def batch_loss_stderr(flat: FlatLoss) -> float:
    """Standard error of the data loss at ``w0`` from its batch-to-batch spread (nan with one batch).

    Batches of unequal size are weighted as in the loss; the spread is that of a per-sample mean over
    ``flat.samples`` samples drawn as these batches were."""
    with torch.no_grad():
        losses = np.array([float(flat._batch_loss(flat.w0, i)) / w for i, w in enumerate(flat.weights)])
    if len(losses) < 2:
        return float("nan")
    weights = np.array(flat.weights)
    mean = float(weights @ losses)
    var = float(weights @ (losses - mean) ** 2) * len(losses) / (len(losses) - 1)
    return float(np.sqrt(var * float(weights @ weights)))
