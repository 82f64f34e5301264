"""Where a dataset is read from: a local zarr store, a local Hub-layout repo folder, or a Hub repo id.

Everything resolves to a zarr URL (a local path or an ``hf://`` path read through huggingface_hub's
``HfFileSystem``) plus the published statistics, when there are any. Only JSON and zarr chunks are read:
nothing downloaded is ever unpickled or executed.

The zarr handles are opened lazily, once per process (:func:`open_group`), so a ``Dataset`` holding only a
:class:`Source` pickles cleanly into DataLoader workers and every worker opens its own handle.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import zarr

from loaders.storage import COMPLETE_MARKER, StoreError

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CHECKSUMS = "checksums.sha256"
STATS = "stats.json"


@dataclass(frozen=True)
class Source:
    """A resolved dataset location; ``stats`` is a repo's parsed ``stats.json`` (None for a bare store)."""

    kind: str  # "store" | "folder" | "hub"
    zarr_url: str
    description: str
    stats: dict[str, Any] | None = field(default=None, compare=False)


def _hub_url(repo_id: str, revision: str, path: str) -> str:
    return f"hf://datasets/{repo_id}@{quote(revision, safe='')}/{path}"


def resolve_source(source: str | Path, store_name: str, revision: str | None = None) -> Source:
    """Resolve ``source`` (local store, local repo folder, ``hf://datasets/<id>`` or ``<namespace>/<name>``).

    A Hub revision is pinned to its commit id here, so every worker reads the same snapshot.
    """
    text = str(source)
    path = Path(text)
    if path.exists():
        if (path / "zarr.json").is_file():
            if not (path / COMPLETE_MARKER).is_file():
                raise StoreError(
                    f"{path} has no {COMPLETE_MARKER}: it is incomplete; rebuild it with `dvc repro`"
                )
            return Source("store", str(path), f"local store {path}")
        store = path / "zarr" / store_name
        if (store / "zarr.json").is_file():
            if not (path / CHECKSUMS).is_file():
                raise StoreError(
                    f"{path} has no {CHECKSUMS}: the repo folder is incomplete; re-run the publish stage"
                )
            stats = json.loads((path / STATS).read_text()) if (path / STATS).is_file() else None
            return Source("folder", str(store), f"local repo folder {path}", stats)
        raise StoreError(f"{path} is neither a zarr store nor a repo folder holding zarr/{store_name}")
    repo_id = text.removeprefix("hf://").removeprefix("datasets/").strip("/")
    if "@" in repo_id:
        repo_id, revision = repo_id.split("@", 1)
    if not REPO_ID.match(repo_id):
        raise FileNotFoundError(f"{text!r} is not a local path and not a Hub repo id (namespace/name)")
    from huggingface_hub import HfApi  # imported late: it reads HF_ENDPOINT at import time

    sha = HfApi().dataset_info(repo_id, revision=revision or "main").sha or (revision or "main")
    stats = _read_hub_json(_hub_url(repo_id, sha, STATS))
    return Source(
        "hub", _hub_url(repo_id, sha, f"zarr/{store_name}"), f"Hub repo {repo_id}@{sha[:12]}", stats
    )


def _read_hub_json(url: str) -> dict[str, Any] | None:
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem()
    if not fs.exists(url):
        return None
    with fs.open(url, "rb") as fh:
        return json.loads(fh.read())


_GROUPS: dict[tuple[int, str], zarr.Group] = {}
_GROUPS_LOCK = threading.Lock()


def open_group(url: str) -> zarr.Group:
    """The zarr group at ``url``, opened once per process (handles are not shared across forks)."""
    key = (os.getpid(), url)
    with _GROUPS_LOCK:
        group = _GROUPS.get(key)
        if group is None:
            if url.startswith("hf://"):
                store = zarr.storage.FsspecStore.from_url(url, read_only=True)
            else:
                store = zarr.storage.LocalStore(url, read_only=True)
            group = zarr.open_group(store=store, mode="r")
            _GROUPS[key] = group
    return group


class _DirectChunks:
    """Decode chunk files of a plain local zarr v3 array without going through zarr-python.

    zarr-python spends a few milliseconds of machinery per read, more than decoding a small chunk costs;
    for the layout our stages write (regular grid, default ``/`` keys, ``bytes`` + optional ``zstd``, no
    sharding) this reads the chunk file and decodes it directly. :meth:`supports` says when it applies;
    anything else goes through zarr.
    """

    def __init__(self, root: Path, array: Any):
        meta = array.metadata.to_dict()
        self.root = root
        self.chunks = tuple(array.chunks)
        self.shape = tuple(array.shape)
        codecs = meta["codecs"]
        endian = (codecs[0].get("configuration") or {}).get("endian", "little")
        self.dtype = np.dtype(array.dtype).newbyteorder("<" if endian == "little" else ">")
        self.zstd = len(codecs) == 2
        self.fill = array.fill_value

    @staticmethod
    def supports(array: Any) -> bool:
        try:
            meta = array.metadata.to_dict()
        except AttributeError:
            return False
        codecs = [c["name"] for c in meta.get("codecs", [])]
        keys = meta.get("chunk_key_encoding", {})
        zstd_ok = codecs == ["bytes"] or (
            codecs == ["bytes", "zstd"]
            and not meta["codecs"][1].get("configuration", {}).get("checksum", False)
        )
        return (
            meta.get("zarr_format") == 3
            and meta.get("chunk_grid", {}).get("name") == "regular"
            and keys.get("name") == "default"
            and (keys.get("configuration") or {}).get("separator", "/") == "/"
            and zstd_ok
            and np.dtype(array.dtype).kind in "fiu"
        )

    def read(self, coords: tuple[int, ...]) -> np.ndarray:
        """The full (padded) chunk at chunk coordinates ``coords``."""
        path = self.root.joinpath("c", *map(str, coords))
        if not path.is_file():  # never written: the fill value, as zarr would return
            return np.full(self.chunks, self.fill, dtype=self.dtype)
        data = path.read_bytes()
        if self.zstd:
            import numcodecs

            data = numcodecs.Zstd().decode(data)
        return np.frombuffer(data, dtype=self.dtype).reshape(self.chunks)


class ChunkReader:
    """Reads ``array[prefix..., t0:t1]`` through an LRU cache of whole chunks along the time axis.

    ``time_axis`` is the position of the time axis; ``prefix`` indexes every axis before it. Memory stays at
    ``cache_chunks`` chunks per process, and consecutive windows re-use the chunks they share.
    """

    def __init__(self, url: str, name: str, time_axis: int, cache_chunks: int = 4):
        self.url, self.name, self.time_axis, self.cache_chunks = (
            url,
            name,
            time_axis,
            max(int(cache_chunks), 1),
        )
        self._pid: int | None = None
        self._array: Any = None
        self._direct: _DirectChunks | None = None
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_pid=None, _array=None, _direct=None, _cache=OrderedDict())  # workers open their own
        return state

    @property
    def array(self) -> Any:
        if self._pid != os.getpid():
            self._array = open_group(self.url)[self.name]
            self._cache = OrderedDict()
            self._direct = None
            chunks = self._array.chunks
            local = not self.url.startswith(("hf://", "http://", "https://"))
            # the fast path needs one chunk per read along every axis after time
            whole_tail = all(
                c == n
                for c, n in zip(
                    chunks[self.time_axis + 1 :], self._array.shape[self.time_axis + 1 :], strict=True
                )
            )
            if local and whole_tail and _DirectChunks.supports(self._array):
                self._direct = _DirectChunks(Path(self.url) / self.name, self._array)
            self._pid = os.getpid()
        return self._array

    def _chunk(self, prefix: tuple[int, ...], c: int, size: int, length: int) -> np.ndarray:
        key = (prefix, c)
        block = self._cache.get(key)
        if block is None:
            if self._direct is not None:
                chunks = self._direct.chunks
                coords = (
                    tuple(i // n for i, n in zip(prefix, chunks, strict=False))
                    + (c,)
                    + (0,) * (len(chunks) - len(prefix) - 1)
                )
                within = tuple(i % n for i, n in zip(prefix, chunks, strict=False))
                block = self._direct.read(coords)[within][: min(size, length - c * size)]
            else:
                sel = prefix + (slice(c * size, min((c + 1) * size, length)),)
                block = np.asarray(self.array[sel])
            self._cache[key] = block
            while len(self._cache) > self.cache_chunks:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return block

    def read(self, prefix: tuple[int, ...], t0: int, t1: int) -> np.ndarray:
        if len(prefix) != self.time_axis:
            raise ValueError(f"prefix {prefix} must index the {self.time_axis} axes before time")
        array = self.array
        size, length = array.chunks[self.time_axis], array.shape[self.time_axis]
        if not 0 <= t0 < t1 <= length:
            raise IndexError(f"time range [{t0}, {t1}) outside [0, {length})")
        parts = []
        for c in range(t0 // size, (t1 - 1) // size + 1):
            block = self._chunk(prefix, c, size, length)
            lo, hi = max(t0 - c * size, 0), min(t1 - c * size, block.shape[0])
            parts.append(block[lo:hi])
        # a copy: callers may write into the result, which must never alter a cached chunk
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts, axis=0)
