"""Issue 19, item 13: symmetry is verified, not assumed. A user scenario that forgets to turn part of its
setup fails the smoke stage in both symmetrisation modes, naming itself and the measured orbit distance;
the card states what was measured, and a user scenario gets neither the study's repo name nor its
published values."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import xarray as xr

import pipelines.publish.smoke_kind as smoke_kind
import pipelines.smoke.stage as stage
from loaders.storage import read_provenance
from pipelines.params import ComputeParams, PublishParams, parse_params
from pipelines.publish.card import ConfigSpec
from pipelines.publish.kinds import CardContext
from pipelines.smoke.stage import Job, build_smoke_dataset, run_batch, verify_declared_symmetry
from tests.conftest import TINY_SMOKE

SCENARIO = "lopsided_plume:Lopsided"
BROKEN = '''
from dataclasses import dataclass
from phi.flow import Sphere, extrapolation, vec
from pipelines.smoke.scenarios import BuoyantPlume


@dataclass(frozen=True)
class Lopsided(BuoyantPlume):
    """A second inflow whose position `rotated` forgets to turn."""

    def sources(self, domain):
        src = super().sources(domain)
        second = domain.centered(Sphere(center=vec(x=4.0, y=4.0), radius=2.0), extrapolation.BOUNDARY)
        return {**src, "inflow": src["inflow"] + second}
'''


@pytest.fixture(scope="module")
def turned_sims(tmp_path_factory: pytest.TempPathFactory) -> dict[str, xr.Dataset]:
    """The broken scenario's rung 1 simulated in its four turned setups (what both checks compare)."""
    folder = tmp_path_factory.mktemp("user_code")
    (folder / "lopsided_plume.py").write_text(BROKEN)
    sys.path.insert(0, str(folder))
    try:
        # numpy: at 16 x 16 x 12 steps cheaper than compiling the JAX step; the built-in scenario passing
        # is test_smoke_stage's solver check (its build verifies it)
        p = parse_params({"smoke": {**TINY_SMOKE, "scenario": SCENARIO, "backend": "numpy"}}).smoke
        jobs = [Job(1, k) for k in range(4)]
        arrays = run_batch(jobs, p.model_dump_json())
        yield {
            job.label: xr.Dataset(
                {"velocity": (("time", "component", "y", "x"), arrays["velocity"][i])},
            )
            for i, job in enumerate(jobs)
        }
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("lopsided_plume", None)


@pytest.mark.parametrize(
    "mode", [{"symmetrisation": "rotate", "solver_symmetry_check": True},
             {"symmetrisation": "simulate", "solver_symmetry_check": False, "levels": [0]}],
)  # fmt: skip
def test_an_unturned_source_fails_the_stage_naming_scenario_and_error(
    turned_sims: dict[str, xr.Dataset], mode: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = parse_params({"smoke": {**TINY_SMOKE, "scenario": SCENARIO, **mode}}).smoke
    with pytest.raises(
        ValueError, match=r"'lopsided_plume:Lopsided'.* orbit distance 0\.\d+ from the nearest"
    ):
        verify_declared_symmetry(p, turned_sims)
    # the stage itself stops before writing anything (its simulations stand in for the dask run)
    monkeypatch.setattr(stage, "simulate_all", lambda *a: turned_sims)
    with pytest.raises(ValueError, match="declared exactly C4-symmetric"):
        build_smoke_dataset(p, ComputeParams(), tmp_path / "smoke.zarr", tmp_path / "m.json")
    assert not (tmp_path / "smoke.zarr").exists() and not (tmp_path / "m.json").exists()


def _card(store: Path, provenance: dict) -> str:
    ds = xr.open_zarr(store)
    configs = [ConfigSpec("E0", "all", {}, True, {"train": ["f"]}, {"train": 1})]
    stats = {"E0": {"velocity": {"components": ["u"], "mean": [0.0], "std": [1.0], "rms": 1.0, "count": 1}}}
    ctx = CardContext(ds, provenance, "t/smoke", configs, stats, {"README.md": 10}, "cc-by-4.0")
    return smoke_kind.SmokeKind().card_body(ctx)


def test_card_states_the_measurement_and_published_values_follow_the_scenario(
    smoke_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builtin = read_provenance(xr.open_zarr(smoke_store))
    card = _card(smoke_store, builtin)
    assert "so E_0 is exactly C4-symmetric" not in card
    orbit = builtin["metrics"]["orbit_distance"]["E0"]
    assert f"measured orbit distance to the nearest exactly C4-symmetric set: {orbit:.6g}" in card
    assert "published value (original study)" in card and "beside the value the study published" in card

    user = {**builtin, "params": {**builtin["params"], "scenario": "my_plumes:TwinPlume"}}
    user["metrics"] = {
        k: v for k, v in builtin["metrics"].items() if k != "published_level_equivariance_error"
    }
    card = _card(smoke_store, user)
    assert "published value" not in card and "the study published" not in card

    default = PublishParams().repos["smoke"]
    kind = smoke_kind.SmokeKind()
    assert kind.repo_id(default, smoke_store) == default  # the built-in scenario keeps the study's repo
    monkeypatch.setattr(smoke_kind, "read_provenance", lambda ds: user)
    assert kind.repo_id(default, smoke_store) == "symflow/smoke-twin-plume-c4"
    assert kind.repo_id("me/my-repo", smoke_store) == "me/my-repo"  # a repo the user chose is kept
    PublishParams(datasets=["smoke"], repos={"smoke": kind.repo_id(default, smoke_store)})  # a valid id
