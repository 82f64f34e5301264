"""Counted FLOPs of the study preset, and the GPU time they imply beside the CPU's measured time.

No GPU has been lent to this project yet, so its time for the study preset cannot be measured. What can
be counted exactly is the arithmetic: per model, at the preset's sizes and batch sizes (built as
benchmarks/study_cost.py builds them), ``torch.utils.flop_counter.FlopCounterMode`` counts the
floating-point operations of one training step (forward + backward of the preset's loss), one
evaluation batch (the full rollout; also one landscape loss evaluation per sample) and one landscape
Hessian-vector product (``train.curvature.FlatLoss.hvp``, double backward). Counting runs on the ``meta``
device: shapes only, nothing computed, so the whole preset is counted in seconds.

What is counted: convolutions, matrix products and their backward passes (FlopCounterMode's registry), the
operations that dominate these networks. Not counted: element-wise operations, batch norm, FFTs and Adam's
update, which are memory-bound and few per parameter. On the meta device the super-resolution reference is
the trilinear upsampling (the spectral one indexes with a data-dependent mask, which meta tensors cannot
do); neither adds counted FLOPs.

The same calls are then timed on the CPU (``study_cost.time_model``, one sample scaled linearly to the
preset's batches, ``--clock cpu --threads 1`` by default: one idle core), which gives the CPU's achieved
rate per model, and the preset is projected with study_cost.py's job arithmetic twice: from the CPU
timings, and from the counted FLOPs at ``--peak-tflops`` x each ``--utilisation``. The peak default is an
H200's IEEE float32 figure, 67 TFLOP/s (the stages turn TF32 off: ``train/device.py``). At utilisation 1
the FLOP time is the least a GPU of that peak can take with direct or implicit-GEMM convolutions (Winograd
or FFT algorithms do fewer operations); what a GPU reaches is measured by benchmarks/gpu_check.sh, not here.
The last line is ``ratio: <CPU projection on 1 device / FLOP projection at the first utilisation>``
(none with ``--no-time``, which only counts).

    python benchmarks/study_flops.py [--params params.study.yaml] [--models cnn gcnn] [--no-time]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))  # study_cost.py, beside this file
import study_cost  # noqa: E402
from study_cost import Timing, makespan, preset_task, project_jobs, random_batch, total_seconds  # noqa: E402

from models.registry import count_parameters  # noqa: E402
from pipelines.params import StudyParams, load_params  # noqa: E402
from train.baselines import UpsampleMiddle  # noqa: E402
from train.curvature import FlatLoss  # noqa: E402
from train.data import build, model_hparams  # noqa: E402
from train.tasks import SuperResolutionTask  # noqa: E402

META = torch.device("meta")
H200_FP32_TFLOPS = 67.0


def _counted(fn) -> int:  # noqa: ANN001 - a zero-argument callable
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def count_model(params: StudyParams, dataset: str, name: str, device: torch.device = META) -> Timing:
    """FLOPs (in place of seconds) of one training step, one evaluation batch, one HVP and one landscape
    loss evaluation of ``name`` at the preset's batch sizes, counted on ``device`` (meta: nothing is
    computed; the CPU computes the same calls, which the tests use to check the meta count)."""
    section = getattr(params.train, dataset)
    task = preset_task(params, dataset)
    if isinstance(task, SuperResolutionTask) and task.reference is not None:
        kind = "trilinear" if device.type == "meta" else task.reference.kind
        reference = UpsampleMiddle(params.turbulence.lr_factor, kind).to(device)
        task = dataclasses.replace(task, reference=reference)
    model = build(dataset, name, 0, model_hparams(dataset, name, section.hparams.get(name, {})))
    parameters = count_parameters(model)
    model = model.to(device)

    def batch_of(size: int) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(device) for t in random_batch(params, dataset, size))

    batch = batch_of(section.optimiser.batch_size)

    def step() -> None:
        model.train()
        (task.loss(model, batch) + model.regularizer()).backward()

    def evaluate() -> None:
        model.eval()
        with torch.no_grad():
            task.errors(model, batch)

    step_flops, eval_flops = _counted(step), _counted(evaluate)
    size = params.landscape.subset_batch_size
    flat = FlatLoss(model, [batch_of(size)], task.loss)
    hvp_flops = _counted(lambda: flat.hvp(flat.w0, torch.ones_like(flat.w0)))
    loss_flops = eval_flops * size / section.optimiser.batch_size
    return Timing(dataset, name, parameters, step_flops, eval_flops, hvp_flops, loss_flops)


def at_rate(counts: Timing, flops_per_second: float) -> Timing:
    """The counted FLOPs as seconds at a given rate."""
    return dataclasses.replace(
        counts, step=counts.step / flops_per_second, eval=counts.eval / flops_per_second,
        hvp=counts.hvp / flops_per_second, loss=counts.loss / flops_per_second,
    )  # fmt: skip


def project_total(params: StudyParams, timings: list[Timing], workers: int) -> tuple[dict[str, float], float]:
    """Hours per stage and the total for ``workers`` devices (landscapes after all training)."""
    jobs = project_jobs(params, timings)
    stages = {stage: makespan(durations, workers) / 3600 for stage, durations in jobs.items()}
    return stages, total_seconds(jobs, workers) / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.study.yaml")
    parser.add_argument("--models", nargs="*", default=None, help="restrict to these model names")
    parser.add_argument("--peak-tflops", type=float, default=H200_FP32_TFLOPS)
    parser.add_argument("--utilisation", type=float, nargs="+", default=[1.0, 0.3, 0.1])
    parser.add_argument("--no-time", action="store_true", help="count only; skip the CPU timings")
    parser.add_argument("--clock", choices=sorted(study_cost.CLOCKS), default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not all(0 < u <= 1 for u in args.utilisation) or args.peak_tflops <= 0:
        parser.error("--utilisation must be in (0, 1] and --peak-tflops positive")
    study_cost.CLOCK = study_cost.CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    print(f"preset {args.params}; counted on the meta device; CPU timed on 1 sample, {args.clock} clock,"
          f" {torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'model':18s} {'params':>9s} {'GF/step':>9s} {'GF/HVP':>9s}" + (
        "" if args.no_time else f" {'CPU s/step':>11s} {'CPU s/HVP':>10s} {'CPU GF/s':>9s}"))  # fmt: skip
    counts, cpu = [], []
    for dataset in ("smoke", "turbulence"):
        for name in getattr(params.train, dataset).models:
            if args.models and name not in args.models:
                continue
            c = count_model(params, dataset, name)
            counts.append(c)
            row = f"{dataset + ' ' + name:18s} {c.parameters:>9,} {c.step / 1e9:9.1f} {c.hvp / 1e9:9.1f}"
            if not args.no_time:
                t = study_cost.time_model(params, dataset, name, torch.device("cpu"), 1, 1, 1)
                cpu.append(t)
                row += f" {t.step:11.2f} {t.hvp:10.2f} {(c.step + c.hvp) / (t.step + t.hvp) / 1e9:9.1f}"
            print(row, flush=True)
    rows = []
    if cpu:
        rows.append(("CPU, measured", project_total(params, cpu, 1)))
    for u in args.utilisation:
        rate = args.peak_tflops * 1e12 * u
        at_peak = [at_rate(c, rate) for c in counts]
        rows.append((f"{args.peak_tflops:g} TFLOP/s x {u:g}", project_total(params, at_peak, 1)))
    stages = list(rows[0][1][0])
    print(f"\n{'1 device, hours':26s}" + "".join(f" {s:>20s}" for s in stages) + f" {'total':>10s}")
    for label, (per_stage, total) in rows:
        print(f"{label:26s}" + "".join(f" {per_stage[s]:20.4g}" for s in stages) + f" {total:10.4g}")
    gpu_total = rows[1 if cpu else 0][1][1]
    if cpu:
        print(f"baseline: CPU {rows[0][1][1]:.4g} h; ours: FLOP time {gpu_total:.4g} h")
        print(f"ratio: {rows[0][1][1] / gpu_total:.1f}")


if __name__ == "__main__":
    main()
