"""The report's curvature verdicts: flatness from the invariant measures, convexity from a Hessian that
can show it (the MSE one beside an L1 training loss)."""

from __future__ import annotations

from pipelines.report import findings
from pipelines.report.curvature import invariance_notes


def _seed(test: float, adaptive: float, raw: float) -> dict:
    # L1 Hessian: zero trace, a spectrum symmetric about 0; the MSE Hessian at the same weights is convex
    land = {"sharpness": raw, "max_eigenvalue": raw, "adaptive_sharpness": adaptive,
            "adaptive_max_eigenvalue": adaptive, "slq_nodes": [-raw, 0.0, raw],
            "slq_weights": [0.3, 0.4, 0.3],
            "mse_max_eigenvalue": 14.0, "mse_min_ritz_value": -1e-4, "mse_negative_mass": 0.0,
            "parameterisation": "group: banks",
            "invariance": {"adaptive_max_eigenvalue": "any rescaling"}}  # fmt: skip
    return {"train": {"test_mae": test, "best_valid_mae": test}, "landscape": {"best": land}}


def test_flatness_verdicts_use_invariant_measures_and_convexity_the_mse_hessian() -> None:
    runs = {
        "rgcnn": {i: _seed(0.90 + 0.01 * i, adaptive=1.0 + 0.01 * i, raw=5.0 + 0.1 * i) for i in range(3)},
        "gcnn": {i: _seed(0.95 + 0.01 * i, adaptive=2.0 + 0.01 * i, raw=1.0 + 0.1 * i) for i in range(3)},
    }
    scores = {"zero": {"mae": 10.0, "se": 0.0, "n": 8}}
    lines = findings("turbulence", runs, ["best"], {"test": scores, "valid": scores})
    adaptive = next(
        line for line in lines if "adaptive top Hessian eigenvalue at best" in line and "gcnn" in line
    )
    assert "invariant to rescalings" in adaptive and "**reproduced**" in adaptive, adaptive
    raw = next(
        line for line in lines if "smaller top Hessian eigenvalue at best" in line and "adaptive" not in line
    )
    # described with its raw p, never a verdict, and outside the Holm family
    assert "coordinate-dependent" in raw and "not in the family" in raw and "**" not in raw, raw
    convex = next(line for line in lines if "negative eigenvalues at best" in line)
    assert "MSE Hessian" in convex and "**reproduced**" in convex, convex  # the L1 spectrum would say NOT
    notes = "\n".join(invariance_notes(runs))
    assert "group: banks" in notes and "`adaptive_max_eigenvalue`: any rescaling" in notes
    assert "L1 Hessian is 0" in notes  # why the L1 spectrum is symmetric with zero trace
