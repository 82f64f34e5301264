"""The README's worked example, taken from README.md itself: a new symmetric scenario is one user module
plus two params entries, and it runs in-process and on a real dask cluster."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from loaders.storage import open_store, read_provenance
from pipelines.params import ParamsError, PressureSolverParams, parse_params
from pipelines.smoke.scenarios import Domain, resolve_scenario
from pipelines.smoke.simulate import simulate
from pipelines.smoke.stage import assemble_levels, build_smoke_dataset, plan_jobs, run_batch
from tests.dask_cluster import dask_cluster
from tests.smoke_support import REPO, SMALL_SMOKE, ccw_quarter_turn

SECTION = "## Adding a symmetric simulation"


def readme_blocks() -> dict[str, str]:
    """The ```python and ```yaml blocks of the README section (one of each)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) : text.index("\n## ", text.index(SECTION) + 1)]
    blocks = dict(re.findall(r"```(python|yaml)\n(.*?)```", section, re.S))
    assert set(blocks) == {"python", "yaml"}, "the section must show the module and its params"
    return blocks


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    """Write the README's module where a user would (outside the repo) and make it importable."""
    blocks = readme_blocks()
    smoke = yaml.safe_load(blocks["yaml"])["smoke"]
    module = smoke["scenario"].partition(":")[0]
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / f"{module}.py").write_text(blocks["python"])
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, module, raising=False)  # no stale copy from another test
    yield folder, smoke
    sys.modules.pop(module, None)


def assert_exactly_c4(v: np.ndarray, s: np.ndarray) -> None:
    """``v``: [direction, time, component, y, x], ``s``: [direction, time, y, x]; by index arithmetic."""
    assert np.abs(v).max() > 1e-3  # a flow, not zeros
    for k in range(1, 4):
        assert np.array_equal(v[k], ccw_quarter_turn(v[k - 1], vector=True)), k
        assert np.array_equal(s[k], ccw_quarter_turn(s[k - 1], vector=False)), k


def test_unknown_scenario_is_rejected_before_work() -> None:
    # params check the name's form without importing PhiFlow; the stage resolves it before simulating
    with pytest.raises(ParamsError, match="smoke.scenario"):
        parse_params({"smoke": {"scenario": "not a name!"}})
    with pytest.raises(ValueError, match="'twin_plume' is not a built-in scenario"):
        resolve_scenario("twin_plume")
    with pytest.raises(ValueError, match="cannot be imported"):
        resolve_scenario("no_such_module_xyz:TwinPlume")
    with pytest.raises(ValueError, match=r"unknown keys \['bogus'\]"):
        resolve_scenario("buoyant_plume", {"bogus": 1})


def test_readme_scenario_rotates_like_its_simulation(user_module: tuple[Path, dict]) -> None:
    _, smoke = user_module
    twin_cls = resolve_scenario(smoke["scenario"], smoke["scenario_options"])
    assert twin_cls.__name__ == "TwinPlume" and smoke["scenario_options"] == {"offset": 12.0}
    domain = Domain(resolution=24, size=24.0)
    twin = twin_cls(inflow_center=(12.0, 4.0), inflow_radius=2.0, buoyancy=(0.0, 0.05), offset=5.0)
    runs = simulate([twin, twin.rotated(1, domain)], domain, 4, 1.0, (4, 5), PressureSolverParams())
    v0, v1 = runs["velocity"][0], runs["velocity"][1]
    assert np.abs(v0).max() > 1e-3
    # separately simulated: equal to the turned flow up to solver round-off
    assert np.max(np.abs(ccw_quarter_turn(v0, vector=True) - v1)) < 1e-12
    two_plumes = runs["smoke"][0][0]  # two separate inflows: the smoke has two blobs near the floor
    assert two_plumes[:6, 4:10].max() > 0.5 and two_plumes[:6, 14:20].max() > 0.5
    assert two_plumes[:6, 11:13].max() < 0.1  # ... and none between them


def test_readme_scenario_through_the_stage_code_is_exactly_c4(user_module: tuple[Path, dict]) -> None:
    """The stage's own batch task and level assembly, in this process."""
    _, smoke = user_module
    p = parse_params({"smoke": {**SMALL_SMOKE, "levels": [0], "solver_symmetry_check": False, **smoke}}).smoke
    jobs = plan_jobs(p)
    arrays = run_batch(jobs, p.model_dump_json())
    sims = {job.label: ds for job, ds in zip(jobs, _split(jobs, arrays), strict=True)}
    ds = assemble_levels(p, sims)
    assert_exactly_c4(ds.velocity.sel(level=0).values, ds.smoke.sel(level=0).values)


def _split(jobs: list, arrays: dict) -> list:
    import xarray as xr

    return [
        xr.Dataset(
            {
                "velocity": (("time", "component", "y", "x"), arrays["velocity"][i]),
                "smoke": (("time", "y", "x"), arrays["smoke"][i]),
            }
        )
        for i in range(len(jobs))
    ]


@pytest.mark.slow
def test_readme_scenario_on_a_real_dask_cluster(user_module: tuple[Path, dict], tmp_path: Path) -> None:
    """Workers in their own processes import the user's module from their PYTHONPATH, as documented."""
    folder, smoke = user_module
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO)])}
    with dask_cluster(tmp_path, env=env) as address:
        from distributed import Client

        with Client(address, timeout="30s") as client:
            # the workers really are separate processes that can import the module
            where = client.run(lambda: __import__(smoke["scenario"].partition(":")[0]).__file__)
            assert len(where) == 2 and all(Path(f).parent == folder for f in where.values())
        params = parse_params(
            {"smoke": {**SMALL_SMOKE, "levels": [0], **smoke},
             "compute": {"scheduler_address": address}}
        )  # fmt: skip
        out = tmp_path / "twin.zarr"
        build_smoke_dataset(params.smoke, params.compute, out, None, tmp_path / "scratch")
    ds = open_store(out, verify=True)
    assert read_provenance(ds)["params"]["scenario"] == smoke["scenario"]
    assert_exactly_c4(ds.velocity.sel(level=0).values, ds.smoke.sel(level=0).values)
