"""How far apart two independent SLQ runs put the Hessian density, per (Lanczos steps, probes).

    OMP_NUM_THREADS=1 python benchmarks/slq_agreement.py

A tiny E2CNN (hidden 4, 4 layers: 876 parameters) on 2 batches of 4 random 12 x 12 fields with a target
correlated with the input. For each setting, two runs with other Rademacher start vectors are smoothed as
the report does (Gaussian, 1% of the exact spectrum's span) on one grid; printed: the L1 distance between
the two densities (0 = equal, 2 = disjoint) and the extreme Ritz values against the exact ones (a full
Lanczos run). docs/study.md quotes the result and the tolerance the defaults meet.
"""

from __future__ import annotations

import numpy as np
import torch

from models.registry import build_model
from train.curvature import FlatLoss, spectral_density

SETTINGS = [(10, 1), (20, 2), (20, 4), (30, 4), (30, 8)]


def main() -> None:
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    model = build_model("smoke", "e2cnn", hidden=4, layers=4, batch_norm=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 2, 12, 12, generator=gen)
    y = 0.5 * x + 0.1 * torch.randn(8, 2, 12, 12, generator=gen)
    flat = FlatLoss(model, [(x[:4], y[:4]), (x[4:], y[4:])], lambda m, b: ((m(b[0]) - b[1]) ** 2).mean())
    exact = spectral_density(flat, 1, flat.dim, seed=99)["nodes"]
    lo, hi = float(exact.min()), float(exact.max())
    span = hi - lo
    grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, 400)
    print(f"parameters {flat.dim}; exact lambda_min {lo:.4f}, lambda_max {hi:.4f}")
    for steps, probes in SETTINGS:
        a, b = (spectral_density(flat, probes, steps, seed, grid=grid, width=0.01 * span) for seed in (0, 1))
        distance = float(np.trapezoid(np.abs(a["density"] - b["density"]), grid))
        tops = [float(d["nodes"].max()) for d in (a, b)]
        lows = [float(d["nodes"].min()) for d in (a, b)]
        print(f"{steps:3d} steps x {probes} probes: L1 distance {distance:.3f}; lambda_max "
              f"{tops[0]:.4f} / {tops[1]:.4f}; lambda_min {lows[0]:.4f} / {lows[1]:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
