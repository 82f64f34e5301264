"""The stored dataset: lazy hr / lr arrays with coordinates and metadata, and the checks before publishing.

Everything source-specific (positions, times, viscosity, how hr was made, the description) comes from
the :class:`~pipelines.turbulence.base.TurbulenceSource`; store layout: docs/turbulence.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from pipelines.params import TurbulenceParams
from pipelines.turbulence.base import COMPONENTS, DOMAIN, TurbulenceSource
from pipelines.turbulence.downsample import block_mean, block_mean_dask
from pipelines.turbulence.task import SamplePlan, check_plan


def coordinates(
    p: TurbulenceParams, source: TurbulenceSource
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Physical (x, y, z) positions of the hr and lr points: the mean position of what each averages."""
    hr = source.hr_coordinates()
    lr = {a: v.reshape(-1, p.lr_factor).mean(axis=1) for a, v in hr.items()}
    return hr, lr


def dataset_card(p: TurbulenceParams, source: TurbulenceSource, step_dt: float) -> str:
    """The short card stored in ``attrs["dataset_card"]``: the source's description and the task."""
    return (
        f"# Isotropic turbulence super-resolution\n\n{source.description()}\n\n"
        f"Samples: {p.n_samples} (train {p.splits.train} / valid {p.splits.valid} / test {p.splits.test}, "
        f"strategy `{p.split_strategy}`, seed {p.seed}). Input `lr`: {p.window} consecutive steps at "
        f"{p.lr_resolution}^3; target `hr`: the centre step at {p.hr_resolution}^3; lr is the "
        f"{p.lr_factor}^3 block mean of hr. Periodic box of side 2 pi, viscosity {source.viscosity:g}, "
        f"{step_dt:g} time units between consecutive steps. Layout and loading: docs/turbulence.md."
    )


def build_dataset(
    p: TurbulenceParams, plan: SamplePlan, source: TurbulenceSource, field: da.Array
) -> tuple[xr.Dataset, dict[str, dict]]:
    """Lazy hr / lr arrays with coordinates and metadata, plus the zarr encoding (one step per chunk)."""
    native = field.shape[-1]
    hr_factor = native // p.hr_resolution
    hr = block_mean_dask(field, hr_factor)
    lr = block_mean_dask(hr, p.lr_factor)
    # one time step per stored chunk (what the loaders read); the tasks behind a chunk stay slab-sized
    hr = hr.rechunk((1, 3, *hr.shape[-3:]))
    lr = lr.rechunk((1, 3, *lr.shape[-3:]))
    hr_xyz, lr_xyz = coordinates(p, source)
    times, step_dt = source.physical_times(plan)
    filters = {
        "hr": source.hr_filter(hr_factor),
        "lr": {"kind": "block_mean", "factor": p.lr_factor, "of": "hr"},
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
            "source_description": source.description(),
            "dataset_card": dataset_card(p, source, step_dt),
            "dt": step_dt,
            "viscosity": source.viscosity,
            "domain_length": DOMAIN,
            "native_grid_spacing": DOMAIN / source.native_grid_points,
            "filter": json.dumps(filters),
            "jhtdb_mode": source.mode,
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
    """Checks on the written store before it is published; raises ``ValueError`` with the reason.

    ``path`` is the store still being written (no completion marker yet), so it is opened directly
    rather than through ``loaders.storage.open_store``, which refuses incomplete stores.
    """
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
