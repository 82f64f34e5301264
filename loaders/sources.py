"""Where a dataset is read from: a local zarr store, a local Hub-layout repo folder, or a Hub repo id.

Everything resolves to a zarr URL (a local path or an ``hf://`` path read through huggingface_hub's
``HfFileSystem``) plus the published statistics, when there are any. Only JSON and zarr chunks are read:
nothing downloaded is ever unpickled or executed.

A path that looks local (``.``, ``/`` or ``~`` first, a ``.zarr`` name, an OS path separator, more than
one ``/``, or a :class:`~pathlib.Path`) is never sent to the Hub: if it does not exist the error is
immediate. Hub files are cached on local disk (:mod:`loaders.cache`), so a second epoch reads local files.

Reading itself goes through :mod:`loaders.storage` (:func:`~loaders.storage.open_group`,
:class:`~loaders.storage.ChunkReader`); a ``Dataset`` holding only a :class:`Source` and its readers pickles
cleanly into DataLoader workers, and every worker opens its own handles.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import xarray as xr

from loaders.digest import CHECKSUMS
from loaders.kinds import store_kinds
from loaders.layouts import Layout, LayoutError
from loaders.storage import StoreError, check_complete

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
STATS = "stats.json"


@dataclass(frozen=True)
class Source:
    """A resolved dataset location; ``stats`` is a repo's parsed ``stats.json`` (None for a bare store)."""

    kind: str  # "store" | "folder" | "hub"
    zarr_url: str
    description: str
    stats: dict[str, Any] | None = field(default=None, compare=False)
    cache_dir: str | None = None  # where Hub files are cached (None: huggingface_hub's cache)


def looks_local(source: str | Path) -> bool:
    """True for anything that must be a filesystem path, never a Hub repo id (see the module docstring)."""
    if isinstance(source, Path):
        return True
    text = str(source)
    if text.startswith("hf://"):
        return False
    seps = {os.sep, os.altsep or os.sep} - {"/"}
    return (
        text.startswith((".", "/", "~"))
        or text.rstrip("/").endswith(".zarr")
        or any(sep in text for sep in seps)
        or text.removeprefix("datasets/").strip("/").count("/") != 1
    )


def check_kind(ds: xr.Dataset, layout: Layout, where: str) -> None:
    """Refuse a store of another dataset kind up front, naming what was expected and what to call instead."""
    if any(name in ds.data_vars for name in layout.variables):
        return  # this kind (a drifted one is described in full by ``layouts.check``)
    for kind in store_kinds():
        other = kind.load_layout()
        if other is not None and other is not layout and all(n in ds.data_vars for n in other.variables):
            raise LayoutError(
                f"{where} holds a {kind.name} dataset (variables {sorted(other.variables)}), not a "
                f"{layout.name} dataset (variables {sorted(layout.variables)}); use {kind.loader} for it"
            )


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


def resolve_source(
    source: str | Path, store_name: str, revision: str | None = None, cache_dir: str | Path | None = None
) -> Source:
    """Resolve ``source`` (local store, local repo folder, ``hf://datasets/<id>`` or ``<namespace>/<name>``).

    A Hub revision is pinned to its commit id here, so every worker reads the same snapshot; Hub files are
    cached in ``cache_dir`` (default: huggingface_hub's cache, ``$HF_HUB_CACHE``).
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        if (path / "zarr.json").is_file():
            check_complete(path)  # marker present and every chunk file it lists on disk
            return Source("store", str(path), f"local store {path}")
        store = path / "zarr" / store_name
        if (store / "zarr.json").is_file():
            check_folder(path, store_name)
            stats = json.loads((path / STATS).read_text()) if (path / STATS).is_file() else None
            return Source("folder", str(store), f"local repo folder {path}", stats)
        for kind in store_kinds():
            other = kind.store_name
            if other != store_name and (path / "zarr" / other / "zarr.json").is_file():
                raise LayoutError(
                    f"{path} is a {kind.name} repo folder (it holds zarr/{other}), not one holding "
                    f"zarr/{store_name}; use {kind.loader} for it"
                )
        raise StoreError(f"{path} is neither a zarr store nor a repo folder holding zarr/{store_name}")
    if looks_local(source):
        raise FileNotFoundError(
            f"no such local store or repo folder: {path} (a path is never looked up on the Hub; Hub repo ids "
            "look like namespace/name)"
        )
    repo_id = text.removeprefix("hf://").removeprefix("datasets/").strip("/")
    if "@" in repo_id:
        repo_id, revision = repo_id.split("@", 1)
    if not REPO_ID.match(repo_id):
        raise FileNotFoundError(f"{text!r} is not a local path and not a Hub repo id (namespace/name)")
    from huggingface_hub import HfApi  # imported late: it reads HF_ENDPOINT at import time

    from loaders.cache import repo_files

    sha = HfApi().dataset_info(repo_id, revision=revision or "main").sha or (revision or "main")
    files = repo_files(repo_id, sha, cache_dir)  # fetches checksums.sha256 into the cache
    stats_path = files.fetch(STATS)
    stats = json.loads(stats_path.read_text()) if stats_path is not None else None
    if f"zarr/{store_name}/zarr.json" not in files.checksums:
        kinds = [k for k in store_kinds() if f"zarr/{k.store_name}/zarr.json" in files.checksums]
        raise (LayoutError if kinds else StoreError)(
            f"Hub repo {repo_id}@{sha[:12]} has no zarr/{store_name}"
            + (f"; it is a {kinds[0].name} dataset: use {kinds[0].loader} for it" if kinds else "")
        )
    return Source(
        "hub",
        _hub_url(repo_id, sha, f"zarr/{store_name}"),
        f"Hub repo {repo_id}@{sha[:12]}",
        stats,
        None if cache_dir is None else str(Path(cache_dir).expanduser()),
    )
