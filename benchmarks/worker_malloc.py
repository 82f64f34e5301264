"""One landscape measurement in a dask worker as dask starts it, and as the matrices' workers now start.

    python benchmarks/worker_malloc.py [--params params.yaml] [--model smoke:gcnn]

dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in every worker it spawns (its
``distributed.nanny.pre-spawn-environ``), so glibc hands freed memory back to the operating system at once.
A landscape measurement frees and reallocates large tensors on every Hessian-vector product, and each
reallocation then page-faults its memory in again. ``pipelines.compute.dask_client`` unsets the variable for
the train and landscape matrices' workers (glibc's own threshold).

baseline: a one-worker ``LocalCluster`` with dask's defaults (otherwise the matrices' settings: one thread,
no memory limit); ours: ``dask_client(compute, one_task_per_worker=True)`` with one worker. Both run the same
task: one checkpoint's every landscape measure (pipelines/landscape.py ``measure``) of ``--model`` at the
preset's size, in its shared coordinates, with random weights and samples (benchmarks/landscape_step.py's
workload), on one torch thread. Prints each side's wall seconds of the measurement, its CPU seconds in user
and system mode, whether the measures are bit-identical, and last ``ratio: <baseline / ours>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster

ROOT = Path(__file__).resolve().parent.parent


def measure_in_worker(params_path: str, dataset: str, name: str) -> dict[str, Any]:
    """Runs in the worker: one checkpoint's landscape measures, timed."""
    import os
    import warnings

    import torch

    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    from landscape_step import losses

    from pipelines.landscape import measure
    from pipelines.params import load_params

    warnings.filterwarnings("ignore")  # e2cnn's deprecation noise
    torch.set_num_threads(1)
    params = load_params(params_path)
    flat, mse = losses(params, dataset, name)
    before, start = os.times(), time.perf_counter()
    out, spectrum = measure(flat, params.landscape, mse)
    wall, after = time.perf_counter() - start, os.times()
    out.pop("seconds")
    return {
        "wall": wall, "user": after.user - before.user, "system": after.system - before.system,
        "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"), "result": json.dumps([out, spectrum]),
    }  # fmt: skip


def run(client: Client, params: Path, dataset: str, name: str) -> dict[str, Any]:
    return client.submit(measure_in_worker, str(params), dataset, name, pure=False).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--model", default="smoke:gcnn", help="dataset:model (default smoke:gcnn)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pipelines.compute import dask_client
    from pipelines.params import load_params

    dataset, name = args.model.split(":")
    compute = load_params(args.params).compute.model_copy(update={"n_workers": 1})
    cluster_args = dict(n_workers=1, threads_per_worker=1, memory_limit=0, processes=True,
                        dashboard_address=None, silence_logs=logging.WARNING)  # fmt: skip
    with LocalCluster(**cluster_args) as cluster, Client(cluster) as client:  # type: ignore[arg-type]
        baseline = run(client, args.params, dataset, name)
    with dask_client(compute, one_task_per_worker=True) as client:
        ours = run(client, args.params, dataset, name)
    print(f"{args.params.name}: one checkpoint of {dataset} {name}, one worker, one torch thread")
    for label, r in (("dask's worker", baseline), ("ours", ours)):
        print(f"{label:<14} MALLOC_TRIM_THRESHOLD_={r['trim']!s:<6} wall {r['wall']:6.1f} s  "
              f"user {r['user']:6.1f} s  system {r['system']:6.1f} s")  # fmt: skip
    print(f"identical: {'yes' if baseline['result'] == ours['result'] else 'NO'}")
    print(f"ratio: {baseline['wall'] / ours['wall']:.2f}")


if __name__ == "__main__":
    main()
