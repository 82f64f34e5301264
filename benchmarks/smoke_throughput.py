"""Smoke-plume throughput: the naive loop against the stage's path, on the same simulations.

Naive: one simulation at a time, numpy backend, float64, PhiFlow's ``make_incompressible`` with a
direct sparse solve (``scipy-direct``): the setup known to be correct.
Ours: the stage's path (``pipelines.smoke.run_batches``): simulations batched along a PhiFlow batch
dimension, the DCT pressure solve, batches spread over a dask LocalCluster. Cluster start-up is timed.

Both produce the same fields to solver round-off; the script checks it and prints the largest
difference. The last line is ``ratio: <ours / naive sim-steps per second>``.

    python benchmarks/smoke_throughput.py            # defaults: 48 simulations x 6 steps, ~3-4 minutes
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pipelines.params import ComputeParams, SmokeParams
from pipelines.smoke.stage import Job, run_batch, run_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=48)
    parser.add_argument("--steps", type=int, default=6, help="at least 5")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    thirds = {"train": 0.34, "valid": 0.33, "test": 0.33}
    base = dict(steps=args.steps, keep_start=0, keep_stop=args.steps + 1, input_frames=1, output_frames=1,
                levels=[0], n_simulations=args.sims, splits=thirds)  # fmt: skip
    ours_params = SmokeParams(**base, batch_size=-(-args.sims // args.workers))
    naive_params = SmokeParams(**base, solver={"method": "scipy-direct"})
    jobs = [Job(i) for i in range(args.sims)]
    sim_steps = args.sims * args.steps
    print(f"{args.sims} simulations x {args.steps} steps, 64 x 64, float64, {args.workers} dask workers")

    start = time.perf_counter()
    naive = [run_batch([job], naive_params.model_dump_json())["velocity"][0] for job in jobs]
    naive_seconds = time.perf_counter() - start
    print(f"naive loop : {naive_seconds:8.1f} s  {sim_steps / naive_seconds:8.2f} sim-steps/s")

    start = time.perf_counter()
    compute = ComputeParams(n_workers=args.workers, threads_per_worker=1)
    batches = dict(
        enumerate(jobs[i : i + ours_params.batch_size] for i in range(0, args.sims, ours_params.batch_size))
    )
    ours: dict[int, np.ndarray] = {}
    for i, arrays in run_batches(ours_params, compute, batches):
        for job, velocity in zip(batches[i], arrays["velocity"], strict=True):
            ours[job.index] = velocity
    ours_seconds = time.perf_counter() - start
    print(
        f"stage path : {ours_seconds:8.1f} s  {sim_steps / ours_seconds:8.2f} sim-steps/s"
        " (cluster start included)"
    )

    scale = max(float(np.max(np.abs(v))) for v in naive)
    diff = max(float(np.max(np.abs(ours[j.index] - naive[k]))) for k, j in enumerate(jobs))
    tolerance = 1e-6 * scale  # rel_tol 1e-8 per solve, accumulated over steps and advection
    print(f"max |ours - naive| = {diff:.3e} (max |u| = {scale:.3f}, allowed {tolerance:.1e})")
    if diff > tolerance:
        raise SystemExit("the two paths disagree beyond the solver tolerance")
    print(f"ratio: {naive_seconds / ours_seconds:.2f}")


if __name__ == "__main__":
    main()
