"""The zarr store as shipped in a Hub repo: same arrays, coordinates and attributes, re-encoded with zarr v3
sharding so a repo folder holds a handful of files while readers still fetch one small inner chunk (an
HTTP range request over ``hf://``) at a time.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import xarray as xr


def sharded_encoding(ds: xr.Dataset, layout: dict[str, tuple[dict[str, int], dict[str, int]]]) -> dict:
    """Encoding for ``to_zarr``: ``layout[var] = (inner chunk sizes, shard sizes)`` by dimension name;
    dimensions not named take their full length."""
    encoding = {}
    for name, (inner, shard) in layout.items():
        dims = ds[name].dims
        encoding[name] = {
            "chunks": tuple(min(inner.get(d, ds.sizes[d]), ds.sizes[d]) for d in dims),
            "shards": tuple(min(shard.get(d, ds.sizes[d]), ds.sizes[d]) for d in dims),
        }
    return encoding


def write_sharded_copy(
    ds: xr.Dataset,
    out: Path,
    layout: dict[str, tuple[dict[str, int], dict[str, int]]],
    attrs: dict | None = None,
) -> None:
    """Write ``ds`` to ``out`` (a new folder) with the sharded ``layout`` and consolidated metadata.

    The output is byte-for-byte reproducible from the same input, which is what lets a re-publish with no
    change find every file already on the Hub.
    """
    ds = ds.copy()
    for var in ds.variables.values():
        var.encoding = {}  # the source store's chunking must not leak into the new layout
    if attrs:
        ds.attrs.update(attrs)
    for name in ds.variables:
        if name not in layout:
            ds[name] = ds[name].load()  # coordinates and small arrays: one chunk each
    for name, (_, shard) in layout.items():
        # dask chunks equal to the shards: each shard is written by exactly one task
        ds[name] = ds[name].chunk({d: min(shard.get(d, ds.sizes[d]), ds.sizes[d]) for d in ds[name].dims})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds.to_zarr(out, mode="w-", encoding=sharded_encoding(ds, layout), consolidated=True, zarr_format=3)
