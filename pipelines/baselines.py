"""Stage: score the trivial predictors every trained model must beat, on the splits the models are scored on.

    python -m pipelines.baselines --params params.yaml --dataset smoke

Each dataset's kind names its predictors (train/kinds.py): smoke: persistence (repeat the last input frame
over the rollout) and zero; turbulence: trilinear and spectral upsampling of the middle low-res frame and
a learned linear reference (:mod:`train.baselines`). Scored by the task's own metric
code on the valid and test splits the fit stage uses (same windows, normalisation and units), with each
sample's error, the standard error and the count; smoke also on the held-out Domain stores
(``domain``, all their windows, in the training split's normalisation). Writes
``metrics/baselines/<dataset>.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from loaders.storage import write_json_atomic
from pipelines.cli import run_stage
from pipelines.datasets import listed_spec
from pipelines.params import StudyParams, TaskTrainParams, load_params
from pipelines.run_config import has_levels, held_out_digest, split_spec
from train.data import load_splits, output_scale
from train.device import prepare
from train.kinds import task_for
from train.runs import baseline_metrics
from train.tasks import score


def run_baselines(dataset: str, params: StudyParams, data: Path, metrics_dir: Path) -> dict[str, Any]:
    """Every baseline on valid and test; smoke: at each trained level (``levels``, by config name), the
    first level's also under ``splits`` (the study's tables and cards)."""
    spec = listed_spec(dataset, params)
    section: TaskTrainParams = getattr(params.train, dataset)
    device = prepare(params.compute.device)
    task = task_for(dataset)  # plain form: the baseline module is the whole prediction
    out: dict[str, Any] = {"dataset": dataset, "metric": task.metric_name}
    levels: list[int | None] = list(section.levels) if has_levels(dataset) else [None]
    scored = {lv: _score_level(spec, dataset, section, data, device, lv) for lv in levels}
    held_out = held_out_digest(spec.held_out_stores(Path(data)))
    if held_out is not None:  # which Domain stores the "domain" scores are of
        out["domain_data_digest"] = held_out
    out["splits"] = next(iter(scored.values()))
    if has_levels(dataset):
        out["levels"] = {f"E{lv}": splits for lv, splits in scored.items()}
    write_json_atomic(baseline_metrics(metrics_dir, dataset), out)
    return out


def _score_level(
    spec: Any, dataset: str, section: TaskTrainParams, data: Path, device: Any, level: int | None
) -> dict[str, Any]:
    task = task_for(dataset)  # plain form: the baseline module is the whole prediction
    splits = load_splits(dataset, data, split_spec(section, level))
    modules = spec.train.make_baselines(splits)
    batch = section.optimiser.batch_size
    modules = {name: module.to(device) for name, module in modules.items()}
    scored = {"valid": splits["valid"], "test": splits["test"]}
    held_out = spec.held_out_stores(Path(data))
    if held_out:  # the Domain test, in the training split's normalisation like every run's
        scored["domain"] = spec.train.load_held_out(held_out, split_spec(section, level), splits["train"])
    out = {}
    for split in scored:
        scale = output_scale(scored[split])
        out[split] = {
            name: score(module, task, scored[split], batch, scale, device) for name, module in modules.items()
        }
    return out


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {
        split: {name: {k: v for k, v in s.items() if k != "per_sample"} for name, s in scores.items()}
        for split, scores in result["splits"].items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="one of params.yaml's datasets")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, help="the dataset store (default: the dataset stage's output)")
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    args = parser.parse_args(argv)

    def body() -> dict:
        params = load_params(args.params)
        data = args.data or listed_spec(args.dataset, params).store_path
        return run_baselines(args.dataset, params, data, args.metrics_dir)

    return run_stage("baselines", body, _summary)


if __name__ == "__main__":
    sys.exit(main())
