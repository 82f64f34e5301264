"""Stage: build one Hugging Face dataset repo per dataset, and upload it when asked to.

    python -m pipelines.publish --params params.yaml --smoke data/smoke.zarr \\
        --turbulence data/turbulence.zarr --out data/hub --receipt metrics/publish_receipt.json

For every dataset named in ``publish.datasets`` the repo layout (card, parquet, sharded zarr, stats,
figure, checksums) is built under ``<out>/<repo name>`` (see :mod:`pipelines.publish.repo`). With
``publish.target: local`` (the embedded default) that folder is the target and the stage runs offline; with
``publish.target: hub`` each folder is then uploaded to ``HF_ENDPOINT`` with ``HF_TOKEN``
(:mod:`pipelines.publish.upload`). The receipt (repo, revision, commit id, file hashes) is written only after
every dataset succeeded; on failure the previous receipt and the input stores are left as they were.

One publish at a time writes into an ``--out`` folder: it holds an exclusive lock on ``<out>/.publish.lock``
(released by the kernel when the process ends, however it ends), and a second one is refused at once.
Repo folders must be plain children of ``--out`` (a symlink is refused, naming it), and with
``target: hub`` a missing ``HF_TOKEN`` is reported before anything is built.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from loaders.storage import write_json_atomic
from pipelines.cli import run_stage
from pipelines.params import PublishParams, load_params
from pipelines.publish.registry import get_kind, held_out_stores
from pipelines.publish.repo import CHECKSUMS, build_repo, repo_folder
from pipelines.publish.upload import PublishError, require_token, upload_repo

LOCK_NAME = ".publish.lock"  # empty and kept: unlinking a lock file lets two holders in


@contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """Hold ``out`` for this process alone, or raise :class:`PublishError` if another publish holds it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PublishError(
                f"another publish is writing into {out} (it holds {path}); wait for it to finish or "
                "choose another --out"
            ) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock; so does the kernel if this process is killed


def publish(
    params: PublishParams,
    stores: dict[str, Path | None],
    out: Path,
    receipt: Path | None = None,
    metrics_dir: Path | None = None,
) -> dict[str, Any]:
    """Build (and with ``target: hub`` upload) every dataset in ``params.datasets``; returns the receipt.

    ``metrics_dir``: where the cards' optional figures (build cost, baseline and model scores) are read.
    """
    missing = [name for name in params.datasets if stores.get(name) is None]
    if missing:
        raise PublishError(f"publish.datasets lists {missing} but no store was given (--{missing[0]} PATH)")
    if params.target == "hub":
        require_token()  # before minutes of building, not after
    out = Path(out)
    # a user scenario's smoke data gets its own repo id unless the params name one (publish/kinds.py)
    repo_ids = {
        name: get_kind(name).repo_id(params.repos[name], Path(stores[name]))  # type: ignore[arg-type]
        for name in params.datasets
    }
    folders = {name: repo_folder(out, repo_ids[name]) for name in params.datasets}
    with out_lock(out):  # the receipt too: it must describe the folder as this publish left it
        result = _publish_locked(params, stores, repo_ids, folders, metrics_dir)
        if receipt is not None:
            write_json_atomic(Path(receipt), result)
    return result


def _publish_locked(
    params: PublishParams, stores: dict[str, Path | None], repo_ids: dict[str, str],
    folders: dict[str, Path], metrics_dir: Path | None,
) -> dict[str, Any]:  # fmt: skip
    repos: dict[str, Any] = {}
    for name in tqdm(params.datasets, desc="publish datasets", unit="dataset", file=sys.stderr):
        start = time.perf_counter()
        repo_id, folder = repo_ids[name], folders[name]
        store = Path(stores[name])  # type: ignore[arg-type]
        held_out = held_out_stores(name, store)  # the Domain test's simulations travel with smoke
        built = build_repo(get_kind(name), store, folder, repo_id, params, metrics_dir, held_out)
        if params.target == "hub":
            entry = upload_repo(folder, repo_id, params.revision, params.private, params.timeout_seconds)
        else:
            checksums = (folder / CHECKSUMS).read_bytes()
            entry = {
                "target": "local",
                "repo_id": repo_id,
                "revision": params.revision,
                # a content address stands in for a commit id: it changes exactly when a file does
                "commit": hashlib.sha256(checksums).hexdigest(),
                "files": built.files,
            }
        entry["folder"] = str(folder)
        entry["changed_locally"] = built.changed
        entry["seconds"] = round(time.perf_counter() - start, 2)
        repos[name] = entry
    return {"target": params.target, "repos": repos}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--smoke", type=Path, default=None, help="smoke-plume store (data/smoke.zarr)")
    parser.add_argument(
        "--turbulence", type=Path, default=None, help="turbulence store (data/turbulence.zarr)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data/hub"), help="folder holding one repo per dataset"
    )
    parser.add_argument("--store", action="append", default=[], metavar="NAME=PATH",
                        help="another dataset's store (a dataset of your own)")  # fmt: skip
    parser.add_argument("--receipt", type=Path, default=Path("metrics/publish_receipt.json"))
    parser.add_argument("--target", choices=("local", "hub"), default=None, help="override publish.target")
    parser.add_argument(
        "--metrics-dir", type=Path, default=Path("metrics"), help="stage metrics the cards quote (optional)"
    )
    args = parser.parse_args(argv)

    def body() -> dict[str, Any]:
        overrides = {"publish": {"target": args.target}} if args.target else None
        params = load_params(args.params, overrides).publish
        stores = {"smoke": args.smoke, "turbulence": args.turbulence}
        stores.update({name: Path(path) for name, _, path in (s.partition("=") for s in args.store)})
        return publish(params, stores, args.out, args.receipt, args.metrics_dir)

    def summary(result: dict[str, Any]) -> dict[str, Any]:  # the receipt has every hash; the console counts
        return {
            name: {k: (len(v) if isinstance(v, (list, dict)) else v) for k, v in entry.items()}
            for name, entry in result["repos"].items()
        }

    return run_stage("publish", body, summary)  # errors are printed on one line, scrubbed of secrets

