"""Figures of the report stage (PNG) and the numbers behind them.

Every axis is labelled with its units, every legend entry is a drawn series (a model that was not measured
gets no entry rather than an empty bar), and each entry says how many seeds (and test samples) stand
behind it. The same helpers give the plot data ``pipelines/report/summary.py`` writes for ``dvc plots``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from pipelines.datasets import dataset_spec

# Gaussian smoothing of the SLQ nodes: one width for every model of a panel, a fraction of the shared span
SMOOTHING = 0.01
DENSITY_FLOOR = 1e-6  # densities below this fraction of the panel's peak are not drawn (log axis)


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def seeds_label(model: str, seeds: int, samples: int | str | None = None) -> str:
    tail = f" x {samples} test samples" if samples is not None else ""
    return f"{model} (n = {seeds} seed{'s' if seeds != 1 else ''}{tail})"


def finish(fig: plt.Figure, path: Path, caption: str) -> None:
    """Caption wrapped above the axes and the canvas grown to fit it: no title is cut off."""
    fig.suptitle(textwrap.fill(caption, 110), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def curve_bands(runs: dict, key: str) -> dict[str, dict]:
    """Per model: epochs, mean over seeds, min and max over seeds of ``key``, and the seed count; the mean
    covers the epochs every seed ran, ``tails`` the (epochs, values) of each seed that ran longer."""
    out = {}
    for model, seeds in sorted(runs.items()):
        curves = [s["curves"] for s in seeds.values() if s.get("curves")]
        if not curves:
            continue
        n = min(len(c) for c in curves)  # seeds that stopped early: common epochs only
        vals = np.array([[row[key] for row in c[:n]] for c in curves], dtype=float)
        tails = [([int(r["epoch"]) for r in c[n - 1:]], [float(r[key]) for r in c[n - 1:]])
                 for c in curves if len(c) > n]  # fmt: skip  (from the last common epoch: joined lines)
        out[model] = {"epochs": [int(row["epoch"]) for row in curves[0][:n]], "mean": vals.mean(axis=0),
                      "lo": vals.min(axis=0), "hi": vals.max(axis=0), "seeds": len(curves),
                      "tails": tails}  # fmt: skip
    return out


def plot_curves(dataset: str, runs: dict, path: Path, caption: str, metric: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = [("train_loss", "train loss (normalised units, log)"),
              ("valid_metric", f"valid {metric.upper()} ({dataset_spec(dataset).units}, log)")]  # fmt: skip
    for ax, (key, ylabel) in zip(axes, labels, strict=True):
        for model, band in curve_bands(runs, key).items():
            (line,) = ax.plot(band["epochs"], band["mean"], marker="o", ms=3,
                              label=seeds_label(model, band["seeds"]))  # fmt: skip
            if band["seeds"] > 1:
                ax.fill_between(band["epochs"], band["lo"], band["hi"], alpha=0.2, color=line.get_color())
            for epochs, values in band["tails"]:
                ax.plot(epochs, values, lw=0.8, alpha=0.7, color=line.get_color())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel=ylabel, yscale="log")
        ax.set_title(f"{ylabel.split(' (')[0]}: mean over seeds, band min..max; thin: seeds that ran longer",
                     fontsize=9)  # fmt: skip
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=7)
    finish(fig, path, caption)


def plot_bars(
    values: dict[str, dict[str, list[float]]], ylabel: str, path: Path, caption: str,
    references: dict[str, float] | None = None, samples: dict[str, int | str] | None = None,
) -> None:  # fmt: skip
    """values[group][model] = per-seed numbers; bars show the mean and the standard deviation over seeds.
    Only measured (group, model) pairs get a bar and only models with a bar a legend entry. ``references``
    (name -> value) are horizontal lines (the trivial baselines); ``samples[model]``: test samples per
    seed."""
    groups = list(values)
    models = sorted({m for g in values.values() for m, v in g.items() if v})
    single = len(groups) == 1  # one group: the models are the categories, no axis spent on one tick
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * max(len(models), 1) * len(groups) + 2), 4))
    width = 0.8 if single else 0.8 / max(len(models), 1)
    tops, bottoms = [], []  # each bar's top (mean + sd) and mean: what the y-axis must show
    for i, model in enumerate(models):
        xs, means, errs, counts = [], [], [], set()
        for j, g in enumerate(groups):
            vals = values[g].get(model) or []
            if vals:
                m, s = mean_std(vals)
                xs.append(i if single else j + i * width)
                means.append(m)
                errs.append(s)
                tops.append(m + s)
                bottoms.append(m)
                counts.add(len(vals))
        n = "/".join(str(c) for c in sorted(counts))
        ax.bar(xs, means, width, yerr=errs, capsize=3,
               label=seeds_label(model, n, (samples or {}).get(model)))  # fmt: skip
    log = log_scale_needed(bottoms)
    if single:
        ax.set_xticks(np.arange(len(models)), models)
    else:
        ax.set_xticks(np.arange(len(groups)) + width * (len(models) - 1) / 2, groups)
    top, off_scale = reference_scale(tops, references or {})
    for j, (name, value) in enumerate(sorted((references or {}).items())):
        n = (samples or {}).get(f"baseline:{name}")
        label = f"baseline: {name}" + (f" ({n} test samples)" if n is not None else "")
        style = {"color": "k", "lw": 1, "ls": ("--", ":", "-.")[j % 3]}
        if name in off_scale:  # a legend entry with its value, no line far above the bars
            ax.plot([], [], label=f"{label}: {value:.3g}, off scale", **style)
        else:
            ax.axhline(value, label=label, **style)
    if log:  # values spanning decades: a linear axis would hide the small bars
        ax.set_yscale("log")
        ax.set_ylim(min(v for v in bottoms if v > 0) / 3, (top or max(tops)) * 1.5)
    elif top is not None:
        ax.set_ylim(0, top)
    ax.set_ylabel(ylabel + (", log" if log else ""))
    ax.set_xlabel(f"model ({groups[0]} split)" if single else "checkpoint")
    if not models:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("bars: mean over seeds; error bars: sd over seeds", fontsize=9)
    finish(fig, path, caption)


def log_scale_needed(means: list[float], decades: float = 2.0) -> bool:
    """A log axis when the positive bars span more than ``decades`` (e.g. a sharpness of 1.2e-5 beside
    1e-2); never with a zero or negative bar, which a log axis cannot show."""
    finite = [m for m in means if np.isfinite(m)]
    if len(finite) < 2 or min(finite) <= 0:
        return False
    return bool(np.log10(max(finite) / min(finite)) > decades)


def reference_scale(
    bar_tops: list[float], references: dict[str, float], squeeze: float = 2.0
) -> tuple[float | None, set[str]]:
    """The y-axis top and the references left off it: a baseline over ``squeeze`` times the highest bar
    (e.g. the zero predictor, 7x the models' error) would squash every bar into the bottom of the plot.
    The nearest reference is always kept, so the bars can be read against one baseline."""
    finite = [t for t in bar_tops if np.isfinite(t)]
    if not finite or not references:
        return None, set()
    highest = max(finite)
    nearest = min(references.values())
    off = {n for n, v in references.items() if v > squeeze * highest and v > nearest}
    shown = [v for n, v in references.items() if n not in off]
    return 1.08 * max([highest, *shown]), off


def smoothed_spectra(runs: dict, ckpt: str, points: int = 400) -> tuple[np.ndarray, dict[str, dict]]:
    """One eigenvalue grid and one Gaussian width for every model at ``ckpt`` (the same smoothing rule for
    all), each model's density the mean over its seeds' SLQ quadratures. Empty when nothing was measured."""
    per_model = {}
    for model, seeds in sorted(runs.items()):
        spectra = [s["landscape"][ckpt] for s in seeds.values() if (s.get("landscape") or {}).get(ckpt)]
        if spectra:
            per_model[model] = spectra
    if not per_model:
        return np.zeros(0), {}
    nodes_all = np.concatenate([np.asarray(s["slq_nodes"]) for sp in per_model.values() for s in sp])
    lo, hi = float(nodes_all.min()), float(nodes_all.max())
    span = hi - lo or 1.0
    grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, points)
    width = SMOOTHING * span
    out = {}
    for model, spectra in per_model.items():
        nodes = np.concatenate([s["slq_nodes"] for s in spectra])
        weights = np.concatenate([s["slq_weights"] for s in spectra]) / len(spectra)
        dens = (weights[None] * np.exp(-((grid[:, None] - nodes[None]) ** 2) / (2 * width**2))).sum(1)
        out[model] = {"density": dens / (width * np.sqrt(2 * np.pi)), "seeds": len(spectra)}
    return grid, out


def plot_spectra(runs: dict, checkpoints: list[str], path: Path, caption: str) -> None:
    fig, axes = plt.subplots(1, len(checkpoints), figsize=(5.5 * len(checkpoints), 4), squeeze=False)
    for ax, ckpt in zip(axes[0], checkpoints, strict=True):
        grid, spectra = smoothed_spectra(runs, ckpt)
        peak = max((float(s["density"].max()) for s in spectra.values()), default=1.0)
        for model, s in spectra.items():
            dens = np.maximum(s["density"], DENSITY_FLOOR * peak)
            ax.plot(grid, dens, label=seeds_label(model, s["seeds"]))
        ax.axvline(0, color="k", lw=0.5)
        ax.set_yscale("log")
        ax.set_ylim(DENSITY_FLOOR * peak, 2 * peak)
        ax.set(xlabel="Hessian eigenvalue (training-loss units)", ylabel="spectral density (log)")
        ax.set_title(f"Hessian spectral density (SLQ, Gaussian width {SMOOTHING:g} x span), {ckpt}",
                     fontsize=9)  # fmt: skip
        if spectra:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    finish(fig, path, caption)
