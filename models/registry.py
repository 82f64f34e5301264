"""Building models by name: ``build_model(task, name, **hparams)`` so no caller hard-codes a model class.

A name is a built-in model (models/catalog.py) or a user model's import path ``package.module:NAME``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models import groups as G
from models.catalog import MODEL_NAMES, default_hparams, resolve_model
from models.equivariance import equivariance_error
from models.expansion import expanded_once, refresh_cached_filters

__all__ = [
    "MODEL_NAMES",
    "build_model",
    "count_parameters",
    "default_hparams",
    "equivariance_error",
    "expanded_once",
    "refresh_cached_filters",
]


# The built-in models' builders (models/catalog.py names them): every hparam of the spec, as keywords.


def smoke_cnn(hidden: int, **common: Any) -> nn.Module:
    from models.nets import SmokeGroupNet

    return SmokeGroupNet(G.trivial(2), hidden, equivariant_group=False, **common)


def smoke_gcnn(hidden: int, **common: Any) -> nn.Module:
    from models.nets import SmokeGroupNet

    return SmokeGroupNet(G.c4(), hidden, **common)


def smoke_rgcnn(hidden: int, banks: int, **common: Any) -> nn.Module:
    from models.nets import SmokeGroupNet

    return SmokeGroupNet(G.c4(), hidden, relax=banks, **common)


def smoke_e2cnn(**hp: Any) -> nn.Module:
    from models.steerable import SteerableNet

    return SteerableNet(**hp)


def smoke_rsteer(**hp: Any) -> nn.Module:
    from models.steerable import SteerableNet

    return SteerableNet(relaxed=True, **hp)


def sr_cnn(hidden: int, up_layers: Any, **common: Any) -> nn.Module:
    from models.nets import SRGroupNet

    return SRGroupNet(G.trivial(3), hidden, equivariant_group=False, up_layers=tuple(up_layers), **common)


def sr_gcnn(hidden: int, up_layers: Any, reflections: bool, **common: Any) -> nn.Module:
    from models.nets import SRGroupNet

    return SRGroupNet(G.octahedral(reflections=reflections), hidden, up_layers=tuple(up_layers), **common)


def sr_rgcnn(hidden: int, up_layers: Any, reflections: bool, banks: int, **common: Any) -> nn.Module:
    from models.nets import SRGroupNet

    group = G.octahedral(reflections=reflections)
    return SRGroupNet(group, hidden, up_layers=tuple(up_layers), relax=banks, **common)


def _no_penalty() -> torch.Tensor:
    return torch.zeros(())  # a tensor: the landscape's Hessian code asks it whether it requires grad


def build_model(task: str, name: str, **hparams: Any) -> nn.Module:
    """Build a model from its defaults overridden by ``hparams``; unknown keys raise ValueError."""
    spec = resolve_model(task, name)
    hp = dict(spec.defaults)
    unknown = sorted(set(hparams) - set(hp))
    if unknown:
        raise ValueError(f"unknown hparams {unknown} for {task}/{name}; allowed: {sorted(hp)}")
    hp.update(hparams)
    model = spec.builder()(**hp)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {name!r}: build returned a {type(model).__name__}, not a torch.nn.Module")
    if not hasattr(model, "regularizer"):  # the training loss adds it: a model without one has no penalty
        model.regularizer = _no_penalty
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (relaxed weights included; buffers and fixed bases excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _sanity() -> None:  # pragma: no cover - handy from a shell: python -m models.registry
    for task, names in MODEL_NAMES.items():
        for name in names:
            print(task, name, count_parameters(build_model(task, name)))


if __name__ == "__main__":  # pragma: no cover
    torch.set_num_threads(2)
    _sanity()
