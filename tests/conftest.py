"""Shared fixtures: tiny stores written by the real dataset stages, and a Hub stand-in on loopback.

The stores come from ``build_smoke_dataset`` / ``build_turbulence_dataset`` themselves (tiny params), so
they carry exactly the layout, attributes and encoding real stores carry (loaders/layouts.py), and cannot
drift from them. The smoke simulation runs on an in-process dask cluster given to the stage through
``compute.scheduler_address``: the same stage code without starting worker processes (which re-import
PhiFlow and cost more than the simulation at this size).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.params import StudyParams, parse_params

# 16 x 16 box, 12 steps, levels E_0 and E_3, 12 frames split 6 / 3 / 3, windows of 1 + 2 frames; the time
# chunks hold 10 frames, so test-split windows straddle a chunk boundary
TINY_SMOKE: dict[str, Any] = {
    "resolution": 16,
    "box_size": 16.0,
    "inflow_center": [8.0, 3.0],
    "inflow_radius": 2.0,
    "steps": 12,
    "keep_start": 1,
    "keep_stop": 13,
    "levels": [0, 3],
    "input_frames": 1,
    "output_frames": 2,
    "splits": {"train": 0.5, "valid": 0.25, "test": 0.25},
    "batch_size": 8,
    "solver_symmetry_check": False,
}
# 8^3 hr from a 16^3 solver, lr 2^3, five samples in time blocks: train [1, 4, 7], valid [10], test [13]
TINY_TURBULENCE: dict[str, Any] = {
    "hr_resolution": 8,
    "lr_factor": 4,
    "split_strategy": "time_blocks",
    "splits": {"train": 3, "valid": 1, "test": 1},
    "spectrum_fit_range": [2.0, 4.0],
    "synthetic": {"resolution": 16, "spinup_time": 0.06, "dt": 0.03},
}


def tiny_params() -> StudyParams:
    return parse_params({"smoke": TINY_SMOKE, "turbulence": TINY_TURBULENCE})


def build_smoke_store(root: Path, params: StudyParams | None = None) -> Path:
    """The smoke stage's store at ``root/smoke.zarr`` (metrics at ``root/smoke.json``)."""
    from distributed import LocalCluster

    from pipelines.smoke.stage import build_smoke_dataset

    params = params or tiny_params()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        compute = params.compute.model_copy(update={"scheduler_address": cluster.scheduler_address})
        build_smoke_dataset(params.smoke, compute, root / "smoke.zarr", root / "smoke.json", root / "scratch")
    return root / "smoke.zarr"


def build_turbulence_store(root: Path, params: StudyParams | None = None) -> Path:
    """The turbulence stage's store at ``root/turbulence.zarr`` (synthetic source, no figures)."""
    from pipelines.turbulence.stage import build_turbulence_dataset

    params = params or tiny_params()
    out = root / "turbulence.zarr"
    build_turbulence_dataset(
        params.turbulence, params.compute, out, root / "turbulence.json", scratch_root=root / "scratch",
        progress=False,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_smoke_store(tmp_path_factory.mktemp("smoke_stage"))


@pytest.fixture(scope="session")
def turbulence_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_turbulence_store(tmp_path_factory.mktemp("turbulence_stage"))


@pytest.fixture
def hub():
    """A Hub stand-in on 127.0.0.1 (tests/hub_standin.py), stopped after the test."""
    from tests.hub_standin import HubStandIn

    with HubStandIn() as server:
        yield server


@pytest.fixture
def float64_default() -> Iterator[None]:
    """Exact comparisons need float64; the default dtype is restored so other tests are unaffected."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
