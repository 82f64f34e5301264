"""Stage: simulate buoyant smoke plumes, build the C4 symmetry levels, write and validate the zarr store.

    python -m pipelines.smoke --params params.yaml --out data/smoke.zarr --domain-out data/smoke_domain

It also writes the *Domain* test stores (held-out buoyancy ladders, ``smoke.domain``), one per ladder in
``--domain-out``, with the same code, checks and provenance (:func:`build_domain_stores`).

Simulations run in batches along a PhiFlow batch dimension, one batch per dask task. Each finished
batch is saved to a scratch folder keyed by the physics params and the simulating code (:func:`scratch_key`),
so an interrupted run resumes from the batches it already has, a change of only dtype, windows or splits
re-simulates nothing, and an edited scenario or solver re-simulates everything.
The final store is written atomically (see :mod:`loaders.storage`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from distributed import as_completed
from tqdm import tqdm

from loaders.layouts import SMOKE, check
from loaders.scratch import ResumableBatches, params_key
from loaders.storage import (
    ensure_writable,
    open_unfinished,
    provenance,
    publish_store,
    run_info,
    to_json,
    write_json_atomic,
)
from pipelines.compute import dask_client
from pipelines.params import PUBLISHED_LEVEL_ERRORS, ComputeParams, SmokeParams
from pipelines.params.smoke import TRAINING_LADDER_START
from pipelines.smoke.code import check_dvc_dependencies, simulation_code
from pipelines.smoke.levels import (
    c4_round_off,
    check_exactly_c4,
    equivariance_errors,
    lower_faces,
    max_c4_violation,
    published_frame_slice,
    published_level_error,
    rotate_frames,
    rotate_velocity,
    staggered_divergence_from_centres,
    undo_directions,
)
from pipelines.smoke.scenarios import BuoyantPlume, Domain, Scenario, resolve_scenario
from pipelines.smoke.simulate import simulate

DIRECTIONS_DEG = (0, 90, 180, 270)


@dataclass(frozen=True)
class Job:
    """One simulation: rung ``index`` of the buoyancy ladder, set up turned by ``quarter_turns``."""

    index: int
    quarter_turns: int = 0

    @property
    def label(self) -> str:
        return f"b{self.index:03d}_r{self.quarter_turns}"


def domain_of(p: SmokeParams) -> Domain:
    return Domain(resolution=p.resolution, size=p.box_size)


def scenario_for(p: SmokeParams, job: Job) -> Scenario:
    base = resolve_scenario(p.scenario)(
        inflow_center=p.inflow_center,
        inflow_radius=p.inflow_radius,
        buoyancy=(0.0, p.buoyancy_unit * (job.index + 1)),
        **p.scenario_options,
    )
    return base.rotated(job.quarter_turns, domain_of(p)) if job.quarter_turns else base


def level_jobs(p: SmokeParams, level: int) -> list[Job]:
    """The simulation behind each direction of a level (rotated afterwards in ``rotate`` mode)."""
    turns = (0, 0, 0, 0) if p.symmetrisation == "rotate" else (0, 1, 2, 3)
    return [Job(i, t) for i, t in zip(p.level_indices(level), turns, strict=True)]


def plan_jobs(p: SmokeParams) -> list[Job]:
    jobs = {job for level in p.levels for job in level_jobs(p, level)}
    if p.solver_symmetry_check:
        jobs |= {Job(p.level_indices(0)[0], k) for k in range(4)}
    return sorted(jobs, key=lambda j: (j.quarter_turns, j.index))


def scratch_key(p: SmokeParams) -> str:
    """The simulation scratch is keyed by the physics and the code that simulates (the scenario's modules,
    the solver, :mod:`pipelines.smoke.code`): a change of dtype, windows or splits reuses the finished
    simulations instead of re-running PhiFlow (those are applied when the store is assembled); an edit of
    the scenario or the solver never resumes batches the old code simulated."""
    code = simulation_code(resolve_scenario(p.scenario))
    return "smoke-" + params_key({"physics": p.physics(), "code": code})


def domain_params(p: SmokeParams, start: int) -> SmokeParams:
    """The params a held-out Domain ladder is simulated with: ``p`` on the ladder starting at ``start``
    (its own scratch key); the solver check is the training store's."""
    return p.model_copy(update={"solver_symmetry_check": False}).ladder(start)


def scratch_keys(p: SmokeParams) -> set[str]:
    """The scratch keys a build of ``p`` keeps: its training ladder's and every Domain ladder's."""
    return {scratch_key(p), *(scratch_key(domain_params(p, b)) for b in p.domain.ladder_starts)}


def batches_of(jobs: list[Job], size: int) -> list[list[Job]]:
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def run_batch(jobs: list[Job], params_json: str) -> dict[str, np.ndarray]:
    """Dask task: simulate one batch; returns float64 arrays [sim, time, ...]."""
    p = SmokeParams.model_validate_json(params_json)
    scenarios = [scenario_for(p, job) for job in jobs]
    return simulate(
        scenarios, domain_of(p), p.steps, p.dt, (p.keep_start, p.keep_stop), p.solver, backend=p.backend
    )


def _batch_dataset(jobs: list[Job], arrays: dict[str, np.ndarray]) -> xr.Dataset:
    return xr.Dataset(
        {
            "velocity": (("job", "time", "component", "y", "x"), arrays["velocity"]),
            "smoke": (("job", "time", "y", "x"), arrays["smoke"]),
        },
        coords={"job": np.array([j.label for j in jobs], dtype=object)},
    )


def run_batches(
    p: SmokeParams, compute: ComputeParams, batches: dict[int, list[Job]]
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Run batches as dask tasks; yield ``(batch id, arrays)`` as each one finishes."""
    params_json = p.model_dump_json()
    with dask_client(compute) as client:
        futures = {client.submit(run_batch, jobs, params_json, pure=False): i for i, jobs in batches.items()}
        for future in as_completed(futures):
            yield futures[future], future.result()


def reused_simulations(p: SmokeParams, scratch_root: Path) -> int:
    """Simulations already in the scratch (resumed, or kept from the same physics): not timed by this run."""
    scratch, batches = ResumableBatches(scratch_root, scratch_key(p)), batches_of(plan_jobs(p), p.batch_size)
    return sum(len(b) for i, b in enumerate(batches) if scratch.done(f"batch{i:04d}"))


def simulate_all(p: SmokeParams, compute: ComputeParams, scratch_root: Path) -> dict[str, xr.Dataset]:
    """Run every planned simulation (resuming finished batches); returns one dataset per job label."""
    jobs = plan_jobs(p)
    batches = batches_of(jobs, p.batch_size)
    scratch = ResumableBatches(scratch_root, scratch_key(p))
    pending = {i: b for i, b in enumerate(batches) if not scratch.done(f"batch{i:04d}")}
    if len(pending) < len(batches):
        print(
            f"resuming: {len(batches) - len(pending)} of {len(batches)} batches already done", file=sys.stderr
        )
    with tqdm(total=len(jobs) * p.steps, unit="sim-step", desc="smoke simulations", disable=None) as bar:
        bar.update((len(jobs) - sum(len(b) for b in pending.values())) * p.steps)
        if pending:
            for i, arrays in run_batches(p, compute, pending):
                scratch.save(f"batch{i:04d}", _batch_dataset(batches[i], arrays))
                bar.update(len(batches[i]) * p.steps)
    out: dict[str, xr.Dataset] = {}
    for i, _ in enumerate(batches):
        ds = scratch.load(f"batch{i:04d}")
        for label in ds.job.values:
            out[str(label)] = ds.sel(job=label)
    return out


def assemble_levels(p: SmokeParams, sims: dict[str, xr.Dataset]) -> xr.Dataset:
    """Stack the four directions of every level, rotating grids and vector components."""
    dtype = np.dtype(p.dtype)
    velocity, smoke, buoyancy = [], [], []
    for level in p.levels:
        v_dirs, s_dirs, b_dirs = [], [], []
        for k, job in enumerate(level_jobs(p, level)):
            sim = sims[job.label]
            v, s = sim.velocity.values, sim.smoke.values
            if p.symmetrisation == "rotate" and k:
                v, s = rotate_frames(v, s, k)
            v_dirs.append(v.astype(dtype))
            s_dirs.append(s.astype(dtype))
            b_dirs.append(scenario_for(p, Job(job.index, k)).buoyancy)
        velocity.append(np.stack(v_dirs))
        smoke.append(np.stack(s_dirs))
        buoyancy.append(b_dirs)
    n, dx = p.resolution, p.box_size / p.resolution
    centres = (np.arange(n) + 0.5) * dx
    frames = np.arange(p.keep_start, p.keep_stop)
    split_bounds = p.split_bounds()
    split = np.empty(p.n_frames, dtype=object)  # variable-length strings have a zarr v3 spec
    for name, (start, stop) in split_bounds.items():
        split[start:stop] = name
    ds = xr.Dataset(
        {
            "velocity": (
                ("level", "direction", "time", "component", "y", "x"),
                np.stack(velocity),
                {"long_name": "fluid velocity at cell centres", "units": "length unit / time unit"},
            ),
            "smoke": (
                ("level", "direction", "time", "y", "x"),
                np.stack(smoke),
                {"long_name": "smoke density at cell centres", "units": "1"},
            ),
        },
        coords={
            "level": ("level", np.array(p.levels), {"long_name": "symmetry-breaking level E_i"}),
            "direction": (
                "direction",
                np.array(DIRECTIONS_DEG),
                {"units": "degree", "long_name": "CCW turn"},
            ),
            "time": ("time", frames * p.dt, {"units": "time unit", "long_name": "simulation time"}),
            "frame": ("time", frames, {"long_name": "simulation step index"}),
            "split": ("time", split, {"long_name": "train / valid / test assignment (time-ordered)"}),
            "component": (
                "component",
                np.array(["u", "v"], dtype=object),
                {"long_name": "velocity component along x, y"},
            ),
            "y": ("y", centres, {"units": "length unit", "long_name": "cell-centre y (up)"}),
            "x": ("x", centres, {"units": "length unit", "long_name": "cell-centre x"}),
            "buoyancy": (
                ("level", "direction", "axis"),
                np.array(buoyancy),
                {"long_name": "buoyancy (bx, by)"},
            ),
            "axis": ("axis", np.array(["x", "y"], dtype=object)),
        },
        attrs={
            "title": "Buoyant smoke plumes with controlled C4 symmetry (PhiFlow)",
            "grid_spacing": dx,
            "dt": p.dt,
            "simulator": "PhiFlow",
            "pressure_solver": json.dumps(p.solver.model_dump()),
            "splits": to_json({k: {"time_index": list(v)} for k, v in split_bounds.items()}),
            "windows": to_json({"input_frames": p.input_frames, "output_frames": p.output_frames}),
        },
    )
    return ds


def published_definition_errors(p: SmokeParams, sims: dict[str, xr.Dataset]) -> dict[str, float]:
    """Each level's error by the published definition (``published_level_error``): the four unrotated
    simulations behind its directions, staggered velocity, frames 21..59 of the kept ones
    (``published_frame_slice``). In ``simulate`` mode the turned simulations are turned back first."""
    out = {}
    compared = published_frame_slice(p.keep_start, p.keep_stop)
    for level in p.levels:
        frames = []
        for job in level_jobs(p, level):
            v = sims[job.label].velocity.values
            v = rotate_velocity(v, -job.quarter_turns) if job.quarter_turns else v
            frames.append(lower_faces(v)[compared])
        out[f"E{level}"] = published_level_error(np.stack(frames))
    return out


def verify_declared_symmetry(p: SmokeParams, sims: dict[str, xr.Dataset]) -> dict[str, float]:
    """Every set of four separately simulated, turned setups of one rung (E_0 in ``simulate`` mode, the
    solver check in both modes) must be C4-symmetric to round-off: a scenario whose ``rotated`` leaves part
    of its setup unturned fails here, naming itself and the measured orbit distance, before any store is
    written. Returns the measured distances (in float64, before the store's dtype)."""
    sets = {}
    if p.symmetrisation == "simulate" and 0 in p.levels:
        sets["E_0"] = level_jobs(p, 0)
    if p.solver_symmetry_check:
        sets["the solver check's rung"] = [Job(p.level_indices(0)[0], k) for k in range(4)]
    allowed = c4_round_off(p.solver.rel_tol)
    return {
        what: check_exactly_c4(
            np.stack([sims[job.label].velocity.values for job in jobs]), what, p.scenario, allowed
        )
        for what, jobs in sets.items()
    }


def validate_store(path: Path, p: SmokeParams) -> None:
    """Checks run on the written store before it is published; raises ``ValueError`` with the reason."""
    ds = open_unfinished(path)
    check(ds, SMOKE)  # variables, dims, dtypes, coordinates, attributes, splits, chunking
    expected = (len(p.levels), 4, p.n_frames, 2, p.resolution, p.resolution)
    if ds.velocity.shape != expected:
        raise ValueError(f"velocity has shape {ds.velocity.shape}, params say {expected}")
    if ds.smoke.shape != expected[:3] + expected[4:]:
        raise ValueError(f"smoke has shape {ds.smoke.shape}, params say {expected[:3] + expected[4:]}")
    dx = p.box_size / p.resolution
    eps = float(np.finfo(np.dtype(p.dtype)).eps)
    for level in p.levels:
        v = ds.velocity.sel(level=level).values
        s = ds.smoke.sel(level=level).values
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(s))):
            raise ValueError(f"level E_{level} holds NaN or inf")
        div, wall = staggered_divergence_from_centres(v, dx)
        vmax = float(np.max(np.abs(v)))
        allowed = (
            p.solver.abs_tol + p.solver.rel_tol * vmax / dx + 8 * np.sqrt(p.resolution) * eps * vmax / dx
        )
        if max(float(np.max(np.abs(div))), wall) > allowed:
            raise ValueError(
                f"level E_{level}: velocity is not divergence-free (max |div| {np.max(np.abs(div)):.3e}, "
                f"wall flux {wall:.3e}, allowed {allowed:.3e})"
            )
        if level == 0 and p.symmetrisation == "rotate" and max_c4_violation(v, s) != 0.0:
            raise ValueError(f"E_0 is not exactly C4-symmetric (max violation {max_c4_violation(v, s):.3e})")


def build_smoke_dataset(
    params: SmokeParams,
    compute: ComputeParams,
    out: Path,
    metrics: Path | None = None,
    scratch_root: Path = Path("data/.scratch"),
    overwrite: bool = False,
    keep_scratch: Collection[str] = (),
) -> dict:
    """Simulate, symmetrise, write and validate the smoke-plume store; returns the metrics."""
    out = Path(out)
    ensure_writable(out, overwrite)
    # a bad name or option fails before work, and so does a scenario module DVC would not see edited
    scenario_cls = resolve_scenario(params.scenario, params.scenario_options)
    check_dvc_dependencies(params.scenario, scenario_cls)
    reused = reused_simulations(params, scratch_root)
    start = time.perf_counter()
    sims = simulate_all(params, compute, scratch_root)
    sim_seconds = time.perf_counter() - start
    verify_declared_symmetry(params, sims)
    ds = assemble_levels(params, sims)
    errors = {int(level): equivariance_errors(ds.velocity.sel(level=level).values) for level in params.levels}
    result = {
        # distance of each level's four directions to the nearest exactly C4-symmetric set (not the
        # published quantity: that is published_definition_level_error)
        "orbit_distance": {f"E{lv}": e["orbit"] for lv, e in errors.items()},
        # the published definition, recomputed here, beside the published values
        "published_definition_level_error": published_definition_errors(params, sims),
        "level_equivariance_error_all": {f"E{lv}": e for lv, e in errors.items()},
        "simulations": len(plan_jobs(params)),
    }
    if scenario_cls is BuoyantPlume:  # the study's published values describe its scenario only
        result["published_level_equivariance_error"] = {
            f"E{lv}": PUBLISHED_LEVEL_ERRORS[lv] for lv in params.levels
        }
    # content-derived metrics only: the speed, the run facts and the solver check below go to the metrics
    # file, not the store, and so does the check's switch (toggling it leaves the store's bytes alone)
    # "simulations" counts the check's extra runs too: a run fact, so it stays out of the store as well
    # "domain" lists the held-out ladders, which are not in this store: left out so that their list does not
    # change the training store's bytes; a held-out store records the ladder it holds instead
    content_params = params.model_dump(mode="json", exclude={"solver_symmetry_check", "domain"})
    if params.ladder_start != TRAINING_LADDER_START:
        content_params["ladder_start"] = params.ladder_start
    content = {k: v for k, v in result.items() if k != "simulations"}
    ds.attrs["provenance"] = to_json(provenance(content_params, metrics=content))
    if params.solver_symmetry_check:
        i = params.level_indices(0)[0]
        sep = np.stack(
            [sims[Job(i, k).label].velocity.values for k in range(4)]  # four directions simulated separately
        )
        result["solver_only_c4_error"] = equivariance_errors(sep)["orbit"]
        result["solver_only_c4_max_abs"] = float(np.max(np.abs(undo_directions(sep) - sep[0][None])))
    # the code digests the scratch is keyed by (kept out of the store: a comment edit keeps its bytes)
    result["simulation_code"] = simulation_code(scenario_cls)
    result["reused_simulations"] = reused
    simulated = len(plan_jobs(params)) - reused
    if simulated:  # a run that simulated nothing has no rate
        result["sim_steps_per_second"] = simulated * params.steps / max(sim_seconds, 1e-9)
    chunks = {"level": 1, "direction": 1, "time": min(10, params.n_frames)}
    encoding = {
        "velocity": {"chunks": tuple(chunks.get(d, ds.sizes[d]) for d in ds.velocity.dims)},
        "smoke": {"chunks": tuple(chunks.get(d, ds.sizes[d]) for d in ds.smoke.dims)},
    }
    publish_store(ds, out, encoding, overwrite=overwrite, validate=lambda path: validate_store(path, params))
    result["wall_seconds"] = time.perf_counter() - start
    result["run"] = run_info()  # commit, time and host of this build: facts about the run, not the data
    if metrics is not None:
        write_json_atomic(Path(metrics), result)
    # keep this physics' simulations (a later change of dtype, windows or splits reuses them) and the
    # Domain ladders' (``keep_scratch``); drop others
    keep = {scratch_key(params), *keep_scratch, *scratch_keys(params)}
    for old in Path(scratch_root).glob("smoke-*"):
        if old.name not in keep:
            ResumableBatches(scratch_root, old.name).clear()
    return result
