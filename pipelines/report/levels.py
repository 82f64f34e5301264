"""The smoke level sweep in the report: error against each level's measured symmetry breaking.

Every model trained at a level (``train.smoke.levels``; ``sweep_models`` after the first) gives, per
split, its error (best validation, test) beside the level's data-equivariance error, which the smoke
stage measured by the published definition and recorded in the store's provenance. One line per model
(mean over seeds, band min..max over seeds) and the level's trivial baselines, as a figure and a table.
Per level after the first, the smoke spec's relaxed-vs-strict pairs (rsteer vs e2cnn, rgcnn vs gcnn) are
claims of the report's one Holm family (pipelines/report/verdicts.py); at the first level they are the smoke
section's own test claims and are not tested twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from loaders.storage import open_store
from pipelines.datasets import dataset_spec
from pipelines.params import StudyParams
from pipelines.report.figures import finish, mean_std, seeds_label
from pipelines.report.verdicts import Claim, baseline_note, claim, seed_values
from train.runs import RunId, baseline_metrics

PAIRS = dataset_spec("smoke").comparisons  # (relaxed, strict): Wang et al. 2022's smoke claim
SPLITS = {"valid": "best_valid_rmse", "test": "test_rmse"}  # split -> the per-run number scored on it
DATA_ERROR = "published_definition_level_error"  # the smoke stage's metric (metrics/smoke.json, provenance)


def level_runs(params: StudyParams, metrics_dir: Path) -> dict[int, dict[str, dict[int, dict[str, Any]]]]:
    """``runs[level][model][seed] = {"train": metrics}`` for every smoke run the params list and that has
    finished (the shape of the report's per-dataset runs, so the verdict helpers apply)."""
    section = params.train.smoke
    out: dict[int, dict[str, dict[int, dict[str, Any]]]] = {}
    for level in section.levels:
        for model in section.models_at(level):
            for seed in section.seeds:
                path = RunId("smoke", model, seed, level).train_metrics(metrics_dir)
                if path.is_file():
                    out.setdefault(level, {}).setdefault(model, {})[seed] = {
                        "train": json.loads(path.read_text())
                    }
    return out


def level_baselines(metrics_dir: Path) -> dict[int, dict[str, dict[str, Any]]]:
    """``[level][split][baseline]`` -> score, from the baselines stage's per-level smoke scores."""
    path = baseline_metrics(metrics_dir, "smoke")
    if not path.is_file():
        return {}
    levels = json.loads(path.read_text()).get("levels", {})
    return {int(name.removeprefix("E")): splits for name, splits in levels.items()}


def data_errors(store: Path) -> dict[int, float]:
    """Each stored level's data-equivariance error (published definition) from the store's provenance."""
    if not Path(store).exists():
        return {}
    provenance = json.loads(open_store(store).attrs.get("provenance", "{}"))
    values = provenance.get("metrics", {}).get(DATA_ERROR, {})
    return {int(name.removeprefix("E")): float(v) for name, v in values.items()}


def strongest_baseline(baselines: dict, split: str) -> tuple[str, float] | None:
    """(name, RMSE) of the lowest-RMSE baseline of ``split`` (None without one)."""
    scores = baselines.get(split) or {}
    if not scores:
        return None
    name = min(scores, key=lambda k: scores[k]["rmse"])
    return name, float(scores[name]["rmse"])


def level_claims(runs: dict[int, dict], baselines: dict[int, dict], first_level: int) -> list[Claim]:
    """Per level and pair "relaxed has lower test RMSE than strict", gated like every claim (seeds,
    the level's strongest test baseline); at the first level the smoke section tests them."""
    out = []
    for level in sorted(set(runs) - {first_level}):
        models = runs[level]
        base = strongest_baseline(baselines.get(level, {}), "test")
        for relaxed, strict in PAIRS:
            text = f"E_{level}: {relaxed} has lower test RMSE than {strict}"
            if relaxed not in models or strict not in models:
                out.append(
                    Claim(text, word="not measured", detail=f"{relaxed} or {strict} not trained at E_{level}")
                )
                continue
            a = seed_values(models, relaxed, lambda s: s["train"]["test_rmse"])
            b = seed_values(models, strict, lambda s: s["train"]["test_rmse"])
            if base is None:
                out.append(
                    Claim(text, word="inconclusive (no baseline)", detail=f"{len(a)} / {len(b)} seeds")
                )
                continue
            out.append(claim(text, a, b, base[1]))
    return out


def _bands(runs: dict[int, dict], key: str) -> dict[str, dict[str, list[float]]]:
    """Per model: levels, mean, min and max over seeds of ``key``, seed counts."""
    out: dict[str, dict[str, list[float]]] = {}
    for level in sorted(runs):
        for model, seeds in sorted(runs[level].items()):
            values = [s["train"][key] for s in seeds.values()]
            band = out.setdefault(model, {"level": [], "mean": [], "lo": [], "hi": [], "seeds": []})
            for name, v in zip(band, (level, mean_std(values)[0], min(values), max(values), len(values)),
                               strict=True):  # fmt: skip
                band[name].append(v)
    return out


def plot_levels(runs: dict[int, dict], baselines: dict[int, dict], errors: dict[int, float], path: Path,
                caption: str) -> None:  # fmt: skip
    """One panel per split: error against the level's data-equivariance error, a line per model with a
    min..max seed band, the level's baselines dashed."""
    fig, axes = plt.subplots(1, len(SPLITS), figsize=(11, 4))
    for ax, (split, key) in zip(axes, SPLITS.items(), strict=True):
        for model, band in _bands(runs, key).items():
            x = [errors.get(lv, float("nan")) for lv in band["level"]]
            (line,) = ax.plot(x, band["mean"], marker="o", ms=4, label=seeds_label(model, min(band["seeds"])))
            if max(band["seeds"]) > 1:
                ax.fill_between(x, band["lo"], band["hi"], alpha=0.15, color=line.get_color())
        names = sorted({n for b in baselines.values() for n in b.get(split, {}) if n != "zero"})
        for name in names:  # "zero" is an order of magnitude above: it would flatten every model's line
            levels = [lv for lv in sorted(runs) if name in baselines.get(lv, {}).get(split, {})]
            ax.plot([errors.get(lv, float("nan")) for lv in levels],
                    [baselines[lv][split][name]["rmse"] for lv in levels], "k--", lw=1, marker="x",
                    label=f"baseline: {name}")  # fmt: skip
        for lv in sorted(runs):
            if lv in errors:
                ax.annotate(f"E_{lv}", (errors[lv], 0), xycoords=("data", "axes fraction"), fontsize=7,
                            xytext=(2, 2), textcoords="offset points")  # fmt: skip
        ax.set(xlabel="data equivariance error of the level (published definition)",
               ylabel=f"{split} RMSE ({dataset_spec('smoke').units})")  # fmt: skip
        ax.set_title(f"{split}: mean over seeds, band min..max", fontsize=9)
    if axes[-1].get_legend_handles_labels()[0]:
        axes[-1].legend(fontsize=7)
    finish(fig, path, caption)


def level_table(runs: dict[int, dict], baselines: dict[int, dict], errors: dict[int, float]) -> list[str]:
    """Markdown: per level and split, the data error, each baseline and each model's mean ± sd (n seeds)."""
    models = sorted({m for level in runs.values() for m in level})
    names = sorted({n for b in baselines.values() for split in b.values() for n in split})
    lines = ["| level | data equivariance error | split | " + " | ".join(
        [f"baseline: {n}" for n in names] + models) + " |"]  # fmt: skip
    lines.append("|" + "---|" * (3 + len(names) + len(models)))
    for level in sorted(runs):
        err = f"{errors[level]:.4g}" if level in errors else "—"
        for split, key in SPLITS.items():
            cells = [f"{baselines.get(level, {}).get(split, {})[n]['rmse']:.4g}"
                     if n in baselines.get(level, {}).get(split, {}) else "—" for n in names]  # fmt: skip
            for model in models:
                values = [s["train"][key] for s in runs[level].get(model, {}).values()]
                m, sd = mean_std(values)
                cells.append(f"{m:.4g} ± {sd:.2g} ({len(values)})" if values else "—")
            lines.append(f"| E_{level} | {err} | {split} | " + " | ".join(cells) + " |")
    return lines


def level_summary(runs: dict[int, dict], baselines: dict[int, dict], errors: dict[int, float]) -> dict:
    """The table's numbers for report/summary.json: ``[E<level>]`` -> data error, baselines, models."""
    out = {}
    for level in sorted(runs):
        entry: dict[str, Any] = {"data_equivariance_error": errors.get(level)}
        for split, key in SPLITS.items():
            entry[split] = {
                f"baseline:{n}": s["rmse"] for n, s in baselines.get(level, {}).get(split, {}).items()
            }
            for model, seeds in runs[level].items():
                values = [s["train"][key] for s in seeds.values()]
                entry[split][model] = {
                    "mean": float(np.mean(values)),
                    "sd": mean_std(values)[1],
                    "seeds": len(values),
                }
        out[f"E{level}"] = entry
    return out


def level_section(
    params: StudyParams, metrics_dir: Path, store: Path, out: Path
) -> tuple[list[str], list[Claim], dict]:
    """(Markdown lines, claims for the report's family, summary numbers); none for a single level."""
    section = params.train.smoke
    if len(section.levels) < 2:
        return [], [], {}
    runs = level_runs(params, metrics_dir)
    baselines, errors = level_baselines(metrics_dir), data_errors(store)
    swept = ", ".join(section.sweep_models or section.models)
    levels = ", ".join(f"E_{lv}" for lv in section.levels)
    md = ["## smoke — symmetry-level sweep", "",
          f"Levels {levels}: every model at E_{section.levels[0]}, {swept} at the others; seeds "
          f"{section.seeds}. x: the level's data equivariance error (published definition, measured by the "
          "smoke stage); y: best validation / test RMSE; dashed: the level's trivial baselines (zero left "
          "out of the figure). Table cells: mean ± sd over seeds (n seeds).", ""]  # fmt: skip
    if not runs:
        return md + ["No level-sweep run has finished (stage `train`)."], [], {}
    plot_levels(
        runs, baselines, errors, out / "smoke_levels.png", f"smoke level sweep; seeds {section.seeds}"
    )
    md += ["![level sweep](smoke_levels.png)", ""] + level_table(runs, baselines, errors) + [""]
    md += [
        f"- E_{lv}: " + baseline_note(runs[lv], "rmse", strongest_baseline(baselines.get(lv, {}), "test"))
        .rstrip()
        for lv in sorted(runs)
    ]
    return md, level_claims(runs, baselines, section.levels[0]), level_summary(runs, baselines, errors)
