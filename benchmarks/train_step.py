"""Training speed of every model at a preset's sizes on one torch thread: the old path and today's, side by
side, with samples/s beside the FLOP-bound rate and an estimate of the train stage's time.

    python benchmarks/train_step.py [--params params.yaml] [--steps 8] [--repeats 2] [--only smoke:gcnn]

Per model: ``--steps`` training steps (the train stage's task, loss, Adam and batch size on random tensors of
the stage's shapes, so no store is needed: smoke windows 1 + 6 frames of 2 x 64 x 64, super-resolution
3 x 3 x 8^3 -> 3 x 32^3 as ``params.yaml``'s 32^3 turbulence), then one validation pass of the split's size
(smoke 36 windows rolled out 6 steps, super-resolution ``turbulence.splits.valid`` samples). An epoch is
estimated as the preset's steps per epoch times the step time plus the validation pass.

old: the code before issue 21 item 3 (``F.pad(mode="circular")``, ``repeat_interleave`` upsampling, kernels
expanded at every model call of a validation rollout). new: models/fastops.py's circular pad (a backward of
one copy), models/gconv.py's broadcast upsampling and train/loop.py's ``evaluate`` expanding each kernel once
a pass; and train/loop.py's ``keep_freed_memory`` (malloc keeps freed activation buffers instead of
faulting them in again page by page). All four give the same bits: the weights after the steps and the
validation metric of every run of both paths are compared exactly (``same`` column). Every run is its own
process (the malloc setting is per process and cannot be undone).

FLOP-bound: forward + backward FLOPs of one training step counted by torch's ``FlopCounterMode``
(convolutions and matrix products), at the peak of a one-thread float32 matmul timed here. Times are CPU
seconds of this process (``time.process_time``, one thread), which other jobs on a shared machine inflate
less than wall time. Prints ``ratio: <geometric mean of new / old epoch rate>`` over the models last.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import models.nets  # noqa: E402
import train.loop  # noqa: E402
from models import fastops  # noqa: E402
from models.registry import build_model  # noqa: E402
from train.baselines import UpsampleMiddle  # noqa: E402
from train.tasks import SmokeTask, SuperResolutionTask  # noqa: E402

SMOKE_VALID = 36  # the default store's valid split: 9 windows per direction, 4 directions


def _old_upsample(x: torch.Tensor, dim: int) -> torch.Tensor:
    for ax in range(-dim, 0):
        x = x.repeat_interleave(2, dim=ax)
    return x


@contextlib.contextmanager
def old_path() -> Iterator[None]:
    """The training step and validation pass as they were before (see the module docstring)."""
    saved = (fastops.circular_pad, models.nets.upsample_nearest, train.loop.expanded_once)
    fastops.circular_pad = lambda x, pad, dim: F.pad(x, (pad,) * (2 * dim), mode="circular")
    models.nets.upsample_nearest = _old_upsample
    train.loop.expanded_once = lambda model: contextlib.nullcontext(model)
    try:
        yield
    finally:
        fastops.circular_pad, models.nets.upsample_nearest, train.loop.expanded_once = saved


def matmul_peak(size: int = 1024, repeats: int = 20) -> float:
    """GFLOP/s of a float32 matmul on the current threads (best of ``repeats``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        a @ b
        best = min(best, time.process_time() - start)
    return 2 * size**3 / best / 1e9


class Case:
    """One model of a preset: its task, batches, optimiser settings and steps per epoch."""

    def __init__(self, dataset: str, name: str, section: dict, valid_sr: int) -> None:
        self.dataset, self.name = dataset, name
        self.hparams = section.get("hparams", {}).get(name, {})
        opt = {**section["optimiser"], **section.get("optimiser_overrides", {}).get(name, {})}
        self.batch, self.lr, self.wd = opt["batch_size"], opt["lr"], opt["weight_decay"]
        gen = torch.Generator().manual_seed(0)
        if dataset == "smoke":
            stride = section.get("window_stride", 1)
            n_train = 256 // stride  # 64 windows per direction, 4 directions
            rollout = section.get("train_rollout", 1)
            self.task = SmokeTask(train_rollout=rollout, residual=True, step_scale=0.05)
            x_shape, y_shape, n_valid = (1, 2, 64, 64), (6, 2, 64, 64), SMOKE_VALID
        else:
            n_train = 24
            self.task = SuperResolutionTask(reference=UpsampleMiddle(4, "spectral"), step_scale=0.2)
            x_shape, y_shape, n_valid = (3, 3, 8, 8, 8), (3, 32, 32, 32), valid_sr
        batches = n_train // self.batch
        self.steps_per_epoch = min(opt.get("max_train_batches") or batches, batches)
        self.train_x = torch.randn(self.batch, *x_shape, generator=gen)
        self.train_y = torch.randn(self.batch, *y_shape, generator=gen)
        self.valid = TensorDataset(torch.randn(n_valid, *x_shape, generator=gen),
                                   torch.randn(n_valid, *y_shape, generator=gen))  # fmt: skip

    def model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        model = build_model("smoke" if self.dataset == "smoke" else "sr", self.name, **self.hparams)
        if self.dataset == "turbulence":  # the zero head would send no gradient into the rest at first
            torch.nn.init.normal_(model.head.weight, std=0.01)
        return model

    def step(self, model: torch.nn.Module, optimiser: torch.optim.Optimizer) -> None:
        loss = self.task.loss(model, (self.train_x, self.train_y)) + model.regularizer()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        loss.item()

    def run(self, steps: int) -> tuple[float, float, float, torch.Tensor]:
        """Seconds per step, seconds of a validation pass, its metric, and the weights after the steps."""
        model = self.model().train()
        optimiser = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.wd)
        self.step(model, optimiser)  # warm-up: allocations, oneDNN primitives
        start = time.process_time()
        for _ in range(steps):
            self.step(model, optimiser)
        per_step = (time.process_time() - start) / steps
        start = time.process_time()
        metric = train.loop.evaluate(model, self.task, DataLoader(self.valid, batch_size=self.batch))
        valid = time.process_time() - start
        return per_step, valid, metric, torch.cat([p.detach().flatten() for p in model.parameters()])

    def flops(self) -> float:
        """FLOPs of one training step (forward + backward) of one sample."""
        model = self.model().train()
        with FlopCounterMode(display=False) as counter:
            loss = self.task.loss(model, (self.train_x, self.train_y)) + model.regularizer()
            loss.backward()
        return counter.get_total_flops() / self.batch


def measure(case: Case, path: str, steps: int) -> dict:
    """One path's figures for one model, in this (fresh) process."""
    if path == "new":
        train.loop.keep_freed_memory()  # what train() does first
    with old_path() if path == "old" else contextlib.nullcontext():
        per_step, valid, metric, weights = case.run(steps)
    digest = hashlib.sha256(weights.numpy().tobytes()).hexdigest()
    return {"step": per_step, "valid": valid, "metric": metric, "weights": digest}


def in_subprocess(args: argparse.Namespace, key: str, path: str) -> dict:
    """:func:`measure` in a fresh interpreter: malloc settings are per process and cannot be undone."""
    cmd = [sys.executable, __file__, "--params", str(args.params), "--steps", str(args.steps),
           "--threads", str(args.threads), "--path", path, "--only", key]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per model and path")
    parser.add_argument("--repeats", type=int, default=2, help="old/new alternations (medians are printed)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None, help="dataset:model, e.g. smoke:gcnn")
    parser.add_argument("--path", choices=("both", "old", "new"), default="both",
                        help="old or new: one model's figures as JSON, in this process")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    params = yaml.safe_load(args.params.read_text())
    valid_sr = params["turbulence"]["splits"]["valid"]
    keys = [f"{d}:{m}" for d in ("smoke", "turbulence") for m in params["train"][d]["models"]]
    keys = [k for k in keys if not args.only or k in args.only]
    if args.path != "both":
        dataset, name = keys[0].split(":")
        case = Case(dataset, name, params["train"][dataset], valid_sr)
        print(json.dumps(measure(case, args.path, args.steps)))
        return
    peak = matmul_peak()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.params.name}, {args.steps} steps x "
          f"{args.repeats} repeats, each in its own process; matmul peak {peak:.0f} GFLOP/s")  # fmt: skip
    print(f"{'model':18s} {'GFLOP/sample':>12s} {'bound/s':>8s} {'old/s':>7s} {'new/s':>7s} "
          f"{'valid old':>9s} {'new':>6s} {'epoch old':>9s} {'new':>6s} {'same':>5s}  (rates: samples/s)")
    ratios, epochs = [], {"old": 0.0, "new": 0.0}
    for key in keys:
        dataset, name = key.split(":")
        section = params["train"][dataset]
        case = Case(dataset, name, section, valid_sr)
        runs: dict[str, list] = {"old": [], "new": []}
        for k in range(args.repeats):
            for path in ("old", "new") if k % 2 == 0 else ("new", "old"):
                runs[path].append(in_subprocess(args, key, path))
        step = {p: statistics.median(r["step"] for r in runs[p]) for p in runs}
        valid = {p: statistics.median(r["valid"] for r in runs[p]) for p in runs}
        epoch = {p: case.steps_per_epoch * step[p] + valid[p] for p in runs}
        results = {(r["weights"], r["metric"]) for p in runs for r in runs[p]}
        flops = case.flops()
        seeds = len(section.get("seeds", [0]))
        for p in epochs:
            epochs[p] += epoch[p] * seeds
        ratios.append(epoch["old"] / epoch["new"])
        print(f"{dataset + ' ' + name:18s} {flops / 1e9:12.3f} {peak * 1e9 / flops:8.1f} "
              f"{case.batch / step['old']:7.1f} {case.batch / step['new']:7.1f} {valid['old']:9.2f} "
              f"{valid['new']:6.2f} {epoch['old']:9.2f} {epoch['new']:6.2f} "
              f"{'yes' if len(results) == 1 else 'NO':>5s}", flush=True)  # fmt: skip
    print(f"one epoch of every run (all seeds), one thread: old {epochs['old']:.0f} s, "
          f"new {epochs['new']:.0f} s (CPU seconds)")
    print(f"ratio: {math.exp(statistics.fmean(math.log(r) for r in ratios)):.3f}")


if __name__ == "__main__":
    main()
