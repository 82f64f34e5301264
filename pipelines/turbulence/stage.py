"""Stage: isotropic turbulence (synthetic solver or JHTDB cutouts) as hr / lr super-resolution data.

    python -m pipelines.turbulence --params params.yaml --out data/turbulence.zarr \\
        --metrics metrics/turbulence.json --spectrum-plot metrics/turbulence_spectrum.png \\
        --modes-plot metrics/turbulence_modes.png

The source writes one piece per stored time step (synthetic) or per (time step, block) (JHTDB) to a
scratch folder keyed by the params, so an interrupted run resumes from the pieces it has. The pieces
are then filtered to the hr target and the lr input by block means in a dask graph, one time step per
task, and written atomically through :mod:`loaders.storage`. Store layout: docs/turbulence.md.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from tqdm import tqdm

from loaders.storage import (
    ResumableBatches,
    ensure_writable,
    params_key,
    provenance,
    publish_store,
    to_json,
    write_json_atomic,
)
from pipelines.cli import dataset_stage_parser, run_stage
from pipelines.compute import dask_client
from pipelines.params import ComputeParams, TurbulenceParams, load_params
from pipelines.turbulence import jhtdb
from pipelines.turbulence.downsample import block_mean, block_mean_dask, stride_sample, subcube
from pipelines.turbulence.solver import SolverConfig, SpectralSolver, initial_condition, model_spectrum
from pipelines.turbulence.spectra import (
    axis_statistics,
    field_spectrum,
    fit_slope,
    flow_statistics,
    relative_divergence,
)
from pipelines.turbulence.task import (
    SamplePlan,
    check_plan,
    min_time_gap,
    nearest_train_distance,
    plan_samples,
    spacing_gap,
    synthetic_span,
)

COMPONENTS = ("u_x", "u_y", "u_z")
DOMAIN = 2 * np.pi
PIECE_CHUNK_BYTES = 8 << 20  # source pieces are read in chunks of about this size


def piece_encoding(shape: tuple[int, ...], factor: int) -> dict[str, Any]:
    """Chunks of z-slabs (multiples of the hr factor, about PIECE_CHUNK_BYTES) and no compression.

    Pieces are scratch: compressing float turbulence saves little and costs more than the filter itself.
    """
    nz = shape[-3]
    plane = int(np.prod(shape[-2:])) * 4
    slab = min(nz, max(factor, (PIECE_CHUNK_BYTES // plane) // factor * factor))
    return {"chunks": (1,) * (len(shape) - 3) + (slab, *shape[-2:]), "compressors": None}


@contextlib.contextmanager
def downsample_scheduler(compute: ComputeParams) -> Iterator[None]:
    """Where the block means run: the scheduler in ``compute.scheduler_address`` if one is given, else
    threads in this process (n_workers x threads_per_worker of them).

    The filter is numpy that releases the GIL, so threads parallelise it without moving chunks between
    processes; on this project's 2-core machines a LocalCluster of processes was 3-4x slower for it
    (benchmarks/turbulence_downsample.py).
    """
    if compute.scheduler_address:
        with dask_client(compute):
            yield
        return
    with dask.config.set(scheduler="threads", num_workers=compute.n_workers * compute.threads_per_worker):
        yield


# --- sources ------------------------------------------------------------------------------------------


def sample_plan(p: TurbulenceParams) -> SamplePlan:
    counts = p.splits.model_dump()
    if p.source == "jhtdb":
        first, last = p.jhtdb.time_range
        return plan_samples(first, last, counts, p.window, p.seed, p.split_strategy, draw=True)
    gap = sample_gap(p)
    last = synthetic_span(p.n_samples, p.window, gap) - 1
    return plan_samples(0, last, counts, p.window, p.seed, p.split_strategy, draw=False, gap=gap)


def sample_gap(p: TurbulenceParams) -> int:
    """Synthetic: unused stored steps between sample windows (``sample_spacing_turnover`` of T_L)."""
    s = p.synthetic
    return spacing_gap(p.sample_spacing_turnover, p.turnover_time, s.dt * s.save_every)


def synthetic_scratch(p: TurbulenceParams, root: Path) -> ResumableBatches:
    frames = [int(i) for i in sample_plan(p).time_index]
    key = params_key({"synthetic": p.synthetic.model_dump(mode="json"), "frames": frames})
    return ResumableBatches(root, "turbulence-synthetic-" + key)


def _frame_name(i: int) -> str:
    return f"frame{i:05d}"


def _diag_name(i: int) -> str:
    return f"frame{i:05d}-diagnostics"


def _frame_done(scratch: ResumableBatches, i: int) -> bool:
    return scratch.done(_frame_name(i)) and scratch.done(_diag_name(i))


def simulate(p: TurbulenceParams, scratch: ResumableBatches, progress: bool | None = None) -> dict[str, Any]:
    """Spin the solver up and save every stored time step as a scratch piece (velocity + diagnostics).

    A rerun with every piece present skips the solver; otherwise it integrates again (the run is
    deterministic) and only writes the missing pieces.
    """
    s = p.synthetic
    wanted = {int(i) for i in sample_plan(p).time_index}  # stored steps the sample windows use
    n_frames = max(wanted) + 1
    spinup_steps = int(round(s.spinup_time / s.dt))
    total = spinup_steps + (n_frames - 1) * s.save_every + 1
    if all(_frame_done(scratch, i) for i in wanted):
        return {"resumed": True, "solver_steps": total}
    config = SolverConfig(
        s.resolution, s.viscosity, s.dt, s.forcing_power, s.forcing_wavenumber, s.fft_workers
    )
    uh0 = initial_condition(
        s.resolution, s.viscosity, s.forcing_power, s.initial_energy, s.seed, s.fft_workers
    )
    solver = SpectralSolver(config, uh0)
    max_cfl = 0.0
    energy_trace = []
    start = time.perf_counter()
    frame = 0
    with tqdm(total=total, unit="step", desc=f"solver {s.resolution}^3", disable=_disable(progress)) as bar:
        for step in range(1, total + 1):
            solver.step()
            bar.update(1)
            max_cfl = max(max_cfl, solver.last_cfl)
            if not np.isfinite(solver.last_cfl) or solver.last_cfl > s.max_cfl:
                raise RuntimeError(
                    f"solver CFL number {solver.last_cfl:.3g} exceeds synthetic.max_cfl={s.max_cfl} at t="
                    f"{solver.time:.3f}; lower synthetic.dt"
                )
            if step % 10 == 0:
                energy_trace.append((solver.time, solver.energy(), solver.dissipation()))
            if step >= spinup_steps + 1 and (step - spinup_steps - 1) % s.save_every == 0:
                if frame in wanted and not _frame_done(scratch, frame):
                    velocity, diagnostics = _frame_datasets(solver, s.resolution // p.hr_resolution)
                    scratch.save(_frame_name(frame), velocity)
                    scratch.save(_diag_name(frame), diagnostics)
                frame += 1
    seconds = time.perf_counter() - start
    return {
        "resumed": False,
        "solver_steps": total,
        "spinup_steps": spinup_steps,
        "seconds": seconds,
        "seconds_per_step": seconds / total,
        "max_cfl": max_cfl,
        "energy_trace": [list(map(float, row)) for row in energy_trace],
    }


def _frame_datasets(solver: SpectralSolver, factor: int) -> tuple[xr.Dataset, xr.Dataset]:
    """The stored velocity (float32) and, apart, the float64 diagnostics of one time step."""
    k, energy = solver.spectrum()
    axes = axis_statistics(solver.uh, solver.shape)
    attrs = {
        "time": solver.time,
        "step": solver.steps,
        "energy": solver.energy(),
        "dissipation": solver.dissipation(),
        "cfl": solver.last_cfl,
        "divergence_float64": relative_divergence(solver.uh, solver.shape),
        "velocity_variance": axes["velocity_variance"],
        "longitudinal_gradient_variance": axes["longitudinal_gradient_variance"],
    }
    u = solver.velocity().astype(np.float32)
    velocity = xr.Dataset({"velocity": (("component", "z", "y", "x"), u)})
    velocity["velocity"].encoding = piece_encoding(u.shape, factor)
    diagnostics = xr.Dataset(
        {"spectrum": (("k",), energy)}, coords={"k": k}, attrs={"diagnostics": json.dumps(attrs)}
    )
    return velocity, diagnostics


def synthetic_source(p: TurbulenceParams, scratch: ResumableBatches) -> tuple[da.Array, dict[str, Any]]:
    """The stored solver frames as a lazy (time, component, z, y, x) array, chunked like the pieces."""
    stored = [int(i) for i in sample_plan(p).time_index]
    frames = [scratch.open(_frame_name(i))["velocity"].data for i in stored]
    diags = [scratch.load(_diag_name(i)) for i in stored]
    return da.stack(frames), {
        "frames": [json.loads(d.attrs["diagnostics"]) for d in diags],
        "spectra": np.array([d["spectrum"].values for d in diags]),
        "k": diags[0]["k"].values,
    }


def jhtdb_scratch(p: TurbulenceParams, root: Path, times: list[int]) -> ResumableBatches:
    j = p.jhtdb
    key = params_key(
        {
            "dataset": j.dataset, "mode": j.mode, "factor": j.factor, "origin": list(j.origin),
            "n": p.hr_resolution, "max_points": j.max_points_per_request, "max_mb": j.max_request_mb,
            "times": times,
        }
    )  # fmt: skip
    return ResumableBatches(root, "turbulence-jhtdb-" + key)


def jhtdb_source(
    p: TurbulenceParams, plan: SamplePlan, scratch: ResumableBatches, progress: bool | None = None
) -> tuple[da.Array, dict[str, Any]]:
    """Download every missing block, then assemble the pieces lazily into (time, component, z, y, x)."""
    n = p.hr_resolution
    times = [int(t) for t in plan.time_index]
    blocks = jhtdb.plan_blocks(p.jhtdb, n, times)
    token = jhtdb.read_token(p.jhtdb)  # before any request: a missing token fails at once
    with jhtdb.CutoutClient(
        p.jhtdb.base_url, token, p.jhtdb.dataset, p.jhtdb.timeout_s, p.jhtdb.retries,
        p.jhtdb.backoff_s, p.jhtdb.backoff_max_s,
    ) as client:  # fmt: skip
        counters = jhtdb.download_blocks(p.jhtdb, blocks, scratch, client, progress)
    per_time: dict[int, list[jhtdb.Block]] = {}
    for b in blocks:
        per_time.setdefault(b.time_index, []).append(b)
    steps = []
    for t in times:
        grid = {b.lo: scratch.open(b.name)["velocity"].data for b in per_time[t]}
        zs, ys, xs = (sorted({lo[a] for lo in grid}) for a in range(3))
        steps.append(da.block([[[grid[(z, y, x)] for x in xs] for y in ys] for z in zs]))
    return da.stack(steps), {"download": counters, "blocks_per_time_step": len(per_time[times[0]])}


# --- processing ---------------------------------------------------------------------------------------


def coordinates(p: TurbulenceParams) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Physical (x, y, z) positions of the hr and lr points: the mean position of what each averages."""
    if p.source == "jhtdb":
        hr = jhtdb.stored_coordinates(p.jhtdb, p.hr_resolution)
    else:
        dx = DOMAIN / p.synthetic.resolution
        f = p.synthetic.resolution // p.hr_resolution
        grid = (np.arange(p.hr_resolution) * f + (f - 1) / 2) * dx
        hr = {"x": grid, "y": grid, "z": grid}
    lr = {a: v.reshape(-1, p.lr_factor).mean(axis=1) for a, v in hr.items()}
    return hr, lr


def physical_times(p: TurbulenceParams, plan: SamplePlan, info: dict[str, Any]) -> tuple[np.ndarray, float]:
    """Time of each stored step and the spacing of consecutive steps inside a window."""
    if p.source == "jhtdb":
        return (plan.time_index - 1) * p.jhtdb.dt, p.jhtdb.dt  # JHTDB time index 1 is t = 0
    times = np.array([f["time"] for f in info["frames"]])  # one per stored step, in plan order
    return times, p.synthetic.save_every * p.synthetic.dt


def dataset_card(p: TurbulenceParams, viscosity: float, step_dt: float) -> str:
    if p.source == "jhtdb":
        origin = (
            f"**Source: JHTDB** `{p.jhtdb.dataset}` (Johns Hopkins Turbulence Database, forced isotropic "
            f"turbulence, 1024^3 DNS), downloaded through the REST cutout service, mode `{p.jhtdb.mode}` "
            f"with factor {p.jhtdb.factor}."
        )
    else:
        s = p.synthetic
        origin = (
            "**Source: synthetic -- NOT JHTDB data.** Generated by this project's pseudo-spectral solver of "
            f"forced incompressible Navier-Stokes at {s.resolution}^3 (viscosity {s.viscosity:g}, RK2, 2/3 "
            "dealiasing, constant-power forcing at the largest scales), a stand-in with JHTDB's large "
            "scales at a lower Reynolds number."
        )
    return (
        f"# Isotropic turbulence super-resolution\n\n{origin}\n\n"
        f"Samples: {p.n_samples} (train {p.splits.train} / valid {p.splits.valid} / test {p.splits.test}, "
        f"strategy `{p.split_strategy}`, seed {p.seed}). Input `lr`: {p.window} consecutive steps at "
        f"{p.lr_resolution}^3; target `hr`: the centre step at {p.hr_resolution}^3; lr is the "
        f"{p.lr_factor}^3 block mean of hr. Periodic box of side 2 pi, viscosity {viscosity:g}, "
        f"{step_dt:g} time units between consecutive steps. Layout and loading: docs/turbulence.md."
    )


def build_dataset(
    p: TurbulenceParams, plan: SamplePlan, source: da.Array, info: dict[str, Any]
) -> tuple[xr.Dataset, dict[str, str]]:
    """Lazy hr / lr arrays with coordinates and metadata, plus the zarr encoding (one step per chunk)."""
    native = source.shape[-1]
    hr_factor = native // p.hr_resolution
    hr = block_mean_dask(source, hr_factor)
    lr = block_mean_dask(hr, p.lr_factor)
    # one time step per stored chunk (what the loaders read); the tasks behind a chunk stay slab-sized
    hr = hr.rechunk((1, 3, *hr.shape[-3:]))
    lr = lr.rechunk((1, 3, *lr.shape[-3:]))
    hr_xyz, lr_xyz = coordinates(p)
    times, step_dt = physical_times(p, plan, info)
    viscosity = p.jhtdb.viscosity if p.source == "jhtdb" else p.synthetic.viscosity
    native_dx = DOMAIN / (p.jhtdb.grid_points if p.source == "jhtdb" else p.synthetic.resolution)
    filters = {
        "hr": {"kind": "block_mean", "factor": hr_factor, "of": "source field"},
        "lr": {"kind": "block_mean", "factor": p.lr_factor, "of": "hr"},
    }
    if p.source == "jhtdb":
        filters["hr"] = {
            "kind": {"stride": "stride_sample", "box": "block_mean", "subcube": "none"}[p.jhtdb.mode],
            "factor": jhtdb.native_factor(p.jhtdb),
            "of": "JHTDB native 1024^3 grid",
            "jhtdb_mode": p.jhtdb.mode,
        }
    velocity_attrs = {"units": "length unit / time unit (2 pi box)", "long_name": "fluid velocity"}
    space = {"units": "length unit", "long_name": "position in the periodic box [0, 2 pi)"}
    ds = xr.Dataset(
        {
            "hr": (
                ("time", "component", "z", "y", "x"),
                hr,
                {**velocity_attrs, "filter": json.dumps(filters["hr"])},
            ),
            "lr": (
                ("time", "component", "z_lr", "y_lr", "x_lr"),
                lr,
                {**velocity_attrs, "filter": json.dumps(filters["lr"])},
            ),
        },  # fmt: skip
        coords={
            "time": ("time", times, {"units": "time unit", "long_name": "simulation time"}),
            "time_index": ("time", plan.time_index, {"long_name": "source time step index"}),
            "component": (
                "component",
                np.array(COMPONENTS, dtype=object),
                {"long_name": "velocity along x, y, z"},
            ),
            **{a: (a, hr_xyz[a], space) for a in ("z", "y", "x")},
            **{f"{a}_lr": (f"{a}_lr", lr_xyz[a], space) for a in ("z", "y", "x")},
            "sample_centre": (
                "sample",
                plan.centre,
                {"long_name": "centre position along the time dimension"},
            ),
            "sample_split": ("sample", plan.split, {"long_name": "train / valid / test"}),
        },
        attrs={
            "title": "Isotropic turbulence super-resolution (3D velocity)",
            "source": p.source,
            "source_description": dataset_card(p, viscosity, step_dt).split("\n\n")[1],
            "dataset_card": dataset_card(p, viscosity, step_dt),
            "dt": step_dt,
            "viscosity": viscosity,
            "domain_length": DOMAIN,
            "native_grid_spacing": native_dx,
            "filter": json.dumps(filters),
            "jhtdb_mode": p.jhtdb.mode if p.source == "jhtdb" else "n/a",
            "window": p.window,
            "lr_factor": p.lr_factor,
            "splits": json.dumps(plan.splits()),
            "conventions": "arrays [time, component, z, y, x]; components (u_x, u_y, u_z); samples: lr = "
            "time[c - window//2 : c + window//2 + 1], hr = time[c] for c in splits[split]",
        },
    )
    encoding = {
        "hr": {"chunks": (1, 3, p.hr_resolution, p.hr_resolution, p.hr_resolution)},
        "lr": {"chunks": (1, 3, p.lr_resolution, p.lr_resolution, p.lr_resolution)},
    }
    return ds, encoding


def validate_store(path: Path, p: TurbulenceParams, plan: SamplePlan) -> None:
    """Checks on the written store before it is published; raises ``ValueError`` with the reason."""
    ds = xr.open_zarr(path, consolidated=True)
    n_t = plan.time_index.size
    expected = {"hr": (n_t, 3, *(p.hr_resolution,) * 3), "lr": (n_t, 3, *(p.lr_resolution,) * 3)}
    for name, shape in expected.items():
        if ds[name].shape != shape:
            raise ValueError(f"{name} has shape {ds[name].shape}, params say {shape}")
    splits = json.loads(ds.attrs["splits"])
    if sum(len(v) for v in splits.values()) != p.n_samples:
        raise ValueError(
            f"splits hold {sum(len(v) for v in splits.values())} samples, expected {p.n_samples}"
        )
    check_plan(plan)
    for t in range(n_t):  # one step at a time: memory stays at one hr frame
        hr = ds.hr[t].values
        if not np.all(np.isfinite(hr)):
            raise ValueError(f"hr holds NaN or inf at time position {t}")
        lr = ds.lr[t].values
        if not np.allclose(lr, block_mean(hr, p.lr_factor), rtol=1e-5, atol=1e-6 * float(np.abs(hr).max())):
            raise ValueError(f"lr at time position {t} is not the {p.lr_factor}^3 block mean of hr")


# --- diagnostics and figures --------------------------------------------------------------------------


def synthetic_metrics(p: TurbulenceParams, info: dict[str, Any], sim: dict[str, Any]) -> dict[str, Any]:
    """Physics of the stored window: time-averaged spectrum and statistics, isotropy, stationarity."""
    s = p.synthetic
    frames = info["frames"]
    k, spectrum = info["k"], info["spectra"].mean(axis=0)
    stats = flow_statistics(k, spectrum, s.viscosity, s.resolution / 3)
    slope = fit_slope(k, spectrum, p.spectrum_fit_range)
    # the slope a textbook spectrum with the same energy, dissipation and viscosity has over the same range:
    # at modest Reynolds numbers the dissipation range already steepens it beyond -5/3
    reference = model_spectrum(k, s.viscosity, stats["dissipation"], stats["kinetic_energy"])
    variance = np.array([f["velocity_variance"] for f in frames]).mean(axis=0)
    gradient = np.array([f["longitudinal_gradient_variance"] for f in frames]).mean(axis=0)
    energy = np.array([f["energy"] for f in frames])
    dissipation = np.array([f["dissipation"] for f in frames])
    return {
        "solver": {k2: v for k2, v in sim.items() if k2 != "energy_trace"},
        "physics_window_mean": stats,
        "spectrum_slope": slope,
        "spectrum_slope_fit_range": list(p.spectrum_fit_range),
        "spectrum_slope_model_same_re": fit_slope(k, reference, p.spectrum_fit_range),
        "divergence_relative_max_float64": max(f["divergence_float64"] for f in frames),
        "isotropy": {
            "velocity_variance_xyz": variance.tolist(),
            "velocity_variance_max_rel_dev": float(np.max(np.abs(variance / variance.mean() - 1))),
            "longitudinal_gradient_variance_xyz": gradient.tolist(),
            "longitudinal_gradient_max_rel_dev": float(np.max(np.abs(gradient / gradient.mean() - 1))),
        },
        "stationarity": {
            "energy_first_last": [float(energy[0]), float(energy[-1])],
            "energy_rel_drift_over_window": float((energy[-1] - energy[0]) / energy.mean()),
            "dissipation_over_forcing_power": float(dissipation.mean() / s.forcing_power),
        },
        "energy_trace": sim.get("energy_trace", []),
    }


def split_separation(
    path: Path, p: TurbulenceParams, plan: SamplePlan, info: dict[str, Any], measured_turnover: float | None
) -> dict[str, Any]:
    """How far the evaluation splits are from training: nearest-train relative L2 of the hr targets, the
    smallest source-step gap, and the sample spacing in large-eddy turnover times (stated and measured)."""
    hr = xr.open_zarr(path, consolidated=True).hr
    step_dt = physical_times(p, plan, info)[1]
    out: dict[str, Any] = {
        "strategy": p.split_strategy,
        "nearest_train_rel_l2": nearest_train_distance(plan, lambda c: hr[c].values),
        "min_step_gap_to_train": {name: min_time_gap(plan, "train", name) for name in ("valid", "test")},
        "sample_gap_steps": sample_gap(p) if p.source == "synthetic" else None,
        "turnover_time_used": p.turnover_time,
        "spacing_turnover_stated": p.sample_spacing_turnover if p.source == "synthetic" else None,
    }
    if p.source == "synthetic" and measured_turnover:
        gap_time = (sample_gap(p) + 1) * step_dt  # last step of one window to the first of the next
        out["spacing_turnover_measured"] = gap_time / measured_turnover
    out["step_dt"] = step_dt
    return out


def store_spectra(path: Path, p: TurbulenceParams) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Time-averaged spectra of the stored hr and lr fields (box of side 2 pi, or the stored extent)."""
    ds = xr.open_zarr(path, consolidated=True)
    out = {}
    for name in ("hr", "lr"):
        length = stored_extent(p)
        spectra = [field_spectrum(ds[name][t].values, length) for t in range(ds.sizes["time"])]
        out[name] = (spectra[0][0], np.mean([e for _, e in spectra], axis=0))
    return out


def stored_extent(p: TurbulenceParams) -> float:
    """Side of the region the stored fields cover (a JHTDB box may be a part of the domain)."""
    if p.source == "jhtdb":
        return p.hr_resolution * jhtdb.native_factor(p.jhtdb) * p.jhtdb.domain_length / p.jhtdb.grid_points
    return DOMAIN


def plot_spectrum(
    path: Path, p: TurbulenceParams, result: dict[str, Any], spectra: dict, solver: Any
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, axc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    eps = None
    curves = []
    if solver is not None:
        k, e = solver
        eps = result["physics_window_mean"]["dissipation"]
        curves.append((f"solver {p.synthetic.resolution}$^3$", k, e, "k-"))
    curves += [(f"{name} {p.hr_resolution if name == 'hr' else p.lr_resolution}$^3$", *spectra[name], style)
               for name, style in (("hr", "C0--"), ("lr", "C1-."))]  # fmt: skip
    for label, k, e, style in curves:
        sel = (k > 0) & (e > 0)
        ax.loglog(k[sel], e[sel], style, label=label)
        if eps is not None:
            axc.semilogx(k[sel], e[sel] * k[sel] ** (5 / 3) / eps ** (2 / 3), style, label=label)
    lo, hi = p.spectrum_fit_range
    k_ref, e_ref = curves[0][1], curves[0][2]
    anchor = float(np.interp(lo, k_ref, e_ref))
    kk = np.linspace(lo, hi * 2, 20)
    ax.loglog(kk, anchor * (kk / lo) ** (-5 / 3), "r:", label=r"$k^{-5/3}$")
    if "spectrum_slope" in result:
        slope = result["spectrum_slope"]
        ax.loglog(kk[kk <= hi], anchor * (kk[kk <= hi] / lo) ** slope, "g-", lw=3, alpha=0.4,
                  label=f"fit {lo:g}..{hi:g}: slope {slope:.2f}")  # fmt: skip
    for a in (ax, axc):
        a.axvspan(lo, hi, color="0.9", zorder=0)
        a.set_xlabel("wavenumber k")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    top = max(float(np.max(e)) for _, _, e, _ in curves)
    ax.set_ylim(top * 1e-9, top * 3)  # below that is the dealiased cut-off and round-off
    ax.set_ylabel("E(k)")
    ax.set_title(f"energy spectrum ({p.source})")
    axc.set_ylabel(r"$\epsilon^{-2/3} k^{5/3} E(k)$")
    axc.set_title("compensated: an inertial range is a plateau near 1.5")
    if eps is None:
        axc.text(0.5, 0.5, "dissipation unknown for this source", ha="center", transform=axc.transAxes)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mode_spectra(field: np.ndarray, factor: int, length: float = DOMAIN) -> dict[str, tuple]:
    """Spectra of a native field and of its three coarse versions (factor ``factor``) for the docs figure."""
    n = field.shape[-1]
    m = n // factor
    return {
        "native": field_spectrum(field, length),
        "box (block mean)": field_spectrum(block_mean(field, factor, np.float64), length),
        "stride (every k-th point)": field_spectrum(stride_sample(field, factor), length),
        "subcube (contiguous region)": field_spectrum(subcube(field, m), length * m / n),
    }


def plot_modes(path: Path, field: np.ndarray, factor: int, label: str) -> dict[str, float]:
    """Spectra of the three JHTDB downsampling modes applied to one native field; returns aliasing ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spectra = mode_spectra(field, factor)
    k_nat, e_nat = spectra["native"]
    n_coarse = field.shape[-1] // factor
    fig, (ax, axr) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ratios = {}
    for (name, (k, e)), style in zip(spectra.items(), ("k-", "C0-", "C3--", "C2-."), strict=True):
        sel = (k > 0) & (e > 0)
        ax.loglog(k[sel], e[sel], style, label=name)
        if name != "native":
            common = sel & (k <= field.shape[-1] / 3)  # the native field is dealiased beyond n / 3
            ratio = e[common] / np.interp(k[common], k_nat, e_nat)
            axr.semilogx(k[common], ratio, style, label=name)
            # upper half of the band the coarse field resolves (a subcube's band starts higher: it is small)
            nyquist = (n_coarse / 2) * (k[1] - k[0]) * (1 + 1e-9)
            top = (k > nyquist / 2) & (k <= min(nyquist, field.shape[-1] / 3))
            if top.any():
                ratios[name] = float(np.mean(e[top] / np.interp(k[top], k_nat, e_nat)))
    for a in (ax, axr):
        a.axvline(n_coarse / 2, color="0.5", lw=0.8, ls=":")
        a.set_xlabel("wavenumber k")
        a.legend(fontsize=8)
    ax.set_ylim(float(np.max(e_nat)) * 1e-9, float(np.max(e_nat)) * 3)
    ax.set_ylabel("E(k)")
    ax.set_title(f"{label}: {field.shape[-1]}$^3$ -> {n_coarse}$^3$ (factor {factor})")
    axr.set_ylabel("E_mode(k) / E_native(k)")
    axr.set_yscale("log")
    axr.set_ylim(1e-3, 1e3)
    axr.set_title("ratio to native: > 1 aliased, < 1 filtered")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return ratios


# --- the stage ----------------------------------------------------------------------------------------


def build_turbulence_dataset(
    params: TurbulenceParams,
    compute: ComputeParams,
    out: Path,
    metrics: Path | None = None,
    spectrum_plot: Path | None = None,
    modes_plot: Path | None = None,
    scratch_root: Path = Path("data/.scratch"),
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Produce the source field, downsample it to hr / lr, write and validate the store; returns metrics."""
    out = Path(out)
    ensure_writable(out, overwrite)
    start = time.perf_counter()
    plan = sample_plan(params)
    check_plan(plan)
    result: dict[str, Any] = {"source": params.source}
    sim: dict[str, Any] = {}
    if params.source == "synthetic":
        scratch = synthetic_scratch(params, scratch_root)
        sim = simulate(params, scratch, progress)
        source, info = synthetic_source(params, scratch)
        result.update(synthetic_metrics(params, info, sim))
    else:
        scratch = jhtdb_scratch(params, scratch_root, [int(t) for t in plan.time_index])
        source, info = jhtdb_source(params, plan, scratch, progress)
        result.update(info)
    source_seconds = time.perf_counter() - start
    ds, encoding = build_dataset(params, plan, source, info)
    result.update(
        {
            "n_samples": params.n_samples,
            "n_time_steps": int(plan.time_index.size),
            "hr_shape": list(ds.hr.shape),
            "lr_shape": list(ds.lr.shape),
            "splits": plan.splits(),
            "source_seconds": source_seconds,
        }
    )
    ds.attrs["provenance"] = to_json(
        provenance(
            params.model_dump(mode="json"), metrics={k: v for k, v in result.items() if k != "energy_trace"}
        )
    )
    with downsample_scheduler(compute):
        t0 = time.perf_counter()
        publish_store(
            ds, out, encoding, overwrite=overwrite, validate=lambda path: validate_store(path, params, plan)
        )
        result["downsample_write_seconds"] = time.perf_counter() - t0
    measured = result.get("physics_window_mean", {}).get("large_eddy_turnover_time")
    result["split_separation"] = split_separation(out, params, plan, info, measured)
    spectra = store_spectra(out, params)
    if spectrum_plot is not None:
        solver_spectrum = (info["k"], info["spectra"].mean(axis=0)) if params.source == "synthetic" else None
        plot_spectrum(Path(spectrum_plot), params, result, spectra, solver_spectrum)
    if modes_plot is not None:
        if params.source == "synthetic":
            field = scratch.load(_frame_name(int(plan.time_index[-1])))["velocity"].values
            factor, label = params.synthetic.resolution // params.lr_resolution, "synthetic solver field"
        else:
            field = xr.open_zarr(out, consolidated=True).hr[-1].values
            factor, label = params.lr_factor, f"JHTDB hr ({params.jhtdb.mode})"
        result["mode_band_energy_ratio"] = plot_modes(Path(modes_plot), field, factor, label)
    result["wall_seconds"] = time.perf_counter() - start
    if metrics is not None:
        write_json_atomic(Path(metrics), result)
    scratch.clear()
    return result


def _disable(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def main(argv: list[str] | None = None) -> int:
    parser = dataset_stage_parser(__doc__.splitlines()[0], "data/turbulence.zarr", "metrics/turbulence.json")
    parser.add_argument("--spectrum-plot", default="metrics/turbulence_spectrum.png", type=Path)
    parser.add_argument("--modes-plot", default="metrics/turbulence_modes.png", type=Path)
    args = parser.parse_args(argv)

    def body() -> dict:
        params = load_params(args.params)
        return build_turbulence_dataset(
            params.turbulence, params.compute, args.out, args.metrics, args.spectrum_plot, args.modes_plot,
            args.scratch, args.overwrite,
        )  # fmt: skip

    return run_stage(
        "turbulence", body, lambda r: {k: v for k, v in r.items() if k not in ("energy_trace", "splits")}
    )

