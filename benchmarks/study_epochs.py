"""Measured per-epoch training times of the study preset on one device, beside study_cost.py's CPU projection.

For each model of the preset (params.study.yaml; ``--models`` to restrict) it trains one seed (the
section's first) at the preset's sizes with the training stage's own loop (``train.loop.train``: Adam,
the preset's batch size, validation pass, checkpoint writes) for ``--epochs`` epochs, timing each epoch
(``torch.cuda.synchronize`` on a GPU), then times one validation pass and one landscape Hessian-vector
product (``train.curvature.FlatLoss.hvp``). ``--max-batches`` caps the training steps of an epoch (a
timing sample); the per-epoch figure is then extrapolated to the preset's steps.

Data: random tensors of the preset's split sizes, shapes and dtype (float32), with the preset's task
(residual form, rollout). Timing on random data is valid: a step's cost depends on the shapes, never on
the values (no data-dependent branches or sparsity in these models). The batches are in memory, so loading
is not timed; ``--smoke PATH`` / ``--turbulence PATH`` train on a real store instead (the study needs them
at study scale), loading included.

Per model it prints the parameters, the measured seconds per epoch at the preset's batch counts, and the
CPU projection of the same epoch by benchmarks/study_cost.py (one timed step per model on the CPU, scaled
from 1 sample; ``epoch_seconds``). From the measured step / eval / HVP times it projects the whole preset
on this device with study_cost.py's ``project_jobs`` (the models measured only). All device measurements
run first, then the CPU projections (``--no-cpu-projection`` skips them); ``--budget-seconds`` starts no
model of either phase that would end past the budget (estimated from the last one of its dataset), and
prints what it skipped.
The JSON (``--out``) is rewritten after every model, so a run cut short keeps what it measured. It ends
with ``ratio: <CPU projected per-epoch total / measured per-epoch total>`` (about 1 on a CPU).

``--check-determinism``: instead, train each model a few steps twice on ``--device`` with the switches
``train.device.prepare`` sets and compare every parameter and buffer bitwise (exit 1 when they differ).

    python benchmarks/study_epochs.py --device cuda --budget-seconds 400 --out out/study_epochs.json
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))  # study_cost.py, beside this file
from study_cost import (  # noqa: E402
    Timing,
    epoch_batches,
    epoch_seconds,
    preset_task,
    project_jobs,
    random_batch,
    split_sizes,
    time_model,
    total_seconds,
)

from loaders.storage import write_json_atomic  # noqa: E402
from models.registry import count_parameters  # noqa: E402
from pipelines.params import StudyParams, load_params  # noqa: E402
from pipelines.run_config import hparams_of, optimiser_config, split_spec, task_of  # noqa: E402
from train.curvature import FlatLoss  # noqa: E402
from train.data import build, load_splits  # noqa: E402
from train.device import device_info, loader_options, prepare, task_on  # noqa: E402
from train.loop import OptimiserConfig, evaluate, train  # noqa: E402

DATASETS = ("smoke", "turbulence")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_splits(params: StudyParams, dataset: str) -> dict[str, Dataset]:
    """train / valid / test of the preset's sizes, random values of the preset's shapes."""
    return {
        split: TensorDataset(*random_batch(params, dataset, n))
        for split, n in split_sizes(params, dataset).items()
    }


def data_for(params: StudyParams, dataset: str, store: Path | None, device: torch.device) -> tuple[dict, Any]:
    """The splits and the task (on ``device``): a real store with its own task scales, or random data."""
    if store is None:
        return random_splits(params, dataset), task_on(preset_task(params, dataset), device)
    section = getattr(params.train, dataset)
    splits = load_splits(dataset, store, split_spec(section))
    return splits, task_on(task_of(dataset, section, splits["train"]), device)


def _settings(
    params: StudyParams, dataset: str, epochs: int, max_batches: int | None, steps: int | None = None
) -> OptimiserConfig:
    settings = optimiser_config(getattr(params.train, dataset))
    caps = [c for c in (settings.max_train_batches, max_batches, steps) if c]
    return dataclasses.replace(settings, max_epochs=epochs, max_train_batches=min(caps) if caps else None)


def measure_model(
    params: StudyParams, dataset: str, name: str, device: torch.device, splits: dict, task: Any,
    epochs: int, max_batches: int | None, hvp_batch: int,
) -> tuple[Timing, dict[str, Any]]:  # fmt: skip
    """Train one seed for ``epochs`` epochs, timing each; then one validation pass and one HVP."""
    section = getattr(params.train, dataset)
    seed = section.seeds[0]
    model = build(dataset, name, seed, hparams_of(dataset, name, section))
    settings = _settings(params, dataset, epochs, max_batches)
    size = settings.batch_size
    full_steps = len(DataLoader(splits["train"], batch_size=size, drop_last=len(splits["train"]) > size))
    steps = min(full_steps, settings.max_train_batches or full_steps)
    marks: list[float] = []

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        _sync(device)
        marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as run_dir:
        _sync(device)
        start = time.perf_counter()
        train(model, task, splits["train"], splits["valid"], settings, Path(run_dir), seed, "timing",
              on_epoch, device)  # fmt: skip
    sampled = [b - a for a, b in zip([start, *marks], marks, strict=False)]
    epoch = statistics.mean(sampled[1:] or sampled)  # the first epoch also pays the warm-up

    valid_loader = DataLoader(splits["valid"], batch_size=size, **loader_options(device, 0))
    _sync(device)
    t0 = time.perf_counter()
    evaluate(model, task, valid_loader, device)
    _sync(device)
    valid_s = time.perf_counter() - t0
    per_sample = valid_s / len(splits["valid"])  # no-gradient rollout: also a landscape loss evaluation

    subset = params.landscape.subset_batch_size
    batch = next(iter(DataLoader(splits["train"], batch_size=min(hvp_batch, len(splits["train"])))))
    flat = FlatLoss(model, [batch], task.loss)
    v = torch.randn(flat.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(flat.w0)
    if device.type == "cuda":
        flat.hvp(flat.w0, v)  # warm-up: the double-backward kernels are new to this process
    _sync(device)
    t0 = time.perf_counter()
    flat.hvp(flat.w0, v)
    _sync(device)
    hvp = (time.perf_counter() - t0) * subset / len(batch[0])  # linear in the samples

    timing = Timing(dataset, name, count_parameters(model), max(epoch - valid_s, 0.0) / steps,
                    per_sample * size, hvp, per_sample * subset)  # fmt: skip
    row = {
        "dataset": dataset, "model": name, "seed": seed, "parameters": timing.parameters,
        "train_steps_timed": steps, "train_steps_preset": epoch_batches(params, dataset)[0],
        "valid_samples": len(splits["valid"]), "epochs_timed": len(sampled), "epoch_seconds_sampled": sampled,
        "valid_pass_seconds": valid_s, "hvp_samples_timed": len(batch[0]),
        "step_seconds": timing.step, "eval_seconds": timing.eval, "hvp_seconds": timing.hvp,
        "loss_seconds": timing.loss, "epoch_seconds": epoch_seconds(params, timing),
    }  # fmt: skip
    return timing, row


def check_determinism(
    params: StudyParams, models: list[tuple[str, str]], device: torch.device, steps: int
) -> list[dict[str, Any]]:
    """Each model trained ``steps`` steps twice from the same seed: bitwise equal parameters and buffers?"""
    out = []
    for dataset, name in models:
        section = getattr(params.train, dataset)
        settings = _settings(params, dataset, 1, None, steps)
        states, caught = [], set()
        for _ in range(2):
            splits, task = data_for(params, dataset, None, device)
            model = build(dataset, name, section.seeds[0], hparams_of(dataset, name, section))
            with warnings.catch_warnings(record=True) as seen, tempfile.TemporaryDirectory() as run_dir:
                warnings.simplefilter("always")  # ops with no deterministic kernel only warn (warn_only)
                result = train(model, task, splits["train"], splits["valid"], settings, Path(run_dir),
                               section.seeds[0], "determinism", device=device)  # fmt: skip
            caught |= {str(w.message).splitlines()[0][:200] for w in seen}
            states.append(({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, result))
        (a, ra), (b, rb) = states
        same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        same = same and ra["history"] == rb["history"]
        differing = [k for k in a if k in b and not torch.equal(a[k], b[k])]
        out.append({"dataset": dataset, "model": name, "steps": settings.max_train_batches,
                    "bitwise_equal": same, "differing_tensors": differing[:10],
                    "warnings": sorted(caught)})  # fmt: skip
        verdict = "bitwise equal" if same else "DIFFERENT: " + ", ".join(differing[:3])
        note = f"  ({len(caught)} warning(s))" if caught else ""
        print(f"  {dataset:10s} {name:7s} {verdict}{note}", flush=True)
    return out


def selected(params: StudyParams, names: list[str] | None) -> list[tuple[str, str]]:
    models = [(d, m) for d in DATASETS for m in getattr(params.train, d).models if not names or m in names]
    if not models:
        raise SystemExit(f"--models {names} matches no model of the preset")
    return models


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.3f} h"


def summary(
    params: StudyParams, measured: list[Timing], cpu: dict[tuple[str, str], Timing]
) -> dict[str, Any]:
    """Whole-preset projections (1 device, the models measured only) from the measured and the CPU
    timings; the ratio compares the per-epoch totals of the models that have both."""

    def total(timings: list[Timing]) -> float:
        return total_seconds(project_jobs(params, timings), 1)

    paired = [t for t in measured if (t.dataset, t.model) in cpu]
    epoch_paired = sum(epoch_seconds(params, t) for t in paired)
    epoch_cpu = sum(epoch_seconds(params, t) for t in cpu.values())
    return {
        "models_measured": len(measured),
        "models_cpu_projected": len(cpu),
        "epoch_seconds_measured_total": sum(epoch_seconds(params, t) for t in measured),
        "epoch_seconds_measured_total_cpu_projected_models": epoch_paired,
        "epoch_seconds_cpu_projected_total": epoch_cpu,
        "study_seconds_this_device": total(measured) if measured else 0.0,
        "study_seconds_cpu_projected": total(list(cpu.values())) if cpu else 0.0,
        "ratio": epoch_cpu / epoch_paired if paired and epoch_paired > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.study.yaml")
    parser.add_argument("--models", nargs="*", default=None, help="restrict to these model names")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per model (the first warms up)")
    parser.add_argument("--max-batches", type=int, default=None, help="cap on training steps per epoch")
    parser.add_argument("--budget-seconds", type=float, default=None, help="start no model ending later")
    parser.add_argument("--hvp-batch", type=int, default=None, help="samples per timed HVP (CPU: 1)")
    parser.add_argument("--smoke", type=Path, default=None, help="smoke store (default: random data)")
    parser.add_argument("--turbulence", type=Path, default=None, help="turbulence store (default: random)")
    parser.add_argument("--no-cpu-projection", action="store_true", help="skip study_cost.py's CPU timing")
    parser.add_argument("--check-determinism", action="store_true", help="only the bitwise rerun check")
    parser.add_argument("--determinism-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("study_epochs.json"))
    args = parser.parse_args()
    if args.epochs < 1 or (args.max_batches is not None and args.max_batches < 1):
        raise SystemExit("--epochs and --max-batches must be at least 1")
    stores = {"smoke": args.smoke, "turbulence": args.turbulence}
    for dataset, store in stores.items():
        if store is not None and not store.exists():
            raise SystemExit(f"--{dataset} {store}: no such store")
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    models = selected(params, args.models)
    device = prepare(args.device)  # on a GPU: the deterministic switches the stages use
    info = device_info(device)
    report: dict[str, Any] = {"device": info, "preset": str(args.params), "threads": torch.get_num_threads()}
    print(f"device {info['device']} ({info['device_name']}), torch {info['versions']['torch']},"
          f" {torch.get_num_threads()} threads; preset {args.params}")  # fmt: skip
    if args.check_determinism:
        report["determinism"] = check_determinism(params, models, device, args.determinism_steps)
        write_json_atomic(args.out, report)
        ok = all(r["bitwise_equal"] for r in report["determinism"])
        print(f"determinism: {'all bitwise equal' if ok else 'MISMATCH'}; {args.out}")
        raise SystemExit(0 if ok else 1)

    hvp_batch = args.hvp_batch or (1 if device.type == "cpu" else params.landscape.subset_batch_size)
    report.update({
        "data": {d: str(s) if s else "random tensors of the preset's shapes" for d, s in stores.items()},
        "epochs": args.epochs, "max_batches": args.max_batches, "budget_seconds": args.budget_seconds,
        "models": [], "skipped": [],
    })  # fmt: skip
    start, measured, cpu, rows = time.perf_counter(), [], {}, {}
    data: dict[str, tuple[dict, Any]] = {}

    def fits(phase: str, dataset: str, name: str, estimate: float) -> bool:
        elapsed = time.perf_counter() - start
        if args.budget_seconds is None or elapsed + estimate <= args.budget_seconds:
            return True
        report["skipped"].append({"phase": phase, "dataset": dataset, "model": name,
                                  "elapsed_seconds": elapsed, "estimated_seconds": estimate})  # fmt: skip
        print(f"  skipped {phase} of {dataset} {name}: {elapsed:.0f} s elapsed + ~{estimate:.0f} s"
              f" > budget {args.budget_seconds:.0f} s", flush=True)  # fmt: skip
        return False

    last: dict[str, float] = {}  # the last model's seconds per dataset: the next one's estimate
    for dataset, name in models:  # first every measurement on the device, then the CPU projections
        if not fits("measurement", dataset, name, last.get(dataset, 0.0)):
            continue
        t0 = time.perf_counter()
        if dataset not in data:
            data[dataset] = data_for(params, dataset, stores[dataset], device)
        timing, row = measure_model(params, dataset, name, device, *data[dataset], args.epochs,
                                    args.max_batches, hvp_batch)  # fmt: skip
        row["wall_seconds"] = last[dataset] = time.perf_counter() - t0
        measured.append(timing)
        rows[dataset, name] = row
        report["models"].append(row)
        report["summary"] = summary(params, measured, cpu)
        write_json_atomic(args.out, report)  # after every model: a run cut short keeps what it measured
        print(f"  {dataset:10s} {name:7s} {row['parameters']:>9,} params  epoch {row['epoch_seconds']:9.3f} s"
              f" ({row['train_steps_timed']}/{row['train_steps_preset']} steps timed)"
              f"  hvp {row['hvp_seconds']:.3f} s", flush=True)  # fmt: skip
    last = {}
    for t in measured if not args.no_cpu_projection else []:
        if not fits("cpu projection", t.dataset, t.model, last.get(t.dataset, 0.0)):
            continue
        t0 = time.perf_counter()
        c = cpu[t.dataset, t.model] = time_model(params, t.dataset, t.model, torch.device("cpu"), 1, 1, 1)
        last[t.dataset] = time.perf_counter() - t0
        rows[t.dataset, t.model].update({
            "cpu_projected_epoch_seconds": epoch_seconds(params, c), "cpu_step_seconds": c.step,
            "cpu_eval_seconds": c.eval, "cpu_hvp_seconds": c.hvp, "cpu_loss_seconds": c.loss,
        })  # fmt: skip
        report["summary"] = summary(params, measured, cpu)
        write_json_atomic(args.out, report)
        print(f"  {t.dataset:10s} {t.model:7s} CPU projected epoch {epoch_seconds(params, c):10.2f} s",
              flush=True)  # fmt: skip

    s = report["summary"] = summary(params, measured, cpu)
    write_json_atomic(args.out, report)
    print(f"\n{'model':18s} {'params':>10s} {'epoch measured':>15s} {'epoch CPU proj.':>16s}")
    for row in report["models"]:
        proj = row.get("cpu_projected_epoch_seconds")
        proj = f"{proj:14.2f} s" if proj is not None else f"{'-':>16s}"
        label = f"{row['dataset']} {row['model']}"
        print(f"{label:18s} {row['parameters']:>10,} {row['epoch_seconds']:13.3f} s {proj}")
    skipped = ", ".join(f"{k['phase']} of {k['dataset']} {k['model']}" for k in report["skipped"])
    print(f"skipped: {skipped or 'none'}")
    print(f"study preset on {info['device']} (1 device, {s['models_measured']} of {len(models)} models):"
          f" {_hours(s['study_seconds_this_device'])} projected from the measured epochs"
          + (f"; CPU projection {_hours(s['study_seconds_cpu_projected'])}" if cpu else ""))  # fmt: skip
    print(f"JSON: {args.out}")
    if s["ratio"] is not None:
        print(f"ratio: {s['ratio']:.2f}")


if __name__ == "__main__":
    main()
