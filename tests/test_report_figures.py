"""The report stage on a prepared metrics dir: readable figures, no nan cells, and the small summaries that
are the only files `dvc metrics show` lists (DVC reads the files; no repro)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipelines.params import parse_params
from pipelines.report import render
from train.runs import RunId, baseline_metrics

MODELS = {"smoke": ["cnn", "e2cnn", "rsteer"], "turbulence": ["cnn", "gcnn", "rgcnn"]}
MEASURED = {"smoke": ["e2cnn", "rsteer"], "turbulence": ["gcnn"]}  # landscape runs; the rest unmeasured


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def prepare_metrics(root: Path, seeds: int = 3) -> None:
    """Every per-run file the stages write, made-up numbers: test error 0.1 (index + 1) + 0.01 seed."""
    for dataset, models in MODELS.items():
        metric = {"smoke": "rmse", "turbulence": "mae"}[dataset]
        for i, model in enumerate(models):
            for seed in range(seeds):
                run, test = RunId(dataset, model, seed), 0.1 * (i + 1) + 0.01 * seed
                _write(run.train_metrics(root), {
                    f"test_{metric}": test, f"best_valid_{metric}": test, f"test_{metric}_se": 0.01,
                    "test_samples": 8, "parameters": 100 + i, "equivariance_error": 0.0})  # fmt: skip
                _write(run.curves(root), [{"epoch": e, "train_loss": 1.0 / e, "valid_metric": test + 1.0 / e}
                                          for e in (1, 2, 3)])  # fmt: skip
                if model in MEASURED[dataset]:
                    for c in ("early", "best"):
                        _write(run.landscape_metrics(root, c), {
                            "sharpness": 0.5 + seed, "max_eigenvalue": 10.0 + i,
                            "slq_nodes": [-0.01, 0.0, 1.0, 10.0 + i],
                            "slq_weights": [0.1, 0.7, 0.1, 0.1]})  # fmt: skip
        scores = {"persistence": {metric: 1.0, "se": 0.0, "n": 8}, "zero": {metric: 4.0, "se": 0.0, "n": 8}}
        if dataset == "turbulence":  # one test sample: the baselines' SE is undefined (nan in their file)
            scores = {"trilinear": {metric: 1.0, "se": float("nan"), "n": 1}}
        _write(baseline_metrics(root, dataset), {"splits": {"valid": scores, "test": scores}})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    prepare_metrics(root / "metrics")
    params = parse_params({"train": {d: {"models": m, "seeds": [0, 1, 2]} for d, m in MODELS.items()},
                           "landscape": {"models": MEASURED}})  # fmt: skip
    metrics = root / "metrics"
    render(params, metrics, root / "report", {}, metrics / "summary", metrics / "plots")
    return root


def test_report_has_no_nan_cells_and_states_seeds_and_samples(rendered: Path) -> None:
    text = (rendered / "report" / "report.md").read_text()
    assert "nan" not in text.lower()
    smoke_cnn = next(line for line in text.splitlines() if line.startswith("| cnn | 100 |"))
    assert smoke_cnn.endswith("| 8 x 3 |" + " — |" * 6)  # unmeasured landscape: dashes
    for dataset in MODELS:
        for fig in ("curves", "test", "sharpness", "spectra"):
            assert (rendered / "report" / f"{dataset}_{fig}.png").stat().st_size > 5000


def test_summary_holds_measured_numbers_only(rendered: Path) -> None:
    smoke = json.loads((rendered / "metrics" / "summary" / "smoke.json").read_text())
    assert smoke["baseline"] == {"persistence": 1.0}
    assert smoke["e2cnn"]["test_rmse"] == pytest.approx(0.21)  # (0.2 + 0.21 + 0.22) / 3
    assert smoke["e2cnn"]["test_se"] == pytest.approx(0.01 / np.sqrt(3), rel=1e-5)  # sd 0.01 over 3 seeds
    assert smoke["e2cnn"]["sharpness_best"] == pytest.approx(1.5)
    assert (smoke["seeds"], smoke["test_samples"]) == (3, 8)  # once, for every model's mean
    assert not any(k.startswith("sharpness") for k in smoke["cnn"])  # not measured: no key
    columns = sum(len(v) if isinstance(v, dict) else 1 for v in smoke.values())
    assert columns <= 20, columns  # one readable row of `dvc metrics show`
    spectra = json.loads((rendered / "metrics" / "plots" / "turbulence_spectra.json").read_text())
    assert {r["series"] for r in spectra} == {"gcnn @ early (n = 3 seeds)", "gcnn @ best (n = 3 seeds)"}
    assert min(r["density"] for r in spectra) > 0  # floored: drawable on the log axis
    test_rows = json.loads((rendered / "metrics" / "plots" / "smoke_test.json").read_text())
    assert "cnn (n = 3 seeds x 8 test samples)" in {r["series"] for r in test_rows}


def test_dvc_metrics_show_lists_only_the_summaries(rendered: Path, tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    shutil.copy(repo / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(repo / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(rendered / "metrics", tmp_path / "metrics")
    _write(tmp_path / "metrics" / "smoke.json", {"not": 1})  # dataset and receipt files: outputs, not metrics
    _write(tmp_path / "metrics" / "publish_receipt.json", {"sha256": "0" * 64})
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True)
    out = subprocess.run(["dvc", "metrics", "show", "--json"], cwd=tmp_path, check=True, capture_output=True,
                         text=True).stdout  # fmt: skip
    (workspace,) = json.loads(out).values()  # the workspace (no commit yet)
    files = workspace["data"]
    assert sorted(files) == ["metrics/summary/smoke.json", "metrics/summary/turbulence.json"]
    assert files["metrics/summary/smoke.json"]["data"]["rsteer"]["test_rmse"] == pytest.approx(0.31)


def test_plateau_note_counts_seeds_that_stopped_early_and_names_the_rest(rendered: Path) -> None:
    from pipelines.report import plateau_note

    params = parse_params({"train": {"smoke": {"models": ["cnn", "e2cnn"], "seeds": [0, 1, 2], "optimiser": {
        "max_epochs": 30, "patience": 4}}}, "landscape": {"models": {"smoke": ["e2cnn"]}}})  # fmt: skip
    runs = {"e2cnn": {s: {"train": {"stopped_early": s != 1}} for s in (0, 1, 2)},
            "cnn": {s: {"train": {"stopped_early": False}} for s in (0, 1, 2)}}  # fmt: skip
    assert plateau_note(runs, params, "smoke") == (
        "Converged (validation plateau: no improvement for 4 epochs, at most 30): cnn 0/3 seeds stopped on"
        " a plateau (seeds 0, 1, 2 hit max_epochs); e2cnn 2/3 seeds stopped on a plateau (seed 1 hit"
        " max_epochs)."
    )
    # metrics without the flag (written before it existed) count as neither
    assert "cnn 0/3 seeds stopped on a plateau." in (rendered / "report" / "report.md").read_text()


def test_a_baseline_far_above_the_bars_is_named_off_scale_instead_of_squashing_them() -> None:
    from pipelines.report.figures import reference_scale

    # the CPU preset's smoke test: models near 0.10, persistence 0.126, the zero predictor 0.87
    top, off = reference_scale([0.0994, 0.1173], {"persistence": 0.1262, "zero": 0.87})
    assert off == {"zero"} and top == pytest.approx(1.08 * 0.1262)
    # every baseline in range: all drawn, the axis covers the highest
    in_range = reference_scale([0.15], {"spectral": 0.177, "trilinear": 0.218})
    assert in_range == (pytest.approx(1.08 * 0.218), set())
    # the nearest baseline stays even when it is far above (a model far better than every baseline)
    assert reference_scale([0.01], {"a": 0.5, "b": 0.9}) == (pytest.approx(1.08 * 0.5), {"b"})
    assert reference_scale([], {"a": 1.0}) == (None, set())
    assert reference_scale([0.1], {}) == (None, set())


def test_curve_bands_average_common_epochs_and_keep_each_longer_seed_as_a_tail() -> None:
    from pipelines.report.figures import curve_bands

    def rows(values: list[float]) -> list[dict]:
        return [{"epoch": e, "valid_metric": v} for e, v in enumerate(values, 1)]

    runs = {"cnn": {0: {"curves": rows([4.0, 2.0])}, 1: {"curves": rows([2.0, 1.0, 0.5, 0.25])},
                    2: {"curves": rows([3.0, 3.0, 3.0])}}}  # fmt: skip
    band = curve_bands(runs, "valid_metric")["cnn"]
    assert band["epochs"] == [1, 2] and band["seeds"] == 3
    assert list(band["mean"]) == [3.0, 2.0]
    assert list(band["lo"]) == [2.0, 1.0] and list(band["hi"]) == [4.0, 3.0]
    # each tail starts at the last common epoch, so it joins the band
    assert band["tails"] == [([2, 3, 4], [1.0, 0.5, 0.25]), ([2, 3], [3.0, 3.0])]
    assert curve_bands({"cnn": {0: {"curves": rows([1.0])}}}, "valid_metric")["cnn"]["tails"] == []


def test_bars_use_a_log_axis_only_when_the_bars_span_decades() -> None:
    from pipelines.report.figures import log_scale_needed

    assert log_scale_needed([1.2e-5, 3e-3, 1e-2])  # cnn's early sharpness beside the others'
    assert not log_scale_needed([0.10, 0.12, 0.17])
    assert not log_scale_needed([0.0, 1e-3, 1.0])  # a zero bar cannot be drawn on a log axis


def test_one_group_bar_chart_puts_the_models_on_the_x_axis(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    from pipelines.report.figures import plot_bars

    shown = {}
    original = plt.Figure.savefig

    def keep(fig, *args, **kwargs):  # read the axis the file was drawn from
        ax = fig.axes[0]
        shown.update(ticks=[t.get_text() for t in ax.get_xticklabels()], scale=ax.get_yscale())
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", keep)
    plot_bars({"test": {"cnn": [1e-5, 2e-5], "gcnn": [0.1, 0.2]}}, "err", tmp_path / "bars.png", "c")
    assert shown == {"ticks": ["cnn", "gcnn"], "scale": "log"}
