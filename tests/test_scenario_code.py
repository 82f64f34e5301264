"""Issue 19, item 0: the simulation scratch follows the code that simulates, and DVC sees an edit of a
scenario module outside the repository once the stage has made the user declare it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loaders.digest import sha256_file
from pipelines.params import parse_params
from pipelines.smoke.code import check_dvc_dependencies, simulation_code
from pipelines.smoke.scenarios import BuoyantPlume, resolve_scenario
from pipelines.smoke.stage import scratch_key
from tests.conftest import TINY_SMOKE
from tests.smoke_support import REPO

MODULE = """
from dataclasses import dataclass
from typing import ClassVar
from pipelines.smoke.scenarios import BuoyantPlume

BOOST = {boost}  # an edit of this line changes every simulation


@dataclass(frozen=True)
class Boosted(BuoyantPlume):
    name: ClassVar[str] = "boosted"

    def sources(self, domain):
        src = super().sources(domain)
        return {{**src, "buoyancy": src["buoyancy"] * BOOST}}
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "user_code"
    folder.mkdir()
    path = folder / "boosted_plume.py"
    path.write_text(MODULE.format(boost=1.0))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "boosted_plume", raising=False)
    yield path
    sys.modules.pop("boosted_plume", None)


def test_scratch_key_follows_the_scenario_module_and_the_solver(user_module: Path) -> None:
    p = parse_params({"smoke": {**TINY_SMOKE, "scenario": "boosted_plume:Boosted"}}).smoke
    before = scratch_key(p)
    assert scratch_key(p) == before  # stable while nothing changes
    user_module.write_text(MODULE.format(boost=2.0))  # doubling the buoyancy, as in the issue
    assert scratch_key(p) != before  # the old batches are never resumed
    # the built-in scenario and the solver are keyed by their source files too
    code = simulation_code(BuoyantPlume)
    for name in ("pipelines.smoke.scenarios", "pipelines.smoke.simulate", "pipelines.smoke.pressure"):
        assert code[name] == sha256_file(REPO / (name.replace(".", "/") + ".py"))
    assert set(simulation_code(resolve_scenario("boosted_plume:Boosted"))) == {"boosted_plume", *code}


def test_dvc_run_refuses_an_undeclared_scenario_module(
    user_module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = resolve_scenario("boosted_plume:Boosted")
    check_dvc_dependencies("boosted_plume:Boosted", cls)  # outside DVC: nothing to check
    (tmp_path / "dvc.yaml").write_text("stages:\n  smoke:\n    cmd: x\n    deps:\n      - pipelines\n")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "smoke")
    with pytest.raises(ValueError, match=r"boosted_plume\.py is not a dependency of the DVC stage 'smoke'"):
        check_dvc_dependencies("boosted_plume:Boosted", cls)


def test_dvc_status_sees_an_edit_of_a_declared_scenario_module(user_module: Path, tmp_path: Path) -> None:
    """Real DVC: the stage's own check runs as the command; once the module the error names is a dep,
    `dvc status` reports the stage changed after an edit of it."""
    work = tmp_path / "repo"
    work.mkdir()
    check = (
        "from pipelines.smoke.code import check_dvc_dependencies as c; "
        "from pipelines.smoke.scenarios import resolve_scenario as r; "
        "c('boosted_plume:Boosted', r('boosted_plume:Boosted'))"
    )
    deps = [REPO / "pipelines/smoke/scenarios.py", user_module]  # what the check demands
    (work / "dvc.yaml").write_text(
        f'stages:\n  smoke:\n    cmd: {sys.executable} -c "{check}"\n    deps:\n'
        + "".join(f"      - {d}\n" for d in deps)
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(user_module.parent), str(REPO)]),
        "DVC_NO_ANALYTICS": "1",
    }
    dvc = str(Path(sys.executable).parent / "dvc")

    def run(*args: str) -> str:
        done = subprocess.run([dvc, *args], cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    run("init", "-q")
    run("repro", "-q")
    assert "up to date" in run("status")
    user_module.write_text(MODULE.format(boost=2.0))
    status = run("status")
    assert "smoke" in status and "modified" in status and str(user_module) in status, status
