"""Stage: render the study report (Markdown + PNG) from the metrics of every run.

    python -m pipelines.report --params params.yaml --out report

Figures per dataset: train / valid curves (mean and spread over seeds), test error bars, sharpness at the
early and best checkpoints, Hessian spectra, and a table of parameter counts and equivariance errors. The
report states, with the numbers, which of the study's findings this run reproduces and which it does not.

Trivial baselines (``metrics/baselines/<dataset>.json``: persistence / zero, trilinear / spectral upsampling)
appear in the tables and as reference lines in the test figure. A claim is "reproduced" only when the models
involved beat the strongest baseline and the difference is significant over seeds (Welch's t-test, p < 0.05,
at least 3 seeds per model); otherwise "not significant", "not reproduced" or "inconclusive".
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
from scipy import stats

from loaders.storage import open_store
from pipelines.cli import STORE_PATHS, run_stage
from pipelines.params import StudyParams, load_params
from pipelines.report.curvature import invariance_notes, landscape_checks, negative_curvature
from pipelines.report.figures import UNITS, plot_bars, plot_curves, plot_spectra
from pipelines.report.figures import mean_std as _mean_std
from pipelines.report.summary import plot_rows, summary_metrics, test_samples, write_summaries
from train.runs import RunId, baseline_metrics

# Which models the study compares, relaxed first: (relaxed, fully equivariant, baseline or None).
COMPARISONS = {"smoke": ("rsteer", "e2cnn", None), "turbulence": ("rgcnn", "gcnn", "cnn")}
METRIC = {"smoke": "rmse", "turbulence": "mae"}
MIN_SEEDS = 3  # fewer seeds per model: no verdict
ALPHA = 0.05


def verdict(a: list[float], b: list[float], baseline: float | None = None) -> tuple[str, str]:
    """Is ``a`` lower than ``b`` (per-seed values)? ``(verdict, detail)``.

    "reproduced" needs: both models at least 3 seeds, both means below ``baseline`` (when given: a model
    worse than doing nothing has learnt nothing worth comparing), and Welch's t-test p < ALPHA with
    ``mean(a) < mean(b)``.
    """
    if min(len(a), len(b)) < MIN_SEEDS:
        return f"inconclusive (n seeds < {MIN_SEEDS})", f"{len(a)} / {len(b)} seeds"
    ma, mb = float(np.mean(a)), float(np.mean(b))
    if baseline is not None and max(ma, mb) >= baseline:
        detail = f"baseline {baseline:.4g}, {len(a)} / {len(b)} seeds"
        return "not reproduced (a model does not beat the baseline)", detail
    if np.std(a) == 0 and np.std(b) == 0:
        p = 0.0 if ma != mb else 1.0
    else:
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    detail = f"Welch p = {p:.2g}, {len(a)} / {len(b)} seeds"
    if p >= ALPHA:
        return "not significant", detail
    return ("reproduced", detail) if ma < mb else ("NOT reproduced (significantly the other way)", detail)


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
    for dataset in ("smoke", "turbulence"):
        section = getattr(params.train, dataset)
        for model in section.models:
            for seed in section.seeds:
                run = RunId(dataset, model, seed)
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


def findings(
    dataset: str, runs: dict, checkpoints: list[str], baselines: dict | None = None
) -> list[str]:
    """The study's claims, checked against this run's numbers (see :func:`verdict`)."""
    relaxed, full, _ = COMPARISONS[dataset]
    if relaxed not in runs or full not in runs:
        return [f"- {dataset}: {relaxed} or {full} was not trained; no comparison made."]
    metric = METRIC[dataset]

    def values(model: str, fn: Any) -> list[float]:
        return [v for v in (fn(s) for s in runs[model].values()) if v is not None]

    def mean(model: str, fn: Any) -> float:
        vals = values(model, fn)
        return float(np.mean(vals)) if vals else float("nan")

    lines = []
    test_base = best_baseline(baselines or {}, "test", metric)
    valid_base = best_baseline(baselines or {}, "valid", metric)
    if test_base is None:
        lines.append(f"- {dataset}: no baseline scores (stage `baselines`); no claim can be reproduced.")
    # (claim, per-seed value, baseline of that value): every claim needs the models to beat the test baseline
    checks = [(f"lower test {metric.upper()}", lambda s: s["train"][f"test_{metric}"], test_base)]
    checks.append((f"lower best validation {metric.upper()}", lambda s: s["train"][f"best_valid_{metric}"],
                   valid_base))  # fmt: skip
    checks += landscape_checks(checkpoints)
    others = [m for m in COMPARISONS[dataset][1:] if m is not None and m in runs]
    test_fn = checks[0][1]
    for claim, fn, base in checks:
        for other in others:
            a, b = values(relaxed, fn), values(other, fn)
            if not a or not b:
                lines.append(f"- {relaxed} has {claim} than {other}: not measured")
                continue
            (ma, sa), (mb, sb) = _mean_std(a), _mean_std(b)
            word, detail = verdict(a, b, base[1] if base else None)
            if base is None and test_base is not None:  # landscape claims: gate on the test baseline
                gate = max(float(np.mean(values(relaxed, test_fn))), float(np.mean(values(other, test_fn))))
                if gate >= test_base[1] and not word.startswith("inconclusive"):
                    word, detail = "not reproduced (a model does not beat the test baseline)", detail
            elif test_base is None and not word.startswith("inconclusive"):
                word = "inconclusive (no baseline)"
            lines.append(
                f"- {relaxed} has {claim} than {other}: **{word}** "
                f"({ma:.4g} ± {sa:.2g} vs {mb:.4g} ± {sb:.2g}, mean ± sd over seeds; {detail})"
            )
    for ckpt in checkpoints:
        significant, parts = negative_curvature(runs, [relaxed, *others], ckpt)
        word = "NOT reproduced" if significant else "reproduced"
        n_seeds = min((len(runs[m]) for m in (relaxed, *others)), default=0)
        if n_seeds < MIN_SEEDS:
            word = f"inconclusive (n seeds < {MIN_SEEDS})"
        elif test_base is None:
            word = "inconclusive (no baseline)"
        elif any(np.mean(values(m, test_fn)) >= test_base[1] for m in (relaxed, *others)):
            word = "not reproduced (a model does not beat the test baseline)"
        lines.append(f"- no (significant) negative eigenvalues at {ckpt}: **{word}** ({'; '.join(parts)})")
    return lines


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
    summary_dir: Path | None = None, plots_dir: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Write ``out/report.md`` + PNGs and, when given, the DVC summary metrics and plot data."""
    plt.switch_backend("Agg")  # files only, never a window
    out.mkdir(parents=True, exist_ok=True)
    results = collect(params, metrics_dir)
    if not results:  # an empty report with exit 0 would hide a wrong --metrics-dir
        raise FileNotFoundError(
            f"no run metrics under {metrics_dir}/train for the runs in params.train; "
            "check --metrics-dir or run the train stages first (dvc repro)"
        )
    ckpts = list(params.landscape.checkpoints)
    md = ["# Equivariance and training dynamics: study report", ""]
    md += ["Generated by `dvc repro` (stage `report`) from `metrics/`. Numbers are means over seeds "
           "(± standard deviation); n = seeds (x test samples per seed) is given in every figure legend and "
           "table. Metrics are in physical units of the target field; sharpness and Hessian values are in "
           "units of the (normalised) training loss. \"—\" marks a model that was not measured.",
           ""]  # fmt: skip
    summary: dict[str, Any] = {}
    dvc_files: dict[str, tuple[dict, dict]] = {}
    for dataset, runs in results.items():
        short, source = sources.get(dataset, ("unknown source", "unknown source"))
        caption = _caption(dataset, short, params)
        metric = METRIC[dataset]
        md += [f"## {dataset} — data: {source}", ""]
        plot_curves(dataset, runs, out / f"{dataset}_curves.png", caption, metric)
        md += [f"![curves]({dataset}_curves.png)", ""]
        tests = {
            "test": {m: [s["train"][f"test_{metric}"] for s in seeds.values()] for m, seeds in runs.items()}
        }
        baselines = read_baselines(metrics_dir, dataset)
        refs = {name: s[metric] for name, s in baselines.get("test", {}).items()}
        samples = {m: test_samples(seeds) for m, seeds in runs.items()}
        samples.update({f"baseline:{name}": s["n"] for name, s in baselines.get("test", {}).items()})
        plot_bars(tests, f"test {metric.upper()} ({UNITS[dataset]})", out / f"{dataset}_test.png", caption,
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
               "mean over the seeds measured (\"—\": not measured).", ""]  # fmt: skip
        header = f"| model | parameters | equivariance error | test {metric.upper()} | SE (samples) | n |"
        header += "".join(f" sharpness {c} | top eig {c} | adaptive top eig {c} |" for c in ckpts)
        md += [header, "|" + "---|" * (6 + 3 * len(ckpts))]
        table = {}
        for name, s in sorted(baselines.get("test", {}).items()):
            se_cell = _cell([s["se"]], ".2g")
            md.append(f"| baseline: {name} | 0 | — | {s[metric]:.4g} | {se_cell} | {s['n']} x 1 |"
                      + " — | — | — |" * len(ckpts))  # fmt: skip
            table[f"baseline:{name}"] = {
                f"test_{metric}": s[metric], "test_se": s["se"], "test_samples": s["n"]
            }
        for model, seeds in sorted(runs.items()):
            first = next(iter(seeds.values()))["train"]
            t_mean, t_std = _mean_std([s["train"][f"test_{metric}"] for s in seeds.values()])
            e_mean, _ = _mean_std([s["train"]["equivariance_error"] for s in seeds.values()])
            se_key = f"test_{metric}_se"
            se = [s["train"][se_key] for s in seeds.values() if se_key in s["train"]]
            n_test = test_samples(seeds)
            row = (f"| {model} | {first['parameters']:,} | {e_mean:.2e} | {t_mean:.4g} ± {t_std:.2g} | "
                   f"{_cell(se, '.2g')} | {n_test} x {len(seeds)} |")  # fmt: skip
            table[model] = {
                "parameters": first["parameters"],
                "equivariance_error": e_mean,
                f"test_{metric}": t_mean,
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
        md += ["", plateau_note(runs, params, dataset), ""] + invariance_notes(runs)
        md += ["", "### The study's findings, checked", ""] + findings(dataset, runs, ckpts, baselines) + [""]
        summary[dataset] = table
        base = best_baseline(baselines, "test", metric)
        dvc_files[dataset] = (
            summary_metrics(runs, metric, ckpts, base),
            plot_rows(runs, metric, ckpts, baselines),
        )
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if summary_dir is not None and plots_dir is not None:
        write_summaries(summary_dir, plots_dir, dvc_files)
    return summary


SHORT_SOURCE = {"synthetic": "synthetic Navier-Stokes, NOT JHTDB", "jhtdb": "JHTDB isotropic1024coarse"}


def dataset_sources(paths: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """(short label for figure captions, full description) of how each dataset was made, from its
    store's attributes: JHTDB or synthetic, stated plainly."""
    out = {}
    for name, path in paths.items():
        if not Path(path).exists():
            continue
        attrs = open_store(path).attrs
        if name == "smoke":
            out[name] = ("PhiFlow simulation", f"PhiFlow smoke plumes ({attrs.get('title', 'smoke plume')})")
        else:
            kind = str(attrs.get("source", "unknown"))
            out[name] = (SHORT_SOURCE.get(kind, kind), str(attrs.get("source_description") or kind))
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
    parser.add_argument("--smoke", type=Path, default=STORE_PATHS["smoke"])
    parser.add_argument("--turbulence", type=Path, default=STORE_PATHS["turbulence"])
    args = parser.parse_args(argv)

    def body() -> dict:
        params = load_params(args.params)
        sources = dataset_sources({"smoke": args.smoke, "turbulence": args.turbulence})
        return render(params, args.metrics_dir, args.out, sources, args.summary_dir, args.plots_dir)

    return run_stage("report", body)


if __name__ == "__main__":
    sys.exit(main())
