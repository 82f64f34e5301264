"""Scratch pieces of the storage layer: long, resumable work saves one finished piece at a time.

Pieces are small zarr stores written through xarray, each followed by a ``.done`` marker; the folder is
keyed by whatever decides the pieces' content (:func:`params_key`), so a changed config never reuses them.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import xarray as xr

from loaders.storage import to_json, write_json_atomic


class ResumableBatches:
    """Scratch space where a long stage saves one finished piece at a time.

    Each batch is an xarray Dataset saved as its own small zarr store plus a ``.done`` marker written
    after it, so a batch either counts as finished or is redone. The scratch folder is keyed by the
    caller (for example a hash of the params) so a changed config never reuses stale pieces.
    """

    def __init__(self, root: Path, key: str):
        self.dir = Path(root) / key
        self.dir.mkdir(parents=True, exist_ok=True)

    def _store(self, name: str) -> Path:
        return self.dir / f"{name}.zarr"

    def _marker(self, name: str) -> Path:
        return self.dir / f"{name}.done"

    def done(self, name: str) -> bool:
        return self._marker(name).is_file() and self._store(name).is_dir()

    def save(self, name: str, ds: xr.Dataset) -> None:
        store = self._store(name)
        if store.exists():
            shutil.rmtree(store)  # a half-written piece from an interrupted run
        ds.to_zarr(store, mode="w", zarr_format=3, consolidated=False)
        write_json_atomic(self._marker(name), {"saved_utc": time.time()})

    def open(self, name: str) -> xr.Dataset:
        """A finished piece, lazily (dask-backed): large pieces are read a chunk at a time."""
        return xr.open_zarr(self._store(name), consolidated=False)

    def load(self, name: str) -> xr.Dataset:
        return self.open(name).load()

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def params_key(params: dict[str, Any]) -> str:
    """Short stable hash of a params mapping (keys sorted), for scratch folders."""
    return hashlib.sha256(to_json(params).encode()).hexdigest()[:16]
