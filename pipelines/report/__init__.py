"""Stage: render the study report (Markdown + PNG) from the metrics of every run.

    python -m pipelines.report --params params.yaml --out report

Figures per dataset: train / valid curves (mean and spread over seeds), test error bars, sharpness at the
early and best checkpoints, Hessian spectra, and a table of parameter counts and equivariance errors. The
report states, with the numbers, which of the study's findings this run reproduces and which it does not.

Baselines (``metrics/baselines/<dataset>.json``: persistence / zero; trilinear / spectral upsampling and the
learned linear reference for super-resolution) appear in the tables and as reference lines in the test
figure, and the report names every model that does not beat the strongest. A claim is "reproduced" only
when the models involved beat the strongest baseline and the difference is significant over seeds at a
Holm-adjusted p < 0.05 over every test of the report, with at least 3 seeds per model
(pipelines/report/verdicts.py); otherwise "not significant", "not reproduced" or "inconclusive".
With more than one smoke level trained, a section plots and tests the level sweep
(pipelines/report/levels.py); its claims join the same family.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from loaders.storage import open_store
from pipelines.cli import run_stage
from pipelines.datasets import dataset_spec
from pipelines.params import StudyParams, load_params
from pipelines.report.curvature import invariance_notes
from pipelines.report.domain import domain_section
from pipelines.report.figures import mean_std as _mean_std
from pipelines.report.figures import plot_bars, plot_curves, plot_spectra
from pipelines.report.levels import level_section
from pipelines.report.summary import plot_rows, summary_metrics, test_samples, write_summaries
from pipelines.report.verdicts import (
    Claim,
    adjust,
    baseline_note,
    dataset_claims,
    negative_eigenvalue_lines,
    render_claims,
    trained_pairs,
    verdict,
)
from train.runs import RunId, baseline_metrics, metric_key

FAMILY_NOTE = (
    "Every tested claim of this report (both datasets) is one family: each verdict is worded by its "
    "Holm-adjusted p (family-wise error 5%), with the raw p beside it; coordinate-dependent curvature "
    "numbers are compared descriptively, outside the family. Seeds are paired where both models "
    "ran the same seeds (a seed fixes the order of the training batches); the effect is the "
    "difference of the means with its 95% confidence interval."
)

LEVELS = "smoke levels"  # the level sweep's section
DOMAIN = "smoke protocols"  # the Future / Domain test protocols' section

__all__ = ["collect", "findings", "read_baselines", "render", "report_findings", "verdict"]


def read_baselines(metrics_dir: Path, dataset: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``[split][baseline]`` -> score of each trivial predictor, or {} when the stage has not run."""
    data = _read_json(baseline_metrics(metrics_dir, dataset))
    return data["splits"] if data else {}


def best_baseline(baselines: dict, split: str, metric: str) -> tuple[str, float] | None:
    scores = baselines.get(split) or {}
    if not scores:
        return None
    name = min(scores, key=lambda k: scores[k][metric])
    return name, float(scores[name][metric])


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


_read_json = _read


def collect(params: StudyParams, metrics_dir: Path) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    """``results[dataset][model][seed]`` holds that run's train metrics, curves and landscape results."""
    out: dict[str, dict[str, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for dataset in params.datasets:
        section = getattr(params.train, dataset)
        for model in section.models:
            for seed in section.seeds:
                level = section.levels[0] if dataset_spec(dataset).has_levels else None
                run = RunId(dataset, model, seed, level)
                ckpts = params.landscape.checkpoints
                entry = {
                    "train": _read(run.train_metrics(metrics_dir)),
                    "curves": _read(run.curves(metrics_dir)),
                    "landscape": {c: _read(run.landscape_metrics(metrics_dir, c)) for c in ckpts},
                }
                if entry["train"] is not None:
                    out[dataset][model][seed] = entry
    return out


def _caption(dataset: str, source: str, params: StudyParams) -> str:
    section = getattr(params.train, dataset)
    opt = section.optimiser
    return (f"{dataset} ({source}); seeds {section.seeds}; epochs <= {opt.max_epochs}, lr {opt.lr:g}, "
            f"wd {opt.weight_decay:g}, batch {opt.batch_size}")  # fmt: skip


def _subset(params: StudyParams) -> str:
    land = params.landscape
    return f"landscape on {land.subset_fraction:.0%} of the training samples (>= {land.subset_min_samples})"


def findings(dataset: str, runs: dict, checkpoints: list[str], baselines: dict | None = None) -> list[str]:
    """One dataset's claims as a family of their own (see :func:`report_findings`)."""
    return report_findings({dataset: (runs, checkpoints, baselines or {})})[dataset]


def report_findings(
    per_dataset: dict[str, tuple[dict, list[str], dict]], extra: dict[str, list[Claim]] | None = None
) -> dict[str, list[str]]:
    """Markdown lines per dataset: every tested claim of the report in one family, worded by its
    Holm-adjusted p (pipelines/report/verdicts.py); ``per_dataset``: (runs, checkpoints, baselines);
    ``extra``: further sections' claims (the level sweep), in the same family, rendered under their key."""
    extra = extra or {}
    head: dict[str, list[str]] = {d: [] for d in per_dataset}  # why a dataset has no or gated claims
    claims: dict[str, list[Claim]] = {d: [] for d in per_dataset}
    tail: dict[str, list[str]] = {d: [] for d in per_dataset}  # descriptive, untested lines
    for dataset, (runs, checkpoints, baselines) in per_dataset.items():
        trained = trained_pairs(dataset, runs)
        untrained = [p for p in dataset_spec(dataset).comparisons if p not in trained]
        head[dataset] += [f"- {dataset}: {a} or {b} was not trained; not compared." for a, b in untrained]
        if not trained:
            continue
        metric = dataset_spec(dataset).metric
        test_base = best_baseline(baselines, "test", metric)
        if test_base is None:
            head[dataset].append(
                f"- {dataset}: no baseline scores (stage `baselines`); no claim can be reproduced."
            )
        valid_base = best_baseline(baselines, "valid", metric)
        claims[dataset] = dataset_claims(dataset, runs, checkpoints, test_base, valid_base)
        tail[dataset] = negative_eigenvalue_lines(dataset, runs, checkpoints, test_base)
    adjusted = adjust([c for cs in (*claims.values(), *extra.values()) for c in cs])
    out = {d: head[d] + render_claims(claims[d], len(adjusted), adjusted) + tail[d] for d in per_dataset}
    return out | {key: render_claims(cs, len(adjusted), adjusted) for key, cs in extra.items()}


def plateau_note(runs: dict[str, dict[int, dict[str, Any]]], params: StudyParams, dataset: str) -> str:
    """Whether each model's runs ended on a validation plateau (early stopping) or at max_epochs."""
    opt = getattr(params.train, dataset).optimiser
    parts = []
    for model, seeds in sorted(runs.items()):
        flags = [s["train"].get("stopped_early") for s in seeds.values()]
        known = [f for f in flags if f is not None]  # metrics written before the flag existed: unknown
        word = f"{sum(known)}/{len(flags)} seeds stopped on a plateau"
        hit = [str(seed) for seed, s in seeds.items() if s["train"].get("stopped_early") is False]
        if hit:
            word += f" ({'seed' if len(hit) == 1 else 'seeds'} {', '.join(hit)} hit max_epochs)"
        parts.append(f"{model} {word}")
    gain = f" of at least {opt.min_improvement:.1%}" if opt.min_improvement else ""
    return (
        f"Converged (validation plateau: no improvement{gain} for {opt.patience} epochs, at most "
        f"{opt.max_epochs}): " + "; ".join(parts) + "."
    )


def _cell(values: list[float], fmt: str) -> str:
    """Mean over the seeds that were measured, or a dash: never a ``nan`` cell (an SE of one test sample is
    undefined)."""
    finite = [v for v in values if np.isfinite(v)]
    return format(_mean_std(finite)[0], fmt) if finite else "—"


def render(
    params: StudyParams, metrics_dir: Path, out: Path, sources: dict[str, tuple[str, str]],
    summary_dir: Path | None = None, plots_dir: Path | None = None, stores: dict[str, Path] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Write ``out/report.md`` + PNGs and, when given, the DVC summary metrics and plot data; ``stores``
    (default: the data stages' outputs) give the smoke levels' data equivariance errors."""
    plt.switch_backend("Agg")  # files only, never a window
    out.mkdir(parents=True, exist_ok=True)
    results = collect(params, metrics_dir)
    if not results:  # an empty report with exit 0 would hide a wrong --metrics-dir
        raise FileNotFoundError(
            f"no run metrics under {metrics_dir}/train for the runs in params.train; "
            "check --metrics-dir or run the train stages first (dvc repro)"
        )
    ckpts = list(params.landscape.checkpoints)
    head = ["# Equivariance and training dynamics: study report", ""]
    head += ["Generated by `dvc repro` (stage `report`) from `metrics/`. Numbers are means over seeds "
           "(± standard deviation); n = seeds (x test samples per seed) is given in every figure legend and "
           "table. Metrics are in physical units of the target field; sharpness and Hessian values are in "
           "units of the (normalised) training loss. \"—\" marks a model that was not measured.",
           ""]  # fmt: skip
    summary: dict[str, Any] = {}
    dvc_files: dict[str, tuple[dict, dict]] = {}
    sections: dict[str, list[str]] = {}
    claims: dict[str, tuple[dict, list[str], dict]] = {}
    for dataset, runs in results.items():
        md = sections[dataset] = []
        short, source = sources.get(dataset, ("unknown source", "unknown source"))
        caption = _caption(dataset, short, params)
        metric = dataset_spec(dataset).metric
        md += [f"## {dataset} — data: {short}", ""]  # a heading stays one short line
        md += [source, ""] if source != short else []
        plot_curves(dataset, runs, out / f"{dataset}_curves.png", caption, metric)
        md += [f"![curves]({dataset}_curves.png)", ""]
        tests = {
            "test": {m: [s["train"][metric_key(metric)] for s in seeds.values()] for m, seeds in runs.items()}
        }
        baselines = read_baselines(metrics_dir, dataset)
        refs = {name: s[metric] for name, s in baselines.get("test", {}).items()}
        samples = {m: test_samples(seeds) for m, seeds in runs.items()}
        samples.update({f"baseline:{name}": s["n"] for name, s in baselines.get("test", {}).items()})
        units = dataset_spec(dataset).units
        plot_bars(tests, f"test {metric.upper()} ({units})", out / f"{dataset}_test.png", caption,
                  refs, samples)  # fmt: skip
        md += [f"![test error]({dataset}_test.png)", ""]
        sharp = {
            c: {m: [s["landscape"][c]["sharpness"] for s in seeds.values() if s["landscape"].get(c)]
                for m, seeds in runs.items()}
            for c in ckpts
        }  # fmt: skip
        plot_bars(sharp, "sharpness phi(w, D, T) (training-loss units)", out / f"{dataset}_sharpness.png",
                  caption + f"; {_subset(params)}")  # fmt: skip
        md += [f"![sharpness]({dataset}_sharpness.png)", ""]
        plot_spectra(runs, ckpts, out / f"{dataset}_spectra.png", caption)
        md += [f"![spectra]({dataset}_spectra.png)", ""]
        md += [f"Test {metric.upper()}: mean over seeds ± sd over seeds; \"SE\" is the standard error over "
               "test samples (mean of the per-seed values); n = test samples x seeds; landscape columns: "
               "mean over the seeds measured (\"—\": not measured). Equivariance error: max over the group "
               "of |f(g x) - g f(x)| / |f(x)|, of the whole prediction and of the network alone (a residual "
               "model's correction, whose symmetry breaking the exactly equivariant trivial part dilutes).",
               ""]  # fmt: skip
        header = (f"| model | parameters | equivariance error: prediction / network | "
                  f"test {metric.upper()} | SE (samples) | n |")  # fmt: skip
        header += "".join(f" sharpness {c} | top eig {c} | adaptive top eig {c} |" for c in ckpts)
        md += [header, "|" + "---|" * (6 + 3 * len(ckpts))]
        table = {}
        for name, s in sorted(baselines.get("test", {}).items()):
            se_cell = _cell([s["se"]], ".2g")
            md.append(f"| baseline: {name} | 0 | — | {s[metric]:.4g} | {se_cell} | {s['n']} x 1 |"
                      + " — | — | — |" * len(ckpts))  # fmt: skip
            table[f"baseline:{name}"] = {
                metric_key(metric): s[metric], "test_se": s["se"], "test_samples": s["n"]
            }
        for model, seeds in sorted(runs.items()):
            first = next(iter(seeds.values()))["train"]
            t_mean, t_std = _mean_std([s["train"][metric_key(metric)] for s in seeds.values()])
            e_mean, _ = _mean_std([s["train"]["equivariance_error"] for s in seeds.values()])
            net = [s["train"]["equivariance_error_network"] for s in seeds.values()
                   if "equivariance_error_network" in s["train"]]  # fmt: skip
            se_key = metric_key(metric) + "_se"
            se = [s["train"][se_key] for s in seeds.values() if se_key in s["train"]]
            n_test = test_samples(seeds)
            net_cell = f"{_mean_std(net)[0]:.2e}" if net else "—"
            row = (f"| {model} | {first['parameters']:,} | {e_mean:.2e} / {net_cell} | "
                   f"{t_mean:.4g} ± {t_std:.2g} | "
                   f"{_cell(se, '.2g')} | {n_test} x {len(seeds)} |")  # fmt: skip
            table[model] = {
                "parameters": first["parameters"],
                "equivariance_error": e_mean,
                **({"equivariance_error_network": _mean_std(net)[0]} if net else {}),
                metric_key(metric): t_mean,
                "test_samples": n_test,
                "seeds": len(seeds),
            }
            if se:
                table[model]["test_se"] = float(np.mean(se))
            for c in ckpts:
                sh = [s["landscape"][c]["sharpness"] for s in seeds.values() if s["landscape"].get(c)]
                ev = [s["landscape"][c]["max_eigenvalue"] for s in seeds.values() if s["landscape"].get(c)]
                ad = [s["landscape"][c]["adaptive_max_eigenvalue"] for s in seeds.values()
                      if "adaptive_max_eigenvalue" in (s["landscape"].get(c) or {})]  # fmt: skip
                row += f" {_cell(sh, '.4g')} | {_cell(ev, '.4g')} | {_cell(ad, '.4g')} |"
                if ad:
                    table[model][f"adaptive_top_eigenvalue_{c}"] = _mean_std(ad)[0]
                if sh:
                    table[model][f"sharpness_{c}"], table[model][f"top_eigenvalue_{c}"] = (
                        _mean_std(sh)[0], _mean_std(ev)[0])  # fmt: skip
            md.append(row)
        md += ["", baseline_note(runs, metric, best_baseline(baselines, "test", metric))]
        md += ["", plateau_note(runs, params, dataset), ""] + invariance_notes(runs)
        claims[dataset] = (runs, ckpts, baselines)
        summary[dataset] = table
        base = best_baseline(baselines, "test", metric)
        dvc_files[dataset] = (
            summary_metrics(runs, metric, ckpts, base),
            plot_rows(runs, metric, ckpts, baselines),
        )
    level_claims, summary_levels = [], None
    smoke_store = (stores or {}).get("smoke")
    if "smoke" in params.datasets and smoke_store:  # the smoke level sweep
        sections[LEVELS], level_claims, summary_levels = level_section(params, metrics_dir, smoke_store, out)
    if summary_levels:
        summary["smoke_levels"] = summary_levels
    extra = {LEVELS: level_claims} if level_claims else {}
    if "smoke" in params.datasets:  # Wang 2022's Future and Domain protocols, one Holm family with the rest
        sections[DOMAIN], extra[DOMAIN], protocols = domain_section(params, metrics_dir)
        summary.update({"smoke_protocols": protocols} if protocols else {})
    worded = report_findings(claims, {k: v for k, v in extra.items() if v} or None)
    for dataset, lines in worded.items():
        sections[dataset] += ["", "### The study's findings, checked", "", FAMILY_NOTE, ""] + lines + [""]
    md = head + [line for section in sections.values() for line in section]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if summary_dir is not None and plots_dir is not None:
        write_summaries(summary_dir, plots_dir, dvc_files, params.datasets)
    return summary


def dataset_sources(paths: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """(short label for figure captions, full description) of how each dataset was made, from its
    store's attributes (its spec's ``describe``): JHTDB or synthetic, stated plainly."""
    out = {}
    for name, path in paths.items():
        if not Path(path).exists():
            continue
        out[name] = dataset_spec(name).describe(open_store(path).attrs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--out", type=Path, default=Path("report"))
    parser.add_argument("--summary-dir", type=Path, default=None,
                        help="write <dataset>.json summaries for `dvc metrics show` here")  # fmt: skip
    parser.add_argument("--plots-dir", type=Path, default=None,
                        help="write the plot data of dvc.yaml's top-level plots here")  # fmt: skip
    parser.add_argument("--store", action="append", default=[], metavar="NAME=PATH",
                        help="a dataset's store (default: data/<its store name>)")  # fmt: skip
    args = parser.parse_args(argv)

    def body() -> dict:
        params = load_params(args.params)
        given = dict(item.partition("=")[::2] for item in args.store)
        paths = {d: Path(given.get(d) or dataset_spec(d, params).store_path) for d in params.datasets}
        sources = dataset_sources(paths)
        return render(params, args.metrics_dir, args.out, sources, args.summary_dir, args.plots_dir, paths)

    return run_stage("report", body)


if __name__ == "__main__":
    sys.exit(main())
