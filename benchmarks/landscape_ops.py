"""The landscape's second derivatives through the circular pad, before and after, per model.

    python benchmarks/landscape_ops.py [--params params.yaml] [--models smoke:e2cnn turbulence:gcnn]

before: the circular pad's backward written as in-place slab additions, whose own backward autograd builds
from whole-tensor copies of every slab (``CopySlices``); after: the pad's backward as a function whose
backward is the pad (``models.fastops``). Training is untouched: forward and first backward keep their bits
(tests/test_train_speed.py); the landscape's numbers are printed as the largest relative change of its
headline measures (0: the same bits; a double backward through the pad only copies values).

Tried and dropped: each batch norm as its affine map at the running statistics (1.01x on E2CNN; the
double backward's cost is the elementwise products over the activations, which the affine form keeps).

Each model of ``landscape.models`` at its params.yaml size with random weights (benchmarks/landscape_step.py
``losses``), ``--repeats`` full ``measure`` calls each way (alternating, the fastest counts), CPU seconds of
this process on one torch thread. Prints per model both times and the change of the measures, then
``ratio: <before / after, summed over the models>``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from landscape_step import losses

import models.fastops as fastops
from pipelines.landscape import measure
from pipelines.params import StudyParams, load_params

ROOT = Path(__file__).resolve().parent.parent
HEADLINE = ("loss", "max_eigenvalue", "trace", "sharpness", "adaptive_max_eigenvalue", "adaptive_sharpness",
            "mse_max_eigenvalue", "mse_trace")  # fmt: skip


def _slab_backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[no-untyped-def]
    """The pad's backward before: the fold's in-place slab additions run under autograd, which builds
    their double backward from whole-tensor copies."""
    return fastops._CircularFold.forward(ctx, grad, ctx.pad, ctx.dim), None, None


@contextlib.contextmanager
def slab_pad() -> Iterator[None]:
    current = fastops._CircularPad.backward
    fastops._CircularPad.backward = staticmethod(_slab_backward)  # type: ignore[method-assign]
    try:
        yield
    finally:
        fastops._CircularPad.backward = current  # type: ignore[method-assign]


def timed(params: StudyParams, dataset: str, name: str, before: bool) -> tuple[float, dict]:
    with slab_pad() if before else contextlib.nullcontext():
        flat, mse = losses(params, dataset, name)
        start = time.process_time()
        out, _ = measure(flat, params.landscape, mse)
        return time.process_time() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--models", nargs="*", help="dataset:model pairs (default: landscape.models)")
    parser.add_argument("--repeats", type=int, default=2, help="each way, alternating; the fastest counts")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # e2cnn's deprecation noise
    torch.set_num_threads(1)
    params = load_params(args.params)
    pairs = [tuple(p.split(":")) for p in args.models] if args.models else [
        (d, m) for d, models in params.landscape.models.items() for m in models
    ]  # fmt: skip
    print(f"{args.params.name}: CPU s of one checkpoint's measure, 1 thread")
    print(f"{'model':<18} {'before s':>9} {'after s':>8} {'ratio':>6}  largest relative change")
    total_before = total_after = 0.0
    for dataset, name in pairs:
        runs: dict[bool, list[tuple[float, dict]]] = {True: [], False: []}
        for i in range(2 * args.repeats):  # alternating, so warm-up and load drift hit both ways
            way = i % 2 == 0
            runs[way].append(timed(params, dataset, name, before=way))
        t_before, before = min(runs[True], key=lambda r: r[0])
        t_after, after = min(runs[False], key=lambda r: r[0])
        keys = [k for k in HEADLINE if k in after]
        change = max(abs(after[k] - before[k]) / max(abs(before[k]), 1e-30) for k in keys)
        print(f"{dataset + ' ' + name:<18} {t_before:>9.1f} {t_after:>8.1f} {t_before / t_after:>6.2f}  "
              f"{change:.1e} (over {', '.join(keys)})")  # fmt: skip
        total_before, total_after = total_before + t_before, total_after + t_after
    print(f"ratio: {total_before / total_after:.2f}")


if __name__ == "__main__":
    main()
