"""The storage layer: zarr stores through xarray, written atomically, with provenance and manifests.

Every dataset stage writes through :func:`publish_store`, and every reader opens through
:func:`open_store`, so the rules live in one place:

* a store is built under a temporary name and renamed into place only after it is complete, and it
  carries a completion marker (``_COMPLETE.json``) with a manifest of its files and their sha256 sums;
  a store without the marker is refused by readers;
* an existing store is never overwritten unless the caller says so;
* every store has one metadata block (``attrs["provenance"]``): params, seed, library versions and the
  git revision;
* long, resumable work writes one piece at a time through :class:`ResumableBatches`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import xarray as xr

COMPLETE_MARKER = "_COMPLETE.json"
TRACKED_PACKAGES = (
    "numpy", "scipy", "xarray", "zarr", "dask", "phiflow", "phiml", "torch", "e2cnn",
    "huggingface_hub", "datasets",
)  # fmt: skip


class StoreError(RuntimeError):
    """A store is missing, incomplete, corrupt, or would be overwritten."""


def library_versions(packages: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_revision(repo: Path | None = None) -> str:
    """The current commit (with ``-dirty`` if the tree has changes), or ``unknown`` outside git."""
    cwd = repo or Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The one metadata block every dataset carries."""
    return {
        "params": params,
        "versions": library_versions(),
        "git_revision": git_revision(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_manifest(root: Path, skip: Iterable[str] = (COMPLETE_MARKER,)) -> dict[str, str]:
    """sha256 of every file below ``root``, keyed by its posix path relative to ``root``."""
    skipped = set(skip)
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in skipped
    }


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default)


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(to_json(obj) + "\n")
    os.replace(tmp, path)


def ensure_writable(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing output unless asked to (checked before any work starts)."""
    if path.exists() and not overwrite:
        raise StoreError(
            f"{path} already exists; delete it or pass --overwrite (dvc repro removes stage outputs itself)"
        )


def _clear_partials(path: Path) -> None:
    """Remove ``.<name>.partial-<pid>`` copies left by killed writers; refuse if a live one is writing."""
    for partial in path.parent.glob(f".{path.name}.partial-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(partial, ignore_errors=True)  # its writer is gone
            continue
        except PermissionError:
            pass  # alive, owned by someone else
        raise StoreError(
            f"{path} is being written by another process (pid {pid}, {partial}); "
            "two stages must not write one store"
        )


def publish_store(
    ds: xr.Dataset,
    path: Path,
    encoding: dict[str, dict] | None = None,
    overwrite: bool = False,
    validate: Any = None,
) -> dict[str, str]:
    """Write ``ds`` to a zarr store at ``path`` atomically and return its file manifest.

    The store is written beside ``path``, optionally checked by ``validate(tmp_path)`` (which raises on
    failure), stamped with a completion marker and manifest, and then renamed into place. A failure at
    any point leaves ``path`` as it was.
    """
    path = Path(path)
    ensure_writable(path, overwrite)
    _clear_partials(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        with warnings.catch_warnings():
            # consolidated metadata is not in the v3 spec yet, but zarr-python and xarray read it, and it
            # turns hundreds of small metadata reads over hf:// into one
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            ds.to_zarr(tmp, mode="w", encoding=encoding or {}, consolidated=True, zarr_format=3)
        if validate is not None:
            validate(tmp)
        manifest = file_manifest(tmp)
        write_json_atomic(tmp / COMPLETE_MARKER, {"files": manifest, "completed_utc": time.time()})
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def open_store(path: str | Path, verify: bool = False, chunks: Any = None) -> xr.Dataset:
    """Open a completed store lazily (dask-backed); refuse incomplete ones.

    With ``verify=True`` every file's sha256 is checked against the manifest first.
    """
    path = Path(path)
    marker = path / COMPLETE_MARKER
    if not path.exists():
        raise StoreError(f"no dataset at {path}; run `dvc repro` to build it")
    if not marker.is_file():
        raise StoreError(
            f"{path} has no {COMPLETE_MARKER}: it is incomplete (an interrupted write?). Rebuild it with "
            "`dvc repro`; resumable stages continue from their finished batches"
        )
    if verify:
        expected = json.loads(marker.read_text())["files"]
        actual = file_manifest(path)
        bad = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
        if bad:
            raise StoreError(
                f"{path} is corrupt: {len(bad)} file(s) differ from the manifest, e.g. {bad[:3]}"
            )
    return xr.open_zarr(path, consolidated=True, chunks={} if chunks is None else chunks)  # on-disk chunks


def read_provenance(ds: xr.Dataset) -> dict[str, Any]:
    return json.loads(ds.attrs["provenance"])


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


def store_digest(path: str | Path) -> str:
    """Content address of a completed store: sha256 over its manifest's ``files`` mapping (path -> sha256).

    Cheap (no data is read) and changes exactly when a file of the store does; a run keys its checkpoints
    on it so that a rebuilt store never resumes a model trained on the old data.
    """
    marker = Path(path) / COMPLETE_MARKER
    if not marker.is_file():
        raise StoreError(f"{path} has no {COMPLETE_MARKER}: not a completed store; `dvc repro` builds it")
    files = json.loads(marker.read_text())["files"]
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
