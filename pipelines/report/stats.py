"""The report's statistics: one two-sample comparison (paired over shared seeds, else Welch), its effect
size with a 95% confidence interval, and Holm's step-down adjustment over a family of comparisons.

Seeds are paired when both models ran the same seeds: a seed fixes the order of the training batches for
every model (train/loop.py ``seed_everything``), so seed k of two models saw the same data in the same
order. With other seed sets the two samples are independent (Welch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: means, the difference ``mean(a) - mean(b)`` with its confidence interval, the
    two-sided p-value and which test gave it."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    diff: float
    ci_low: float
    ci_high: float
    p: float
    test: str  # "paired t" | "Welch t"

    @property
    def relative(self) -> float:
        """The difference as a fraction of ``mean(b)``."""
        return self.diff / self.mean_b if self.mean_b else float("nan")

    def effect(self) -> str:
        pct = f", {self.relative:+.1%}" if math.isfinite(self.relative) else ""
        return f"difference {self.diff:+.3g} [95% CI {self.ci_low:+.3g}, {self.ci_high:+.3g}]{pct}"


def _interval(diff: float, se: float, df: float) -> tuple[float, float, float]:
    """(p, low, high) of a t statistic ``diff / se`` with ``df`` degrees of freedom; a zero standard
    error (identical values) is decided exactly: p = 0 for a nonzero difference, 1 for none."""
    if se == 0 or not math.isfinite(se):
        return (0.0 if diff != 0 else 1.0), diff, diff
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    return p, diff - half, diff + half


def compare(a: dict[int, float], b: dict[int, float]) -> Comparison:
    """Per-seed values of two models (``{seed: value}``): paired t over the seeds when both have the same
    seeds (at least two), Welch's t otherwise."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a comparison needs at least 2 values per model, got {len(a)} and {len(b)}")
    xa, xb = np.array(list(a.values()), float), np.array(list(b.values()), float)
    ma, mb = float(xa.mean()), float(xb.mean())
    if sorted(a) == sorted(b):
        d = np.array([a[s] - b[s] for s in sorted(a)])
        se, df, test = float(d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1, "paired t"
    else:
        va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
        se = float(math.sqrt(va + vb))
        df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1)) if se else 1.0
        test = "Welch t"
    p, low, high = _interval(ma - mb, se, df)
    sd_a, sd_b = float(xa.std(ddof=1)), float(xb.std(ddof=1))
    return Comparison(len(xa), len(xb), ma, mb, sd_a, sd_b, ma - mb, low, high, p, test)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the k-th smallest raw p times the number of
    hypotheses not yet rejected, made monotone and capped at 1. Controls the family-wise error rate."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
