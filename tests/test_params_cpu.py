"""The CPU preset (params.cpu.yaml): valid, the whole comparison at the blog's seed counts, different from
the embedded default only in the training budget it exists for; benchmarks/study_cost.py projects it with its
own sizes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch

from models.catalog import MODEL_NAMES
from pipelines.params import load_params

REPO = Path(__file__).resolve().parents[1]
SMOKE_MODELS, SR_MODELS = set(MODEL_NAMES["smoke"]), set(MODEL_NAMES["sr"])  # every built-in model
# every key the preset changes, with its value there: anything else must equal params.yaml
INTENDED = {
    "turbulence.splits.valid": 6,
    "train.smoke.train_rollout": 3,
    "train.smoke.valid_stride": 1,
    "train.smoke.optimiser.lr": 2e-3,
    "train.smoke.optimiser.batch_size": 8,
    "train.smoke.optimiser.max_epochs": 40,
    "train.smoke.optimiser_overrides.gmcnn.max_epochs": 40,
    "train.smoke.optimiser.max_train_batches": None,
    "train.turbulence.optimiser.max_epochs": 50,
    # a plateau is 5 epochs that together improve the best by under 1% (the default stops on any gain)
    "train.smoke.optimiser.min_improvement": 0.01,
    "train.turbulence.optimiser.min_improvement": 0.01,
    # the landscape's SLQ at the tolerance two independent runs meet (docs/study.md); the default is cheaper
    "landscape.lanczos_steps": 20,
    "landscape.slq_probes": 2,
    "landscape.hutchinson_probes": 4,
    # the blog's seed counts (docs/study.md's power calculation), for the models of a comparison
    "train.smoke.models": ["cnn", "gcnn", "rgcnn", "e2cnn", "rsteer"],
    "train.smoke.seeds": [0, 1, 2, 3, 4],
    "train.turbulence.seeds": [0, 1, 2, 3, 4, 5],
    # the level sweep is the default's; the CPU preset spends its 3 hours on E_0's longer runs
    "train.smoke.levels": [0],
    "train.smoke.sweep_models": None,
}


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def test_cpu_preset_trains_every_compared_model_with_the_blogs_seeds() -> None:
    cpu = load_params(REPO / "params.cpu.yaml")
    # every built-in but gmcnn (in no comparison, ~40% of the training): the default trains it
    assert set(cpu.train.smoke.models) == SMOKE_MODELS - {"gmcnn"}
    assert set(cpu.train.turbulence.models) == SR_MODELS
    assert (len(cpu.train.smoke.seeds), len(cpu.train.turbulence.seeds)) == (5, 6)
    for section in (cpu.train.smoke, cpu.train.turbulence):
        opt = section.optimiser
        # a plateau can end the run: patience fits well inside the budget after the early checkpoint
        assert opt.early_epoch + 2 * opt.patience < opt.max_epochs
    assert cpu.landscape.models == load_params(REPO / "params.yaml").landscape.models


def test_cpu_preset_differs_from_the_default_only_where_intended() -> None:
    cpu = _leaves(load_params(REPO / "params.cpu.yaml").model_dump())
    default = _leaves(load_params(REPO / "params.yaml").model_dump())
    assert cpu.keys() == default.keys()
    changed = {k: cpu[k] for k in cpu if cpu[k] != default[k]}
    assert changed == INTENDED
    # the budget only grows: more epochs and windows than the default, fewer than the study
    study = load_params(REPO / "params.study.yaml")
    for dataset in ("smoke", "turbulence"):
        epochs = cpu[f"train.{dataset}.optimiser.max_epochs"]
        assert default[f"train.{dataset}.optimiser.max_epochs"] < epochs
        assert epochs <= getattr(study.train, dataset).optimiser.max_epochs
    assert default["train.smoke.train_rollout"] < cpu["train.smoke.train_rollout"] < study.smoke.output_frames


def test_study_cost_projects_the_cpu_preset_with_its_own_sizes() -> None:
    spec = importlib.util.spec_from_file_location("study_cost", REPO / "benchmarks" / "study_cost.py")
    cost = importlib.util.module_from_spec(spec)
    sys.modules["study_cost"] = cost  # dataclasses look their module up there
    spec.loader.exec_module(cost)  # type: ignore[union-attr]
    params = load_params(REPO / "params.cpu.yaml")
    # 100 kept frames: 70 / 15 / 15; windows of 1 + 6 frames, 4 rotated series, train stride 2
    assert cost.split_sizes(params, "smoke") == {"train": 128, "valid": 36, "test": 36}
    unit = [
        cost.Timing("smoke", "cnn", 1, 1.0, 1.0, 1.0, 1.0),
        cost.Timing("turbulence", "cnn", 1, 1.0, 2.0, 1.0, 1.0),
    ]
    jobs = cost.project_jobs(params, unit)
    assert jobs["train_smoke"] == [40 * (16 + 5) + 5.0] * 5  # 128 / 8 steps, 5 valid and 5 test batches
    assert jobs["train_turbulence"] == [50 * (12 + 3 * 2) + 3 * 2.0] * 6  # 24 / 2 steps; 3 valid, 3 test
    torch.set_num_threads(1)
    timing = cost.time_model(params, "turbulence", "cnn", torch.device("cpu"), 1, 1, 1)
    assert timing.parameters == 10_584  # the preset's hidden 8 / 3 layers, not the registry's 126,096
