"""The dataset kinds the publish stage knows, by dataset name."""

from __future__ import annotations

from pipelines.publish.kinds import DatasetKind
from pipelines.publish.smoke_kind import SmokeKind
from pipelines.publish.turbulence_kind import TurbulenceKind

KINDS: dict[str, type[DatasetKind]] = {"smoke": SmokeKind, "turbulence": TurbulenceKind}


def get_kind(name: str) -> DatasetKind:
    if name not in KINDS:
        raise ValueError(f"unknown dataset kind {name!r}; known: {sorted(KINDS)}")
    return KINDS[name]()
