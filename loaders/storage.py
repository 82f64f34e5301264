"""The storage layer: zarr stores through xarray, written atomically, with provenance and manifests.

Every dataset stage writes through :func:`publish_store`, and every reader opens through this module
(:func:`open_store` for xarray, :func:`open_group` and :class:`ChunkReader` for the loaders' hot path), so
the rules live in one place:

* a store is built under a temporary name and renamed into place only after it is complete, and it
  carries a completion marker (``_COMPLETE.json``) with a manifest of its files and their sha256 sums;
  a store without the marker is refused by readers, and so is one missing a file the manifest lists
  (zarr would silently return the fill value for a missing chunk);
* every chunk carries a crc32c checksum (a codec of the zarr v3 pipeline), so a flipped byte raises on
  read; a chunk swapped for another valid chunk is caught by the sha256 manifest, which every reader
  checks once per process and store (:func:`check_complete`);
* an existing store is never overwritten unless the caller says so;
* every store has one metadata block (``attrs["provenance"]``) that depends on content only: params and
  library versions. When and where and from which commit it was built goes to the stage's metrics
  (:func:`run_info`), so an unchanged dataset keeps its bytes and its hash;
* long, resumable work writes one piece at a time through :class:`loaders.scratch.ResumableBatches`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from loaders.cache import hub_store, read_unit
from loaders.digest import sha256_file
from loaders.provenance import TRACKED_PACKAGES as TRACKED_PACKAGES
from loaders.provenance import git_revision as git_revision
from loaders.provenance import library_versions as library_versions
from loaders.provenance import provenance as provenance
from loaders.provenance import run_info as run_info

COMPLETE_MARKER = "_COMPLETE.json"


class StoreError(RuntimeError):
    """A store is missing, incomplete, corrupt, or would be overwritten."""


CRASH_AT = "SYMFLOW_CRASH_AT"  # test hook: the named point at which this process kills itself


def crash_point(name: str) -> None:
    """SIGKILL this process here when ``$SYMFLOW_CRASH_AT`` names this point: the fault-injection tests
    kill a stage at the moments where a half-done write would show (no handler or cleanup runs)."""
    if os.environ.get(CRASH_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)


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


def writer_gone(pid: int) -> bool:
    """Whether the process that named a temporary file after its pid has died (a live one, even another
    user's, keeps its file)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _clear_partials(path: Path) -> None:
    """Remove ``.<name>.partial-<pid>`` copies (and ``.old-<pid>`` ones being replaced) left by killed
    writers; refuse if a live one is writing."""
    leftovers = [*path.parent.glob(f".{path.name}.partial-*"), *path.parent.glob(f".{path.name}.old-*")]
    for partial in leftovers:
        pid = partial.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        if writer_gone(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)
            continue
        raise StoreError(
            f"{path} is being written by another process (pid {pid}, {partial}); "
            "two stages must not write one store"
        )


def checksummed_encoding(ds: xr.Dataset, encoding: dict[str, dict] | None = None) -> dict[str, dict]:
    """``encoding`` with a crc32c codec last in every array's pipeline (data variables and coordinates).

    An array without its own compressors gets zarr's default (zstd) before the checksum; the checksum
    covers the bytes as stored, so any flipped byte of a chunk file fails its read.
    """
    out = {name: dict(spec) for name, spec in (encoding or {}).items()}
    for name in ds.variables:
        spec = out.setdefault(str(name), {})
        given = spec.get("compressors", (ZstdCodec(level=0, checksum=False),))
        codecs = tuple(() if given is None else given if isinstance(given, (list, tuple)) else (given,))
        if not any(isinstance(c, Crc32cCodec) for c in codecs):
            codecs += (Crc32cCodec(),)
        spec["compressors"] = codecs
    return out


def publish_store(
    ds: xr.Dataset,
    path: Path,
    encoding: dict[str, dict] | None = None,
    overwrite: bool = False,
    validate: Any = None,
) -> dict[str, str]:
    """Write ``ds`` to a zarr store at ``path`` atomically and return its file manifest.

    The store is written beside ``path`` (every array with a crc32c chunk checksum), optionally checked by
    ``validate(tmp_path)`` (which raises on failure; open the store there with :func:`open_unfinished`),
    stamped with a completion marker and manifest, and then renamed into place. A failure at any point
    leaves ``path`` as it was.
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
            ds.to_zarr(
                tmp, mode="w", encoding=checksummed_encoding(ds, encoding), consolidated=True, zarr_format=3
            )
        if validate is not None:
            validate(tmp)
        manifest = file_manifest(tmp)
        crash_point("store-written")
        # no time in the marker: two builds of the same content are byte-identical
        write_json_atomic(tmp / COMPLETE_MARKER, {"files": manifest})
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
        crash_point("store-published")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def is_remote(url: str | Path) -> bool:
    return str(url).startswith(("hf://", "http://", "https://"))


def read_manifest(path: str | Path) -> dict[str, str]:
    """The ``files`` manifest (posix path -> sha256) of the store at ``path``, from its completion marker;
    a missing, truncated or empty marker is a :class:`StoreError` naming the file and what to do."""
    marker = Path(path) / COMPLETE_MARKER
    if not marker.is_file():
        raise StoreError(
            f"{path} has no {COMPLETE_MARKER}: it is incomplete (an interrupted write?). Rebuild it with "
            "`dvc repro`; resumable stages continue from their finished batches"
        )
    try:
        files = json.loads(marker.read_text())["files"]
        if not (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())):
            raise TypeError("files is not a mapping of path to sha256")
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        kind = "empty" if marker.stat().st_size == 0 else f"unreadable ({type(err).__name__})"
        raise StoreError(
            f"{marker} is {kind}: the store's completion marker was truncated or damaged, so its files "
            "cannot be checked; restore the store with `dvc checkout` or rebuild it with `dvc repro`"
        ) from None
    return files


# local stores whose every file matched the manifest in this process, by path and marker identity
_VERIFIED: set[tuple[str, int, int, int]] = set()


def check_complete(path: str | Path, verify: bool | None = None) -> None:
    """Refuse a local store that is missing, unmarked, lacks a file its manifest lists, or holds a file
    whose sha256 differs from the manifest (a chunk replaced by another valid chunk: a swap the chunks'
    own crc32c cannot see).

    The sha256 pass reads every file once per process and store (``verify=None``, the default; a rebuilt
    store, with a new marker, is read again); ``verify=True`` reads it again regardless, ``verify=False``
    only checks that every listed file exists (one stat per file).
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no dataset at {path}; run `dvc repro` to build it")
    expected = read_manifest(path)
    missing = [rel for rel in expected if not (path / rel).is_file()]
    if missing:
        raise StoreError(
            f"{path} is corrupt: {len(missing)} file(s) of its manifest are missing, e.g. {missing[:3]} "
            "(zarr would read the fill value there); rebuild it with `dvc repro`"
        )
    stat = (path / COMPLETE_MARKER).stat()
    seen = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if verify is False or (verify is None and seen in _VERIFIED):
        return
    actual = file_manifest(path)
    bad = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
    if bad:
        raise StoreError(
            f"{path} is corrupt: {len(bad)} file(s) differ from the manifest, e.g. {bad[:3]} (their sha256: "
            "a damaged or swapped chunk); restore it with `dvc checkout` or rebuild it with `dvc repro`"
        )
    _VERIFIED.add(seen)


def _remote_store(url: str, cache_dir: str | Path | None) -> Any:
    """A Hub store through the local disk cache (:mod:`loaders.cache`); any other URL through fsspec."""
    hub = url.startswith("hf://datasets/")
    return hub_store(url, cache_dir) if hub else zarr.storage.FsspecStore.from_url(url, read_only=True)


def open_dataset(
    url: str | Path, chunks: Any = None, dask: bool = False, cache_dir: str | Path | None = None
) -> xr.Dataset:
    """Any zarr store (path or ``hf://`` URL, its files cached on disk in ``cache_dir``) lazily, WITHOUT
    the completeness checks of :func:`open_store`: for a source its caller has checked already."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        return xr.open_zarr(
            _remote_store(str(url), cache_dir) if is_remote(url) else Path(url),
            consolidated=True,
            chunks=({} if chunks is None else chunks) if dask else None,  # {}: the on-disk chunks
        )


def open_store(
    path: str | Path, verify: bool | None = None, chunks: Any = None, dask: bool = True
) -> xr.Dataset:
    """Open a completed store lazily (dask-backed); refuse incomplete or corrupt ones (:func:`check_complete`:
    every file's sha256 once per process, again with ``verify=True``). ``dask=False`` gives
    plain lazy arrays (cheaper for many small reads). An ``hf://`` URL (a published copy, which has no
    manifest of its own: its repo's ``checksums.sha256`` covers it) is opened without these checks.
    """
    if not is_remote(path):
        check_complete(path, verify)
    return open_dataset(path, chunks, dask)


def open_unfinished(path: str | Path) -> xr.Dataset:
    """A store :func:`publish_store` has written but not yet marked complete (for its ``validate`` hook)."""
    return open_dataset(path, None, True)


def open_group(url: str | Path, check: bool = True, cache_dir: str | Path | None = None) -> zarr.Group:
    """The zarr group of a store (local path or ``hf://`` URL, cached in ``cache_dir``), read-only.

    A local store with a completion marker is checked first (:func:`check_complete`, its sha256 pass once
    per process); ``check=False`` is for a store checked already by the caller.
    """
    url = str(url)
    if is_remote(url):
        store = _remote_store(url, cache_dir)
    else:
        if check and (Path(url) / COMPLETE_MARKER).is_file():
            check_complete(url)
        store = zarr.storage.LocalStore(url, read_only=True)
    return zarr.open_group(store=store, mode="r")


class ChunkReader:
    """Reads ``array[prefix..., t0:t1]`` through an LRU cache of blocks along the time axis.

    A block is a chunk, or for a sharded array (the Hub copy) up to a shard (:func:`read_unit`).
    ``time_axis`` is the position of the time axis; ``prefix`` indexes every axis before it. Memory stays at
    ``cache_chunks`` blocks per reader; consecutive windows re-use the blocks they share. The zarr array
    handle is opened on first use and kept on this object only (dropped when pickled: every DataLoader
    worker opens its own). A chunk that fails to decode (crc32c mismatch) raises :class:`StoreError`.
    """

    def __init__(self, url: str, name: str, time_axis: int, cache_chunks: int = 4, cache_dir: Any = None):
        self.url, self.name, self.time_axis, self.cache_dir = str(url), name, time_axis, cache_dir
        self.cache_chunks = max(int(cache_chunks), 1)
        self._array: Any = None
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_array=None, _cache=OrderedDict())  # workers open their own handle
        return state

    @property
    def array(self) -> Any:
        if self._array is None:
            self._array = open_group(self.url, check=False, cache_dir=self.cache_dir)[self.name]
        return self._array

    def _chunk_key(self, prefix: tuple[int, ...], c: int) -> str:
        """The chunk file's key in the store (``velocity/c/0/1/2/0/0/0``), for error messages."""
        chunks, shape = self.array.chunks, self.array.shape
        coords = [str(i // n) for i, n in zip(prefix, chunks, strict=False)]
        coords.append(str(c * read_unit(self.array, self.time_axis) // chunks[len(prefix)]))
        tail = list(zip(chunks[len(coords) :], shape[len(coords) :], strict=True))
        coords += ["0" if n >= m else "*" for n, m in tail]
        return f"{self.name}/c/{'/'.join(coords)}"

    def _chunk(self, prefix: tuple[int, ...], c: int, size: int, length: int) -> np.ndarray:
        key = (prefix, c)
        block = self._cache.get(key)
        if block is not None:
            self._cache.move_to_end(key)
            return block
        sel = prefix + (slice(c * size, min((c + 1) * size, length)),)
        try:
            block = np.asarray(self.array[sel])
        except (ValueError, RuntimeError, OSError) as err:
            raise StoreError(
                f"{self.url}: chunk {self._chunk_key(prefix, c)} of array {self.name!r} cannot be read "
                f"({err}); the store is corrupt: rebuild or re-download it"
            ) from err
        self._cache[key] = block
        while len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return block

    def read(self, prefix: tuple[int, ...], t0: int, t1: int) -> np.ndarray:
        if len(prefix) != self.time_axis:
            raise ValueError(f"prefix {prefix} must index the {self.time_axis} axes before time")
        array = self.array
        size, length = read_unit(array, self.time_axis), array.shape[self.time_axis]
        if not 0 <= t0 < t1 <= length:
            raise IndexError(f"time range [{t0}, {t1}) outside [0, {length})")
        parts = []
        for c in range(t0 // size, (t1 - 1) // size + 1):
            block = self._chunk(prefix, c, size, length)
            lo, hi = max(t0 - c * size, 0), min(t1 - c * size, block.shape[0])
            parts.append(block[lo:hi])
        # a copy: callers may write into the result, which must never alter a cached chunk
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts, axis=0)


def read_provenance(ds: xr.Dataset) -> dict[str, Any]:
    return json.loads(ds.attrs["provenance"])


def store_digest(path: str | Path) -> str:
    """Content address of a completed store: sha256 over its manifest's ``files`` mapping (path -> sha256).

    Cheap (no data is read) and changes exactly when a file of the store does; a run keys its checkpoints
    on it so that a rebuilt store never resumes a model trained on the old data.
    """
    files = read_manifest(path)
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
