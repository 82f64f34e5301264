"""Projected wall time of the study preset (params.study.yaml), from one timed step per model.

Per model, at the preset's sizes (its ``train.<dataset>.hparams`` over the registry defaults, as the
stages build the models; its batch sizes, smoke training rollout, super-resolution grids and residual
form; for the study preset: default sizes, 6-step rollout, 16^3 -> 64^3) and on ``--device`` (default:
the stages' ``auto``), it times one training step (forward + backward + Adam step), one evaluation batch (no
gradients, the full rollout: also the cost of one landscape loss evaluation) and a Hessian-vector product
(double backward, ``train.curvature.FlatLoss``) both ways: rebuilt, and through a kept gradient graph (the
landscape's path; the difference is the graph's build), after one warm-up forward pass. On a CPU the
calls run on ``--time-batch`` / ``--hvp-batch`` samples (default 1) and are scaled linearly to the preset's
batch sizes (a CPU's throughput per sample hardly depends on the batch); on a GPU the default is the
preset's own batch sizes. It then projects each stage of the preset:

  training   (train batches x step + valid batches x eval) x max_epochs + test batches x eval, per run,
             for every model x seed (an upper bound: early stopping can end a run sooner)
  landscape  (HVPs through kept gradient graphs + one graph build per measurement + sharpness loss
             evaluations) x subset batches, per model x seed x checkpoint

and the total for 1 device and for N independent workers (each run on its own device; runs scheduled
longest first, landscapes after all training). Dataset generation is not included. It ends with
``ratio: <1-worker total / N-worker total>`` for the largest N.

On a shared machine wall-clock timings grow with other users' load; ``--clock cpu --threads 1`` times
this process's CPU seconds instead, which load hardly changes: the projection is then for workers of one
idle core each (the stages' ``compute.n_workers`` x ``threads_per_worker: 1``).

    python benchmarks/study_cost.py [--params params.study.yaml] [--models cnn e2cnn] [--workers 1 2 4 8]
    python benchmarks/study_cost.py --params params.cpu.yaml --workers 1 2 --clock cpu --threads 1 \
        --time-batch 8 --hvp-batch 4 --repeats 3      # the CPU preset (docs/presets.md)
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from loaders.windows import WindowIndex
from models.registry import count_parameters
from pipelines.landscape import subset_size
from pipelines.params import StudyParams, load_params
from train.baselines import UpsampleMiddle
from train.curvature import FlatLoss
from train.data import build, model_hparams
from train.device import device_info, prepare, to_device
from train.tasks import SmokeTask, SuperResolutionTask

DIRECTIONS = 4  # a smoke level holds four rotated series (loaders/smoke.py)


@dataclass
class Timing:
    dataset: str
    model: str
    parameters: int
    step: float  # seconds per training step
    eval: float  # seconds per evaluation batch (training batch size)
    hvp: float  # seconds per HVP over one landscape batch, its gradient graph kept (the second backward)
    loss: float  # seconds per loss evaluation over one landscape batch (the eval pass, rescaled)
    graph: float = 0.0  # seconds to build one landscape batch's gradient graph (once per measurement)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = CLOCKS["wall"]


def _timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    def once() -> float:
        t0 = CLOCK()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return CLOCK() - t0

    return statistics.median(once() for _ in range(repeats))


def split_sizes(params: StudyParams, dataset: str) -> dict[str, int]:
    """Samples per split of the preset, from the same arithmetic the loaders use."""
    if dataset == "turbulence":
        return params.turbulence.splits.model_dump()
    smoke, section = params.smoke, params.train.smoke
    length = smoke.input_frames + smoke.output_frames
    out = {}
    for split, frames in smoke.split_frame_counts().items():
        stride = section.window_stride if split == "train" else 1
        out[split] = len(WindowIndex(DIRECTIONS, 0, frames, length, stride))
    return out


def random_batch(params: StudyParams, dataset: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` random samples of the preset's shapes (float32): a step costs the same whatever the values."""
    gen = torch.Generator().manual_seed(0)
    if dataset == "smoke":
        n, s = params.smoke.resolution, params.smoke
        return torch.randn(size, s.input_frames, 2, n, n, generator=gen), torch.randn(
            size, s.output_frames, 2, n, n, generator=gen
        )
    t = params.turbulence
    lr = t.hr_resolution // t.lr_factor
    x = torch.randn(size, t.window, 3, lr, lr, lr, generator=gen)
    return x, torch.randn(size, 3, t.hr_resolution, t.hr_resolution, t.hr_resolution, generator=gen)


def preset_task(params: StudyParams, dataset: str) -> SmokeTask | SuperResolutionTask:
    """The preset's residual task, with unit scales (timing does not depend on them)."""
    section = getattr(params.train, dataset)
    if dataset == "smoke":
        return SmokeTask(train_rollout=section.train_rollout, residual=section.residual)
    if not section.residual:
        return SuperResolutionTask()
    return SuperResolutionTask(reference=UpsampleMiddle(params.turbulence.lr_factor, section.upsampler))


def time_model(
    params: StudyParams, dataset: str, name: str, device: torch.device, repeats: int,
    time_batch: int | None, hvp_batch: int | None,
) -> Timing:  # fmt: skip
    section = getattr(params.train, dataset)
    task = preset_task(params, dataset)
    if isinstance(task, SuperResolutionTask) and task.reference is not None:
        task = SuperResolutionTask(reference=task.reference.to(device))
    model = build(dataset, name, 0, model_hparams(dataset, name, section.hparams.get(name, {}))).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=section.optimiser.lr)
    size = time_batch or section.optimiser.batch_size
    batch = to_device(random_batch(params, dataset, size), device)
    to_train = section.optimiser.batch_size / size  # linear in the samples

    def step() -> None:
        model.train()
        loss = task.loss(model, batch) + model.regularizer()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def evaluate() -> None:
        model.eval()
        with torch.no_grad():
            task.errors(model, batch)

    evaluate()  # warm-up: allocations, index buffers, kernel selection
    t_step = _timed(step, repeats, device) * to_train
    t_eval = _timed(evaluate, repeats, device) / size  # per sample
    hvp_size = hvp_batch or params.landscape.subset_batch_size
    flat = FlatLoss(model, [to_device(random_batch(params, dataset, hvp_size), device)], task.loss)
    v = torch.randn(flat.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(flat.w0)
    t_rebuilt = _timed(lambda: flat.hvp(flat.w0, v), repeats, device)  # forward, backward, second backward
    with flat.resident_graphs():  # the landscape's path: the graph built once, then second backwards only
        flat.hvp(flat.w0, v)
        t_hvp = _timed(lambda: flat.hvp(flat.w0, v), repeats, device)
    scale = params.landscape.subset_batch_size / hvp_size
    return Timing(
        dataset, name, count_parameters(model), t_step, t_eval * section.optimiser.batch_size, t_hvp * scale,
        t_eval * params.landscape.subset_batch_size, max(t_rebuilt - t_hvp, 0.0) * scale,
    )  # fmt: skip


def _batches(samples: int, batch: int, drop_last: bool) -> int:
    return samples // batch if drop_last and samples > batch else -(-samples // batch)


def epoch_batches(params: StudyParams, dataset: str) -> tuple[int, int]:
    """Training steps and validation batches of one epoch of the preset."""
    opt, sizes = getattr(params.train, dataset).optimiser, split_sizes(params, dataset)
    steps = _batches(sizes["train"], opt.batch_size, True)
    return min(steps, opt.max_train_batches or steps), _batches(sizes["valid"], opt.batch_size, False)


def epoch_seconds(params: StudyParams, t: Timing) -> float:
    """One training epoch of the preset: its steps, then one pass over the validation split."""
    steps, valid = epoch_batches(params, t.dataset)
    return steps * t.step + valid * t.eval


def project_jobs(params: StudyParams, timings: list[Timing]) -> dict[str, list[float]]:
    """Seconds of every job of each stage (one training run, or one landscape of one checkpoint)."""
    jobs: dict[str, list[float]] = {}
    lp = params.landscape
    raw_hvps = lp.slq_probes * lp.lanczos_steps + lp.hutchinson_probes
    hvps = raw_hvps + lp.lanczos_steps + lp.hutchinson_probes  # raw and adaptive (|w|-scaled) Hessian
    # each sharpness call evaluates the base point and every direction x displacement (unit, adaptive)
    losses = (1 + lp.directions * len(lp.displacements)) * (3 if lp.filter_normalised else 2)
    for t in timings:
        samples = subset_size(split_sizes(params, t.dataset)["train"], lp)
        subset_batches = math.ceil(samples / lp.subset_batch_size)
        section = getattr(params.train, t.dataset)
        test = _batches(split_sizes(params, t.dataset)["test"], section.optimiser.batch_size, False)
        run = section.optimiser.max_epochs * epoch_seconds(params, t) + test * t.eval
        jobs.setdefault(f"train_{t.dataset}", []).extend([run] * len(section.seeds))
        if t.model in lp.models.get(t.dataset, []):
            mse = t.dataset == "turbulence"  # the MSE Hessian beside SR's L1 one, with graphs of its own
            extra = raw_hvps if mse else 0
            graphs = 2 if mse else 1  # each measurement builds each batch's gradient graph once
            one = subset_batches * ((hvps + extra) * t.hvp + losses * t.loss + graphs * t.graph)
            count = len(section.seeds) * len(lp.checkpoints)
            jobs.setdefault(f"landscape_{t.dataset}", []).extend([one] * count)
    return jobs


def makespan(durations: list[float], workers: int) -> float:
    """Longest-first list scheduling of independent jobs on ``workers`` identical devices."""
    loads = [0.0] * workers
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d)
    return max(loads)


def total_seconds(jobs: dict[str, list[float]], workers: int) -> float:
    """The preset on ``workers`` devices: training first, then the landscapes, which need its checkpoints."""
    train = [d for s, ds in jobs.items() if s.startswith("train") for d in ds]
    land = [d for s, ds in jobs.items() if s.startswith("landscape") for d in ds]
    return makespan(train, workers) + (makespan(land, workers) if land else 0.0)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:8.2f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.study.yaml")
    parser.add_argument("--models", nargs="*", default=None, help="restrict to these model names")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls after the warm-up (median)")
    parser.add_argument("--time-batch", type=int, default=None, help="samples per timed step (CPU: 1)")
    parser.add_argument("--hvp-batch", type=int, default=None, help="samples per timed HVP (CPU: 1)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall",
        help="wall: elapsed seconds; cpu: this process's CPU seconds (all threads), which other users' load"
        " hardly changes: with --threads 1 the projection is for one idle core per worker",
    )  # fmt: skip
    args = parser.parse_args()
    global CLOCK
    CLOCK = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    device = prepare(args.device)
    small = 1 if device.type == "cpu" else None  # a GPU needs its real batch to be timed fairly
    time_batch, hvp_batch = args.time_batch or small, args.hvp_batch or small
    info = device_info(device)
    print(f"device {info['device']} ({info['device_name']}), torch {info['versions']['torch']},"
          f" {torch.get_num_threads()} threads; preset {args.params}; timed on {time_batch or 'full'} /"
          f" {hvp_batch or 'full'} samples per step / HVP; {args.clock} clock;"
          f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    timings = []
    for dataset in ("smoke", "turbulence"):
        section = getattr(params.train, dataset)
        sizes = split_sizes(params, dataset)
        opt = section.optimiser
        print(f"{dataset}: splits {sizes}, batch {opt.batch_size}, {opt.max_epochs} epochs max,"
              f" seeds {len(section.seeds)}")  # fmt: skip
        for name in section.models:
            if args.models and name not in args.models:
                continue
            t = time_model(params, dataset, name, device, args.repeats, time_batch, hvp_batch)
            timings.append(t)
            print(f"  {name:7s} {t.parameters:>9,} params  step {t.step:7.3f} s  eval {t.eval:7.3f} s"
                  f"  hvp/batch {t.hvp:7.3f} s  loss/batch {t.loss:7.3f} s", flush=True)  # fmt: skip
    jobs = project_jobs(params, timings)
    workers = sorted({1, *args.workers})
    print(f"\n{'stage':22s} {'jobs':>5s}" + "".join(f" {f'N={n}':>10s}" for n in workers))
    for stage, durations in jobs.items():
        row = "".join(f" {_hours(makespan(durations, n))}" for n in workers)
        print(f"{stage:22s} {len(durations):5d}{row}")
    totals = {n: total_seconds(jobs, n) for n in workers}
    row = "".join(f" {_hours(totals[n])}" for n in workers)
    print(f"{'total':22s} {sum(len(ds) for ds in jobs.values()):5d}{row}")
    n_max = max(workers)
    print(f"baseline: 1 device {totals[1] / 3600:.2f} h; ours: {n_max} workers {totals[n_max] / 3600:.2f} h"
          f" ({info['device']})")  # fmt: skip
    print(f"ratio: {totals[1] / totals[n_max]:.2f}")


if __name__ == "__main__":
    main()
