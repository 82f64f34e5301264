"""Per-field statistics (train split only) and the normaliser that uses them.

The publish stage computes the statistics with :func:`field_stats` and ships them in ``stats.json`` and the
dataset card; the loaders read them back (or compute them the same way from a bare local store), so the
numbers in the card are exactly the ones the normaliser applies.

Two modes:

* ``"standard"``: ``(x - mean_c) / std_c`` per component ``c``. Per-component shifts and scales do not
  commute with rotating a vector field, so this breaks equivariance unless mean = 0 and the stds are equal.
* ``"scale"``: ``x / rms`` with one scalar per field (the root mean square of the vector magnitude). A
  scalar factor commutes with every rotation, so equivariant models should use this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

NormaliseMode = Literal["standard", "scale"]


@dataclass
class _Moments:
    """Running count / mean / sum of squared deviations per component (Chan et al. pairwise merge)."""

    n: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    sq_norm: float = 0.0  # sum over samples of |x|^2 (all components), for the rms magnitude

    def add(self, block: np.ndarray, component_axis: int | None) -> None:
        x = np.asarray(block, dtype=np.float64)
        if component_axis is None:
            x = x[..., None]
            component_axis = -1
        x = np.moveaxis(x, component_axis, -1).reshape(-1, x.shape[component_axis])
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        self.sq_norm += float((x**2).sum())
        if self.n == 0:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n


def field_stats(
    blocks: Iterable[np.ndarray], component_axis: int | None, components: list[str] | None = None
) -> dict[str, Any]:
    """Mean / std per component over every other axis of all ``blocks``, plus the rms vector magnitude.

    ``component_axis=None`` treats the field as a scalar (one "component").
    """
    acc = _Moments()
    for block in blocks:
        acc.add(block, component_axis)
    if acc.n == 0 or acc.mean is None or acc.m2 is None:
        raise ValueError("no values to compute statistics from (empty train split?)")
    std = np.sqrt(acc.m2 / acc.n)
    return {
        "components": components,
        "mean": [float(v) for v in acc.mean],
        "std": [float(v) for v in std],
        "rms": float(np.sqrt(acc.sq_norm / acc.n)),
        "count": int(acc.n),
    }


class Normaliser:
    """Applies (and undoes) the normalisation of one field given its stats entry."""

    def __init__(self, stats: dict[str, Any], mode: NormaliseMode, component_axis: int | None):
        if mode not in ("standard", "scale"):
            raise ValueError(f"normalise must be None, 'standard' or 'scale', got {mode!r}")
        self.mode = mode
        self.component_axis = component_axis
        n_comp = len(stats["mean"])
        if mode == "standard":
            self.shift = np.asarray(stats["mean"], dtype=np.float32)
            self.scale = np.asarray(stats["std"], dtype=np.float32)
            if np.any(self.scale <= 0):
                raise ValueError(f"a component has zero standard deviation: {stats['std']}")
        else:
            if stats["rms"] <= 0:
                raise ValueError("the field is identically zero; cannot scale it")
            self.shift = np.zeros(n_comp, dtype=np.float32)
            self.scale = np.full(n_comp, stats["rms"], dtype=np.float32)

    def _shape(self, ndim: int) -> tuple[int, ...]:
        if self.component_axis is None:
            return (1,) * ndim
        shape = [1] * ndim
        shape[self.component_axis] = -1
        return tuple(shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        shape = self._shape(x.ndim)
        return ((x - self.shift.reshape(shape)) / self.scale.reshape(shape)).astype(np.float32, copy=False)

    def inverse(self, x: Any) -> Any:
        """Undo the normalisation (numpy arrays or torch tensors with the same layout)."""
        shape = self._shape(x.ndim)
        if hasattr(x, "new_tensor"):  # torch
            return x * x.new_tensor(self.scale).reshape(shape) + x.new_tensor(self.shift).reshape(shape)
        return x * self.scale.reshape(shape) + self.shift.reshape(shape)
