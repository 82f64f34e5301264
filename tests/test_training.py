"""Training loop (resume, determinism), perturbation sensitivity of every model, and the
train -> landscape -> report chain on a tiny real smoke store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from models.registry import MODEL_NAMES, build_model, default_hparams
from pipelines.fit import run_training
from pipelines.landscape import run_landscape
from pipelines.params import OptimiserParams, parse_params
from pipelines.report import render
from pipelines.smoke.stage import build_smoke_dataset
from tests.smoke_support import SMALL_SMOKE
from train.curvature import FlatLoss, random_directions
from train.loop import train
from train.tasks import TASKS

TINY = {
    "smoke": {"cnn": {"hidden": 4}, "gcnn": {"hidden": 2}, "rgcnn": {"hidden": 2}, "e2cnn": {"hidden": 2},
              "rsteer": {"hidden": 2}, "gmcnn": {}},
    "sr": {"cnn": {"hidden": 4}, "gcnn": {"hidden": 2}, "rgcnn": {"hidden": 2}},
}  # fmt: skip


def tiny_model(task: str, name: str) -> torch.nn.Module:
    hp = {**default_hparams(task, name), **{k: v for k, v in TINY[task][name].items()}}
    return build_model(task, name, **hp)


def tiny_batch(task: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    if task == "smoke":
        return torch.randn(2, 1, 2, 12, 12, generator=gen), torch.randn(2, 2, 2, 12, 12, generator=gen)
    return torch.randn(1, 3, 3, 4, 4, 4, generator=gen), torch.randn(1, 3, 16, 16, 16, generator=gen)


@pytest.mark.parametrize(("task", "name"), [(t, n) for t, names in MODEL_NAMES.items() for n in names])
def test_a_weight_perturbation_changes_the_loss_of_every_model(task: str, name: str) -> None:
    """Guards against e2cnn's eval-mode filter cache silently ignoring perturbed weights."""
    torch.manual_seed(0)
    model = tiny_model(task, name)
    model.eval()  # the state a trained checkpoint is evaluated in
    dataset = "smoke" if task == "smoke" else "turbulence"
    flat = FlatLoss(model, [tiny_batch(task)], TASKS[dataset].loss)
    (d,) = random_directions(flat, 1, seed=0)
    base = flat.value(flat.w0)
    assert abs(flat.value(flat.w0 + 0.5 * d) - base) > 1e-6 * max(1.0, abs(base))
    assert flat.value(flat.w0) == base  # deterministic: same point, same loss


def _toy_regression() -> tuple[TensorDataset, TensorDataset]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 1, 2, 8, 8, generator=gen)
    y = torch.roll(x, 1, dims=-1)[:, :1] * 0.5
    return TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])


class _Stop(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    train_set, valid_set = _toy_regression()
    settings = OptimiserParams(max_epochs=4, early_epoch=2, batch_size=8, patience=10)

    def fresh() -> torch.nn.Module:
        torch.manual_seed(3)
        return tiny_model("smoke", "cnn")

    reference = fresh()
    train(reference, TASKS["smoke"], train_set, valid_set, settings, tmp_path / "ref", seed=5, config_key="k")

    def stop_after_two(epoch: int, _: dict) -> None:
        if epoch == 2:
            raise _Stop

    model = fresh()
    with pytest.raises(_Stop):
        train(model, TASKS["smoke"], train_set, valid_set, settings, tmp_path / "run", 5, "k", stop_after_two)
    assert (tmp_path / "run" / "early.pt").is_file()
    resumed = fresh()  # a new process would start from fresh weights and load last.pt
    result = train(resumed, TASKS["smoke"], train_set, valid_set, settings, tmp_path / "run", 5, "k")
    assert result["history"]["epoch"] == [1, 2, 3, 4]
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a changed configuration starts over instead of mixing runs
    other = fresh()
    again = train(other, TASKS["smoke"], train_set, valid_set, settings, tmp_path / "run", 5, "changed")
    assert again["history"]["epoch"] == [1, 2, 3, 4]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("study")
    params = parse_params({
        "smoke": {**SMALL_SMOKE, "levels": [0]},
        "train": {"smoke": {"models": ["cnn", "e2cnn"], "seeds": [0, 1],
                            "hparams": {"cnn": {"hidden": 4}, "e2cnn": {"hidden": 2}},
                            "optimiser": {"max_epochs": 3, "early_epoch": 1, "batch_size": 4}}},
        "landscape": {"models": {"smoke": ["cnn", "e2cnn"], "turbulence": []},
                      "subset_batches": 1, "subset_batch_size": 2, "directions": 2, "lanczos_steps": 6,
                      "slq_probes": 1, "hutchinson_probes": 2, "top_k": 2},
    })  # fmt: skip
    build_smoke_dataset(params.smoke, params.compute, root / "smoke.zarr", None, root / "scratch")
    for model in ("cnn", "e2cnn"):
        for seed in (0, 1):
            run_training("smoke", model, seed, params, root / "smoke.zarr", root / "runs", root / "metrics")
            for ckpt in ("early", "best"):
                run_landscape(
                    "smoke", model, seed, ckpt, params, root / "smoke.zarr", root / "runs", root / "metrics"
                )
    return root, params


@pytest.mark.slow
def test_train_stage_writes_checkpoints_curves_and_metrics(tiny_study: tuple[Path, object]) -> None:
    root, _ = tiny_study
    metrics = json.loads((root / "metrics" / "train" / "smoke-e2cnn-seed0.json").read_text())
    assert metrics["equivariance_error"] < 1e-4  # E2CNN stays equivariant after training
    cnn = json.loads((root / "metrics" / "train" / "smoke-cnn-seed0.json").read_text())
    assert cnn["equivariance_error"] > 1e-3  # the plain CNN is not
    assert metrics["test_rmse"] > 0 and metrics["samples"]["test"] > 0
    curves = json.loads((root / "metrics" / "curves" / "smoke-e2cnn-seed0.json").read_text())
    assert [row["epoch"] for row in curves] == [1, 2, 3]
    for ckpt in ("early", "best", "last"):
        assert (root / "runs" / "smoke" / "e2cnn" / "seed0" / f"{ckpt}.pt").is_file()
    seed1 = json.loads((root / "metrics" / "train" / "smoke-e2cnn-seed1.json").read_text())
    assert seed1["test_rmse"] != metrics["test_rmse"]  # seeds matter


@pytest.mark.slow
def test_landscape_and_report(tiny_study: tuple[Path, object]) -> None:
    root, params = tiny_study
    land = json.loads((root / "metrics" / "landscape" / "smoke-e2cnn-seed0-best.json").read_text())
    assert land["sharpness"] > 0 and land["max_eigenvalue"] >= land["top_eigenvalues"][-1]
    assert abs(sum(land["slq_weights"]) - 1) < 1e-6
    spectrum = json.loads((root / "metrics" / "spectra" / "smoke-e2cnn-seed0-best.json").read_text())
    assert {"eigenvalue", "density"} <= set(spectrum[0])
    summary = render(params, root / "metrics", root / "report", {"smoke": ("PhiFlow", "PhiFlow test store")})
    assert set(summary["smoke"]) == {"cnn", "e2cnn"}
    text = (root / "report" / "report.md").read_text()
    assert "PhiFlow test store" in text and "smoke_sharpness.png" in text
    assert (root / "report" / "smoke_spectra.png").stat().st_size > 1000
