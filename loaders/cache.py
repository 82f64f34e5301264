"""A local disk cache for zarr stores read from the Hugging Face Hub.

Reading a sharded store through ``hf://`` sends a ranged HTTP request per inner chunk and per shard index,
and keeps nothing between epochs (46 s for ~30 MB; a shuffled epoch 28x slower than a local store). Here a
store at ``hf://datasets/<id>@<commit>/<path>`` is read as a local store inside huggingface_hub's own cache
(``hf_hub_download``: ``$HF_HUB_CACHE`` / ``~/.cache/huggingface/hub`` or the caller's ``cache_dir``):
each file (a shard, or a small metadata file) is downloaded whole the first time any byte of it is asked
for, checked against the repo's ``checksums.sha256``, and every later read is a local file read. Files never
touched are never downloaded. The cache is keyed by commit, so a pinned revision never mixes snapshots,
and it is shared by processes (DataLoader workers) through huggingface_hub's file locks.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import LocalStore

from loaders.digest import CHECKSUMS, parse_checksums, sha256_file

HUB_URL = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<rev>[^/]+))?/(?P<path>.+?)/*$")


READ_BLOCK_BYTES = 16 << 20  # at most this much per cached block of a sharded array


def read_unit(array: Any, time_axis: int, max_bytes: int = READ_BLOCK_BYTES) -> int:
    """Frames per read along ``time_axis``: the chunk, or for a sharded array as many whole inner chunks of
    its shard as fit in ``max_bytes`` (one read per shard instead of one per one-frame inner chunk)."""
    size = array.chunks[time_axis]
    shards = getattr(array, "shards", None)
    if not shards:
        return size
    frame = int(math.prod(array.shape[time_axis + 1 :])) * array.dtype.itemsize
    fit = max(size, (max_bytes // max(frame, 1)) // size * size)
    return min(shards[time_axis], fit)


class HubCacheError(RuntimeError):
    """A file fetched from the Hub does not match the repo's checksums (it is removed from the cache)."""


def parse_hub_url(url: str) -> tuple[str, str | None, str]:
    """``(repo_id, revision or None, path in repo)`` of ``hf://datasets/<ns>/<name>[@rev]/<path>``."""
    match = HUB_URL.match(str(url))
    if match is None:
        raise ValueError(f"{url!r} is not an hf://datasets/<namespace>/<name>[@revision]/<path> URL")
    rev = match["rev"]
    return match["repo"], unquote(rev) if rev else None, match["path"]


class RepoFiles:
    """The files of one Hub dataset repo at one revision, fetched whole into the local cache on demand."""

    def __init__(self, repo_id: str, revision: str | None, cache_dir: str | Path | None = None):
        self.repo_id, self.revision = repo_id, revision or "main"
        self.cache_dir = None if cache_dir is None else str(Path(cache_dir).expanduser())
        self._lock = threading.Lock()
        self._checked: set[str] = set()
        self.checksums = self._read_checksums()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_checked")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock(), _checked=set())

    def _download(self, rel: str) -> Path:
        from huggingface_hub import hf_hub_download  # late: huggingface_hub reads HF_ENDPOINT on import

        return Path(
            hf_hub_download(
                self.repo_id, rel, repo_type="dataset", revision=self.revision, cache_dir=self.cache_dir
            )
        )

    def _read_checksums(self) -> dict[str, str]:
        """``{path: sha256}`` from ``checksums.sha256``; without one, the repo listing (no hashes)."""
        from huggingface_hub.errors import EntryNotFoundError

        try:
            text = self._download(CHECKSUMS).read_text()
        except EntryNotFoundError:
            from huggingface_hub import HfApi

            files = HfApi().list_repo_files(self.repo_id, repo_type="dataset", revision=self.revision)
            return dict.fromkeys(files, "")
        return parse_checksums(text)

    def fetch(self, rel: str) -> Path | None:
        """The local path of repo file ``rel`` (downloaded and checked on first use); None if absent."""
        if rel not in self.checksums:
            return None
        with self._lock:  # one download per file per process; other processes wait on hf's file lock
            path = self._download(rel)  # no request when the file is in this commit's snapshot already
            want = self.checksums[rel]
            if want and rel not in self._checked:
                if sha256_file(path) != want:
                    blob = path.resolve()
                    path.unlink(missing_ok=True)
                    blob.unlink(missing_ok=True)
                    raise HubCacheError(
                        f"{rel} of {self.repo_id}@{self.revision[:12]} does not match its sha256 in "
                        f"{CHECKSUMS} (removed from the cache; read again to re-download)"
                    )
                self._checked.add(rel)
        return path


class HubCachedStore(LocalStore):
    """A read-only zarr store over a Hub repo folder: a :class:`LocalStore` on the local snapshot whose files
    are fetched whole (one request each) before their first read."""

    def __init__(self, files: RepoFiles, prefix: str):
        self.files, self.prefix = files, prefix.strip("/")
        meta = files.fetch(f"{self.prefix}/zarr.json")
        if meta is None:
            raise FileNotFoundError(f"{files.repo_id} has no zarr store at {self.prefix}/")
        super().__init__(meta.parent, read_only=True)

    def __getstate__(self) -> dict[str, Any]:
        return {"files": self.files, "prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["files"], state["prefix"])

    def _local(self, key: str) -> bool:
        return (self.root / key).is_file() or self.files.fetch(f"{self.prefix}/{key}") is not None

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if not await asyncio.to_thread(self._local, key):
            return None
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        key_ranges = list(key_ranges)
        for key in {k for k, _ in key_ranges}:
            await asyncio.to_thread(self._local, key)
        return await super().get_partial_values(prototype, key_ranges)

    def _keys(self) -> list[str]:
        head = self.prefix + "/"
        return sorted(rel[len(head) :] for rel in self.files.checksums if rel.startswith(head))

    async def exists(self, key: str) -> bool:
        return f"{self.prefix}/{key}" in self.files.checksums

    async def list(self) -> AsyncIterator[str]:
        for key in self._keys():
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self._keys():
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        head = prefix.rstrip("/") + "/" if prefix else ""
        seen = set()
        for key in self._keys():
            if key.startswith(head):
                child = key[len(head) :].split("/", 1)[0]
                if child not in seen:
                    seen.add(child)
                    yield child


_REPOS: dict[tuple[int, str, str | None, str | None], RepoFiles] = {}
_STORES: dict[tuple[int, str, str | None], HubCachedStore] = {}
_LOCK = threading.Lock()


def _dir_key(cache_dir: str | Path | None) -> str | None:
    return None if cache_dir is None else os.fspath(Path(cache_dir).expanduser())


def repo_files(repo_id: str, revision: str | None, cache_dir: str | Path | None = None) -> RepoFiles:
    """The :class:`RepoFiles` of one repo, revision and cache dir (one per process: locks do not survive a
    fork, so a forked DataLoader worker builds its own)."""
    key = (os.getpid(), repo_id, revision, _dir_key(cache_dir))
    with _LOCK:
        if key not in _REPOS:
            _REPOS[key] = RepoFiles(repo_id, revision, cache_dir)
        return _REPOS[key]


def hub_store(url: str, cache_dir: str | Path | None = None) -> HubCachedStore:
    """The cached store of ``hf://datasets/<id>@<rev>/<path>`` (one per URL, cache dir and process)."""
    key = (os.getpid(), str(url), _dir_key(cache_dir))
    with _LOCK:
        store = _STORES.get(key)
    if store is None:
        repo_id, revision, path = parse_hub_url(url)
        store = HubCachedStore(repo_files(repo_id, revision, cache_dir), path)
        with _LOCK:
            store = _STORES.setdefault(key, store)
    return store
