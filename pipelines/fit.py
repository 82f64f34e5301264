"""Stage: train one model on one dataset with one seed; checkpoints, curves and test metrics.

    python -m pipelines.fit --dataset smoke --model e2cnn --seed 0   # one run (the first listed level)
    python -m pipelines.fit --dataset smoke --model e2cnn --seed 0 --level 5   # one run at E_5
    python -m pipelines.fit                                          # every (dataset, model, seed) listed

Without ``--dataset/--model/--seed`` (the DVC stage) it runs the whole matrix of params.yaml through
pipelines/matrix.py: unchanged runs skipped, the rest in this process or, with
``compute.scheduler_address``, in parallel on the dask cluster's workers.

Smoke runs are one per (level, model, seed): ``train.smoke.levels`` (every model at the first,
``sweep_models`` at the others); the files of a level other than E_0 carry it (``smoke-E5``,
``runs/smoke/E5/...``, train/runs.py). Outputs: ``runs/<dataset>/<model>/seed<k>/{early,best,last}.pt``
(verified on every read, resumable; ``train_seconds.json`` beside them holds the run's wall time),
per-epoch curves in ``metrics/curves/<dataset>-<model>-seed<k>.json`` (DVC plots) and final metrics in
``metrics/train/<dataset>-<model>-seed<k>.json`` (DVC metrics): the test metric of the best checkpoint on
the real test split, in physical units, with each test sample's error, their standard error and count
(``test_<metric>_se``, ``test_samples``), the parameter count and the equivariance error of the prediction
(the residual form included) and of the network alone, and the device it ran on (``compute.device``) with
library versions.
A dataset with held-out stores (smoke: ``data/smoke_domain/``, Wang et al. 2022's *Domain* protocol) is also
scored on every window of them in the training split's normalisation: ``test_domain_<metric>`` with its
standard error, per-sample errors, sample count, distinct simulations / windows and the held-out data's
digest, which is part of the run's train stamp (not of its checkpoints' identity: new held-out data
re-scores a finished run without retraining it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from loaders.scratch import params_key
from loaders.storage import write_json_atomic
from models.equivariance import equivariance_error
from models.registry import count_parameters
from pipelines.cli import run_stage, run_stage_parser
from pipelines.datasets import dataset_spec, listed_spec
from pipelines.matrix import Job, prune, run_matrix
from pipelines.params import StudyParams, TaskTrainParams, load_params
from pipelines.run_config import (
    check_models_declared,
    held_out_digest,
    hparams_of,
    optimiser_config,
    run_id,
    run_identity,
    run_key,
    run_levels,
    split_spec,
    task_of,
)
from train.data import build, load_splits, output_scale
from train.device import device_info, prepare, task_on, to_device
from train.loop import load_checkpoint, train, write_curves
from train.runs import metric_key
from train.tasks import score


def run_training(
    dataset: str, model_name: str, seed: int, params: StudyParams, data: Path, runs: Path, metrics_dir: Path,
    level: int | None = None, held_out: list[Path] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One run; ``level`` (a dataset with levels, as smoke) defaults to the first of its ``levels``. A
    dataset with held-out stores (``held_out``, default: those beside ``data``; smoke: the Domain test)
    is scored on them too."""
    spec = dataset_spec(dataset, params)  # a dask worker resolves a dataset of its own here
    section: TaskTrainParams = getattr(params.train, dataset)
    if model_name not in section.models:
        raise ValueError(f"train.{dataset}.models does not list {model_name!r}: {section.models}")
    spec.check_trainable(params)
    device = prepare(params.compute.device)  # a GPU that is not there fails here, before any work
    run = run_id(dataset, model_name, seed, section, level)
    if run.level not in run_levels(dataset, section, model_name):
        raise ValueError(
            f"train.{dataset}.levels / sweep_models do not train {model_name!r} at level {level}"
        )
    splits = load_splits(dataset, data, split_spec(section, run.level))
    task = task_on(task_of(dataset, section, splits["train"]), device)
    hparams = hparams_of(dataset, model_name, section)
    model = build(dataset, model_name, seed, hparams).to(device)  # initial weights drawn on the CPU
    run_dir = run.run_dir(runs)
    identity = run_identity(
        dataset, model_name, seed, section, hparams, Path(data), params.compute.device, run.level
    )
    settings = optimiser_config(section, model_name)
    result = train(
        model, task, splits["train"], splits["valid"], settings, run_dir, seed, identity, device=device
    )

    best = load_checkpoint(run_dir / "best.pt", map_location=device, run=identity)  # verified: this run's
    model.load_state_dict(best["model"])
    scale = output_scale(splits["test"])
    test = score(model, task, splits["test"], settings.batch_size, scale, device=device)
    held_out = spec.held_out_stores(Path(data)) if held_out is None else held_out
    domain = {}
    if held_out:  # simulations never trained on, in the training split's units and normalisation
        domain_set = spec.train.load_held_out(held_out, split_spec(section, run.level), splits["train"])
        scored = score(model, task, domain_set, settings.batch_size, scale, device=device)
        domain = domain_metrics(scored, task.metric_name, domain_set, held_out)
    model.eval()
    probe = task.equivariance_probe(to_device(next(iter(DataLoader(splits["valid"], batch_size=2))), device))
    with torch.no_grad():
        equi = equivariance_error(task.as_module(model), probe, task.model_task)
        # a residual model's exactly equivariant trivial part dilutes the network's own symmetry breaking
        equi_net = equivariance_error(model, probe, task.model_task)
    name = task.metric_name
    key = metric_key(name)
    metrics = {
        key: test[name],
        f"{key}_se": test["se"],  # standard error of the per-sample mean over the test samples
        f"{key}_sample_mean": test["sample_mean"],
        "test_samples": test["n"],
        # rotated copies of one simulation count once (docs/study.md, effective sample size)
        **{f"test_distinct_{k}": v for k, v in getattr(splits["test"], "effective_size", dict)().items()},
        f"{key}_per_sample": test["per_sample"],  # same order for every run: paired comparisons
        **domain,
        "residual": section.residual,
        **({"level": run.level} if run.level is not None else {}),
        metric_key(name, "best_valid"): result["best_valid"] * scale,
        "best_epoch": result["best_epoch"],
        "epochs_run": len(result["history"]["epoch"]),
        "stopped_early": result["stopped_early"],
        "parameters": count_parameters(model),
        "equivariance_error": equi,  # of the whole prediction
        "equivariance_error_network": equi_net,  # of the network alone (a residual model's correction)
        # wall clock (every epoch's, a resumed run's earlier ones too): the one value that differs between
        # two identical runs; the checkpoints hold none (train/loop.py keeps it in train_seconds.json)
        "train_seconds": result["train_seconds"],
        "samples": {split: len(ds) for split, ds in splits.items()},
        "units_scale": scale,
        **device_info(device),  # device, device_name, deterministic_algorithms, library versions
    }
    history = dict(result["history"])
    history["valid_metric"] = [v * scale for v in history["valid_metric"]]
    write_curves(
        run.curves(metrics_dir),
        history,
        {"model": model_name, "seed": seed} | ({"level": run.level} if run.level is not None else {}),
    )
    write_json_atomic(run.train_metrics(metrics_dir), metrics)
    return metrics


def domain_metrics(scored: dict[str, Any], metric: str, dataset: Any, stores: list[Path]) -> dict[str, Any]:
    """A held-out test's metrics (``test_domain_<metric>``): its value, standard error, count, per-sample
    errors, the distinct simulations and windows behind it and the held-out data's digest."""
    key, size = metric_key(metric, "test_domain"), dataset.effective_size()
    return {
        key: scored[metric],
        f"{key}_se": scored["se"],
        f"{key}_per_sample": scored["per_sample"],
        "domain_samples": scored["n"],
        "domain_distinct_simulations": size["simulations"],
        "domain_distinct_windows": size["windows"],
        "domain_data_digest": held_out_digest(stores),
    }


def training_jobs(params: StudyParams, stores: dict[str, Path], runs: Path, metrics_dir: Path) -> list[Job]:
    """Every (dataset, [level,] model, seed) of ``train``, with absolute paths (a worker has its own
    directory), stamped with the run's key (pipelines/run_config.py): the same identity its checkpoints
    record."""
    jobs = []
    for dataset, data in stores.items():
        section: TaskTrainParams = getattr(params.train, dataset)
        spec = dataset_spec(dataset, params)
        runs_of = [(m, lv) for m in section.models for lv in run_levels(dataset, section, m)]
        for (model_name, level), seed in ((r, s) for r in runs_of for s in section.seeds):
            run = run_id(dataset, model_name, seed, section, level)
            hparams = hparams_of(dataset, model_name, section)
            device = params.compute.device
            stamp = run_key(dataset, model_name, seed, section, hparams, Path(data), device, level)
            held_out = [p.resolve() for p in spec.held_out_stores(Path(data))]
            if held_out:  # new held-out data re-scores the run (its checkpoints stay valid)
                stamp = params_key({"run": stamp, "held_out": held_out_digest(held_out)})
            args = (dataset, model_name, seed, params, Path(data).resolve(), runs.resolve(),
                    metrics_dir.resolve(), level, held_out)  # fmt: skip
            # every checkpoint is an output: the landscape stage reads early.pt and best.pt
            ckpts = tuple(run.run_dir(args[5]) / name for name in ("early.pt", "best.pt", "last.pt"))
            outputs = (run.train_metrics(args[6]), run.curves(args[6]), *ckpts)
            jobs.append(Job(run.name, "pipelines.fit:run_training", args, stamp, outputs))
    return jobs


def train_matrix(params: StudyParams, stores: dict[str, Path], runs: Path, metrics_dir: Path) -> dict:
    """The train stage: every listed run, unchanged ones skipped; stale per-run files of runs no longer
    listed are removed from metrics/train and metrics/curves."""
    check_models_declared({d: getattr(params.train, d).models for d in stores}, "train.{dataset}.models")
    jobs = training_jobs(params, stores, runs, metrics_dir)
    results = run_matrix(jobs, params.compute, Path(metrics_dir) / "train" / ".matrix.json")
    keep = [p for j in jobs for p in j.outputs]
    prune([Path(metrics_dir) / "train", Path(metrics_dir) / "curves"], keep)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = run_stage_parser(__doc__.splitlines()[0], matrix=True)
    args = parser.parse_args(argv)
    single = (args.dataset, args.model, args.seed)
    if any(v is not None for v in single) and None in single:
        parser.error("give all of --dataset, --model and --seed (one run), or none (every listed run)")

    def body() -> dict:
        params = load_params(args.params)
        if args.dataset is None:
            stores = {d: dataset_spec(d, params).store_path for d in params.datasets}
            if args.data:
                raise ValueError("--data names one dataset's store: use it with --dataset/--model/--seed")
            results = train_matrix(params, stores, args.runs, args.metrics_dir)
            return {k: ("skipped" if v == "skipped" else "trained") for k, v in results.items()
                    if k != "placement"}  # fmt: skip
        data = args.data or listed_spec(args.dataset, params).store_path
        return run_training(
            args.dataset, args.model, args.seed, params, data, args.runs, args.metrics_dir, args.level
        )

    return run_stage("train", body)


if __name__ == "__main__":
    sys.exit(main())
