"""Scratch pieces of the storage layer: long, resumable work saves one finished piece at a time.

Pieces are small zarr stores written through xarray, each followed by a ``.done`` marker; the folder is
keyed by whatever decides the pieces' content (:func:`params_key`), so a changed config never reuses them.

A kill at any moment leaves the folder usable: a piece counts as finished only once its marker is written
(after the piece, and removed before a piece is rewritten), and clearing a folder first renames it out of
the way in one step, so a half-deleted folder never looks like a key's pieces; its remains are removed by
the next :class:`ResumableBatches` opened beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import xarray as xr

from loaders.storage import crash_point, to_json, write_json_atomic

_DELETING = ".deleting-"  # the name part of a folder being cleared: `.<key>.deleting-<pid>`


class ResumableBatches:
    """Scratch space where a long stage saves one finished piece at a time.

    Each batch is an xarray Dataset saved as its own small zarr store plus a ``.done`` marker written
    after it, so a batch either counts as finished or is redone. The scratch folder is keyed by the
    caller (for example a hash of the params) so a changed config never reuses stale pieces.
    """

    def __init__(self, root: Path, key: str):
        self.dir = Path(root) / key
        self.dir.mkdir(parents=True, exist_ok=True)
        for leftover in Path(root).glob(f".*{_DELETING}*"):  # a clear a kill interrupted
            _remove_if_orphaned(leftover)

    def _store(self, name: str) -> Path:
        return self.dir / f"{name}.zarr"

    def _marker(self, name: str) -> Path:
        return self.dir / f"{name}.done"

    def done(self, name: str) -> bool:
        return self._marker(name).is_file() and (self._store(name) / "zarr.json").is_file()

    def save(self, name: str, ds: xr.Dataset) -> None:
        store = self._store(name)
        self._marker(name).unlink(missing_ok=True)  # never a marker beside a piece being rewritten
        if store.exists():
            shutil.rmtree(store)  # a half-written piece from an interrupted run
        ds.to_zarr(store, mode="w", zarr_format=3, consolidated=False)
        crash_point("scratch-piece")
        write_json_atomic(self._marker(name), {"saved_utc": time.time()})

    def open(self, name: str) -> xr.Dataset:
        """A finished piece, lazily (dask-backed): large pieces are read a chunk at a time."""
        return xr.open_zarr(self._store(name), consolidated=False)

    def load(self, name: str) -> xr.Dataset:
        return self.open(name).load()

    def save_facts(self, name: str, facts: dict[str, Any]) -> None:
        """A small JSON record beside the pieces (e.g. what a run measured while producing them), written
        atomically: it is there whole or not at all."""
        write_json_atomic(self.dir / f"{name}.json", facts)

    def facts(self, name: str) -> dict[str, Any] | None:
        path = self.dir / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def clear(self) -> None:
        """Remove the folder: renamed first (one atomic step), then deleted."""
        if not self.dir.exists():
            return
        doomed = self.dir.with_name(f".{self.dir.name}{_DELETING}{os.getpid()}")
        os.replace(self.dir, doomed)
        crash_point("scratch-clear")
        shutil.rmtree(doomed, ignore_errors=True)


def _remove_if_orphaned(folder: Path) -> None:
    """Delete a folder another clear left half-deleted, unless its process is still deleting it."""
    pid = folder.name.rpartition(_DELETING)[2]
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            os.kill(int(pid), 0)
            return  # alive: it is deleting the folder itself
        except ProcessLookupError:
            pass
        except PermissionError:
            return
    shutil.rmtree(folder, ignore_errors=True)


def params_key(params: dict[str, Any]) -> str:
    """Short stable hash of a params mapping (keys sorted), for scratch folders."""
    return hashlib.sha256(to_json(params).encode()).hexdigest()[:16]
