"""Peak memory of one Hessian-vector product: one double-backward graph over the whole subset against
the batch-by-batch accumulation ``FlatLoss.hvp`` uses (same model, samples and vector).

Each variant runs in its own fresh process (so one cannot inherit the other's freed heap): peak =
the process's resident-set high-water mark (``getrusage``) minus its resident set just before the
product, after the data, model and a warm-up loss evaluation exist. Prints both peaks side by side, checks
that the two products agree, and ends with ``ratio: <single-graph peak / accumulated peak>``.

    python benchmarks/hvp_memory.py                      # smoke CNN, 6 batches of 4 at 64x64
    python benchmarks/hvp_memory.py --model e2cnn --batches 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import psutil
import torch

from models.registry import build_model, count_parameters, default_hparams
from train.curvature import FlatLoss
from train.kinds import task_for


def setup(args: argparse.Namespace) -> tuple[FlatLoss, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("smoke", args.model, **default_hparams("smoke", args.model))
    n = args.resolution
    batches = []
    for _ in range(args.batches):
        x = torch.randn(args.batch, 1, 2, n, n)
        batches.append((x, torch.roll(x, 1, dims=-1)))  # a smooth target: the frame shifted by one cell
    flat = FlatLoss(model, batches, task_for("smoke").loss)
    v = torch.randn(flat.dim, generator=torch.Generator().manual_seed(1))
    return flat, v


def child(args: argparse.Namespace) -> None:
    """One variant in this process: print its peak extra memory and a checksum of the product as JSON."""
    torch.set_num_threads(1)
    flat, v = setup(args)
    flat.value(flat.w0)  # warm-up: lazily built buffers and allocator pools exist before the baseline
    before = psutil.Process().memory_info().rss
    hv = flat.hvp_single_graph(flat.w0, v) if args.variant == "single" else flat.hvp(flat.w0, v)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    torch.save(hv, args.out)
    print(json.dumps({"peak_bytes": peak - before, "parameters": count_parameters(flat.model)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--variant", choices=["single", "accumulated"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    shape = ["--model", args.model, "--batches", str(args.batches), "--batch", str(args.batch),
             "--resolution", str(args.resolution)]  # fmt: skip
    peaks, products = {}, {}
    for variant in ("single", "accumulated"):
        out = f"/tmp/hvp_memory_{os.getpid()}_{variant}.pt"
        run = subprocess.run(
            [sys.executable, __file__, *shape, "--variant", variant, "--out", out],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        info = json.loads(run.stdout.strip().splitlines()[-1])
        peaks[variant], products[variant] = info["peak_bytes"], torch.load(out)
        os.remove(out)
    agree = float((products["single"] - products["accumulated"]).norm() / products["single"].norm())
    print(
        f"smoke {args.model}: {info['parameters']:,} parameters, {args.batches} batches of {args.batch} at "
        f"{args.resolution}x{args.resolution}"
    )
    for variant, label in (("single", "single graph"), ("accumulated", "batch by batch")):
        print(f"  {label:>15}: peak {peaks[variant] / 2**20:8.1f} MiB above the pre-HVP resident set")
    print(f"  relative difference of the two products: {agree:.2e}")
    print(f"ratio: {peaks['single'] / max(peaks['accumulated'], 1):.2f}")


if __name__ == "__main__":
    main()
