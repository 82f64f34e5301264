"""Build one dataset repo folder (the Hub layout) from a completed store.

The folder is assembled in a staging directory beside the target and then synchronised into it file by
file: unchanged files are not rewritten, stale files are removed, and ``checksums.sha256`` is written last
(and removed first), so a folder with a checksum manifest is always a complete one.

Layout::

    README.md                 dataset card (YAML front matter: configs, data_files and dataset_info per split)
    checksums.sha256          sha256 of every other file
    stats.json                train-split statistics per config
    figures/...               the card's figure, and figures/preview/ (one picture per series or sample)
    data/<config>/<split>-00000-of-0000N.parquet
    zarr/<store_name>/        the store, zarr v3 sharded, consolidated metadata
    zarr/<held-out>/...       held-out stores beside it (smoke: smoke_domain/b<start>.zarr, the Domain test)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from loaders.digest import CHECKSUMS, parse_checksums
from loaders.storage import (
    COMPLETE_MARKER,
    file_manifest,
    library_versions,
    open_store,
    read_provenance,
    sha256_file,
    write_json_atomic,
)
from pipelines.params import PublishParams
from pipelines.publish.card import dataset_infos, front_matter
from pipelines.publish.facts import read_metrics
from pipelines.publish.kinds import CardContext, DatasetKind
from pipelines.publish.zarr_copy import write_sharded_copy

CODE_DIRS = (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent.parent / "loaders")
CONTENT_PARAMS = {"license", "mini_frames", "parquet_rows_per_file", "parquet_row_group"}
OUTPUT_PACKAGES = ("numpy", "xarray", "zarr", "numcodecs", "datasets", "pyarrow", "matplotlib", "dask")


@dataclass
class BuiltRepo:
    path: Path
    repo_id: str
    files: dict[str, str]  # repo-relative path -> sha256
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def read_checksums(folder: Path) -> dict[str, str]:
    return parse_checksums((folder / CHECKSUMS).read_text())


def verify_folder(folder: Path) -> list[str]:
    """Paths whose content no longer matches ``checksums.sha256`` (missing files included)."""
    expected = read_checksums(folder)
    return sorted(
        p for p, d in expected.items() if not (folder / p).is_file() or sha256_file(folder / p) != d
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_stale_staging(out_dir: Path) -> None:
    for old in out_dir.parent.glob(f".{out_dir.name}.staging-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)) and not old.is_symlink():
            shutil.rmtree(inside(out_dir.parent, old), ignore_errors=True)


def inside(root: Path, path: Path) -> Path:
    """``path`` with its folders resolved (symlinks followed), refused unless it lies strictly inside
    ``root``. Every path this module deletes or replaces goes through here, so a path-like repo name or a
    symlink pointing out can never make it touch anything outside the folder it owns."""
    owned = Path(root).resolve()
    real = Path(path).parent.resolve() / Path(path).name  # a symlink itself is inside: unlinking it is safe
    if Path(path).name in ("", ".", "..") or not real.is_relative_to(owned) or real == owned:
        raise ValueError(f"refusing to touch {path}: it is not inside the folder {owned} this stage owns")
    return real


def repo_folder(out: Path, repo_id: str) -> Path:
    """``<out>/<repo name>``, refused (naming it) unless it is a plain child of ``out``: never ``out`` itself,
    never outside it, and never a symlink, whose target outside ``out`` the sync would rewrite and prune."""
    folder = Path(out) / repo_id.split("/")[-1]
    inside(out, folder)  # repo ids are also checked in params
    if folder.is_symlink():
        raise ValueError(
            f"refusing to publish into {folder}: it is a symlink (to {os.readlink(folder)}), and the repo "
            f"folder is rewritten and pruned in place; remove the link or choose another --out"
        )
    return folder


def sync_tree(src: Path, dst: Path) -> tuple[list[str], list[str]]:
    """Make ``dst`` hold exactly ``src``'s files, moving only changed ones; returns (changed, removed)."""
    if dst.is_symlink():  # its target would be rewritten and pruned, wherever it is
        raise ValueError(f"refusing to sync into {dst}: it is a symlink (to {os.readlink(dst)})")
    dst.mkdir(parents=True, exist_ok=True)
    new = file_manifest(src, skip=())
    old = file_manifest(dst, skip=())
    changed = sorted(p for p in new if old.get(p) != new[p])
    removed = sorted(p for p in old if p not in new)
    if not changed and not removed:
        return [], []
    # resolve and check every path first, so a bad one fails before anything is deleted
    doomed = [inside(dst, dst / rel) for rel in removed]
    targets = {rel: inside(dst, dst / rel) for rel in changed}
    inside(dst, dst / CHECKSUMS).unlink(missing_ok=True)  # the folder is incomplete until it is back
    for path in doomed:
        path.unlink()
    for rel in sorted(changed, key=lambda p: p == CHECKSUMS):
        targets[rel].parent.mkdir(parents=True, exist_ok=True)
        os.replace(src / rel, inside(dst, targets[rel]))  # re-checked: mkdir may not follow a new link
    folders = (p for p in dst.rglob("*") if p.is_dir() and not p.is_symlink())
    for folder in sorted(folders, key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            inside(dst, folder).rmdir()
    return changed, removed


def build_key(
    kind: DatasetKind, store: Path, repo_id: str, params: PublishParams, metrics: dict | None = None,
    held_out: Mapping[str, Path] | None = None,
) -> str:  # fmt: skip
    """Everything the repo's bytes depend on: the stores' manifests (held-out ones by their repo path),
    params, this code and its card templates, library versions, and the metrics the card quotes."""
    digest = hashlib.sha256()
    digest.update((store / COMPLETE_MARKER).read_bytes())
    for name, path in sorted((held_out or {}).items()):
        digest.update(name.encode() + b"\0" + (Path(path) / COMPLETE_MARKER).read_bytes())
    digest.update(json.dumps(metrics or {}, sort_keys=True).encode())
    content = params.model_dump(mode="json", include=CONTENT_PARAMS)  # not target, revision, timeout...
    digest.update(json.dumps([kind.name, repo_id, content], sort_keys=True).encode())
    digest.update(json.dumps(library_versions(OUTPUT_PACKAGES), sort_keys=True).encode())
    for folder in CODE_DIRS:  # the card templates too: an edited template rebuilds the card
        for path in sorted(p for p in folder.rglob("*") if p.suffix in (".py", ".j2")):
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def _key_file(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.build.json"


def build_repo(
    kind: DatasetKind,
    store: Path,
    out_dir: Path,
    repo_id: str,
    params: PublishParams,
    metrics_dir: Path | None = None,
    held_out: Mapping[str, Path] | None = None,
) -> BuiltRepo:
    """Build (or refresh) the repo folder ``out_dir`` for ``store``; the store itself is only read.

    ``metrics_dir`` (optional) holds the stage metrics the card quotes (:mod:`.facts`). ``held_out`` maps
    a path under ``zarr/`` to a store of held-out simulations (smoke: the Domain test) that is verified,
    checked against the kind's layout and copied there beside the main store, with no parquet configs.

    When nothing the folder depends on changed (:func:`build_key`) and its files still match their
    checksums, the build is skipped.
    """
    store, out_dir = Path(store), Path(out_dir)
    repo_folder(out_dir.parent, out_dir.name)  # a plain child of --out: not --out, not above, not a link
    # always verified: a chunk swapped for another valid one passes its crc32c, only the sha256 manifest
    # catches it, and a published repo must never carry unverified data
    ds = open_store(store, verify=True)
    metrics = read_metrics(metrics_dir, kind.name, read_provenance(ds))
    held_out = {name: Path(path) for name, path in (held_out or {}).items()}
    for name, path in held_out.items():  # every store is verified before any work, held-out ones too
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or rel.parts[:1] == (kind.store_name,):
            raise ValueError(f"held-out store name {name!r}: not a path inside zarr/ beside the main store")
        kind.validate(open_store(path, verify=True))
    key = build_key(kind, store, repo_id, params, metrics, held_out)
    key_file = _key_file(out_dir)
    if (
        key_file.is_file()
        and json.loads(key_file.read_text()).get("key") == key
        and (out_dir / CHECKSUMS).is_file()
        and not verify_folder(out_dir)
    ):
        return BuiltRepo(out_dir, repo_id, file_manifest(out_dir, skip=()))
    key_file.unlink(missing_ok=True)
    kind.validate(ds)
    # plain lazy arrays (no dask) for the many small reads of the exporters; the check above already ran
    ds = open_store(store, dask=False)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_staging(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    # one tick per file group written: the zarr copy, each parquet config, stats, figure, card
    bar = tqdm(total=4, desc=f"build {repo_id}", unit="step", file=sys.stderr)
    try:
        staging.mkdir()
        bar.set_postfix_str("zarr copy")
        write_sharded_copy(ds, staging / "zarr" / kind.store_name, kind.zarr_layout(ds))
        for name, path in sorted(held_out.items()):
            other = open_store(path, dask=False)
            write_sharded_copy(other, staging / "zarr" / name, kind.zarr_layout(other))
        bar.update()
        configs = kind.configs(ds, params)
        bar.total += len(configs)
        for config in configs:
            bar.set_postfix_str(f"parquet {getattr(config, 'name', config)}")
            kind.write_parquet(ds, config, staging, params)
            bar.update()
        bar.set_postfix_str("stats")
        stats = kind.stats(store)
        bar.update()
        (staging / "stats.json").write_text(
            json.dumps({"split": "train", "configs": stats}, indent=2, sort_keys=True) + "\n"
        )
        bar.set_postfix_str("figure")
        kind.figure(ds, staging / kind.figure_name)
        preview = kind.write_previews(ds, staging)  # PNG files and the viewer's image rows
        if preview is not None:
            configs.append(preview)
        bar.update()
        bar.set_postfix_str("card and checksums")
        sizes = {
            p.relative_to(staging).as_posix(): p.stat().st_size for p in staging.rglob("*") if p.is_file()
        }
        ctx = CardContext(
            ds, read_provenance(ds), repo_id, configs, stats, sizes, params.license, metrics,
            tuple(sorted(held_out)),
        )  # fmt: skip
        card = front_matter(
            pretty_name=kind.pretty_name,
            license=params.license,
            tags=kind.card_tags(ds),
            task_categories=kind.task_categories,
            configs=configs,
            infos=dataset_infos(configs, kind.features(ds), staging),
        ) + kind.card_body(ctx)
        (staging / "README.md").write_text(card)
        manifest = file_manifest(staging, skip=())
        (staging / CHECKSUMS).write_text("".join(f"{d}  {p}\n" for p, d in sorted(manifest.items())))
        files = file_manifest(staging, skip=())
        changed, removed = sync_tree(staging, out_dir)
        bar.update()
    finally:
        bar.close()
        shutil.rmtree(staging, ignore_errors=True)
    write_json_atomic(key_file, {"key": key})
    return BuiltRepo(out_dir, repo_id, files, changed, removed)
