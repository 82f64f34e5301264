"""Models of the study. Kept import-light: torch/e2cnn load only when a registry name is first used."""

from __future__ import annotations

from typing import Any

_LAZY = {
    "MODEL_NAMES", "build_model", "count_parameters", "default_hparams", "equivariance_error",
    "expanded_once", "refresh_cached_filters",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
