"""The report's statistics: Holm's adjustment, paired / Welch comparisons with confidence intervals, and a
family of verdicts worded by the adjusted p."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pipelines.report import report_findings, verdict
from pipelines.report.stats import compare, holm


def test_holm_matches_the_step_down_procedure_by_hand() -> None:
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == [0.02]  # a family of one is not adjusted


def test_paired_comparison_agrees_with_scipy_when_the_seeds_match() -> None:
    a = {0: 0.50, 1: 0.56, 2: 0.49, 3: 0.53}
    b = {0: 0.55, 1: 0.58, 2: 0.56, 3: 0.54}
    c = compare(a, b)
    ref = stats.ttest_rel(list(a.values()), list(b.values()))
    assert c.test == "paired t"
    assert c.p == pytest.approx(ref.pvalue, rel=1e-10)
    low, high = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((low, high), rel=1e-10)
    assert c.diff == pytest.approx(np.mean(list(a.values())) - np.mean(list(b.values())))


def test_welch_comparison_agrees_with_scipy_when_the_seeds_differ() -> None:
    a = {0: 0.50, 1: 0.56, 2: 0.49}
    b = {3: 0.55, 4: 0.61, 5: 0.56, 6: 0.60}
    c = compare(a, b)
    ref = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False)
    assert c.test == "Welch t"
    assert c.p == pytest.approx(ref.pvalue, rel=1e-10)
    low, high = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((low, high), rel=1e-10)
    with pytest.raises(ValueError, match="at least 2"):
        compare({0: 1.0}, b)


def _runs(values: dict[str, list[float]]) -> dict:
    """Synthetic runs: each model's per-seed value used for every claim (test, valid, landscape)."""
    runs: dict = {}
    for model, vals in values.items():
        runs[model] = {}
        for seed, v in enumerate(vals):
            land = {"sharpness": v, "max_eigenvalue": v, "adaptive_sharpness": v,
                    "adaptive_max_eigenvalue": v, "slq_nodes": [0.0, v], "slq_weights": [0.5, 0.5]}
            runs[model][seed] = {"train": {"test_rmse": v, "best_valid_rmse": v}, "landscape": {"best": land}}
    return runs


def test_a_family_whose_raw_p_pass_and_adjusted_p_fail_is_not_significant() -> None:
    e2cnn = [0.60, 0.62, 0.58]
    rsteer = [x - d for x, d in zip(e2cnn, [0.010, 0.012, 0.008], strict=True)]  # paired t = 8.7, p = 0.013
    baselines = {split: {"persistence": {"rmse": 1.0}} for split in ("test", "valid")}
    runs = _runs({"rsteer": rsteer, "e2cnn": e2cnn})
    lines = report_findings({"smoke": (runs, ["best"], baselines)})["smoke"]
    tested = [line for line in lines if "Holm p" in line]
    # test, valid, adaptive sharpness and adaptive top eigenvalue at best: one family of 4 (the raw,
    # coordinate-dependent curvature numbers are described outside it)
    assert len(tested) == 4
    for line in tested:
        assert "raw p = 0.013" in line and "Holm p = 0.052 over 4 tests" in line, line
        assert "**not significant**" in line, line
    # the same comparison alone passes: the correction, not the data, decides
    assert verdict(dict(enumerate(rsteer)), dict(enumerate(e2cnn)), baseline=1.0)[0] == "reproduced"
    assert "95% CI" in tested[0]


def test_a_family_spans_both_datasets_of_the_report() -> None:
    smoke = _runs({"rsteer": [0.59, 0.608, 0.572], "e2cnn": [0.60, 0.62, 0.58]})
    sr = _runs({"rgcnn": [0.59, 0.608, 0.572], "gcnn": [0.60, 0.62, 0.58]})
    for seeds in sr.values():
        for s in seeds.values():
            rmse = s["train"]
            s["train"] = {"test_mae": rmse["test_rmse"], "best_valid_mae": rmse["best_valid_rmse"]}
    base = {split: {"spectral": {"mae": 1.0, "rmse": 1.0}} for split in ("test", "valid")}
    lines = report_findings({"smoke": (smoke, [], base), "turbulence": (sr, [], base)})
    assert all("over 4 tests" in line for d in lines.values() for line in d if "Holm p" in line)


def test_smoke_tests_both_relaxed_pairs_in_one_family() -> None:
    """Wang et al. 2022's two smoke pairs, rsteer vs e2cnn and rgcnn vs gcnn, each with its error and its
    invariant curvature claims; the raw curvature numbers are described outside the family."""
    strict = [0.60, 0.62, 0.58]
    relaxed = [x - d for x, d in zip(strict, [0.010, 0.012, 0.008], strict=True)]
    runs = _runs({"rsteer": relaxed, "e2cnn": strict, "rgcnn": relaxed, "gcnn": strict})
    baselines = {split: {"persistence": {"rmse": 1.0}} for split in ("test", "valid")}
    lines = report_findings({"smoke": (runs, ["best"], baselines)})["smoke"]
    tested = [line for line in lines if "Holm p" in line]
    assert len(tested) == 8 and all("over 8 tests" in line for line in tested)
    for relaxed_model, strict_model in (("rsteer", "e2cnn"), ("rgcnn", "gcnn")):
        pair = [line for line in tested if line.startswith(f"- {relaxed_model} has ")]
        assert len(pair) == 4 and all(line.split(" than ")[1].startswith(strict_model) for line in pair)
        assert any("adaptive sharpness at best" in line for line in pair)
    raw = [line for line in lines if "not in the family" in line]
    assert len(raw) == 4  # raw sharpness and top eigenvalue, per pair
    negative = [line for line in lines if "negative eigenvalues" in line]
    assert len(negative) == 1 and all(m in negative[0] for m in ("rsteer", "e2cnn", "rgcnn", "gcnn"))


def test_the_report_names_a_model_that_does_not_beat_the_strongest_baseline() -> None:
    from pipelines.report.verdicts import baseline_note

    runs = _runs({"cnn": [0.17, 0.18, 0.16], "gcnn": [0.13, 0.14, 0.15]})
    note = baseline_note(runs, "rmse", ("fourier_linear", 0.15))
    assert "Beat it: gcnn (0.14; 2/3 seeds below)" in note
    assert "**Do not beat it: cnn (0.17; 0/3 seeds below)**" in note
