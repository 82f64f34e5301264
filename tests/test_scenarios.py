"""The README's worked example: a new symmetric scenario is one class plus one params entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from phi.flow import Sphere, extrapolation, union, vec

from models.groups import c4_rotation, rotate_vector
from pipelines.params import ParamsError, PressureSolverParams, parse_params
from pipelines.smoke.scenarios import BUILTIN_SCENARIOS, BuoyantPlume, Domain, resolve_scenario
from pipelines.smoke.simulate import simulate
from pipelines.smoke.stage import assemble_levels, plan_jobs, run_batch
from tests.smoke_support import SMALL_SMOKE


@dataclass(frozen=True)
class TwinPlume(BuoyantPlume):
    name: ClassVar[str] = "twin_plume"
    offset: float = 12.0

    def sources(self, domain: Domain) -> dict:
        (cx, cy), r = self.inflow_center, self.inflow_radius
        bx, by = self.buoyancy
        norm = (bx * bx + by * by) ** 0.5
        ox, oy = -by / norm * self.offset, bx / norm * self.offset
        spheres = [Sphere(center=vec(x=cx + s * ox, y=cy + s * oy), radius=r) for s in (-1, 1)]
        inflow = domain.centered(union(*spheres), extrapolation.BOUNDARY)
        return {"inflow": inflow, "buoyancy": vec(x=bx, y=by)}


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN_SCENARIOS, "twin_plume", TwinPlume)


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


def test_new_scenario_rotates_like_its_simulation(registered: None) -> None:
    domain = Domain(resolution=24, size=24.0)
    twin = TwinPlume(inflow_center=(12.0, 4.0), inflow_radius=2.0, buoyancy=(0.0, 0.05), offset=5.0)
    runs = simulate([twin, twin.rotated(1, domain)], domain, 4, 1.0, (4, 5), PressureSolverParams())
    v0, v1 = runs["velocity"][0], runs["velocity"][1]
    assert np.abs(v0).max() > 1e-3
    assert np.max(np.abs(rotate_vector(v0, c4_rotation(1), component_axis=1) - v1)) < 1e-12
    two_plumes = runs["smoke"][0][0]  # two separate inflows: the smoke has two blobs near the floor
    assert two_plumes[:6, 4:10].max() > 0.5 and two_plumes[:6, 14:20].max() > 0.5


def test_new_scenario_goes_through_the_stage_code(registered: None) -> None:
    """The stage's own batch task and level assembly (dask workers would import the registry module;
    a scenario registered only inside this test process cannot reach them, so the task runs here)."""
    params = parse_params(
        {
            "smoke": {
                **SMALL_SMOKE,
                "levels": [0],
                "solver_symmetry_check": False,
                "scenario": "twin_plume",
                "scenario_options": {"offset": 6.0},
            }
        }
    )
    p = params.smoke
    jobs = plan_jobs(p)
    arrays = run_batch(jobs, p.model_dump_json())
    sims = {job.label: ds for job, ds in zip(jobs, _split(jobs, arrays), strict=True)}
    ds = assemble_levels(p, sims)
    v = ds.velocity.sel(level=0).values
    assert np.abs(v).max() > 1e-3
    for k in range(4):
        assert np.array_equal(v[k], rotate_vector(v[0], c4_rotation(k), component_axis=1))


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
