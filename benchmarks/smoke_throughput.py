"""Smoke-plume throughput: the naive loop against the stage's path, on the same simulations.

Naive: one simulation at a time, numpy backend, float64, PhiFlow's ``make_incompressible`` with a
direct sparse solve (``scipy-direct``): the setup known to be correct. It is slow (about 1-2 sim-steps/s),
so it runs the same plumes for fewer steps (``--naive-steps``); rates are per simulation step, and the
fields are compared on the steps both ran. Nothing is extrapolated: each rate is what was timed.
Ours: the stage's path (``pipelines.smoke.run_batches``, default ``smoke.backend: jax``): simulations
batched along a PhiFlow batch dimension, a jit-compiled step with the DCT pressure solve, batches spread
over a dask LocalCluster. Cluster start-up and jit compilation are inside its time.

Also printed: the steady-state rate of the stage's step in one process after jit warm-up, beside the
estimate of ~1,000 sim-steps/s for a hand-written jitted JAX step. The last line is
``ratio: <ours / naive sim-steps per second>``.

    python benchmarks/smoke_throughput.py   # defaults: 48 plumes, 200 steps (naive: 3); ~4 min at load 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pipelines.params import ComputeParams, PressureSolverParams, SmokeParams
from pipelines.smoke.scenarios import Domain
from pipelines.smoke.simulate import phiflow_float64, simulate, stack_sources
from pipelines.smoke.stage import Job, domain_of, run_batches, scenario_for

HAND_WRITTEN_JAX_ESTIMATE = 1000.0  # sim-steps/s, a hand-written jitted JAX step (limit estimate)


def steady_state_rate(p: SmokeParams, sims: int, steps: int) -> float:
    """sim-steps/s of the stage's jitted step in this process, after a warm-up step compiled it."""
    from pipelines.smoke.jax_step import JaxRunner

    domain: Domain = domain_of(p)
    scenarios = [scenario_for(p, Job(i)) for i in range(sims)]
    with phiflow_float64("jax"):
        kind = type(scenarios[0])
        sources = stack_sources(scenarios, domain)
        runner = JaxRunner(kind, domain, p.dt, p.solver.rel_tol, p.solver.abs_tol)
        step = runner.step
        state = step(kind.initial_state(domain, sims), sources)  # compiles
        start = time.perf_counter()
        for _ in range(steps):
            state = step(state, sources)  # every solve checked, as in the stage
        runner.observe(state)
        return sims * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=48)
    parser.add_argument("--steps", type=int, default=200, help="steps of the stage's path")
    parser.add_argument("--naive-steps", type=int, default=3, help="steps of the naive loop (same plumes)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not 1 <= args.naive_steps <= args.steps:
        raise SystemExit("--naive-steps must be between 1 and --steps")

    thirds = {"train": 0.34, "valid": 0.33, "test": 0.33}
    base = dict(keep_start=0, input_frames=1, output_frames=1, levels=[0], n_simulations=args.sims,
                splits=thirds)  # fmt: skip
    ours_params = SmokeParams(
        **base, steps=args.steps, keep_stop=args.steps + 1, batch_size=-(-args.sims // args.workers)
    )
    reference = PressureSolverParams(method="scipy-direct")
    jobs = [Job(i) for i in range(args.sims)]
    print(
        f"{args.sims} plumes, 64 x 64, float64; stage path {args.steps} steps on {args.workers} dask workers "
        f"(backend {ours_params.backend}), naive loop {args.naive_steps} steps; 2 shared CPU cores"
    )

    start = time.perf_counter()
    naive = [
        simulate([scenario_for(ours_params, job)], domain_of(ours_params), args.naive_steps, ours_params.dt,
                 (0, args.naive_steps + 1), reference, backend="numpy")["velocity"][0]
        for job in jobs
    ]  # fmt: skip
    naive_seconds = time.perf_counter() - start
    naive_rate = args.sims * args.naive_steps / naive_seconds
    print(f"naive loop : {naive_seconds:8.1f} s  {naive_rate:8.2f} sim-steps/s")

    start = time.perf_counter()
    compute = ComputeParams(n_workers=args.workers, threads_per_worker=1)
    size = ours_params.batch_size
    batches = dict(enumerate(jobs[i : i + size] for i in range(0, args.sims, size)))
    ours: dict[int, np.ndarray] = {}
    for i, arrays in run_batches(ours_params, compute, batches):
        for job, velocity in zip(batches[i], arrays["velocity"], strict=True):
            ours[job.index] = velocity
    ours_seconds = time.perf_counter() - start
    ours_rate = args.sims * args.steps / ours_seconds
    print(
        f"stage path : {ours_seconds:8.1f} s  {ours_rate:8.2f} sim-steps/s end to end "
        "(cluster start-up and jit compilation included)"
    )
    steady = steady_state_rate(ours_params, size, 20)
    print(
        f"stage step : {steady:8.1f} sim-steps/s steady state, one process, {size} plumes, after jit warm-up "
        f"(hand-written jitted JAX step: ~{HAND_WRITTEN_JAX_ESTIMATE:,.0f}, an estimate)"
    )

    scale = max(float(np.max(np.abs(v))) for v in naive)
    common = args.naive_steps + 1
    diff = max(float(np.max(np.abs(ours[j.index][:common] - naive[k]))) for k, j in enumerate(jobs))
    tolerance = 1e-6 * scale  # rel_tol 1e-8 per solve, accumulated over steps and advection
    print(
        f"max |ours - naive| over frames 0..{args.naive_steps} = {diff:.3e} "
        f"(max |u| = {scale:.3f}, allowed {tolerance:.1e})"
    )
    if diff > tolerance:
        raise SystemExit("the two paths disagree beyond the solver tolerance")
    print(f"ratio: {ours_rate / naive_rate:.2f}")


if __name__ == "__main__":
    main()
