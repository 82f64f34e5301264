"""The smoke stage end to end on a small real configuration: store contents, validation, resume,
a real dask cluster, and `dvc repro`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from loaders.storage import COMPLETE_MARKER, StoreError, open_store, read_provenance
from models.groups import c4_rotation, rotate_scalar, rotate_vector
from pipelines.smoke.stage import build_smoke_dataset, plan_jobs, validate_store
from tests.dask_cluster import dask_cluster
from tests.smoke_support import REPO, SMALL_SMOKE, small_params, write_params


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("smoke")
    params = small_params()
    metrics = build_smoke_dataset(
        params.smoke, params.compute, root / "smoke.zarr", root / "metrics.json", root / "scratch"
    )
    return root / "smoke.zarr", metrics


def test_store_layout_and_metadata(built: tuple[Path, dict]) -> None:
    path, _ = built
    ds = open_store(path, verify=True)
    assert ds.velocity.dims == ("level", "direction", "time", "component", "y", "x")
    assert ds.velocity.shape == (2, 4, 12, 2, 32, 32) and ds.velocity.dtype == np.float32
    assert ds.smoke.shape == (2, 4, 12, 32, 32)
    assert list(ds.direction.values) == [0, 90, 180, 270]
    assert ds.velocity.encoding["chunks"][-3:] == (2, 32, 32)  # a chunk holds whole frames
    prov = read_provenance(ds)
    assert prov["versions"]["phiflow"] and prov["versions"]["phiml"]
    assert prov["params"]["solver"]["method"] == "dct"
    assert json.loads(ds.attrs["pressure_solver"])["rel_tol"] == 1e-8
    splits = json.loads(ds.attrs["splits"])
    assert splits == {
        "train": {"time_index": [0, 6]},
        "valid": {"time_index": [6, 9]},
        "test": {"time_index": [9, 12]},
    }
    assert list(ds.split.values) == ["train"] * 6 + ["valid"] * 3 + ["test"] * 3


def test_level_zero_is_exactly_c4_symmetric(built: tuple[Path, dict]) -> None:
    ds = open_store(built[0])
    v = ds.velocity.sel(level=0).values  # [direction, time, component, y, x]
    s = ds.smoke.sel(level=0).values
    assert np.abs(v).max() > 1e-3  # a flow, not zeros
    for k in range(4):
        assert np.array_equal(v[k], rotate_vector(v[0], c4_rotation(k), component_axis=1))
        assert np.array_equal(s[k], rotate_scalar(s[0], c4_rotation(k)))
    # E_1 uses different buoyancies, so it must not be symmetric
    v1 = ds.velocity.sel(level=1).values
    assert not np.allclose(v1[1], rotate_vector(v1[0], c4_rotation(1), component_axis=1))


def test_metrics_report_levels_and_solver_symmetry(built: tuple[Path, dict]) -> None:
    _, metrics = built
    assert metrics["orbit_distance"]["E0"] == 0.0
    assert metrics["orbit_distance"]["E1"] > 0.05
    assert metrics["published_level_equivariance_error"] == {"E0": 0.0, "E1": 0.17}
    assert 0 < metrics["solver_only_c4_error"] < 1e-10  # separately simulated directions: round-off only


def test_validation_rejects_broken_data(built: tuple[Path, dict], tmp_path: Path) -> None:
    params = small_params().smoke
    copy = tmp_path / "copy.zarr"
    shutil.copytree(built[0], copy)
    ds = xr.open_zarr(copy).load()
    ds.velocity[0, 2, 3, 0, 5, 5] += 1e-3  # breaks E_0's symmetry and the divergence
    ds.to_zarr(copy, mode="w", zarr_format=3, consolidated=True)
    with pytest.raises(ValueError, match="not divergence-free"):
        validate_store(copy, params)
    ds.velocity[:] = np.nan
    ds.to_zarr(copy, mode="w", zarr_format=3, consolidated=True)
    with pytest.raises(ValueError, match="NaN"):
        validate_store(copy, params)


def test_existing_output_is_not_overwritten(built: tuple[Path, dict], tmp_path: Path) -> None:
    params = small_params()
    before = (built[0] / COMPLETE_MARKER).read_text()
    with pytest.raises(StoreError, match="already exists"):
        build_smoke_dataset(params.smoke, params.compute, built[0], None, tmp_path / "scratch")
    assert (built[0] / COMPLETE_MARKER).read_text() == before


def test_incomplete_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "half.zarr").mkdir()
    with pytest.raises(StoreError, match="incomplete"):
        open_store(tmp_path / "half.zarr")


def _stage_cmd(params_file: Path, out: Path, scratch: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipelines.smoke",
        "--params",
        str(params_file),
        "--out",
        str(out),
        "--metrics",
        str(out.parent / "metrics.json"),
        "--scratch",
        str(scratch),
    ]


@pytest.mark.slow
def test_killed_stage_resumes_from_finished_batches(built: tuple[Path, dict], tmp_path: Path) -> None:
    params = small_params()  # the fixture's params: the resumed result must equal it bitwise
    params_file = write_params(tmp_path / "params.yaml", params)
    out, scratch = tmp_path / "smoke.zarr", tmp_path / "scratch"
    proc = subprocess.Popen(
        _stage_cmd(params_file, out, scratch),
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(scratch.rglob("*.done")):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the stage and its dask workers, mid-run
    proc.wait()
    finished = len(list(scratch.rglob("*.done")))
    n_batches = -(-len(plan_jobs(params.smoke)) // params.smoke.batch_size)
    assert 0 < finished < n_batches, f"kill landed after {finished} of {n_batches} batches"
    assert not out.exists()  # nothing that looks like a dataset

    rerun = subprocess.run(_stage_cmd(params_file, out, scratch), cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming: {finished} of {n_batches} batches already done" in rerun.stderr
    ds = open_store(out, verify=True)
    assert len(list(scratch.iterdir())) == 1  # this physics' scratch is kept for reuse
    reference = open_store(built[0])
    for name in ("velocity", "smoke"):
        assert np.array_equal(reference[name].values, ds[name].values)


@pytest.mark.slow
def test_stage_on_a_real_dask_cluster_matches_the_local_run(built: tuple[Path, dict], tmp_path: Path) -> None:
    with dask_cluster(tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}) as address:
        params = small_params()
        cluster_params = params.model_copy(
            update={"compute": params.compute.model_copy(update={"scheduler_address": address})}
        )
        out = tmp_path / "cluster.zarr"
        build_smoke_dataset(cluster_params.smoke, cluster_params.compute, out, None, tmp_path / "scratch")
    local, remote = open_store(built[0]), open_store(out)
    for name in ("velocity", "smoke"):
        assert np.array_equal(local[name].values, remote[name].values)


@pytest.mark.slow
def test_dvc_repro_runs_the_smoke_stage(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    shutil.copytree(
        REPO,
        work,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "data",
            "metrics",
            ".dvc",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            "report",
            "dvc.lock",
        ),
    )
    env = {**os.environ, "PYTHONPATH": str(work)}
    write_params(work / "params.yaml", small_params())
    dvc = str(Path(sys.executable).parent / "dvc")
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=work, check=True, env=env, capture_output=True)
    run = subprocess.run([dvc, "repro", "smoke"], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    metrics = json.loads((work / "metrics" / "smoke.json").read_text())
    assert metrics["orbit_distance"]["E0"] == 0.0
    assert open_store(work / "data" / "smoke.zarr").velocity.shape[0] == len(SMALL_SMOKE["levels"])
    again = subprocess.run([dvc, "repro", "smoke"], cwd=work, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "didn't change" in again.stdout + again.stderr
