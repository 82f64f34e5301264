"""Stage: loss-landscape measurements of one trained checkpoint.

    python -m pipelines.landscape --dataset smoke --model e2cnn --seed 0 --checkpoint best   # one
    python -m pipelines.landscape      # every landscape.models x seeds x landscape.checkpoints (DVC)

The whole matrix runs through pipelines/matrix.py (unchanged ones skipped; in parallel on a LocalCluster of
``compute.n_workers`` single-threaded workers, or on the dask cluster at ``compute.scheduler_address``).

On a fixed subset of the training set (``landscape.subset_fraction``: the study's 20%; the loss's standard
error from its batch-to-batch spread), with the training loss (plus the model's regulariser) and the model
deterministic (normalisation layers on their running statistics, reported as ``norm_mode``; curvature
accumulated batch by batch), every model written in its family's shared coordinates (``parameterisation``,
train/flatness.py): sharpness over shared random unit directions (and filter-normalised ones), the top
Hessian eigenvalues by Lanczos, the spectral density by stochastic Lanczos quadrature, the trace by
Hutchinson, and the adaptive (|w|-scaled) Hessian and sharpness, invariant to rescalings (``invariance``
says per number what it is invariant to); with ``landscape.original_sharpness`` also the study code's
sharpness (normal directions divided by the parameter count, on the whole training split). Every
Hessian-vector product is at the checkpoint's weights, so each batch's gradient graph is built once per
measurement (``FlatLoss.resident_graphs``). With an L1
training loss (super-resolution) the MSE Hessian at the same weights is measured beside it (``mse_*``):
L1's Hessian has no Gauss-Newton term. Writes
``metrics/landscape/<run>-<checkpoint>.json`` (with the device, ``compute.device``, and library versions)
and the density as plot data in ``metrics/spectra/<run>-<checkpoint>.json``.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from loaders.storage import write_json_atomic
from pipelines.cli import run_stage, run_stage_parser
from pipelines.datasets import dataset_spec, listed_spec
from pipelines.matrix import Job, prune, run_matrix, stamp_of
from pipelines.params import LandscapeParams, StudyParams, load_params
from pipelines.run_config import (
    LANDSCAPE_CODE,
    check_models_declared,
    code_digest,
    hparams_of,
    run_id,
    run_identity,
    run_key,
    split_spec,
    task_of,
)
from train.checkpoints import CheckpointError, load_checkpoint
from train.curvature import (
    FlatLoss,
    hutchinson_trace,
    original_directions,
    random_directions,
    sharpness,
    spectral_density,
)
from train.data import build, load_splits
from train.device import device_info, prepare, task_on
from train.flatness import INVARIANCE, batch_loss_stderr, invariant_measures, shared_form
from train.tasks import SuperResolutionTask


def subset_size(n_train: int, p: LandscapeParams) -> int:
    """Samples the curvature is measured on: ``subset_fraction`` of the training set (at least
    ``subset_min_samples``, at most all of it)."""
    return min(n_train, max(p.subset_min_samples, math.ceil(p.subset_fraction * n_train - 1e-9)))


def fixed_subset(dataset: torch.utils.data.Dataset, p: LandscapeParams) -> list[tuple[torch.Tensor, ...]]:
    """The same training samples for every checkpoint and model: chosen by ``direction_seed``."""
    gen = torch.Generator().manual_seed(p.direction_seed)
    n = subset_size(len(dataset), p)
    picked = torch.randperm(len(dataset), generator=gen)[:n].sort().values.tolist()
    return list(DataLoader(Subset(dataset, picked), batch_size=p.subset_batch_size))


def norm_layers(model: torch.nn.Module) -> int:
    """Batch/instance/group norm layers: in the landscape they use running statistics (eval mode)."""
    kinds = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    return sum(isinstance(m, kinds) for m in model.modules())  # e2cnn's norms wrap torch ones


@contextmanager
def _progress(flat: FlatLoss, desc: str, total: int) -> Iterator[None]:
    """A progress bar (stderr) that ticks on every loss evaluation and Hessian-vector product of ``flat``
    during one measurement: the counting wraps the instance's methods, the maths is untouched."""
    bar = tqdm(total=total, desc=desc, unit="eval", leave=False, file=sys.stderr)

    def counted(method: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            bar.update(1)
            return result

        return wrapper

    flat.value, flat.hvp = counted(flat.value), counted(flat.hvp)  # type: ignore[method-assign]
    try:
        yield
    finally:
        del flat.value, flat.hvp  # back to the class's methods
        bar.close()


def measure(
    flat: FlatLoss, p: LandscapeParams, mse: FlatLoss | None = None, whole: FlatLoss | None = None
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Every landscape number of ``flat`` (and, given ``mse``, the MSE Hessian at the same weights; given
    ``whole``, the loss on the whole training split, the study code's sharpness)."""
    out: dict[str, Any] = {"parameters": flat.dim}
    t0 = time.perf_counter()
    sharp_evals = 1 + p.directions * len(p.displacements)
    with _progress(flat, "sharpness (directions x displacements)", sharp_evals):
        unit = sharpness(flat, random_directions(flat, p.directions, p.direction_seed), p.displacements)
    out["loss"] = unit["base_loss"]
    out["loss_stderr"] = batch_loss_stderr(flat)  # nan with a single batch
    out["sharpness"] = unit["sharpness"]
    if p.filter_normalised:
        dirs = random_directions(flat, p.directions, p.direction_seed, filter_normalised=True)
        with _progress(flat, "sharpness, filter-normalised", sharp_evals):
            out["sharpness_filter_normalised"] = sharpness(flat, dirs, p.displacements)["sharpness"]
    with flat.resident_graphs():  # every HVP is at w0: each batch's gradient graph is built once
        hessian, density = _hessian_measures(flat, p)
    out.update(hessian)
    if mse is not None:
        out.update(_mse_curvature(mse, p))
    if whole is not None:  # the study code's variant: directions / parameter count, the whole split
        directions = original_directions(whole, p.directions, p.direction_seed)
        with _progress(whole, "sharpness, the study code's (whole training split)", sharp_evals):
            out["sharpness_original"] = sharpness(whole, directions, p.displacements)["sharpness"]
        out["sharpness_original_samples"] = whole.samples
    out["invariance"] = {k: v for k, v in INVARIANCE.items() if k in out}
    out["seconds"] = time.perf_counter() - t0
    out["slq_nodes"], out["slq_weights"] = density["nodes"].tolist(), density["weights"].tolist()
    spectrum = [
        {"eigenvalue": float(g), "density": float(d)}
        for g, d in zip(density["grid"], density["density"], strict=True)
    ]
    return out, spectrum


def _hessian_measures(flat: FlatLoss, p: LandscapeParams) -> tuple[dict[str, Any], dict[str, Any]]:
    """The raw Hessian's spectrum and trace and the adaptive measures, and the SLQ density."""
    out: dict[str, Any] = {}
    sharp_evals = 1 + p.directions * len(p.displacements)
    # one set of Lanczos runs gives both the density (SLQ) and, from the first run, the top eigenvalues
    with _progress(flat, "Lanczos / SLQ probes (HVPs)", p.slq_probes * min(p.lanczos_steps, flat.dim)):
        density = spectral_density(flat, p.slq_probes, p.lanczos_steps, seed=p.direction_seed)
    top = density["ritz_per_probe"][0][::-1][: p.top_k]
    out["top_eigenvalues"] = top.tolist()
    out["max_eigenvalue"] = float(max(r.max() for r in density["ritz_per_probe"]))
    nodes, weights = density["nodes"], density["weights"]
    out["min_ritz_value"] = float(nodes.min())
    out["negative_mass"] = float(weights[nodes < 0].sum())  # share of the spectrum below zero (SLQ)
    with _progress(flat, "Hutchinson trace probes (HVPs)", p.hutchinson_probes):
        trace, trace_err = hutchinson_trace(flat, p.hutchinson_probes, seed=p.direction_seed + 2)
    out["trace"], out["trace_stderr"] = trace, trace_err
    out["hvp_count"] = density["matvecs"] + p.hutchinson_probes
    adaptive_hvps = min(p.lanczos_steps, flat.dim) + p.hutchinson_probes
    with _progress(flat, "adaptive Hessian and sharpness", adaptive_hvps + sharp_evals):
        out.update(invariant_measures(flat, p.top_k, p.lanczos_steps, p.hutchinson_probes, p.directions,
                                      p.displacements, p.direction_seed))  # fmt: skip
    return out, density


def _mse_curvature(mse: FlatLoss, p: LandscapeParams) -> dict[str, Any]:
    """The MSE Hessian at the L1-trained weights: L1 has no Gauss-Newton term and a ReLU net is piecewise
    linear in each weight, so L1's Hessian has a zero diagonal (trace 0, a spectrum symmetric about 0) and
    cannot show convexity; the MSE's Gauss-Newton part can."""
    mse_hvps = p.slq_probes * min(p.lanczos_steps, mse.dim) + p.hutchinson_probes
    with mse.resident_graphs(), _progress(mse, "MSE Hessian (SLQ and trace)", mse_hvps):
        density = spectral_density(mse, p.slq_probes, p.lanczos_steps, seed=p.direction_seed)
        trace, trace_err = hutchinson_trace(mse, p.hutchinson_probes, seed=p.direction_seed + 2)
    nodes, weights = density["nodes"], density["weights"]
    return {
        "mse_loss": mse.value(mse.w0), "mse_max_eigenvalue": float(nodes.max()),
        "mse_min_ritz_value": float(nodes.min()), "mse_negative_mass": float(weights[nodes < 0].sum()),
        "mse_trace": trace, "mse_trace_stderr": trace_err,
    }  # fmt: skip


def run_landscape(
    dataset: str, model_name: str, seed: int, checkpoint: str, params: StudyParams, data: Path, runs: Path,
    metrics_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    dataset_spec(dataset, params)  # a dask worker resolves a dataset of its own here
    section = getattr(params.train, dataset)
    run = run_id(dataset, model_name, seed, section)  # the first level
    path = run.checkpoint(runs, checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {path}; run the train stage first (dvc repro)")
    device = prepare(params.compute.device)  # model, batches and Hessian-vector products all run there
    hparams = hparams_of(dataset, model_name, section)
    model = build(dataset, model_name, seed, hparams).to(device)
    identity = run_identity(dataset, model_name, seed, section, hparams, Path(data), params.compute.device)
    try:  # only the weights this run's training wrote, intact
        state = load_checkpoint(path, map_location=device, run=identity)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; rerun the train stage first (dvc repro)") from None
    model.load_state_dict(state["model"])
    # one coordinate system per comparison (e2cnn/rsteer, cnn/gcnn/rgcnn): train/flatness.py
    model, parameterisation = shared_form(model)
    train_set = load_splits(dataset, data, split_spec(section))["train"]
    task = task_on(task_of(dataset, section, train_set), device)  # the loss the model was optimised on
    subset = fixed_subset(train_set, params.landscape)
    flat = FlatLoss(model, subset, task.loss)
    whole = None
    if params.landscape.original_sharpness:  # the study code's variant, on the whole training split
        batches = list(DataLoader(train_set, batch_size=params.landscape.subset_batch_size))
        whole = FlatLoss(model, batches, task.loss)
    mse = None
    if isinstance(task, SuperResolutionTask):  # trained on L1: the MSE Hessian beside it
        mse = FlatLoss(model, subset, lambda m, b: F.mse_loss(task.predict(m, b[0]), b[1]))
    result, spectrum = measure(flat, params.landscape, mse, whole)
    result.update(
        {
            "epoch": int(state["epoch"]),
            "checkpoint": checkpoint,
            "samples": flat.samples,  # training samples the loss and Hessian are measured on
            "train_samples": len(train_set),
            "sample_fraction": flat.samples / len(train_set),
            "batches": len(subset),
            # normalisation layers use their running statistics, so L(w) is deterministic (not batch stats)
            "norm_mode": "eval (running statistics)",
            "norm_layers": norm_layers(model),
            "parameterisation": parameterisation,
            **device_info(device),
        }
    )
    write_json_atomic(run.landscape_metrics(metrics_dir, checkpoint), result)
    write_json_atomic(run.spectrum(metrics_dir, checkpoint), spectrum)
    return result


def landscape_jobs(params: StudyParams, stores: dict[str, Path], runs: Path, metrics_dir: Path) -> list[Job]:
    """Every (dataset, model, seed, checkpoint) of ``landscape``, stamped with what it reads: the trained
    run's key (its identity: data, hparams, layout, device, training code), the checkpoint's bytes, the
    landscape params and the landscape's code."""
    code = code_digest(LANDSCAPE_CODE)
    measure_params = params.landscape.model_dump(mode="json", exclude={"models", "checkpoints"})
    runs, metrics_dir = Path(runs).resolve(), Path(metrics_dir).resolve()
    jobs = []
    for dataset, models in params.landscape.models.items():
        if not models:
            continue
        section = getattr(params.train, dataset)
        data = Path(stores[dataset]).resolve()
        for model_name in models:
            hparams = hparams_of(dataset, model_name, section)
            for seed in section.seeds:
                run = run_id(dataset, model_name, seed, section)  # the first level
                key = run_key(dataset, model_name, seed, section, hparams, data, params.compute.device)
                for checkpoint in params.landscape.checkpoints:
                    ckpt = run.checkpoint(runs, checkpoint)
                    stamp = stamp_of(
                        run=key, landscape=measure_params, code=code,
                        checkpoint=hashlib.sha256(ckpt.read_bytes()).hexdigest() if ckpt.is_file() else None,
                    )  # fmt: skip
                    outputs = (
                        run.landscape_metrics(metrics_dir, checkpoint),
                        run.spectrum(metrics_dir, checkpoint),
                    )
                    args = (dataset, model_name, seed, checkpoint, params, data, runs, metrics_dir)
                    name = f"{run.name}-{checkpoint}"
                    jobs.append(Job(name, "pipelines.landscape:run_landscape", args, stamp, outputs))
    return jobs


def landscape_matrix(params: StudyParams, stores: dict[str, Path], runs: Path, metrics_dir: Path) -> dict:
    """The landscape stage: every listed measurement, unchanged ones skipped, stale files removed."""
    check_models_declared(params.landscape.models, "landscape.models.{dataset}")
    jobs = landscape_jobs(params, stores, runs, metrics_dir)
    results = run_matrix(jobs, params.compute, Path(metrics_dir) / "landscape" / ".matrix.json")
    prune(
        [Path(metrics_dir) / "landscape", Path(metrics_dir) / "spectra"], [p for j in jobs for p in j.outputs]
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = run_stage_parser(__doc__.splitlines()[0], matrix=True)
    parser.add_argument("--checkpoint", choices=["early", "best"])
    args = parser.parse_args(argv)
    single = (args.dataset, args.model, args.seed, args.checkpoint)
    if any(v is not None for v in single) and None in single:
        parser.error(
            "give all of --dataset, --model, --seed and --checkpoint (one), or none (every one listed)"
        )

    def body() -> dict:
        params = load_params(args.params)
        if args.dataset is None:
            if args.data:
                raise ValueError("--data names one dataset's store: use it with --dataset/--model/--seed")
            stores = {d: dataset_spec(d, params).store_path for d in params.datasets}
            results = landscape_matrix(params, stores, args.runs, args.metrics_dir)
            return {k: ("skipped" if v == "skipped" else "measured") for k, v in results.items()
                    if k != "placement"}  # fmt: skip
        data = args.data or listed_spec(args.dataset, params).store_path
        return run_landscape(
            args.dataset, args.model, args.seed, args.checkpoint, params, data, args.runs, args.metrics_dir
        )

    return run_stage("landscape", body, lambda r: {k: v for k, v in r.items() if not k.startswith("slq_")})


if __name__ == "__main__":
    sys.exit(main())
