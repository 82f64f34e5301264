"""The ``synthetic`` source: this project's pseudo-spectral solver (offline, the embedded default).

The solver saves one piece per stored time step (velocity, and apart its float64 diagnostics) to a
scratch folder keyed by the params, so an interrupted run resumes from the pieces it has.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from tqdm import tqdm

from loaders.scratch import ResumableBatches, params_key
from pipelines.params import TurbulenceParams
from pipelines.turbulence.base import DOMAIN, TurbulenceSource
from pipelines.turbulence.solver import SolverConfig, SpectralSolver, initial_condition, model_spectrum
from pipelines.turbulence.spectra import axis_statistics, fit_slope, flow_statistics, relative_divergence
from pipelines.turbulence.task import SamplePlan, plan_samples, spacing_gap, synthetic_span

PIECE_CHUNK_BYTES = 8 << 20  # source pieces are read in chunks of about this size


def piece_encoding(shape: tuple[int, ...], factor: int) -> dict[str, Any]:
    """Chunks of z-slabs (multiples of the hr factor, about PIECE_CHUNK_BYTES) and no compression.

    Pieces are scratch: compressing float turbulence saves little and costs more than the filter itself.
    """
    nz = shape[-3]
    plane = int(np.prod(shape[-2:])) * 4
    slab = min(nz, max(factor, (PIECE_CHUNK_BYTES // plane) // factor * factor))
    return {"chunks": (1,) * (len(shape) - 3) + (slab, *shape[-2:]), "compressors": None}


def sample_gap(p: TurbulenceParams) -> int:
    """Unused stored steps between sample windows (``sample_spacing_turnover`` of T_L)."""
    s = p.synthetic
    return spacing_gap(p.sample_spacing_turnover, p.turnover_time, s.dt * s.save_every)


def stored_steps(p: TurbulenceParams) -> list[int]:
    """The solver's stored steps that the sample windows use, in time order."""
    return [int(i) for i in SyntheticSource(p).plan().time_index]


def synthetic_scratch(p: TurbulenceParams, root: Path) -> ResumableBatches:
    key = params_key({"synthetic": p.synthetic.model_dump(mode="json"), "frames": stored_steps(p)})
    return ResumableBatches(root, "turbulence-synthetic-" + key)


SOLVER_FACTS = "solver"  # what the run that wrote the pieces measured (scratch facts)


def _frame_name(i: int) -> str:
    return f"frame{i:05d}"


def _diag_name(i: int) -> str:
    return f"frame{i:05d}-diagnostics"


def _frame_done(scratch: ResumableBatches, i: int) -> bool:
    return scratch.done(_frame_name(i)) and scratch.done(_diag_name(i))


def _disable(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def simulate(p: TurbulenceParams, scratch: ResumableBatches, progress: bool | None = None) -> dict[str, Any]:
    """Spin the solver up and save every stored time step as a scratch piece (velocity + diagnostics).

    A rerun with every piece present skips the solver and returns what the run that wrote them measured
    (saved beside them last, so the resumed metrics and provenance are those of an uninterrupted run);
    otherwise it integrates again (the run is deterministic) and only writes the missing pieces.
    """
    s = p.synthetic
    wanted = set(stored_steps(p))  # stored steps the sample windows use
    n_frames = max(wanted) + 1
    spinup_steps = int(round(s.spinup_time / s.dt))
    total = spinup_steps + (n_frames - 1) * s.save_every + 1
    measured = scratch.facts(SOLVER_FACTS)
    if measured is not None and all(_frame_done(scratch, i) for i in wanted):
        return {**measured, "resumed": True}
    config = SolverConfig(
        s.resolution,
        s.viscosity,
        s.dt,
        s.forcing_power,
        s.forcing_wavenumber,
        s.fft_workers,
        subgrid=s.subgrid,
        precision=s.precision,
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
    result = {
        "resumed": False,
        "solver_steps": total,
        "spinup_steps": spinup_steps,
        "seconds": seconds,
        "seconds_per_step": seconds / total,
        "max_cfl": max_cfl,
        "energy_trace": [list(map(float, row)) for row in energy_trace],
    }
    scratch.save_facts(SOLVER_FACTS, result)
    return result


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


def synthetic_metrics(p: TurbulenceParams, info: dict[str, Any], sim: dict[str, Any]) -> dict[str, Any]:
    """Physics of the stored window: time-averaged spectrum and statistics, isotropy, stationarity."""
    s = p.synthetic
    frames = info["frames"]
    k, spectrum = info["k"], info["spectra"].mean(axis=0)
    dissipation = np.array([f["dissipation"] for f in frames])  # molecular + sub-grid
    measured = float(dissipation.mean()) if s.subgrid != "none" else None  # LES: the spectrum lacks the rest
    stats = flow_statistics(k, spectrum, s.viscosity, s.resolution / 3, dissipation=measured)
    slope = fit_slope(k, spectrum, p.spectrum_fit_range)
    # the slope a textbook spectrum with the same energy, dissipation and viscosity has over the same range:
    # at modest Reynolds numbers the dissipation range already steepens it beyond -5/3
    reference = model_spectrum(k, s.viscosity, stats["dissipation"], stats["kinetic_energy"])
    variance = np.array([f["velocity_variance"] for f in frames]).mean(axis=0)
    gradient = np.array([f["longitudinal_gradient_variance"] for f in frames]).mean(axis=0)
    energy = np.array([f["energy"] for f in frames])
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


class SyntheticSource(TurbulenceSource):
    """Forced incompressible Navier-Stokes on the periodic box, integrated by :mod:`.solver`."""

    name = "synthetic"

    def __init__(self, p: TurbulenceParams):
        super().__init__(p)
        self.info: dict[str, Any] = {}
        self.sim: dict[str, Any] = {}

    def plan(self) -> SamplePlan:
        p = self.p  # the run is exactly as long as needed: its windows, spaced, in time order
        gap = sample_gap(p)
        last = synthetic_span(p.n_samples, p.window, gap) - 1
        counts = p.splits.model_dump()
        return plan_samples(0, last, counts, p.window, p.seed, p.split_strategy, draw=False, gap=gap)

    def fields(self, plan: SamplePlan, scratch_root: Path, progress: bool | None) -> da.Array:
        p = self.p
        self.scratch = scratch = synthetic_scratch(p, scratch_root)
        self.sim = simulate(p, scratch, progress)
        stored = [int(i) for i in plan.time_index]
        frames = [scratch.open(_frame_name(i))["velocity"].data for i in stored]
        diags = [scratch.load(_diag_name(i)) for i in stored]
        self.info = {
            "frames": [json.loads(d.attrs["diagnostics"]) for d in diags],
            "spectra": np.array([d["spectrum"].values for d in diags]),
            "k": diags[0]["k"].values,
        }
        return da.stack(frames)

    def metrics(self) -> dict[str, Any]:
        return synthetic_metrics(self.p, self.info, self.sim)

    def hr_coordinates(self) -> dict[str, np.ndarray]:
        dx = DOMAIN / self.p.synthetic.resolution
        f = self.p.synthetic.resolution // self.p.hr_resolution
        grid = (np.arange(self.p.hr_resolution) * f + (f - 1) / 2) * dx
        return {"x": grid, "y": grid, "z": grid}

    def physical_times(self, plan: SamplePlan) -> tuple[np.ndarray, float]:
        times = np.array([f["time"] for f in self.info["frames"]])  # one per stored step, in plan order
        return times, self.p.synthetic.save_every * self.p.synthetic.dt

    @property
    def viscosity(self) -> float:
        return self.p.synthetic.viscosity

    @property
    def native_grid_points(self) -> int:
        return self.p.synthetic.resolution

    def hr_filter(self, hr_factor: int) -> dict[str, Any]:
        return {"kind": "block_mean", "factor": hr_factor, "of": "source field"}

    def description(self) -> str:
        s = self.p.synthetic
        return (
            "**Source: synthetic -- NOT JHTDB data.** Generated by this project's pseudo-spectral solver of "
            f"forced incompressible Navier-Stokes at {s.resolution}^3 (viscosity {s.viscosity:g}, RK2, 2/3 "
            "dealiasing, constant-power forcing at the largest scales), a stand-in with JHTDB's large "
            + (
                "scales at a lower Reynolds number."
                if s.subgrid == "none"
                else "scales. It is a large-eddy simulation: a spectral eddy viscosity (Chollet-Lesieur) "
                f"stands in for the scales beyond the solver's cut-off k = {s.resolution // 3}, so the "
                "spectrum follows k^-5/3 up to it as JHTDB's does, with no dissipation range of its own."
            )
        )

    def reference_spectrum(self) -> tuple[str, np.ndarray, np.ndarray] | None:
        return f"solver {self.p.synthetic.resolution}$^3$", self.info["k"], self.info["spectra"].mean(axis=0)

    def dissipation(self, result: dict[str, Any]) -> float | None:
        return result["physics_window_mean"]["dissipation"]

    def mode_field(self, plan: SamplePlan, store: Path) -> tuple[np.ndarray, int, str]:
        # the solver's own native field: the modes are compared before any filtering
        assert self.scratch is not None, "fields() runs first"
        field = self.scratch.load(_frame_name(int(plan.time_index[-1])))["velocity"].values
        return field, self.p.synthetic.resolution // self.p.lr_resolution, "synthetic solver field"
