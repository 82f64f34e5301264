"""Which stores the loaders know, by dataset name: the store's folder name and the loader that reads it.

:mod:`loaders.sources` names them when a path or repo holds another kind of dataset than the one asked
for. The two built-in kinds are here; another is registered by the pipelines layer when it resolves that
dataset's spec (pipelines/datasets.py). No imports beyond the standard library: the params schema and the
``symflow-data`` command read this.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StoreKind:
    name: str  # the dataset's name
    store_name: str  # the zarr store's folder name: data/<store_name>, zarr/<store_name> in a repo
    loader: str  # the function that reads it, named in messages ("loaders.smoke_plume")
    layout: str | None = None  # "package.module:NAME" of its loaders.layouts.Layout, if it has one

    def load_layout(self) -> Any:
        """Its :class:`~loaders.layouts.Layout` (imported on use: xarray is heavy), or None."""
        if self.layout is None:
            return None
        module, _, name = self.layout.partition(":")
        return getattr(importlib.import_module(module), name)


SMOKE = StoreKind("smoke", "smoke.zarr", "loaders.smoke_plume", "loaders.layouts:SMOKE")
TURBULENCE = StoreKind("turbulence", "turbulence.zarr", "loaders.turbulence_sr", "loaders.layouts:TURBULENCE")

_KINDS: dict[str, StoreKind] = {kind.name: kind for kind in (SMOKE, TURBULENCE)}


def register_store(kind: StoreKind) -> StoreKind:
    """Make ``kind`` known in this process; another kind under a taken name is refused."""
    known = _KINDS.setdefault(kind.name, kind)
    if known != kind:
        raise ValueError(f"dataset name {kind.name!r} is already registered to another store kind")
    return kind


def store_kinds() -> tuple[StoreKind, ...]:
    return tuple(_KINDS.values())
