"""Model registry: ``build_model(task, name, **hparams)`` so no caller hard-codes a model class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from models import groups as G
from models.catalog import MODEL_NAMES, default_hparams
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


def _smoke_group(name: str, hp: dict[str, Any]) -> nn.Module:
    from models.nets import SmokeGroupNet

    common = dict(
        layers=hp["layers"],
        kernel_size=hp["kernel_size"],
        in_frames=hp["in_frames"],
        batch_norm=hp["batch_norm"],
    )
    if name == "cnn":
        return SmokeGroupNet(G.trivial(2), hp["hidden"], equivariant_group=False, **common)
    if name == "gcnn":
        return SmokeGroupNet(G.c4(), hp["hidden"], **common)
    return SmokeGroupNet(G.c4(), hp["hidden"], relax=hp["banks"], alpha=hp["alpha"], **common)


def _smoke_steerable(name: str, hp: dict[str, Any]) -> nn.Module:
    from models.steerable import SteerableNet

    return SteerableNet(
        hp["hidden"],
        hp["layers"],
        hp["kernel_size"],
        hp["in_frames"],
        relaxed=name == "rsteer",
        batch_norm=hp["batch_norm"],
        alpha=hp.get("alpha", 0.0),
        relax_scale=hp.get("relax_scale"),
    )


def _smoke_gm(name: str, hp: dict[str, Any]) -> nn.Module:
    from models.gmcnn import GMCNN

    return GMCNN(
        hp["hidden"],
        hp["layers"],
        hp["in_frames"],
        hp["error"],
        hp["alpha"],
        variant=hp["variant"],
        radius=hp["radius"],
        grid=hp["grid"],
    )


def _sr(name: str, hp: dict[str, Any]) -> nn.Module:
    from models.nets import SRGroupNet

    common = dict(
        enc_layers=hp["enc_layers"],
        up_layers=tuple(hp["up_layers"]),
        scalar_channels=hp["scalar_channels"],
        batch_norm=hp["batch_norm"],
        padding=hp["padding"],
        zero_head=hp["zero_head"],
    )
    if name == "cnn":
        return SRGroupNet(G.trivial(3), hp["hidden"], equivariant_group=False, **common)
    group = G.octahedral(reflections=hp["reflections"])
    if name == "gcnn":
        return SRGroupNet(group, hp["hidden"], **common)
    return SRGroupNet(group, hp["hidden"], relax=hp["banks"], alpha=hp["alpha"], **common)


_BUILDERS: dict[tuple[str, str], Callable[[str, dict[str, Any]], nn.Module]] = {
    **{("smoke", n): _smoke_group for n in ("cnn", "gcnn", "rgcnn")},
    **{("smoke", n): _smoke_steerable for n in ("e2cnn", "rsteer")},
    ("smoke", "gmcnn"): _smoke_gm,
    **{("sr", n): _sr for n in ("cnn", "gcnn", "rgcnn")},
}


def build_model(task: str, name: str, **hparams: Any) -> nn.Module:
    """Build a model from its defaults overridden by ``hparams``; unknown keys raise ValueError."""
    hp = default_hparams(task, name)
    unknown = sorted(set(hparams) - set(hp))
    if unknown:
        raise ValueError(f"unknown hparams {unknown} for {task}/{name}; allowed: {sorted(hp)}")
    hp.update(hparams)
    return _BUILDERS[(task, name)](name, hp)


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
