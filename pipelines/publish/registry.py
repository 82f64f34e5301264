"""The publish kind of a dataset, named by its spec (pipelines/datasets.py, ``publish``)."""

from __future__ import annotations

from pathlib import Path

from pipelines.datasets import dataset_spec, load_ref
from pipelines.publish.kinds import DatasetKind


def get_kind(name: str) -> DatasetKind:
    """The publish kind of dataset ``name`` (a built-in, or one resolved when params.yaml was loaded)."""
    spec = dataset_spec(name)
    if spec.publish is None:
        raise ValueError(f"dataset {name!r} has no publish kind (its spec's `publish` is None)")
    kind = load_ref(spec.publish, f"the publish kind of dataset {name!r}")
    if not (isinstance(kind, type) and issubclass(kind, DatasetKind)):
        raise ValueError(f"{spec.publish!r}, publish kind of dataset {name!r}, is no DatasetKind subclass")
    return kind()


def held_out_stores(name: str, store: Path) -> dict[str, Path]:
    """The held-out stores beside ``store`` that dataset ``name`` publishes with it, by their path under
    ``zarr/`` in the repo (smoke: ``smoke_domain/b<start>.zarr``, the Domain test); none without any."""
    spec = dataset_spec(name)
    return {f"{spec.held_out_dir}/{path.name}": path for path in spec.held_out_stores(store)}
