"""Project issue 10, "Done when", through real DVC on a fresh copy of the repository: toggling
``smoke.solver_symmetry_check`` re-runs only the smoke stage, adding one seed trains only that seed, and
changing ``smoke.buoyancy_unit`` retrains every smoke run from scratch."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.params import parse_params
from tests.conftest import TINY_SMOKE, TINY_TURBULENCE

REPO = Path(__file__).resolve().parent.parent
DVC = str(Path(sys.executable).parent / "dvc")

# the whole study at toy size: one smoke level, one model and seed per dataset, one epoch of two batches,
# a Lanczos run of two steps at the best smoke checkpoint only
OPTIMISER = {"lr": 1e-3, "batch_size": 4, "max_epochs": 1, "early_epoch": 1, "max_train_batches": 2}
PARAMS: dict[str, Any] = {
    "compute": {"n_workers": 1, "threads_per_worker": 1},
    "smoke": {**TINY_SMOKE, "levels": [0], "solver_symmetry_check": False},
    "turbulence": TINY_TURBULENCE,
    "publish": {"target": "local", "mini_frames": 2},
    "train": {
        "smoke": {
            "models": ["cnn"],
            "seeds": [0],
            "window_stride": 2,
            "hparams": {"cnn": {"hidden": 4}},
            "optimiser": OPTIMISER,
        },
        "turbulence": {
            "models": ["cnn"],
            "seeds": [0],
            "hparams": {"cnn": {"hidden": 2}},
            "optimiser": {**OPTIMISER, "batch_size": 2},
        },
    },
    "landscape": {
        "models": {"smoke": ["cnn"], "turbulence": []},
        "checkpoints": ["best"],
        "subset_fraction": 0.01,
        "subset_min_samples": 2,
        "subset_batch_size": 2,
        "directions": 1,
        "displacements": [0.5],
        "top_k": 1,
        "lanczos_steps": 2,
        "slq_probes": 1,
        "hutchinson_probes": 1,
    },
}


def _write_params(work: Path, raw: dict[str, Any]) -> None:
    # the full validated dump: every key a dvc.yaml stage declares is present (DVC refuses missing ones)
    dumped = parse_params(raw).model_dump(mode="json")
    (work / "params.yaml").write_text(yaml.safe_dump(dumped, sort_keys=False))


def _repro(work: Path) -> tuple[list[str], str]:
    """``dvc repro`` of the whole pipeline; returns the stages it ran and its output."""
    # one BLAS/torch thread per stage: on a shared machine, two threads of a tiny model mostly wait
    env = {**os.environ, "PYTHONPATH": str(work), "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    run = subprocess.run([DVC, "repro"], cwd=work, env=env, capture_output=True, text=True)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    ran = re.findall(r"Running stage '([^']+)'", out)
    print(f"dvc repro: {time.perf_counter() - start:.0f} s, ran {ran}")  # shown with pytest -s
    return ran, out


def _stage_output(out: str, stage: str) -> str:
    """What one stage printed: from its "Running stage" line to the next stage's line."""
    start = out.index(f"Running stage '{stage}'")
    following = [m.start() for m in re.finditer(r"(Running stage|Stage) '", out) if m.start() > start]
    return out[start : min(following, default=len(out))]


def _train_metrics(work: Path, run: str) -> dict[str, Any]:
    return json.loads((work / "metrics" / "train" / f"{run}.json").read_text())


@pytest.mark.slow  # dvc.yaml's stages at toy size: ~4 min on a loaded 2-core machine
def test_dvc_repro_reruns_exactly_what_a_params_change_determines(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    for rel in tracked.stdout.splitlines():
        if (REPO / rel).is_file() and rel != "dvc.lock":  # a fresh clone, no results of another run
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, work / rel)
    raw = copy.deepcopy(PARAMS)
    _write_params(work, raw)
    who = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "fresh clone"]):
        subprocess.run(cmd, cwd=work, check=True, capture_output=True, env={**os.environ, **who})

    first, _ = _repro(work)
    # the train and landscape stages each run their whole matrix (pipelines/matrix.py)
    assert {"smoke", "turbulence", "train", "landscape", "publish", "report"} <= set(first), first
    assert _train_metrics(work, "smoke-cnn-seed0")["epochs_run"] == 1

    # (a) the solver check is a measurement on the side: the store's bytes, and so every run, stay as they
    # were; only the cards, which quote the data stage's record of its build (time, machine), are rebuilt
    raw["smoke"]["solver_symmetry_check"] = True
    _write_params(work, raw)
    ran, out = _repro(work)
    assert sorted(ran) == ["publish", "smoke"], ran
    assert "solver_only_c4_error" in json.loads((work / "metrics" / "smoke.json").read_text())

    # (b) one more seed: its run, its landscape, and what aggregates every run: the report and the dataset
    # cards (they quote the models' scores over seeds); nothing else is trained
    raw["train"]["smoke"]["seeds"] = [0, 1]
    _write_params(work, raw)
    ran, out = _repro(work)
    expected = ["train", "landscape", "publish", "report"]
    assert sorted(ran) == sorted(expected), ran
    trained, measured = _stage_output(out, "train"), _stage_output(out, "landscape")
    for run in ("smoke-cnn-seed0", "turbulence-cnn-seed0"):  # inside the stage, only the new seed runs
        assert f"{run}: unchanged, skipped" in trained, trained
    assert "smoke-cnn-seed1: running" in trained, trained
    assert "smoke-cnn-seed0-best: unchanged, skipped" in measured, measured
    assert "smoke-cnn-seed1-best: running" in measured, measured
    assert _train_metrics(work, "smoke-cnn-seed1")["epochs_run"] == 1

    # (c) other physics: new data, so every smoke run trains again from its first epoch
    before = _train_metrics(work, "smoke-cnn-seed0")
    raw["smoke"]["buoyancy_unit"] = 0.008
    _write_params(work, raw)
    ran, out = _repro(work)
    assert {"smoke", "train"} <= set(ran), ran
    assert "turbulence" not in ran, ran  # the other dataset is untouched, and so are its runs
    printed = _stage_output(out, "train")
    assert "turbulence-cnn-seed0: unchanged, skipped" in printed, printed
    assert "resuming" not in printed and printed.count("starting over") == 2, printed
    after = _train_metrics(work, "smoke-cnn-seed0")  # rewritten, on the new data
    assert after["epochs_run"] == 1 and after["best_valid_rmse"] != before["best_valid_rmse"]
