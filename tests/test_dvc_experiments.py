"""DVC as its users work: `dvc exp run -S ...` keeps the summary metrics in the experiment, `dvc exp show` /
`dvc exp diff` / `dvc metrics diff` / `dvc plots diff` read them, and `dvc push` / `dvc pull` through a local
remote give back the built store bit for bit. One tiny study in a temp git repo (real `dvc` CLI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.params import parse_params
from tests.conftest import TINY_SMOKE, TINY_TURBULENCE

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY_STUDY = {
    "compute": {"n_workers": 1},
    "smoke": TINY_SMOKE,
    "turbulence": TINY_TURBULENCE,
    "publish": {"mini_frames": 2},
    "train": {
        "smoke": {"models": ["cnn"], "seeds": [0], "hparams": {"cnn": {"hidden": 4}},
                  "optimiser": {"max_epochs": 2, "early_epoch": 1, "batch_size": 4, "max_train_batches": 1}},
        "turbulence": {"models": ["cnn"], "seeds": [0], "hparams": {"cnn": {"hidden": 2, "enc_layers": 1}},
                       "optimiser": {"max_epochs": 2, "early_epoch": 1, "batch_size": 2}},
    },  # fmt: skip
    "landscape": {"models": {"smoke": ["cnn"], "turbulence": ["cnn"]}, "checkpoints": ["best"],
                  "directions": 1, "displacements": [0.1], "lanczos_steps": 3, "top_k": 1,
                  "hutchinson_probes": 1},  # fmt: skip
}


def _run(repo: Path, *args: str) -> str:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # the venv's python for `python -m`
    env = {**os.environ, "PYTHONPATH": str(repo), "PATH": path}
    done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _find(node: object, name: str) -> dict | None:
    """The experiment named ``name`` anywhere in `dvc exp show --json` output."""
    if isinstance(node, dict):
        if node.get("name") == name and "data" in node:
            return node
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            if (hit := _find(child, name)) is not None:
                return hit
    return None


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tracked repo in a fresh git repo with a tiny, validated params.yaml, and one experiment run."""
    repo = tmp_path_factory.mktemp("dvc_repo")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for rel in tracked.splitlines():
        if (REPO / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, repo / rel)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in TINY_STUDY.items():
        params[section] = _merge(params[section], values)
    parse_params(params)  # the schema is strict: a stale key fails here, naming it
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(repo, "git", "init", "-q")
    _commit(repo, "tiny study")
    _run(repo, "dvc", "repro", "report")  # the report and what it depends on (not publish)
    _commit(repo, "baseline results: dvc.lock and metrics/")
    # the experiment re-runs the smoke stage only: the switch changes no stored byte, so nothing downstream
    _run(repo, "dvc", "exp", "run", "-n", "nocheck", "-S", "smoke.solver_symmetry_check=false", "report")
    return repo


def _commit(repo: Path, message: str) -> None:
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def test_an_experiment_keeps_its_summary_metrics(tiny_repo: Path) -> None:
    exp = _find(json.loads(_run(tiny_repo, "dvc", "exp", "show", "--json")), "nocheck")
    assert exp is not None
    metrics = exp["data"]["metrics"]
    assert sorted(metrics) == ["metrics/summary/smoke.json", "metrics/summary/turbulence.json"]
    smoke = metrics["metrics/summary/smoke.json"]["data"]["cnn"]
    run = json.loads((tiny_repo / "metrics" / "train" / "smoke-cnn-seed0.json").read_text())
    summary = metrics["metrics/summary/smoke.json"]["data"]
    assert smoke["test_rmse"] == float(f"{run['test_rmse']:.6g}") and summary["seeds"] == 1
    assert summary["test_samples"] == run["test_samples"]
    assert '"solver_symmetry_check": false' in json.dumps(exp["data"]["params"])
    diff = json.loads(_run(tiny_repo, "dvc", "exp", "diff", "--all", "--json", "HEAD", "nocheck"))
    changes = diff["metrics"]["metrics/summary/smoke.json"]
    assert changes["cnn.test_rmse"]["old"] == changes["cnn.test_rmse"]["new"] == smoke["test_rmse"]
    assert all(c["old"] == c["new"] for c in changes.values())  # same store bytes: nothing retrained
    assert "smoke.solver_symmetry_check" in json.dumps(diff["params"])
    text = _run(tiny_repo, "dvc", "metrics", "diff", "--all")
    assert "cnn.test_rmse" in text and "not supported" not in text
    _run(tiny_repo, "dvc", "plots", "diff", "-o", str(tiny_repo / "plots_html"))
    assert (tiny_repo / "plots_html" / "index.html").is_file()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_push_and_pull_through_a_local_remote_restore_the_store(tiny_repo: Path, tmp_path: Path) -> None:
    store = tiny_repo / "data" / "smoke.zarr"
    before = _files(store)
    assert before
    _run(tiny_repo, "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    _run(tiny_repo, "dvc", "push", "smoke")
    shutil.rmtree(tiny_repo / "data")
    shutil.rmtree(tiny_repo / ".dvc" / "cache")
    _run(tiny_repo, "dvc", "pull", "smoke")
    assert _files(store) == before
