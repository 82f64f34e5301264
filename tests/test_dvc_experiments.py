"""DVC as its users work: `dvc exp run -S ...` keeps the summary metrics in the experiment and changes one
line of a params file, `dvc exp show` / `dvc exp diff` / `dvc metrics diff` / `dvc plots diff` read them
(the report's figures as image plots that render offline), and `dvc push` / `dvc pull` through a local
remote give back the built store bit for bit. One tiny study in a temp git repo (real `dvc` CLI)."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.params import parse_params
from tests.conftest import TINY_SMOKE, TINY_TURBULENCE

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILES = ("params.yaml", "params.cpu.yaml", "params.study.yaml")
# one key of each kind: a null, a scalar at each depth, an entry of a nested block mapping (and, per file,
# a list that loses its last element)
ONE_KEY_CHANGES = (
    "compute.scheduler_address=tcp://127.0.0.1:8786",
    "smoke.seed=7",
    "turbulence.synthetic.seed=7",
    "train.smoke.optimiser.lr=0.002",
    "train.turbulence.optimiser.patience=9",
    "publish.mini_frames=3",
    "landscape.top_k=2",
)

TINY_STUDY = {
    "compute": {"n_workers": 1},
    "smoke": TINY_SMOKE,
    "turbulence": TINY_TURBULENCE,
    "publish": {"mini_frames": 2},
    "train": {
        "smoke": {"models": ["cnn"], "seeds": [0], "levels": [0], "hparams": {"cnn": {"hidden": 4}},
                  "optimiser": {"max_epochs": 2, "early_epoch": 1, "batch_size": 4, "max_train_batches": 1}},
        "turbulence": {"models": ["cnn"], "seeds": [0], "hparams": {"cnn": {"hidden": 2, "enc_layers": 1}},
                       "optimiser": {"max_epochs": 2, "early_epoch": 1, "batch_size": 2}},
    },  # fmt: skip
    "landscape": {"models": {"smoke": ["cnn"], "turbulence": ["cnn"]}, "checkpoints": ["best"],
                  "directions": 1, "displacements": [0.1], "lanczos_steps": 3, "top_k": 1,
                  "hutchinson_probes": 1},  # fmt: skip
}


def _run(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # the venv's python for `python -m`
    env = {**os.environ, "PYTHONPATH": str(repo), "PATH": path, "DVC_NO_ANALYTICS": "1", **(env or {})}
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


def _readme_command(start: str) -> str:
    """The one command of the README's ```bash blocks that starts with ``start`` (its comment cut off)."""
    text = (REPO / "README.md").read_text()
    blocks = "\n".join(re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S))
    lines = [line.split("  #")[0].strip() for line in blocks.splitlines() if line.startswith(start)]
    assert len(lines) == 1, f"README must give one `{start} ...` command"
    return lines[0]


def _changed_lines(before: str, after: str) -> list[str]:
    return [d for d in difflib.ndiff(before.splitlines(), after.splitlines()) if d[:1] in "+-"]


@pytest.mark.parametrize("name", PARAMS_FILES)
def test_dvc_set_param_writes_back_one_line_per_key(name: str, tmp_path: Path) -> None:
    """`dvc exp run -S key=value` rewrites the whole params file with DVC's writer (ruamel round trip through
    Hydra); the files are kept in the form it writes, so no other line moves and a one-key experiment is a
    one-line diff. Fix a failure by writing that key's line the way the diff shows it."""
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` calls on each params file

    original = (REPO / name).read_text()
    path = tmp_path / name
    values = yaml.safe_load(original)
    path.write_text(original)
    apply_overrides(str(path), [f"compute.n_workers={values['compute']['n_workers']}"])  # no change at all
    assert _changed_lines(original, path.read_text()) == [], "not one byte may move"
    fewer_seeds = f"train.smoke.seeds=[{','.join(map(str, values['train']['smoke']['seeds'][:-1]))}]"
    for change in (*ONE_KEY_CHANGES, fewer_seeds):
        path.write_text(original)
        apply_overrides(str(path), [change])
        changed = _changed_lines(original, path.read_text())
        assert 1 <= len(changed) <= 2 and sum(d[0] == "-" for d in changed) <= 1, (change, changed)


@pytest.mark.slow
def test_dvc_exp_run_set_param_is_a_one_line_diff(tmp_path: Path) -> None:
    """The real CLI on the real params.yaml and a one-command stage: the experiment's commit differs from
    HEAD's params.yaml in exactly the line of the key it set."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    stage = "stages:\n  echo:\n    cmd: echo ok\n    params:\n      - train.smoke\n"
    (tmp_path / "dvc.yaml").write_text(stage)
    _run(tmp_path, "git", "init", "-q")
    _run(tmp_path, "dvc", "init", "-q")
    _commit(tmp_path, "params")
    _run(tmp_path, "dvc", "exp", "run", "-n", "lr", "-S", "train.smoke.optimiser.lr=0.002")
    refs = _run(tmp_path, "git", "for-each-ref", "--format=%(refname)", "refs/exps").split()
    ref = [r for r in refs if r.endswith("/lr")]
    assert len(ref) == 1, refs
    diff = _run(tmp_path, "git", "diff", "-U0", "HEAD", ref[0], "--", "params.yaml").splitlines()
    changed = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    lines = [line[0] + line[1:].split("#")[0].strip() for line in changed]
    assert lines == ["-lr: 3.0e-3", "+lr: 0.002"], changed


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
    params["smoke"]["solver_symmetry_check"] = True  # the tiny default is off: the experiment turns it off
    parse_params(params)  # the schema is strict: a stale key fails here, naming it
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(repo, "git", "init", "-q")
    _commit(repo, "tiny study")
    _run(repo, "dvc", "repro", "report")  # the report and what it depends on (not publish)
    who = {f"GIT_{role}_{part}": "t" for role in ("AUTHOR", "COMMITTER") for part in ("NAME", "EMAIL")}
    _run(repo, "sh", "-c", _readme_command("git add"), env=who)  # the quick start's first-results commit
    assert _run(repo, "git", "status", "--porcelain", "--", "metrics", "dvc.lock") == ""
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


@pytest.mark.slow
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
    # the README's `dvc exp show` reads in a terminal of 120 columns: nothing cut, the changed param shown
    show = _readme_command("dvc exp show") + " --no-pager"
    table = _run(tiny_repo, "sh", "-c", show, env={"COLUMNS": "120"})
    assert "…" not in table and max(map(len, table.splitlines())) <= 120, table
    assert "smoke.solver_symmetry_check" in table and "nocheck" in table, table
    text = _run(tiny_repo, "dvc", "metrics", "diff", "--all")
    assert "cnn.test_rmse" in text and "not supported" not in text
    _run(tiny_repo, "dvc", "plots", "diff", "-o", str(tiny_repo / "plots_html"))
    page = (tiny_repo / "plots_html" / "index.html").read_text()
    # the report's figures are image plots: local copies the page refers to, so they render offline
    images = re.findall(r'<img src="([^"]+)"', page)
    assert all((tiny_repo / "plots_html" / src).is_file() and "://" not in src for src in images), images
    for png in sorted((tiny_repo / "report").glob("*.png")):
        assert any(src.endswith(png.name) for src in images), f"{png.name} is not a DVC plot"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
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
