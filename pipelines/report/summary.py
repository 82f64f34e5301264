"""What `dvc metrics show` / `dvc exp show` and `dvc plots show` read: one small summary per dataset and the
plot data of the study's figures (declared in dvc.yaml: the summaries as ``metrics:``, the plot data under
the top-level ``plots:``).

``metrics/summary/<dataset>.json``: the strongest test baseline, the seeds and test samples per seed, and
per model the mean test error over seeds, its standard error over seeds (two seeds or more) and, for the
models the landscape stage measured, the sharpness at the last checkpoint (the report has the rest).
``metrics/plots/<dataset>_{curves,test,sharpness,spectra}.json``: rows with a ``series`` field (model and
seed count) that the templates in pipelines/report/templates colour by.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.report.figures import DENSITY_FLOOR, curve_bands, mean_std, seeds_label, smoothed_spectra
from train.runs import metric_key

PLOTS = ("curves", "test", "sharpness", "spectra")


def _r(x: float) -> float:
    return float(f"{x:.6g}")  # short, stable numbers in a git-tracked file


def test_samples(seeds: dict) -> int | str:
    first = next(iter(seeds.values()))["train"]
    return first.get("test_samples", first.get("samples", {}).get("test", "?"))


def summary_metrics(runs: dict, metric: str, checkpoints: list[str], best_base: tuple | None) -> dict:
    """The dataset's summary, one readable row in `dvc metrics show` (about 20 columns at most): the
    strongest baseline, the seeds and test samples behind every mean, and per model the mean test error,
    its standard error over seeds and, where the landscape stage measured it, the sharpness at the last
    checkpoint. Only measured numbers: a model without landscape runs has no sharpness key."""
    out: dict[str, Any] = {}
    if best_base is not None:
        out["baseline"] = {best_base[0]: _r(best_base[1])}  # the strongest trivial predictor's test error
    if runs:
        seeds = next(iter(runs.values()))
        out["seeds"], out["test_samples"] = len(seeds), test_samples(seeds)
    for model, seeds in sorted(runs.items()):
        tests = [s["train"][metric_key(metric)] for s in seeds.values()]
        mean, sd = mean_std(tests)
        row: dict[str, Any] = {metric_key(metric): _r(mean)}
        if len(tests) > 1:  # one seed has no spread: no SE rather than a misleading 0
            row["test_se"] = _r(sd / np.sqrt(len(tests)))
        if len(tests) != out.get("seeds"):
            row["seeds"] = len(tests)
        last = checkpoints[-1] if checkpoints else None
        lands = [s["landscape"][last] for s in seeds.values() if (s.get("landscape") or {}).get(last)]
        if lands:
            row[f"sharpness_{last}"] = _r(float(np.mean([x["sharpness"] for x in lands])))
        out[model] = row
    return out


def plot_rows(runs: dict, metric: str, checkpoints: list[str], baselines: dict) -> dict[str, list[dict]]:
    """Rows of each plot: the same numbers the PNG figures show."""
    rows: dict[str, list[dict]] = {name: [] for name in PLOTS}
    for model, band in curve_bands(runs, "valid_metric").items():
        series = seeds_label(model, band["seeds"])
        for e, m, lo, hi in zip(band["epochs"], band["mean"], band["lo"], band["hi"], strict=True):
            rows["curves"].append({"series": series, "epoch": e, metric_key(metric, "valid"): _r(m),
                                   "lo": _r(lo), "hi": _r(hi)})  # fmt: skip
    for name, s in sorted(baselines.get("test", {}).items()):
        v = _r(s[metric])
        rows["test"].append({"series": f"baseline: {name} (n = {s['n']} test samples)", metric_key(metric): v,
                             "lo": v, "hi": v})  # fmt: skip
    for model, seeds in sorted(runs.items()):
        m, sd = mean_std([s["train"][metric_key(metric)] for s in seeds.values()])
        rows["test"].append({"series": seeds_label(model, len(seeds), test_samples(seeds)),
                             metric_key(metric): _r(m), "lo": _r(m - sd), "hi": _r(m + sd)})  # fmt: skip
        for c in checkpoints:
            sh = [s["landscape"][c]["sharpness"] for s in seeds.values() if (s.get("landscape") or {}).get(c)]
            if sh:
                m, sd = mean_std(sh)
                series = seeds_label(f"{model} @ {c}", len(sh))
                rows["sharpness"].append({"series": series, "sharpness": _r(m), "lo": _r(m - sd),
                                          "hi": _r(m + sd)})  # fmt: skip
    for c in checkpoints:
        grid, spectra = smoothed_spectra(runs, c, points=200)
        peak = max((float(s["density"].max()) for s in spectra.values()), default=1.0)
        for model, s in spectra.items():
            series = seeds_label(f"{model} @ {c}", s["seeds"])
            for g, d in zip(grid, np.maximum(s["density"], DENSITY_FLOOR * peak), strict=True):
                rows["spectra"].append({"series": series, "eigenvalue": _r(g), "density": _r(d)})
    return rows


def write_summaries(
    summary_dir: Path, plots_dir: Path, per_dataset: dict[str, tuple[dict, dict]], datasets: list[str]
) -> None:
    """Write the files of every dataset of ``datasets``, ``{}`` / ``[]`` for one without runs (DVC expects
    each output)."""
    summary_dir.mkdir(parents=True, exist_ok=True)
    plots_dir.mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        summary, rows = per_dataset.get(dataset, ({}, {}))
        (summary_dir / f"{dataset}.json").write_text(json.dumps(summary, indent=2) + "\n")
        for name in PLOTS:
            (plots_dir / f"{dataset}_{name}.json").write_text(json.dumps(rows.get(name, []), indent=1) + "\n")
