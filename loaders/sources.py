"""Where a dataset is read from: a local zarr store, a local Hub-layout repo folder, or a Hub repo id.

Everything resolves to a zarr URL (a local path or an ``hf://`` path read through huggingface_hub's
``HfFileSystem``) plus the published statistics, when there are any. Only JSON and zarr chunks are read:
nothing downloaded is ever unpickled or executed.

Reading itself goes through :mod:`loaders.storage` (:func:`~loaders.storage.open_group`,
:class:`~loaders.storage.ChunkReader`); a ``Dataset`` holding only a :class:`Source` and its readers pickles
cleanly into DataLoader workers, and every worker opens its own handles.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from loaders.storage import StoreError, check_complete

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


def check_folder(folder: Path, store_name: str) -> None:
    """Refuse a repo folder without ``checksums.sha256`` or missing a store file it lists (a stat each)."""
    if not (folder / CHECKSUMS).is_file():
        raise StoreError(
            f"{folder} has no {CHECKSUMS}: the repo folder is incomplete; re-run the publish stage"
        )
    prefix = f"zarr/{store_name}/"
    listed = [line.split(maxsplit=1)[1].strip() for line in (folder / CHECKSUMS).read_text().splitlines()]
    missing = [rel for rel in listed if rel.startswith(prefix) and not (folder / rel).is_file()]
    if missing:
        raise StoreError(
            f"{folder} is corrupt: {len(missing)} file(s) listed in {CHECKSUMS} are missing, e.g. "
            f"{missing[:3]}; re-run the publish stage or download the repo again"
        )


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
            check_complete(path)  # marker present and every chunk file it lists on disk
            return Source("store", str(path), f"local store {path}")
        store = path / "zarr" / store_name
        if (store / "zarr.json").is_file():
            check_folder(path, store_name)
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
