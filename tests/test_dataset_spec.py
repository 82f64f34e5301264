"""Project issue 20, item 1: a dataset kind is one registered object. A third kind, written as one module
of its own (tests/diffusion_dataset.py) plus a params section, runs through the baselines, train, report
and publish stages' command-line entry points as DVC runs them; no stage has a branch for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines import baselines, fit, report, run_config
from pipelines.params import ParamsError, parse_params
from pipelines.publish import stage as publish
from tests.diffusion_dataset import build_store

SPEC = "tests.diffusion_dataset:DIFFUSION"
OPTIMISER = {"lr": 1e-3, "batch_size": 4, "max_epochs": 1, "early_epoch": 1}
PARAMS = {
    "datasets": ["diffusion"],
    "dataset_specs": {"diffusion": SPEC},
    "compute": {"device": "cpu", "n_workers": 1},
    "train": {"diffusion": {"models": ["cnn"], "seeds": [0], "hparams": {"cnn": {"hidden": 4, "layers": 2}},
                            "optimiser": OPTIMISER}},
    "landscape": {"models": {}},
    "publish": {"datasets": ["diffusion"], "repos": {"diffusion": "tester/diffusion-c4"}},
}  # fmt: skip


def test_a_third_dataset_runs_through_every_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the stages' default paths (data/<store>, metrics/, runs/) as under DVC
    Path("params.yaml").write_text(yaml.safe_dump(PARAMS))
    build_store(Path("data/diffusion.zarr"))
    common = ["--params", "params.yaml"]

    assert baselines.main([*common, "--dataset", "diffusion"]) == 0
    scores = json.loads(Path("metrics/baselines/diffusion.json").read_text())
    assert scores["metric"] == "rmse" and {"persistence", "zero"} <= set(scores["splits"]["test"])

    assert fit.main(common) == 0
    run = json.loads(Path("metrics/train/diffusion-cnn-seed0.json").read_text())
    assert run["test_samples"] == 5 and run["test_rmse"] > 0 and "best_valid_rmse" in run
    assert Path("runs/diffusion/cnn/seed0/best.pt").is_file()

    assert report.main([*common, "--summary-dir", "metrics/summary", "--plots-dir", "metrics/plots"]) == 0
    text = Path("report/report.md").read_text()
    assert "## diffusion — data: diffusion simulation" in text and "baseline: persistence" in text
    assert json.loads(Path("metrics/summary/diffusion.json").read_text())["cnn"]["test_rmse"] > 0
    assert Path("report/diffusion_test.png").is_file()

    argv = [*common, "--store", "diffusion=data/diffusion.zarr", "--out", "data/hub"]
    assert publish.main([*argv, "--receipt", "metrics/receipt.json", "--metrics-dir", "metrics"]) == 0
    repo = Path("data/hub/diffusion-c4")
    assert (repo / "zarr/diffusion.zarr/zarr.json").is_file() and (repo / "figures/diffusion.png").is_file()
    assert "Periodic 2D diffusion" in (repo / "README.md").read_text()
    assert json.loads(Path("metrics/receipt.json").read_text())["repos"]["diffusion"]["target"] == "local"


def test_a_dataset_of_ones_own_keys_its_runs_on_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_config, "store_digest", lambda _: "data")
    train = parse_params(PARAMS).train  # resolves and registers the spec
    identity = run_config.run_identity("diffusion", "cnn", 0, train.diffusion, {}, Path("data"), "cpu")
    assert len(identity["dataset_code"]) == 64  # an edit of tests/diffusion_dataset.py retrains its runs
    assert "dataset_code" not in run_config.run_identity("smoke", "cnn", 0, train.smoke, {}, Path("data"))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"dataset_specs": {}}, "datasets.diffusion: dataset 'diffusion' is not built in"),
        ({"dataset_specs": {"diffusion": "tests.diffusion_dataset:NOPE"}}, "cannot be imported"),
        ({"dataset_specs": {"diffusion": "tests.diffusion_dataset:build_store"}}, "not a DatasetSpec"),
        ({"dataset_specs": {"diffusion": SPEC, "smoke": SPEC}}, "dataset_specs.smoke: 'smoke' is a built-in"),
        ({"train": {"diffusion": {"models": ["unet"]}}}, "train.diffusion.models: unknown model 'unet'"),
        ({"train": {"difusion": {"models": ["cnn"]}}}, "train.difusion: no dataset 'difusion'"),
    ],
)
def test_a_dataset_of_ones_own_is_checked_when_params_load(change: dict, needle: str) -> None:
    with pytest.raises(ParamsError) as err:
        parse_params({**PARAMS, **change})
    assert needle in str(err.value)
