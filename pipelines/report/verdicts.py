"""The study's claims, checked against a run's numbers, as one family of tests per report.

Every claim compares a relaxed model with a stricter one (or the plain baseline model) on one per-seed
number: test error, best validation error, sharpness, top Hessian eigenvalue. A claim is tested only when
both models have at least ``MIN_SEEDS`` seeds and beat the strongest trivial baseline (a model worse than
doing nothing has learnt nothing worth comparing). The tests of one report are one family: each verdict is
worded by its Holm-adjusted p-value (pipelines/report/stats.py), with the raw p, the adjusted p and the
effect size (difference with a 95% confidence interval) beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.datasets import dataset_spec
from pipelines.report.curvature import RAW, landscape_checks, negative_curvature
from pipelines.report.figures import mean_std
from pipelines.report.stats import ALPHA, Comparison, compare, holm
from train.runs import metric_key

# Which model pairs the study compares (relaxed, other) and by which metric: each dataset's spec
# (pipelines/datasets.py, ``comparisons`` and ``metric``).
MIN_SEEDS = 3  # fewer seeds per model: no verdict


@dataclass(frozen=True)
class Claim:
    """"``relaxed`` has ``claim`` than ``other``": either tested (``comparison``) or settled without a test
    (``word``: inconclusive, not reproduced by the baseline gate, not measured)."""

    text: str
    comparison: Comparison | None = None
    word: str | None = None
    detail: str = ""
    in_family: bool = True  # False: a coordinate-dependent number, compared but never a verdict


def baseline_gate(means: list[float], baseline: float | None) -> str | None:
    """The verdict that stands without a test when a model does not beat the baseline, else None."""
    if baseline is not None and max(means) >= baseline:
        return "not reproduced (a model does not beat the baseline)"
    return None


def claim(text: str, a: Mapping[int, float], b: Mapping[int, float], baseline: float | None) -> Claim:
    """One claim "a is lower than b" on per-seed values, gated on seeds and on the baseline."""
    if min(len(a), len(b)) < MIN_SEEDS:
        return Claim(text, word=f"inconclusive (n seeds < {MIN_SEEDS})", detail=f"{len(a)} / {len(b)} seeds")
    gate = baseline_gate([float(np.mean(list(a.values()))), float(np.mean(list(b.values())))], baseline)
    if gate:
        return Claim(text, word=gate, detail=f"baseline {baseline:.4g}, {len(a)} / {len(b)} seeds")
    return Claim(text, comparison=compare(dict(a), dict(b)))


def word(comparison: Comparison, adjusted_p: float) -> str:
    if adjusted_p >= ALPHA:
        return "not significant"
    if comparison.diff < 0:
        return "reproduced"
    return "NOT reproduced (significantly the other way)"


def render_claims(claims: list[Claim], family: int, adjusted: dict[int, float]) -> list[str]:
    """Markdown lines, each tested claim worded by its adjusted p (``adjusted`` by ``id`` of the claim)."""
    lines = []
    for c in claims:
        if c.comparison is None:
            lines.append(f"- {c.text}: **{c.word}** ({c.detail})")
            continue
        cmp = c.comparison
        if not c.in_family:
            lines.append(
                f"- {c.text}: {cmp.mean_a:.4g} ± {cmp.sd_a:.2g} vs {cmp.mean_b:.4g} ± {cmp.sd_b:.2g} "
                f"({cmp.effect()}; {cmp.test}, raw p = {cmp.p:.2g}; not in the family)"
            )
            continue
        p_adj = adjusted[id(c)]
        lines.append(
            f"- {c.text}: **{word(cmp, p_adj)}** ({cmp.mean_a:.4g} ± {cmp.sd_a:.2g} vs {cmp.mean_b:.4g} ± "
            f"{cmp.sd_b:.2g}, mean ± sd over seeds; "
            f"{cmp.effect()}; {cmp.test}, raw p = {cmp.p:.2g}, Holm p = {p_adj:.2g} over {family} tests; "
            f"{cmp.n_a} / {cmp.n_b} seeds)"
        )
    return lines


def adjust(claims: list[Claim]) -> dict[int, float]:
    """Holm-adjusted p of every tested claim of the family, keyed by ``id(claim)``."""
    tested = [c for c in claims if c.comparison is not None and c.in_family]
    return dict(zip((id(c) for c in tested), holm([c.comparison.p for c in tested]), strict=True))


def verdict(
    a: Mapping[int, float] | list[float], b: Mapping[int, float] | list[float], baseline: float | None = None
) -> tuple[str, str]:
    """One claim on its own (a family of one): ``(verdict, detail)``. Lists are independent samples
    (Welch); dicts keyed by seed are paired where the seeds agree."""
    c = claim("a < b", _by_seed(a, 0), _by_seed(b, 10**6), baseline)
    if c.comparison is None:
        return str(c.word), c.detail
    return word(c.comparison, c.comparison.p), f"{c.comparison.test} p = {c.comparison.p:.2g}"


def _by_seed(values: Mapping[int, float] | list[float], first: int) -> Mapping[int, float]:
    """A list as values of distinct seeds starting at ``first`` (so two lists never pair)."""
    return values if isinstance(values, Mapping) else {first + i: x for i, x in enumerate(values)}


def seed_values(runs: dict, model: str, fn: Callable[[dict], Any]) -> dict[int, float]:
    return {seed: v for seed, s in runs[model].items() if (v := fn(s)) is not None}


def trained_pairs(dataset: str, runs: dict) -> list[tuple[str, str]]:
    """The dataset's (relaxed, other) comparisons whose two models both have runs."""
    return [pair for pair in dataset_spec(dataset).comparisons if all(m in runs for m in pair)]


def dataset_claims(dataset: str, runs: dict, checkpoints: list[str], test_base: tuple | None,
                   valid_base: tuple | None) -> list[Claim]:  # fmt: skip
    """The claims of one dataset, pair by pair: test and validation error, then per checkpoint sharpness
    and the top Hessian eigenvalue (those gated on the test baseline: flatness of a model that learnt
    nothing is moot)."""
    metric = dataset_spec(dataset).metric

    def test_fn(s: dict) -> Any:
        return s["train"][metric_key(metric)]

    checks: list[tuple[str, Callable[[dict], Any], tuple | None]] = [
        (f"lower test {metric.upper()}", test_fn, test_base),
        (f"lower best validation {metric.upper()}", lambda s: s["train"][metric_key(metric, "best_valid")],
         valid_base),
    ]
    checks += landscape_checks(checkpoints)  # invariant measures decide; raw ones are described
    out = []
    for relaxed, other in trained_pairs(dataset, runs):
        for text, fn, base in checks:
            label = f"{relaxed} has {text} than {other}"
            a, b = seed_values(runs, relaxed, fn), seed_values(runs, other, fn)
            if not a or not b:
                out.append(Claim(label, word="not measured", detail="no values"))
                continue
            if base is None and test_base is None:
                seeds = f"{len(a)} / {len(b)} seeds"
                out.append(Claim(label, word="inconclusive (no baseline)", detail=seeds))
                continue
            if base is None:  # landscape claims: gate on the test baseline
                tests = [float(np.mean(list(seed_values(runs, m, test_fn).values())))
                         for m in (relaxed, other)]  # fmt: skip
                gate = baseline_gate(tests, test_base[1])
                if gate and min(len(a), len(b)) >= MIN_SEEDS:
                    out.append(Claim(label, word=gate.replace("baseline", "test baseline"),
                                     detail=f"{len(a)} / {len(b)} seeds"))  # fmt: skip
                    continue
            tested = claim(label, a, b, base[1] if base else None)
            if RAW in text and tested.comparison is not None:
                tested = Claim(label, comparison=tested.comparison, in_family=False)
            out.append(tested)
    return out


def negative_eigenvalue_lines(
    dataset: str, runs: dict, checkpoints: list[str], test_base: tuple | None
) -> list[str]:
    """"No (significant) negative eigenvalues": descriptive (no test, not in the family), read from the
    Hessian that can show convexity (pipelines/report/curvature.py), over the models of the compared pairs."""
    metric = dataset_spec(dataset).metric
    models = list(dict.fromkeys(m for pair in trained_pairs(dataset, runs) for m in pair))
    lines = []
    for ckpt in checkpoints:
        significant, parts = negative_curvature(runs, models, ckpt)
        verdict_word = "NOT reproduced" if significant else "reproduced"
        n_seeds = min((len(runs[m]) for m in models), default=0)
        if n_seeds < MIN_SEEDS:
            verdict_word = f"inconclusive (n seeds < {MIN_SEEDS})"
        elif test_base is None:
            verdict_word = "inconclusive (no baseline)"
        elif any(mean_std([s["train"][metric_key(metric)] for s in runs[m].values()])[0] >= test_base[1]
                 for m in models):  # fmt: skip
            verdict_word = "not reproduced (a model does not beat the test baseline)"
        lines.append(f"- no (significant) negative eigenvalues at {ckpt}: **{verdict_word}** "
                     f"({'; '.join(parts)})")  # fmt: skip
    return lines


def baseline_note(runs: dict, metric: str, base: tuple[str, float] | None) -> str:
    """One plain sentence: which models beat the strongest baseline on test (mean over seeds) and which do
    not, with how many seeds of each are below it."""
    if base is None:
        return "No baseline scores: no model can be said to beat one (run the `baselines` stage)."
    name, value = base
    beat, lost = [], []
    for model, seeds in sorted(runs.items()):
        tests = [s["train"][metric_key(metric)] for s in seeds.values()]
        below = sum(t < value for t in tests)
        entry = f"{model} ({np.mean(tests):.4g}; {below}/{len(tests)} seeds below)"
        (beat if np.mean(tests) < value else lost).append(entry)
    text = f"Strongest test baseline: {name} ({value:.4g}). "
    text += f"Beat it: {', '.join(beat) or 'none'}. "
    if lost:
        text += f"**Do not beat it: {', '.join(lost)}**; their comparisons are not tested."
    return text
