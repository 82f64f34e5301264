"""Time one forward+backward training step per bundled model at its default size, on CPU.

Columns:
  step        one call (the SR step, or a 1-step smoke prediction)
  rollout     ``--rollout`` autoregressive calls in one step, kernels expanded on every call
  rollout/1x  the same with kernels expanded once per step (``models.registry.expanded_once``)
  expand      building every conv kernel from its parameters, forward only

Usage: python benchmarks/model_step.py [--threads 2] [--batch-smoke 4] [--batch-sr 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial

import torch

from models.expansion import ExpandedKernel
from models.registry import MODEL_NAMES, build_model, count_parameters, expanded_once


def _timed(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up (allocations, index buffers)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, calls: int, once: bool) -> None:
    model.zero_grad(set_to_none=True)

    def run() -> torch.Tensor:
        h, loss = x, x.new_zeros(())
        for _ in range(calls):
            y = model(h)
            loss = loss + (y - target).pow(2).mean()
            # next smoke input: drop the oldest frame, append the prediction
            h = torch.cat([h[:, 2:], y], dim=1) if h.ndim == 4 else h
        return loss + model.regularizer()

    if once:
        with expanded_once(model):
            run().backward()
    else:
        run().backward()


def _row(task: str, name: str, args: argparse.Namespace) -> tuple[str, float | None]:
    model = build_model(task, name).train()
    if task == "smoke":
        x, target = torch.randn(args.batch_smoke, 2, 64, 64), torch.randn(args.batch_smoke, 2, 64, 64)
    else:
        x, target = torch.randn(args.batch_sr, 3, 3, 16, 16, 16), torch.randn(args.batch_sr, 3, 64, 64, 64)
    step = _timed(partial(_step, model, x, target, 1, False), args.repeats)
    layers = [m for m in model.modules() if isinstance(m, ExpandedKernel)]

    def expand_all() -> None:
        with torch.no_grad():
            for m in layers:
                m.expand()

    expand = f"{_timed(expand_all, args.repeats):10.1f}" if layers else f"{'-':>10}"
    speedup = None
    if task == "sr":
        roll = f"{'-':>11} {'(1 call)':>14}"
    else:
        per_call = _timed(partial(_step, model, x, target, args.rollout, False), args.repeats)
        if name != "cnn" and layers:  # the plain CNN's "expansion" is an identity gather
            once = _timed(partial(_step, model, x, target, args.rollout, True), args.repeats)
            roll = f"{per_call:11.1f} {once:14.1f}"
            speedup = per_call / once
        else:
            roll = f"{per_call:11.1f} {'(same)':>14}"
    return f"{task:6} {name:7} {count_parameters(model):8d} {step:9.1f} {roll} {expand}", speedup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-smoke", type=int, default=4)
    ap.add_argument("--batch-sr", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rollout", type=int, default=3)
    ap.add_argument("--only", default="", help="comma list of task/name, e.g. smoke/gcnn,sr/cnn")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message="indexing with dtype torch.uint8")
    only = {s for s in args.only.split(",") if s}

    cols = ["task  ", "model  ", "  params", "  step ms", " rollout ms", " rollout/1x ms", " expand ms"]
    header = " ".join(cols)
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch smoke={args.batch_smoke} (64x64), "
        f"sr={args.batch_sr} (16^3 -> 64^3), rollout={args.rollout}, median of {args.repeats}"
    )
    print(header)
    print("-" * len(header))
    speedups = []
    for task, names in MODEL_NAMES.items():
        for name in names:
            if not only or f"{task}/{name}" in only:
                row, speedup = _row(task, name, args)
                print(row, flush=True)
                if speedup is not None:
                    speedups.append(speedup)
    if speedups:  # expansion per call (baseline) against once per step, geometric mean over the models
        print(f"ratio: {statistics.geometric_mean(speedups):.3f}")


if __name__ == "__main__":
    main()
