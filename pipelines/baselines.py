"""Stage: score the trivial predictors every trained model must beat, on the splits the models are scored on.

    python -m pipelines.baselines --params params.yaml --dataset smoke

Smoke: persistence (repeat the last input frame over the rollout) and zero; turbulence: trilinear and
spectral upsampling of the middle low-res frame (:mod:`train.baselines`). Scored by the task's own metric
code on the valid and test splits the fit stage uses (same windows, normalisation and units), with each
sample's error, the standard error and the count. Writes ``metrics/baselines/<dataset>.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from loaders.storage import write_json_atomic
from pipelines.cli import STORE_PATHS, run_stage
from pipelines.params import StudyParams, TaskTrainParams, load_params
from pipelines.run_config import split_spec
from train.baselines import smoke_baselines, sr_baselines, sr_factor
from train.data import load_splits, output_scale
from train.device import prepare
from train.runs import baseline_metrics
from train.tasks import TASKS, score, task_for


def run_baselines(dataset: str, params: StudyParams, data: Path, metrics_dir: Path) -> dict[str, Any]:
    """Every baseline on valid and test; smoke: at each trained level (``levels``, by config name), the
    first level's also under ``splits`` (the study's tables and cards)."""
    section: TaskTrainParams = getattr(params.train, dataset)
    device = prepare(params.compute.device)
    task = task_for(dataset)  # plain form: the baseline module is the whole prediction
    out: dict[str, Any] = {"dataset": dataset, "metric": task.metric_name}
    levels: list[int | None] = list(section.levels) if dataset == "smoke" else [None]
    scored = {lv: _score_level(dataset, section, data, device, task, lv) for lv in levels}
    out["splits"] = next(iter(scored.values()))
    if dataset == "smoke":
        out["levels"] = {f"E{lv}": splits for lv, splits in scored.items()}
    write_json_atomic(baseline_metrics(metrics_dir, dataset), out)
    return out


def _score_level(
    dataset: str, section: TaskTrainParams, data: Path, device: Any, task: Any, level: int | None
) -> dict[str, Any]:
    splits = load_splits(dataset, data, split_spec(section, level))
    if dataset == "smoke":
        modules = smoke_baselines()
    else:
        modules = sr_baselines(splits["train"], sr_factor(splits["train"]))
    batch = section.optimiser.batch_size
    modules = {name: module.to(device) for name, module in modules.items()}
    out = {}
    for split in ("valid", "test"):
        scale = output_scale(splits[split])
        out[split] = {
            name: score(module, task, splits[split], batch, scale, device) for name, module in modules.items()
        }
    return out


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {
        split: {name: {k: v for k, v in s.items() if k != "per_sample"} for name, s in scores.items()}
        for split, scores in result["splits"].items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(TASKS), required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, help="the dataset store (default: the dataset stage's output)")
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    args = parser.parse_args(argv)

    def body() -> dict:
        params = load_params(args.params)
        return run_baselines(args.dataset, params, args.data or STORE_PATHS[args.dataset], args.metrics_dir)

    return run_stage("baselines", body, _summary)


if __name__ == "__main__":
    sys.exit(main())
