"""The smoke *Domain* test protocol (Wang et al. 2022): held-out buoyancy ladders built by the smoke stage,
scored by every run and baseline in the training store's normalisation, and keyed into the train stamp."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from distributed import LocalCluster

from loaders.storage import read_provenance
from pipelines.baselines import run_baselines
from pipelines.fit import train_matrix, training_jobs
from pipelines.params import parse_params
from pipelines.report import LEVELS, report_findings
from pipelines.report.domain import domain_claims, domain_section
from pipelines.report.levels import level_claims
from pipelines.smoke.domain import build_domain_stores
from pipelines.smoke.levels import max_c4_violation
from pipelines.smoke.stage import scratch_key
from tests.conftest import TINY_SMOKE, TINY_TURBULENCE
from train.data import smoke_held_out, smoke_splits
from train.kinds import SplitSpec
from train.runs import RunId, baseline_metrics

LADDERS = [2, 13]  # the tiny training ladder uses indices 1, 4, 7, 10


def _params(ladders: list[int] = LADDERS):
    train = {
        "models": ["cnn"],
        "seeds": [0],
        "levels": [0, 3],
        "hparams": {"cnn": {"hidden": 2}},
        "optimiser": {"max_epochs": 1, "early_epoch": 1, "batch_size": 4, "max_train_batches": 1},
    }
    return parse_params({
        "compute": {"n_workers": 1, "device": "cpu"}, "turbulence": TINY_TURBULENCE,
        "smoke": {**TINY_SMOKE, "domain": {"ladder_starts": ladders}},
        "train": {"smoke": train}, "landscape": {"models": {"smoke": [], "turbulence": []}},
    })  # fmt: skip


@pytest.fixture(scope="module")
def domain_study(smoke_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The session's training store; one tiny run per level trained before the held-out ladders exist,
    then two ladders built beside the store, the train stage run again and the baselines scored."""
    root = tmp_path_factory.mktemp("domain")
    (root / "smoke.zarr").symlink_to(smoke_store)
    params = _params()
    train_matrix(params, {"smoke": root / "smoke.zarr"}, root / "runs", root / "metrics")
    before = {p: p.read_bytes() for p in sorted((root / "runs").rglob("*.pt"))}
    (root / "before").mkdir()
    for path in (root / "metrics" / "train").glob("smoke-*.json"):
        (root / "before" / path.name).write_text(path.read_text())
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        compute = params.compute.model_copy(update={"scheduler_address": cluster.scheduler_address})
        build_domain_stores(params.smoke, compute, root / "smoke_domain", root / "scratch")
    rerun = train_matrix(params, {"smoke": root / "smoke.zarr"}, root / "runs", root / "metrics")
    assert {k: v for k, v in rerun.items() if k != "placement"} and all(
        v != "skipped" for k, v in rerun.items() if k != "placement"
    )  # new held-out data: every run's job re-runs
    assert before == {p: p.read_bytes() for p in sorted((root / "runs").rglob("*.pt"))}  # not retrained
    run_baselines("smoke", params, root / "smoke.zarr", root / "metrics")
    return root, params


def test_a_finished_run_is_rescored_on_new_held_out_data_without_retraining(
    domain_study: tuple[Path, object],
) -> None:
    root, _ = domain_study
    for path in sorted((root / "before").glob("smoke-*.json")):
        old, new = (
            json.loads(path.read_text()),
            json.loads((root / "metrics" / "train" / path.name).read_text()),
        )
        assert "test_domain_rmse" not in old and new["test_domain_rmse"] > 0
        assert new["test_rmse"] == old["test_rmse"] and new["best_epoch"] == old["best_epoch"]


def test_held_out_ladders_are_unseen_and_exactly_c4_at_e0(domain_study: tuple[Path, object]) -> None:
    root, _ = domain_study
    train = xr.open_zarr(root / "smoke.zarr")
    seen = {round(float(b), 9) for b in np.linalg.norm(train.buoyancy.values, axis=-1).ravel()}
    for start in LADDERS:
        ds = xr.open_zarr(root / "smoke_domain" / f"b{start:03d}.zarr")
        held = {round(float(b), 9) for b in np.linalg.norm(ds.buoyancy.values, axis=-1).ravel()}
        assert not held & seen  # no simulation of a held-out ladder is a training one
        assert read_provenance(ds)["params"]["ladder_start"] == start
        e0 = ds.sel(level=0)  # one simulation turned into the four directions
        assert max_c4_violation(e0.velocity.values, e0.smoke.values) == 0.0
    with pytest.raises(ValueError, match="shares buoyancy indices"):
        _params([4])  # 4 is E_3's second direction of the training ladder


def test_training_store_and_scratch_do_not_depend_on_the_held_out_list() -> None:
    assert scratch_key(_params([]).smoke) == scratch_key(_params().smoke)


def test_every_run_and_baseline_is_scored_on_the_domain_stores(domain_study: tuple[Path, object]) -> None:
    root, params = domain_study
    for level in (0, 3):
        metrics = json.loads(RunId("smoke", "cnn", 0, level).train_metrics(root / "metrics").read_text())
        assert metrics["test_domain_rmse"] > 0 and metrics["test_domain_rmse_se"] > 0
        # at E_0 the four directions are one simulation turned: one distinct simulation per ladder
        assert metrics["domain_distinct_simulations"] == (2 if level == 0 else 8)
        assert len(metrics["test_domain_rmse_per_sample"]) == metrics["domain_samples"]
        # every window of all three splits of both stores; at E_0 the four turned copies count once
        assert metrics["domain_samples"] == metrics["domain_distinct_windows"] * (4 if level == 0 else 1)
        baselines = json.loads(baseline_metrics(root / "metrics", "smoke").read_text())
        domain = baselines["levels"][f"E{level}"]["domain"]
        assert domain["persistence"]["n"] == metrics["domain_samples"]
    assert baselines["domain_data_digest"] == metrics["domain_data_digest"]


def test_domain_windows_are_normalised_with_the_training_statistics(
    domain_study: tuple[Path, object],
) -> None:
    root, _ = domain_study
    spec = SplitSpec(normalise="standard", level=3)
    train = smoke_splits(root / "smoke.zarr", spec)["train"]
    stores = sorted((root / "smoke_domain").glob("*.zarr"))
    held = smoke_held_out(stores, spec, train)
    own = smoke_held_out(stores, spec, smoke_splits(stores[0], spec)["train"])
    x_train_stats, x_own_stats = held[0][0], own[0][0]
    assert not np.allclose(x_train_stats.numpy(), x_own_stats.numpy())  # the statistics matter here
    ref = train.normalisers["velocity"]
    raw = xr.open_zarr(stores[0]).velocity.sel(level=3).values[0, 0:1]
    np.testing.assert_allclose(x_train_stats.numpy(), ref(raw), rtol=1e-5, atol=1e-6)


def test_new_held_out_data_restamps_every_run(domain_study: tuple[Path, object], tmp_path: Path) -> None:
    root, params = domain_study
    before = {j.name: j.stamp for j in training_jobs(params, {"smoke": root / "smoke.zarr"}, root, root)}
    (tmp_path / "smoke.zarr").symlink_to(root / "smoke.zarr")
    (tmp_path / "smoke_domain").mkdir()
    (tmp_path / "smoke_domain" / "b002.zarr").symlink_to(root / "smoke_domain" / "b002.zarr")
    after = {j.name: j for j in training_jobs(params, {"smoke": tmp_path / "smoke.zarr"}, root, root)}
    assert all(after[name].stamp != stamp for name, stamp in before.items())


def test_the_report_shows_both_protocols_and_the_published_rows(domain_study: tuple[Path, object]) -> None:
    root, params = domain_study
    md, claims, summary = domain_section(params, root / "metrics")
    rows = [line for line in md if line.startswith("| E_")]
    assert [r.split(" | ")[1] for r in rows] == ["Future", "Domain"] * 2  # per level, both protocols
    assert rows[1].split(" | ")[2] == "2 / " + rows[1].split(" | ")[2].split(" / ")[1]  # 2 ladders at E_0
    domain = json.loads(RunId("smoke", "cnn", 0, 3).train_metrics(root / "metrics").read_text())
    assert summary["E3"]["Domain"]["cnn"] == domain["test_domain_rmse"]
    assert any("| 0.73 | 0.82 |" in line for line in md) and any("| 0.67 | 0.80 |" in line for line in md)
    assert [c.word for c in claims] == ["not measured"] * 4  # no relaxed/strict pair trained here
    notes = [line for line in md if line.startswith("- E_3 Domain: strongest baseline: ")]
    assert len(notes) == 1 and "cnn (" in notes[0]  # the one model named beside the Domain baseline


def _domain_runs(values: dict[str, list[float]]) -> dict:
    return {m: {s: {"train": {"test_domain_rmse": v}} for s, v in enumerate(vs)} for m, vs in values.items()}


def test_domain_verdicts_join_the_reports_one_holm_family() -> None:
    clear = {"rgcnn": [0.50, 0.51, 0.49], "gcnn": [0.70, 0.71, 0.69], "rsteer": [0.5, 0.52, 0.49],
             "e2cnn": [0.71, 0.69, 0.70]}  # fmt: skip
    claims = domain_claims({0: _domain_runs(clear)}, {0: {"domain": {"persistence": {"rmse": 1.0}}}})
    assert [c.text.split(":")[0] for c in claims] == ["E_0 Domain"] * 2 and all(c.comparison for c in claims)
    gated = domain_claims({0: _domain_runs(clear)}, {0: {"domain": {"persistence": {"rmse": 0.6}}}})
    assert all(c.word.startswith("not reproduced") for c in gated)  # gcnn / e2cnn do not beat persistence
    worded = report_findings({}, {"smoke protocols": claims, LEVELS: level_claims(
        {0: {m: {s: {"train": {"test_rmse": v}} for s, v in enumerate(vs)} for m, vs in clear.items()}},
        {0: {"test": {"persistence": {"rmse": 1.0}}}}, first_level=0)})  # fmt: skip
    assert not worded[LEVELS]  # the first level's test claims are the smoke section's
    assert all("over 2 tests" in line for lines in worded.values() for line in lines)


def test_domain_windows_share_no_frame(domain_study: tuple[Path, object]) -> None:
    root, _ = domain_study
    spec = SplitSpec(normalise="scale", level=3)
    train = smoke_splits(root / "smoke.zarr", spec)["train"]
    held = smoke_held_out(sorted((root / "smoke_domain").glob("*.zarr")), spec, train)
    pairs = 0
    for part in held.datasets:  # consecutive windows of a series start one window length apart
        starts = [part.index[i] for i in range(len(part))]
        for (s0, t0), (s1, t1) in zip(starts, starts[1:], strict=False):
            if s0 == s1:
                pairs += 1
                assert t1 - t0 >= part.index.length
    assert pairs > 0  # some series holds more than one window: the check above checked something


def test_validation_windows_that_share_no_frame(smoke_store: Path) -> None:
    every = smoke_splits(smoke_store, SplitSpec(level=3))
    length = every["valid"].index.length
    apart = smoke_splits(smoke_store, SplitSpec(level=3, valid_stride=length, window_stride=2))
    assert (every["valid"].index.stride, apart["valid"].index.stride) == (1, length)
    assert (apart["train"].index.stride, apart["test"].index.stride) == (2, 1)  # test windows: always all
    kept = apart["valid"].index.per_series
    assert kept == (every["valid"].index.per_series - 1) // length + 1
    for i in range(len(apart["valid"])):  # every length-th window of each direction, the same tensors
        series, k = divmod(i, kept)
        same = every["valid"][series * every["valid"].index.per_series + k * length]
        assert all(torch.equal(a, b) for a, b in zip(apart["valid"][i], same, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(apart["test"][-1], every["test"][-1], strict=True))
