"""Stage: build one Hugging Face dataset repo per dataset, and upload it when asked to.

    python -m pipelines.publish --params params.yaml --smoke data/smoke.zarr \\
        --turbulence data/turbulence.zarr --out data/hub --receipt metrics/publish_receipt.json

For every dataset named in ``publish.datasets`` the repo layout (card, parquet, sharded zarr, stats,
figure, checksums) is built under ``<out>/<repo name>`` (see :mod:`pipelines.publish.repo`). With
``publish.target: local`` (the embedded default) that folder is the target and the stage runs offline; with
``publish.target: hub`` each folder is then uploaded to ``HF_ENDPOINT`` with ``HF_TOKEN``
(:mod:`pipelines.publish.upload`). The receipt (repo, revision, commit id, file hashes) is written only after
every dataset succeeded; on failure the previous receipt and the input stores are left as they were.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from loaders.storage import StoreError, to_json, write_json_atomic
from pipelines.params import ParamsError, PublishParams, load_params
from pipelines.publish.registry import get_kind
from pipelines.publish.repo import CHECKSUMS, build_repo, inside
from pipelines.publish.upload import PublishError, upload_repo


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
    repos: dict[str, Any] = {}
    for name in tqdm(params.datasets, desc="publish datasets", unit="dataset", file=sys.stderr):
        start = time.perf_counter()
        repo_id = get_kind(name).repo_id(params.repos[name], Path(stores[name]))  # type: ignore[arg-type]
        folder = Path(out) / repo_id.split("/")[1]
        inside(out, folder)  # never --out itself or outside it (repo ids are also checked in params)
        store = Path(stores[name])  # type: ignore[arg-type]
        built = build_repo(get_kind(name), store, folder, repo_id, params, metrics_dir)
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
    result = {"target": params.target, "repos": repos}
    if receipt is not None:
        write_json_atomic(Path(receipt), result)
    return result


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
    parser.add_argument("--receipt", type=Path, default=Path("metrics/publish_receipt.json"))
    parser.add_argument("--target", choices=("local", "hub"), default=None, help="override publish.target")
    parser.add_argument(
        "--metrics-dir", type=Path, default=Path("metrics"), help="stage metrics the cards quote (optional)"
    )
    args = parser.parse_args(argv)
    try:
        overrides = {"publish": {"target": args.target}} if args.target else None
        params = load_params(args.params, overrides).publish
        stores = {"smoke": args.smoke, "turbulence": args.turbulence}
        result = publish(params, stores, args.out, args.receipt, args.metrics_dir)
    except (PublishError, ParamsError, StoreError, ValueError, OSError) as err:
        print(f"publish stage failed: {err}", file=sys.stderr)
        return 1
    # the receipt has every hash; the console gets counts
    summary = {
        name: {k: (len(v) if isinstance(v, (list, dict)) else v) for k, v in entry.items()}
        for name, entry in result["repos"].items()
    }
    print(to_json(summary))
    return 0
