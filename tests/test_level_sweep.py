"""The smoke level sweep: one run per (level, model, seed), per-level baselines, and the report's level
section whose verdicts join the report's one Holm family."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest

from pipelines import run_config
from pipelines.baselines import run_baselines
from pipelines.fit import train_matrix, training_jobs
from pipelines.params import parse_params
from pipelines.report import LEVELS, report_findings
from pipelines.report.levels import data_errors, level_claims, level_section
from tests.conftest import TINY_SMOKE, TINY_TURBULENCE
from train.checkpoints import CheckpointError, load_checkpoint
from train.runs import RunId


def _params(**smoke_train: object):
    train = {"models": ["cnn"], "seeds": [0], "levels": [0, 3], "hparams": {"cnn": {"hidden": 2}},
             "optimiser": {"max_epochs": 1, "early_epoch": 1, "batch_size": 4, "max_train_batches": 1},
             **smoke_train}  # fmt: skip
    return parse_params({
        "compute": {"n_workers": 1, "device": "cpu"}, "smoke": TINY_SMOKE, "turbulence": TINY_TURBULENCE,
        "train": {"smoke": train}, "landscape": {"models": {"smoke": [], "turbulence": []}},
    })  # fmt: skip


def test_one_run_per_level_model_seed_and_a_new_level_leaves_the_others_alone(tmp_path: Path) -> None:
    params = _params(models=["cnn", "gcnn"], seeds=[0, 1], sweep_models=["gcnn", "rsteer"])
    with mock.patch.object(run_config, "store_digest", lambda _: "data"):
        jobs = {j.name: j for j in training_jobs(params, {"smoke": tmp_path}, tmp_path, tmp_path)}
        one_level = _params(models=["cnn", "gcnn"], seeds=[0, 1], levels=[0])
        before = {j.name: j.stamp for j in training_jobs(one_level, {"smoke": tmp_path}, tmp_path, tmp_path)}
    # every model at E_0, only the sweep's listed ones (rsteer is not trained at all) at E_3
    assert sorted(jobs) == sorted(
        f"smoke-{run}-seed{s}" for run in ("cnn", "gcnn", "E3-gcnn") for s in (0, 1)
    )
    assert jobs["smoke-E3-gcnn-seed0"].args[7] == 3 and jobs["smoke-gcnn-seed0"].args[7] == 0  # the level
    assert jobs["smoke-E3-gcnn-seed0"].stamp != jobs["smoke-gcnn-seed0"].stamp
    assert all(jobs[name].stamp == stamp for name, stamp in before.items())  # E_0 runs are not retrained


@pytest.fixture(scope="module")
def swept(smoke_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("levels")
    params = _params()
    train_matrix(params, {"smoke": smoke_store}, root / "runs", root / "metrics")
    run_baselines("smoke", params, smoke_store, root / "metrics")
    return root, params


def test_each_level_trains_on_its_own_data_and_resumes(swept: tuple[Path, object], smoke_store: Path) -> None:
    root, params = swept
    e0, e3 = (
        json.loads(RunId("smoke", "cnn", 0, lv).train_metrics(root / "metrics").read_text()) for lv in (0, 3)
    )
    assert e3["level"] == 3 and e0["level"] == 0 and e3["test_rmse"] != e0["test_rmse"]
    # effective sample size: E_0's four directions are one simulation turned, E_3's four simulations
    assert (e0["test_distinct_simulations"], e3["test_distinct_simulations"]) == (1, 4)
    assert e0["test_distinct_windows"] * 4 == e0["test_samples"] == e3["test_distinct_windows"]
    section, path = params.train.smoke, RunId("smoke", "cnn", 0, 3).checkpoint(root / "runs", "best")
    hparams = run_config.hparams_of("smoke", "cnn", section)
    load_checkpoint(
        path, run=run_config.run_identity("smoke", "cnn", 0, section, hparams, smoke_store, "cpu", 3)
    )
    with pytest.raises(CheckpointError):  # the identity the checkpoint records is its level's
        load_checkpoint(
            path, run=run_config.run_identity("smoke", "cnn", 0, section, hparams, smoke_store, "cpu")
        )
    again = train_matrix(params, {"smoke": smoke_store}, root / "runs", root / "metrics")
    assert again == {"smoke-cnn-seed0": "skipped", "smoke-E3-cnn-seed0": "skipped"}
    base = json.loads((root / "metrics" / "baselines" / "smoke.json").read_text())
    persistence = {lv: s["test"]["persistence"]["rmse"] for lv, s in base["levels"].items()}
    assert set(persistence) == {"E0", "E3"} and persistence["E0"] != persistence["E3"]
    assert base["splits"] == base["levels"]["E0"]  # the study's level, as the tables and cards read it


def test_the_report_plots_each_level_against_its_data_error(
    swept: tuple[Path, object], smoke_store: Path
) -> None:
    root, params = swept
    errors = data_errors(smoke_store)
    assert errors[0] < 1e-6 < errors[3]  # E_0 is exactly symmetric, E_3 is not
    md, claims, summary = level_section(params, root / "metrics", smoke_store, root)
    assert (root / "smoke_levels.png").stat().st_size > 1000
    rows = [line for line in md if line.startswith("| E_")]
    assert len(rows) == 4 and all(" ± " in r for r in rows)  # 2 levels x valid / test
    assert summary["E3"]["data_equivariance_error"] == errors[3]
    assert sum(line.startswith("- E_3: Strongest test baseline: ") for line in md) == 1
    assert summary["E3"]["test"]["cnn"]["seeds"] == 1
    assert [c.word for c in claims] == ["not measured"] * 2  # no pair at E_3; E_0: the smoke section


def _runs(values: dict[str, list[float]]) -> dict:
    return {m: {s: {"train": {"test_rmse": v}} for s, v in enumerate(vs)} for m, vs in values.items()}


def test_level_verdicts_join_the_reports_one_holm_family() -> None:
    clear = {"rgcnn": [0.50, 0.51, 0.49], "gcnn": [0.70, 0.71, 0.69], "rsteer": [0.5, 0.52, 0.49],
             "e2cnn": [0.71, 0.69, 0.70]}  # fmt: skip
    base = {lv: {"test": {"persistence": {"rmse": 1.0}}} for lv in (0, 5)}
    claims = level_claims({0: _runs(clear), 5: _runs(clear)}, base, first_level=0)
    assert [c.text for c in claims] == [  # E_0's pairs are the smoke section's claims
        "E_5: rsteer has lower test RMSE than e2cnn",
        "E_5: rgcnn has lower test RMSE than gcnn",
    ]
    lines = report_findings({}, {LEVELS: claims})[LEVELS]
    assert all("over 2 tests" in line and "**reproduced**" in line for line in lines)
    # beside a dataset's tested claims the family grows and every p is adjusted over all of them
    smoke = {m: {s: {"train": {"test_rmse": v, "best_valid_rmse": v}} for s, v in enumerate(clear[m])}
             for m in ("rsteer", "e2cnn")}  # fmt: skip
    scores = {"persistence": {"rmse": 1.0, "se": 0.0, "n": 8}}
    worded = report_findings({"smoke": (smoke, [], {"test": scores, "valid": scores})}, {LEVELS: claims})
    assert all("over 4 tests" in line for line in worded[LEVELS])
    assert worded["smoke"][0] == "- smoke: rgcnn or gcnn was not trained; not compared."


def test_the_cards_quote_the_study_level_runs_only(tmp_path: Path) -> None:
    from pipelines.publish.facts import read_metrics

    for level, value in ((0, 0.1), (5, 0.2)):
        path = RunId("smoke", "cnn", 0, level).train_metrics(tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"test_rmse": value, "test_rmse_se": 0.01}))
    assert read_metrics(tmp_path, "smoke")["models"] == {"cnn|rmse": [0.1]}  # not "E5-cnn", not E_5's value
