"""The dataset kinds the publish stage knows, and what each must provide.

A kind turns one completed zarr store into the files of a Hub dataset repo. Adding a dataset means adding a
:class:`DatasetKind` subclass and registering it in :data:`KINDS` (and a loader in ``loaders/``); the repo
building, checksums, upload and receipt are shared (:mod:`pipelines.hub.repo`, :mod:`pipelines.hub.upload`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import xarray as xr

from pipelines.hub.card import ConfigSpec
from pipelines.params import PublishParams


class DatasetKind:
    name: ClassVar[str]
    store_name: ClassVar[str]  # folder name of the zarr store inside the repo (``zarr/<store_name>``)
    pretty_name: ClassVar[str]
    tags: ClassVar[tuple[str, ...]]
    task_categories: ClassVar[tuple[str, ...]]
    figure_name: ClassVar[str]

    def validate(self, ds: xr.Dataset) -> None:
        """Raise ``ValueError`` if the store does not have the layout this kind expects."""
        raise NotImplementedError

    def configs(self, ds: xr.Dataset, params: PublishParams) -> list[ConfigSpec]:
        raise NotImplementedError

    def write_parquet(self, ds: xr.Dataset, config: ConfigSpec, out: Path, params: PublishParams) -> None:
        """Write the config's parquet files under ``out`` and fill ``config.files`` / ``config.rows``."""
        raise NotImplementedError

    def zarr_layout(self, ds: xr.Dataset) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
        """Inner chunk and shard sizes per data variable for the repo's zarr copy."""
        raise NotImplementedError

    def stats(self, store: Path) -> dict[str, Any]:
        """Train-split statistics per config name (the loaders' normalisation reads them back)."""
        raise NotImplementedError

    def figure(self, ds: xr.Dataset, path: Path) -> None:
        raise NotImplementedError

    def card_body(self, ctx: dict[str, Any]) -> str:
        raise NotImplementedError


def get_kind(name: str) -> DatasetKind:
    if name == "smoke":
        from pipelines.hub.smoke import SmokeKind

        return SmokeKind()
    if name == "turbulence":
        from pipelines.hub.turbulence import TurbulenceKind

        return TurbulenceKind()
    raise ValueError(f"unknown dataset kind {name!r}; known: smoke, turbulence")
