"""Layers whose convolution kernel is expanded from fewer parameters, and a per-step expansion cache.

Group, relaxed and steerable layers all build a full conv weight from their parameters on every call. When a
training step calls the model several times with the same weights (an autoregressive rollout, say), the
:func:`expanded_once` context expands each kernel once and reuses the (still differentiable) result.
Outside the context nothing is cached, so ``torch.func`` and weight perturbations always see fresh kernels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def filters_along(shape: Sequence[int], axis: int | None) -> torch.Tensor:
    """Output-filter id of every entry of a parameter whose output filters run along ``axis``.

    ``axis=None`` makes the whole parameter one filter. Layers return this from
    ``output_filter_index(name)`` so that filter-normalised directions (Li et al. 2018, see
    ``train.curvature.random_directions``) know which entries feed which output filter.
    """
    shape = tuple(shape)
    if axis is None:
        return torch.zeros(shape, dtype=torch.long)
    ids = torch.arange(shape[axis]).reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return ids.expand(shape).clone()


class ExpandedKernel(nn.Module):
    """Base class: subclasses implement :meth:`expand` returning ``(weight, bias)``."""

    def __init__(self) -> None:
        super().__init__()
        self._caching = False
        self._cache: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def expand(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def kernel(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self._caching:
            return self.expand()
        if self._cache is None:
            self._cache = self.expand()
        return self._cache

    def clear_cache(self) -> None:
        self._cache = None

    def __getstate__(self) -> dict:
        # a cached kernel is a non-leaf tensor, which deepcopy/pickle refuse: never serialise it
        state = self.__dict__.copy()
        state["_cache"] = None
        state["_caching"] = False
        return state


@contextmanager
def expanded_once(model: nn.Module) -> Iterator[nn.Module]:
    """Expand every kernel of ``model`` at most once inside the block (e.g. one training step)."""
    layers = [m for m in model.modules() if isinstance(m, ExpandedKernel)]
    for m in layers:
        m.clear_cache()
        m._caching = True
    try:
        yield model
    finally:
        for m in layers:
            m._caching = False
            m.clear_cache()


def refresh_cached_filters(model: nn.Module) -> None:
    """Make ``model`` use its current weights after they were changed in place (safe to call on any model).

    Clears our per-step caches and, for any e2cnn module that caches its filter in eval mode, toggles
    train/eval so the filter is rebuilt from the perturbed weights.
    """
    for m in model.modules():
        if isinstance(m, ExpandedKernel):
            m.clear_cache()
    try:
        from e2cnn.nn import EquivariantModule
    except ImportError:  # e2cnn absent: nothing of it can be cached
        return
    for m in model.modules():
        if isinstance(m, EquivariantModule) and not m.training:
            m.train()
            m.eval()
