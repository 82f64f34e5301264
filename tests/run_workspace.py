"""A tiny finished train + landscape workspace (runs/, metrics/) for the fault-injection and kill tests:
one smoke model (cnn, 4 channels), 2 epochs of 2 batches, the tiny landscape of both checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.fit import train_matrix
from pipelines.landscape import landscape_matrix
from pipelines.params import StudyParams, parse_params
from tests.conftest import TINY_SMOKE, TINY_TURBULENCE

OPTIMISER = {"lr": 1e-3, "batch_size": 4, "max_epochs": 2, "early_epoch": 1, "max_train_batches": 2}
LANDSCAPE = {
    "models": {"smoke": ["cnn"], "turbulence": []}, "checkpoints": ["early", "best"],
    "subset_fraction": 0.01, "subset_min_samples": 2, "subset_batch_size": 2, "directions": 1,
    "displacements": [0.5], "top_k": 1, "lanczos_steps": 2, "slq_probes": 1, "hutchinson_probes": 1,
}  # fmt: skip
# the wall-clock values, the only ones two identical runs disagree on: a field of the train metrics, one of
# each landscape's metrics, and the file beside the checkpoints that carries a run's time across resumes
WALL_CLOCK_FIELDS = {"train": "train_seconds", "landscape": "seconds"}
WALL_CLOCK_FILE = "train_seconds.json"


def workspace_params(seeds: tuple[int, ...] = (0, 1), hidden: int = 4) -> StudyParams:
    return parse_params({
        # in-process (n_workers 1): the kill tests fork this process, where a LocalCluster cannot start
        "compute": {"device": "cpu", "n_workers": 1},
        "smoke": TINY_SMOKE,
        "turbulence": TINY_TURBULENCE,
        "train": {"smoke": {"models": ["cnn"], "seeds": list(seeds), "window_stride": 2,
                            "hparams": {"cnn": {"hidden": hidden}}, "optimiser": OPTIMISER}},
        "landscape": LANDSCAPE,
    })  # fmt: skip


def run_stages(params: StudyParams, store: Path, root: Path) -> tuple[dict, dict]:
    """The train stage then the landscape stage, as ``dvc repro`` runs them, on ``root``."""
    stores = {"smoke": store}
    trained = train_matrix(params, stores, root / "runs", root / "metrics")
    return trained, landscape_matrix(params, stores, root / "runs", root / "metrics")


def snapshot(root: Path) -> dict[str, Any]:
    """Every output file's bytes by relative path (stamps files and dead writers' temporaries, which are
    hidden, left out); the wall-clock values removed, each JSON file otherwise compared byte for byte."""
    found: dict[str, Any] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(root).as_posix()
        if path.name == WALL_CLOCK_FILE:
            found[rel] = "wall clock"
            continue
        data = path.read_bytes()
        kind = path.parent.name
        if kind in WALL_CLOCK_FIELDS:
            record = json.loads(data)
            assert WALL_CLOCK_FIELDS[kind] in record, rel
            record[WALL_CLOCK_FIELDS[kind]] = "wall clock"
            data = json.dumps(record).encode()
        found[rel] = data
    return found


def differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in {*a, *b} if a.get(k) != b.get(k))
