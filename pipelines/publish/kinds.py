"""The dataset kinds the publish stage knows, and what each must provide.

A kind turns one completed zarr store into the files of a Hub dataset repo. A dataset's spec names its kind
(pipelines/datasets.py, ``publish: "package.module:Class"``; docs/extending.md); the repo building,
checksums, upload and receipt are shared (:mod:`.repo`, :mod:`.upload`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import datasets
import matplotlib.pyplot as plt
import xarray as xr

from pipelines.params import PublishParams
from pipelines.publish.card import ConfigSpec


@dataclass(frozen=True)
class CardContext:
    """Everything a dataset card is generated from."""

    ds: xr.Dataset
    provenance: dict[str, Any]
    repo_id: str
    configs: list[ConfigSpec]
    stats: dict[str, Any]
    sizes: dict[str, int]  # file path in the repo -> bytes
    license: str
    # the card's share of the stage metrics (pipelines.publish.facts.read_metrics); empty when none were given
    metrics: dict[str, Any] = field(default_factory=dict)
    # held-out stores published beside the main one (smoke: the Domain test), as paths under zarr/
    held_out: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, Any]:
        return self.provenance.get("params", {})

    @property
    def versions(self) -> dict[str, str]:
        return self.provenance.get("versions", {})

    @property
    def built_from(self) -> str:
        # the store records content only (params, library versions): no commit or date, so an unchanged
        # dataset keeps its bytes; the build's commit and time are in the stage's metrics
        return "Built by this project's pipeline with the library versions below and the parameters listed."


def save_figure(fig: Any, path: Path) -> None:
    """Write a card figure reproducibly (no software/date stamp, so unchanged data gives the same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)


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

    def features(self, ds: xr.Dataset) -> datasets.Features:
        """The parquet rows' features (the same for every data config; the ``preview`` config has its own):
        written to the card's ``dataset_info``."""
        raise NotImplementedError

    def repo_id(self, configured: str, store: Path) -> str:
        """The repo this store is published to: ``publish.repos.<name>`` (a kind may derive another)."""
        return configured

    def card_tags(self, ds: xr.Dataset) -> tuple[str, ...]:
        """The card's tags for this store (a kind whose tags depend on the data's source overrides it)."""
        return self.tags

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

    def write_previews(self, ds: xr.Dataset, out: Path) -> ConfigSpec | None:
        """Write a preview picture per series or sample under ``out`` (:mod:`.preview`) and return their
        ``preview`` config; ``None``: this kind has none."""
        return None

    def card_body(self, ctx: CardContext) -> str:
        raise NotImplementedError
