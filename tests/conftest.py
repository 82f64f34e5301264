"""Shared fixtures: tiny synthetic stores in the stages' layouts, and a Hub stand-in on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from loaders.storage import provenance, publish_store, to_json


def synthetic_smoke(path: Path, levels: tuple[int, ...] = (0, 3), n_time: int = 12, n: int = 16) -> Path:
    """A smoke-plume store with the smoke stage's layout and random values (no simulation)."""
    rng = np.random.default_rng(7)
    shape = (len(levels), 4, n_time)
    bounds = {
        "train": (0, n_time // 2),
        "valid": (n_time // 2, 3 * n_time // 4),
        "test": (3 * n_time // 4, n_time),
    }
    split = np.empty(n_time, dtype=object)
    for name, (a, b) in bounds.items():
        split[a:b] = name
    frames = np.arange(2, 2 + n_time)
    ds = xr.Dataset(
        {
            "velocity": (
                ("level", "direction", "time", "component", "y", "x"),
                rng.normal(0.1, 0.5, shape + (2, n, n)).astype(np.float32),
            ),
            "smoke": (("level", "direction", "time", "y", "x"), rng.random(shape + (n, n), dtype=np.float32)),
        },
        coords={
            "level": ("level", np.array(levels)),
            "direction": ("direction", np.array([0, 90, 180, 270])),
            "time": ("time", frames.astype(float)),
            "frame": ("time", frames),
            "split": ("time", split),
            "component": ("component", np.array(["u", "v"], dtype=object)),
            "y": ("y", np.arange(n) + 0.5),
            "x": ("x", np.arange(n) + 0.5),
            "buoyancy": (("level", "direction", "axis"), rng.normal(size=(len(levels), 4, 2))),
            "axis": ("axis", np.array(["x", "y"], dtype=object)),
        },
        attrs={
            "simulator": "PhiFlow",
            "grid_spacing": 1.0,
            "dt": 1.0,
            "pressure_solver": json.dumps({"method": "dct"}),
            "splits": to_json({k: {"time_index": list(v)} for k, v in bounds.items()}),
            "windows": to_json({"input_frames": 1, "output_frames": 2}),
            "provenance": to_json(provenance({"resolution": n, "steps": n_time + 2, "levels": list(levels)})),
        },
    )
    chunks = {"level": 1, "direction": 1, "time": 5}  # windows straddle chunk boundaries on purpose
    encoding = {
        v: {"chunks": tuple(chunks.get(d, ds.sizes[d]) for d in ds[v].dims)} for v in ("velocity", "smoke")
    }
    publish_store(ds, path, encoding)
    return path


def synthetic_turbulence(path: Path, n_time: int = 15, n_hr: int = 8, factor: int = 4) -> Path:
    """A turbulence store in the expected layout: hr / lr (time, component, z, y, x), lr = block means."""
    rng = np.random.default_rng(11)
    hr = rng.normal(0.0, 0.7, (n_time, 3, n_hr, n_hr, n_hr)).astype(np.float32)
    n_lr = n_hr // factor
    lr = (
        hr.reshape(n_time, 3, n_lr, factor, n_lr, factor, n_lr, factor)
        .mean(axis=(3, 5, 7))
        .astype(np.float32)
    )
    ds = xr.Dataset(
        {
            "hr": (("time", "component", "z", "y", "x"), hr),
            "lr": (("time", "component", "z_lr", "y_lr", "x_lr"), lr),
        },
        coords={
            "time": ("time", np.arange(n_time) * 0.002),
            "component": ("component", np.array(["u_x", "u_y", "u_z"], dtype=object)),
        },
        attrs={
            "source": "synthetic",
            "window": 3,
            "splits": to_json({"train": [1, 4, 7], "valid": [10], "test": [13]}),
            "provenance": to_json(provenance({"turbulence": {"source": "synthetic", "hr_resolution": n_hr}})),
        },
    )
    encoding = {v: {"chunks": (1,) + ds[v].shape[1:]} for v in ("hr", "lr")}
    publish_store(ds, path, encoding)
    return path


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_smoke(tmp_path_factory.mktemp("stores") / "smoke.zarr")


@pytest.fixture(scope="session")
def turbulence_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_turbulence(tmp_path_factory.mktemp("stores") / "turbulence.zarr")


@pytest.fixture
def hub():
    """A Hub stand-in on 127.0.0.1 (tests/hub_standin.py), stopped after the test."""
    from tests.hub_standin import HubStandIn

    with HubStandIn() as server:
        yield server
