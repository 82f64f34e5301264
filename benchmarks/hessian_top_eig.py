"""Top Hessian eigenvalue: our Lanczos against plain power iteration (the original study's method).

Both run on the same model, batch and loss, with the same relative tolerance on the eigenvalue estimate,
and start from the same random vector. Prints the Hessian-vector-product counts, the times and the
agreement, and ends with ``ratio: <power iteration time / Lanczos time>``.

    python benchmarks/hessian_top_eig.py                 # smoke E2CNN (default size), one batch of 4
"""

from __future__ import annotations

import argparse
import time

import torch

from models.registry import build_model, count_parameters, default_hparams
from train.curvature import FlatLoss, lanczos, power_iteration
from train.kinds import task_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="e2cnn")
    parser.add_argument("--hidden", type=int, default=None, help="override the default size")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=500)
    args = parser.parse_args()

    torch.manual_seed(0)
    hp = default_hparams("smoke", args.model)
    if args.hidden is not None:
        hp["hidden"] = args.hidden
    model = build_model("smoke", args.model, **hp)
    n = args.resolution
    x = torch.randn(args.batch, 1, 2, n, n)
    y = torch.roll(x, 1, dims=-1)  # a smooth target: the next frame is the current one shifted
    flat = FlatLoss(model, [(x, y)], task_for("smoke").loss)
    v0 = torch.randn(flat.dim, generator=torch.Generator().manual_seed(1))
    print(
        f"smoke {args.model}: {count_parameters(model):,} parameters, batch {args.batch} at {n}x{n},"
        f" tol {args.tol}"
    )

    count = {"hvp": 0}

    def hvp(v: torch.Tensor) -> torch.Tensor:
        count["hvp"] += 1
        return flat.hvp(flat.w0, v)

    flat.hvp(flat.w0, v0)  # warm-up, not counted
    start = time.perf_counter()
    result = lanczos(hvp, v0, args.max_iter, tol=args.tol)
    lanczos_top = float(result.ritz()[0][-1])
    lanczos_time, lanczos_hvps = time.perf_counter() - start, count["hvp"]

    count["hvp"] = 0
    start = time.perf_counter()
    power_top, _ = power_iteration(hvp, v0, args.tol, args.max_iter)
    power_time, power_hvps = time.perf_counter() - start, count["hvp"]

    print(f"lanczos         : lambda_max = {lanczos_top:.6g}  {lanczos_hvps:4d} HVPs  {lanczos_time:7.2f} s")
    print(f"power iteration : lambda_max = {power_top:.6g}  {power_hvps:4d} HVPs  {power_time:7.2f} s")
    print(f"agreement       : relative difference {abs(lanczos_top - power_top) / abs(lanczos_top):.2e}")
    if power_hvps >= args.max_iter:
        print(f"note: power iteration hit --max-iter {args.max_iter} before reaching the tolerance")
    print(f"ratio: {power_time / lanczos_time:.2f}")


if __name__ == "__main__":
    main()
