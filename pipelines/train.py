"""Stage: train one model on one dataset with one seed; checkpoints, curves and test metrics.

    python -m pipelines.train --dataset smoke --model e2cnn --seed 0

Outputs: ``runs/<dataset>/<model>/seed<k>/{early,best,last}.pt`` (resumable), per-epoch curves in
``metrics/curves/<dataset>-<model>-seed<k>.json`` (DVC plots) and final metrics in
``metrics/train/<dataset>-<model>-seed<k>.json`` (DVC metrics): the test metric of the best checkpoint on
the real test split, in physical units, the parameter count and the equivariance error.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from loaders.smoke import smoke_plume
from loaders.turbulence import turbulence_sr
from models.equivariance import equivariance_error
from models.registry import build_model, count_parameters, default_hparams
from pipelines.cli import run_stage, run_stage_parser
from pipelines.params import StudyParams, TaskTrainParams, load_params
from pipelines.storage import params_key, write_json_atomic
from train.loop import evaluate, load_checkpoint, seed_everything, train, write_curves
from train.tasks import TASKS, task_for

DATA = {"smoke": Path("data/smoke_plume.zarr"), "turbulence": Path("data/turbulence.zarr")}


def run_name(dataset: str, model: str, seed: int) -> str:
    return f"{dataset}-{model}-seed{seed}"


def load_splits(dataset: str, section: TaskTrainParams, data: Path) -> dict[str, Dataset]:
    """train / valid / test datasets, normalised with the train-split statistics."""
    if dataset == "smoke":
        return {
            split: smoke_plume(data, level=section.level, split=split, normalise=section.normalise,
                               stride=section.window_stride if split == "train" else 1)
            for split in ("train", "valid", "test")
        }  # fmt: skip
    return {
        split: turbulence_sr(data, split=split, normalise=section.normalise)
        for split in ("train", "valid", "test")
    }


def output_scale(dataset: Dataset) -> float:
    """Factor from normalised to physical units of the target (1 without normalisation)."""
    normalisers = getattr(dataset, "normalisers", {}) or {}
    target = (
        "velocity" if "velocity" in normalisers else (dataset.pair[1] if hasattr(dataset, "pair") else None)
    )
    if target is None or target not in normalisers:
        return 1.0
    scale = normalisers[target].scale
    if not (scale == scale[0]).all() or (normalisers[target].shift != 0).any():
        raise ValueError("metrics in physical units need the 'scale' normalisation (one factor per field)")
    return float(scale[0])


def build(
    dataset: str, model_name: str, seed: int, params: StudyParams
) -> tuple[torch.nn.Module, dict[str, Any]]:
    task = TASKS[dataset]
    section: TaskTrainParams = getattr(params.train, dataset)
    hparams = {**default_hparams(task.model_task, model_name), **section.hparams.get(model_name, {})}
    seed_everything(seed)  # the initial weights depend on the seed only
    return build_model(task.model_task, model_name, **hparams), hparams


def run_training(
    dataset: str, model_name: str, seed: int, params: StudyParams, data: Path, runs: Path, metrics_dir: Path
) -> dict[str, Any]:
    section: TaskTrainParams = getattr(params.train, dataset)
    task = task_for(dataset, section.train_rollout)
    if model_name not in section.models:
        raise ValueError(f"train.{dataset}.models does not list {model_name!r}: {section.models}")
    splits = load_splits(dataset, section, data)
    model, hparams = build(dataset, model_name, seed, params)
    run_dir = runs / dataset / model_name / f"seed{seed}"
    key = params_key(
        {"section": section.model_dump(mode="json"), "model": model_name, "seed": seed, "hp": hparams}
    )
    start = time.perf_counter()
    result = train(model, task, splits["train"], splits["valid"], section.optimiser, run_dir, seed, key)
    seconds = time.perf_counter() - start

    model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])
    loader = DataLoader(splits["test"], batch_size=section.optimiser.batch_size)
    scale = output_scale(splits["test"])
    test_metric = evaluate(model, task, loader) * scale
    model.eval()
    probe = task.equivariance_probe(next(iter(DataLoader(splits["valid"], batch_size=2))))
    with torch.no_grad():
        equi = equivariance_error(model, probe, task.model_task)
    metrics = {
        f"test_{task.metric_name}": test_metric,
        f"best_valid_{task.metric_name}": result["best_valid"] * scale,
        "best_epoch": result["best_epoch"],
        "epochs_run": len(result["history"]["epoch"]),
        "stopped_early": result["stopped_early"],
        "parameters": count_parameters(model),
        "equivariance_error": equi,
        "train_seconds": seconds,
        "samples": {split: len(ds) for split, ds in splits.items()},
        "units_scale": scale,
    }
    name = run_name(dataset, model_name, seed)
    history = dict(result["history"])
    history["valid_metric"] = [v * scale for v in history["valid_metric"]]
    write_curves(metrics_dir / "curves" / f"{name}.json", history, {"model": model_name, "seed": seed})
    write_json_atomic(metrics_dir / "train" / f"{name}.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = run_stage_parser(__doc__.splitlines()[0], sorted(TASKS))
    args = parser.parse_args(argv)

    def body() -> dict:
        params = load_params(args.params)
        data = args.data or DATA[args.dataset]
        return run_training(args.dataset, args.model, args.seed, params, data, args.runs, args.metrics_dir)

    return run_stage("train", body)


if __name__ == "__main__":
    sys.exit(main())
