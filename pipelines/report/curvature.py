"""The report's curvature part: which landscape numbers are compared, what each is invariant to, and
which Hessian may decide convexity.

Flatness verdicts come from the adaptive (|w|-scaled) measures, which do not change when a model's
weights are rescaled without changing its function (train/flatness.py); the raw sharpness and top
eigenvalue, measured in each family's shared coordinates, are reported beside them but labelled as
depending on the coordinates. Convexity (negative eigenvalues) is read from the MSE Hessian where the
training loss is L1: L1 has no Gauss-Newton term and a ReLU network is piecewise linear in each single
weight, so the L1 Hessian's diagonal is 0, its trace 0 and its spectrum symmetric about 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RAW = "coordinate-dependent, not a flatness verdict"
INVARIANT = "invariant to rescalings: flatness verdict"


def _get(key: str, ckpt: str) -> Any:
    return lambda s: (s["landscape"].get(ckpt) or {}).get(key)


def landscape_checks(checkpoints: list[str]) -> list[tuple[str, Any, None]]:
    """(claim, per-seed value, no baseline) for every landscape claim, invariant measures first."""
    checks = []
    for ckpt in checkpoints:
        checks += [
            (f"lower adaptive sharpness at {ckpt} ({INVARIANT})", _get("adaptive_sharpness", ckpt), None),
            (f"smaller adaptive top Hessian eigenvalue at {ckpt} ({INVARIANT})",
             _get("adaptive_max_eigenvalue", ckpt), None),
            (f"lower sharpness at {ckpt} ({RAW})", _get("sharpness", ckpt), None),
            (f"smaller top Hessian eigenvalue at {ckpt} ({RAW})", _get("max_eigenvalue", ckpt), None),
        ]  # fmt: skip
    return checks


def convexity_source(land: dict[str, Any]) -> tuple[float, float, float, str]:
    """(lambda_min, lambda_max, mass below -1% of lambda_max, which Hessian) of one landscape result:
    the MSE Hessian where the stage measured one beside an L1 loss, else the training loss's."""
    if "mse_max_eigenvalue" in land:
        top = land["mse_max_eigenvalue"]
        return land["mse_min_ritz_value"], top, land["mse_negative_mass"], "MSE Hessian"
    nodes, weights, top = np.array(land["slq_nodes"]), np.array(land["slq_weights"]), land["max_eigenvalue"]
    return float(nodes.min()), top, float(weights[nodes < -0.01 * top].sum()), "training-loss Hessian"


def negative_curvature(runs: dict, models: list[str], ckpt: str) -> tuple[bool, list[str]]:
    """Whether any seed has negative curvature larger than 1% of its top eigenvalue, and one summary
    per model (SLQ puts most weight near the bulk at ~0, where Ritz values fall either side of 0 by
    chance: what matters is negative curvature that is large against the top)."""
    parts, significant = [], False
    for m in models:
        ratios, masses, sources = [], [], set()
        for s in runs[m].values():
            land = s["landscape"].get(ckpt)
            if not land:
                continue
            low, top, mass, source = convexity_source(land)
            ratios.append(min(low, 0.0) / top)
            masses.append(mass)
            sources.add(source)
        if ratios:
            significant |= min(ratios) < -0.01
            parts.append(f"{m} ({', '.join(sorted(sources))}): lambda_min/lambda_max {np.mean(ratios):.3g}, "
                         f"negative mass {np.mean(masses):.3g}")  # fmt: skip
    return significant, parts


def invariance_notes(runs: dict) -> list[str]:
    """Markdown: the coordinates each model was measured in, what each reported number is invariant to."""
    lands = [land for seeds in runs.values() for s in seeds.values() for land in s["landscape"].values()]
    lands = [land for land in lands if land]
    if not lands:
        return []
    forms = sorted({land.get("parameterisation", "as trained") for land in lands})
    invariance: dict[str, str] = {}  # as the landscape stage wrote it beside its numbers
    for land in lands:
        invariance.update(land.get("invariance") or {})
    lines = ["### Curvature: coordinates and invariance", "",
             "Every model of a comparison is measured in one coordinate system: " + "; ".join(forms) + ".",
             "Each curvature number is invariant to:", ""]  # fmt: skip
    lines += [f"- `{k}`: {text}" for k, text in invariance.items()]
    if any("mse_max_eigenvalue" in land for land in lands):
        lines += ["", "This task trains on an L1 loss. L1 has no Gauss-Newton term and a ReLU network is "
                  "piecewise linear in each single weight, so every diagonal entry of the L1 Hessian is 0: "
                  "its trace is 0 and its spectrum symmetric about 0 by construction, and it cannot show "
                  "convexity. The MSE Hessian at the same weights (`mse_*`) is measured beside it and decides"
                  " the negative-eigenvalue check."]  # fmt: skip
    return lines + [""]
