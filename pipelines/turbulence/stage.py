"""Stage: isotropic turbulence (synthetic solver or JHTDB cutouts) as hr / lr super-resolution data.

    python -m pipelines.turbulence --params params.yaml --out data/turbulence.zarr \\
        --metrics metrics/turbulence.json --spectrum-plot metrics/turbulence_spectrum.png \\
        --modes-plot metrics/turbulence_modes.png

The source (:func:`pipelines.turbulence.sources.source_for`: the synthetic solver or JHTDB cutouts) writes
resumable pieces to a scratch folder keyed by the params, so an interrupted run resumes from the pieces it
has. The pieces are then filtered to the hr target and the lr input by block means in a dask graph, one
time step per task, and written atomically through :mod:`loaders.storage`. Store layout:
docs/turbulence.md.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask

from loaders.storage import (
    ensure_writable,
    open_store,
    provenance,
    publish_store,
    run_info,
    to_json,
    write_json_atomic,
)
from pipelines.cli import dataset_stage_parser, run_stage
from pipelines.compute import dask_client
from pipelines.params import ComputeParams, TurbulenceParams, load_params
from pipelines.turbulence.base import TurbulenceSource
from pipelines.turbulence.cutouts import jhtdb_scratch, jhtdb_source
from pipelines.turbulence.dataset import build_dataset, validate_store
from pipelines.turbulence.figures import plot_modes, plot_spectrum, store_spectra
from pipelines.turbulence.sources import source_for
from pipelines.turbulence.synthetic import piece_encoding, sample_gap
from pipelines.turbulence.task import SamplePlan, check_plan, min_time_gap, nearest_train_distance

# names callers (tests, benchmarks) import from here; they live in the modules above
__all__ = [
    "build_turbulence_dataset", "downsample_scheduler", "jhtdb_scratch", "jhtdb_source", "main",
    "piece_encoding", "sample_plan",
]  # fmt: skip


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


def sample_plan(p: TurbulenceParams) -> SamplePlan:
    """Which source time steps the params store, and the samples and splits they form."""
    return source_for(p).plan()


# facts about a run (how long, resumed or not), not about the data: kept out of the store so that an
# unchanged dataset keeps its bytes (they stay in the stage's metrics)
RUN_FACTS = frozenset({"seconds", "seconds_per_step", "source_seconds", "resumed", "energy_trace"})


def content_only(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        k: content_only(v) if isinstance(v, dict) else v for k, v in metrics.items() if k not in RUN_FACTS
    }


def split_separation(
    path: Path,
    p: TurbulenceParams,
    plan: SamplePlan,
    source: TurbulenceSource,
    measured_turnover: float | None,
) -> dict[str, Any]:
    """How far the evaluation splits are from training: nearest-train relative L2 of the hr targets, the
    smallest source-step gap, and the sample spacing in large-eddy turnover times (stated and measured)."""
    hr = open_store(path).hr
    step_dt = source.physical_times(plan)[1]
    synthetic = p.source == "synthetic"
    out: dict[str, Any] = {
        "strategy": p.split_strategy,
        "nearest_train_rel_l2": nearest_train_distance(plan, lambda c: hr[c].values),
        "min_step_gap_to_train": {name: min_time_gap(plan, "train", name) for name in ("valid", "test")},
        "sample_gap_steps": sample_gap(p) if synthetic else None,
        "turnover_time_used": p.turnover_time,
        "spacing_turnover_stated": p.sample_spacing_turnover if synthetic else None,
        "step_dt": step_dt,
    }
    if synthetic and measured_turnover:
        gap_time = (sample_gap(p) + 1) * step_dt  # last step of one window to the first of the next
        out["spacing_turnover_measured"] = gap_time / measured_turnover
    return out


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
    source = source_for(params)
    plan = source.plan()
    check_plan(plan)
    result: dict[str, Any] = {"source": params.source}
    field = source.fields(plan, scratch_root, progress)
    result.update(source.metrics())
    source_seconds = time.perf_counter() - start
    ds, encoding = build_dataset(params, plan, source, field)
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
    ds.attrs["provenance"] = to_json(provenance(params.model_dump(mode="json"), metrics=content_only(result)))
    with downsample_scheduler(compute):
        t0 = time.perf_counter()
        publish_store(
            ds, out, encoding, overwrite=overwrite, validate=lambda path: validate_store(path, params, plan)
        )
        result["downsample_write_seconds"] = time.perf_counter() - t0
    measured = result.get("physics_window_mean", {}).get("large_eddy_turnover_time")
    result["split_separation"] = split_separation(out, params, plan, source, measured)
    if spectrum_plot is not None:
        spectra = store_spectra(out, source.extent())
        eps = source.dissipation(result)
        plot_spectrum(Path(spectrum_plot), params, result, spectra, source.reference_spectrum(), eps)
    if modes_plot is not None:
        field_np, factor, label = source.mode_field(plan, out)
        result["mode_band_energy_ratio"] = plot_modes(Path(modes_plot), field_np, factor, label)
    result["wall_seconds"] = time.perf_counter() - start
    result["run"] = run_info()  # commit, time and host of this build: facts about the run, not the data
    if metrics is not None:
        write_json_atomic(Path(metrics), result)
    source.clear()
    return result


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
