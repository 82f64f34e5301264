"""Training loop (resume, determinism), perturbation sensitivity of every model, and the
train -> landscape -> report chain on a tiny real smoke store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from models import groups as G
from models.equivariance import equivariance_error
from models.registry import MODEL_NAMES, build_model, default_hparams
from pipelines.fit import run_training
from pipelines.landscape import fixed_subset, measure, run_landscape
from pipelines.params import LandscapeParams, OptimiserParams, parse_params
from pipelines.report import collect, findings, read_baselines, render, verdict
from pipelines.run_config import hparams_of, split_spec, task_of
from pipelines.smoke.stage import build_smoke_dataset
from tests.smoke_support import SMALL_SMOKE
from train.baselines import UPSAMPLERS, Persistence, UpsampleMiddle, Zero, upsample
from train.curvature import FlatLoss, random_directions
from train.data import build, load_splits
from train.flatness import shared_form
from train.kinds import task_for
from train.loop import load_checkpoint, train
from train.runs import RunId, baseline_metrics
from train.tasks import score

TINY = {
    "smoke": {"cnn": {"hidden": 4}, "gcnn": {"hidden": 2}, "rgcnn": {"hidden": 2}, "e2cnn": {"hidden": 2},
              "rsteer": {"hidden": 2}, "gmcnn": {}},
    "sr": {"cnn": {"hidden": 4, "zero_head": False}, "gcnn": {"hidden": 2, "zero_head": False},
           "rgcnn": {"hidden": 2, "zero_head": False}},
}  # fmt: skip  (sr: a random head, like a trained one; the default zero head outputs 0)


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
    flat = FlatLoss(model, [tiny_batch(task)], task_for(dataset).loss)
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
    smoke = task_for("smoke")
    train(reference, smoke, train_set, valid_set, settings, tmp_path / "ref", seed=5, config_key="k")

    def stop_after_two(epoch: int, _: dict) -> None:
        if epoch == 2:
            raise _Stop

    model = fresh()
    with pytest.raises(_Stop):
        train(model, smoke, train_set, valid_set, settings, tmp_path / "run", 5, "k", stop_after_two)
    assert (tmp_path / "run" / "early.pt").is_file()
    resumed = fresh()  # a new process would start from fresh weights and load last.pt
    result = train(resumed, task_for("smoke"), train_set, valid_set, settings, tmp_path / "run", 5, "k")
    assert result["history"]["epoch"] == [1, 2, 3, 4]
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a changed configuration starts over instead of mixing runs
    other = fresh()
    again = train(other, task_for("smoke"), train_set, valid_set, settings, tmp_path / "run", 5, "changed")
    assert again["history"]["epoch"] == [1, 2, 3, 4]


def dense_hessian(flat: FlatLoss) -> np.ndarray:
    """The Hessian column by column from ``dim`` HVPs, symmetrised (round-off)."""
    eye = torch.eye(flat.dim, dtype=flat.w0.dtype)
    h = torch.stack([flat.hvp(flat.w0, eye[i]) for i in range(flat.dim)]).detach().double().numpy()
    return (h + h.T) / 2


def landscape_loss(root: Path, params: object, model_name: str, seed: int, checkpoint: str) -> FlatLoss:
    """The loss the landscape stage measures for a smoke run, rebuilt independently of ``measure``."""
    section = params.train.smoke  # type: ignore[attr-defined]
    model = build("smoke", model_name, seed, hparams_of("smoke", model_name, section))
    path = RunId("smoke", model_name, seed).checkpoint(root / "runs", checkpoint)
    model.load_state_dict(load_checkpoint(path)["model"])
    model, _ = shared_form(model)  # the coordinates the stage measures in
    splits = load_splits("smoke", root / "smoke.zarr", split_spec(section))
    subset = fixed_subset(splits["train"], params.landscape)  # type: ignore[attr-defined]
    return FlatLoss(model, subset, task_of("smoke", section, splits["train"]).loss)  # as the stage does


def test_landscape_measurements_match_a_dense_eigendecomposition() -> None:
    """``measure`` (what the landscape stage writes) on a tiny network against its explicit Hessian."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        x, y = torch.randn(16, 3), torch.randn(16, 2)
        flat = FlatLoss(model, [(x[:8], y[:8]), (x[8:], y[8:])], lambda m, b: ((m(b[0]) - b[1]) ** 2).mean())
        probes = 24
        p = LandscapeParams(lanczos_steps=flat.dim, slq_probes=probes, hutchinson_probes=probes, top_k=3,
                            directions=2)  # fmt: skip
        out, spectrum = measure(flat, p)
        h = dense_hessian(flat)
    finally:
        torch.set_default_dtype(previous)
    eigs = np.linalg.eigvalsh(h)
    scale = np.abs(eigs).max()
    assert eigs[0] < 0 < eigs[-1]  # an indefinite Hessian: the checks below see both ends
    # full-length Lanczos recovers the spectrum: top-k, the extremes, and every probe's nodes
    assert np.allclose(out["top_eigenvalues"], eigs[::-1][:3], rtol=0, atol=1e-9 * scale)
    assert abs(out["max_eigenvalue"] - eigs[-1]) < 1e-9 * scale
    assert abs(out["min_ritz_value"] - eigs[0]) < 1e-9 * scale
    nodes = np.sort(np.asarray(out["slq_nodes"]).reshape(probes, flat.dim), axis=1)
    assert np.allclose(nodes, eigs[None, :], rtol=0, atol=1e-8 * scale)
    # SLQ moments: sum(w) = 1 and dim * sum(w * lambda) estimates tr(H), sum(w * lambda^2) tr(H^2), within
    # the Rademacher estimator's standard error (2 * sum of squared off-diagonal entries per probe)
    w, lam = np.asarray(out["slq_weights"]), np.asarray(out["slq_nodes"])
    assert abs(w.sum() - 1) < 1e-12
    for power in (1, 2):
        m = np.linalg.matrix_power(h, power)
        stderr = np.sqrt(2 * (np.sum(m**2) - np.sum(np.diag(m) ** 2)) / probes)
        assert stderr < 0.3 * abs(np.trace(m))  # tight enough to catch a wrong scale or a lost probe
        estimate = flat.dim * np.sum(w * lam**power)
        assert abs(estimate - np.trace(m)) < 4 * stderr, (power, estimate, np.trace(m), stderr)
    assert abs(out["trace"] - np.trace(h)) < 4 * out["trace_stderr"]  # Hutchinson, its own probes
    assert out["negative_mass"] > 0 and spectrum[0]["eigenvalue"] < eigs[0]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("study")
    params = parse_params({
        "smoke": {**SMALL_SMOKE, "levels": [0]},
        "train": {"smoke": {"models": ["cnn", "e2cnn"], "seeds": [0, 1],
                            "hparams": {"cnn": {"hidden": 4}, "e2cnn": {"hidden": 2}},
                            "optimiser": {"max_epochs": 3, "early_epoch": 1, "batch_size": 4}}},
        "landscape": {"models": {"smoke": ["cnn", "e2cnn"], "turbulence": []},
                      "subset_fraction": 0.01, "subset_min_samples": 2, "subset_batch_size": 2,
                      "directions": 2, "lanczos_steps": 6, "slq_probes": 1, "hutchinson_probes": 2,
                      "top_k": 2},
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
    assert land["sharpness"] > 0
    # Ritz values lie inside the spectrum of the Hessian of the loss the stage measured: rebuild that loss
    # from the checkpoint and decompose its Hessian densely (360 parameters)
    flat = landscape_loss(root, params, "e2cnn", 0, "best")
    eigs = np.linalg.eigvalsh(dense_hessian(flat))
    tol = 1e-6 * np.abs(eigs).max()
    assert eigs[0] - tol <= land["min_ritz_value"] <= land["max_eigenvalue"] <= eigs[-1] + tol
    assert land["top_eigenvalues"][0] == land["max_eigenvalue"]  # one probe: its top Ritz value
    assert land["max_eigenvalue"] > 0.5 * eigs[-1]  # six Lanczos steps already find the top's scale
    spectrum = json.loads((root / "metrics" / "spectra" / "smoke-e2cnn-seed0-best.json").read_text())
    assert {"eigenvalue", "density"} <= set(spectrum[0])
    summary = render(params, root / "metrics", root / "report", {"smoke": ("PhiFlow", "PhiFlow test store")})
    assert set(summary["smoke"]) == {"cnn", "e2cnn"}
    text = (root / "report" / "report.md").read_text()
    assert "PhiFlow test store" in text and "smoke_sharpness.png" in text
    assert (root / "report" / "smoke_spectra.png").stat().st_size > 1000


# --- baselines, residual form, per-sample statistics and verdicts ---


def _smoke_toy(n: int = 5) -> TensorDataset:
    gen = torch.Generator().manual_seed(2)
    return TensorDataset(torch.randn(n, 1, 2, 8, 8, generator=gen), torch.randn(n, 3, 2, 8, 8, generator=gen))


def test_persistence_baseline_scores_the_hand_computed_rmse() -> None:
    data = _smoke_toy()
    x, y = data.tensors
    got = score(Persistence(), task_for("smoke"), data, batch_size=2, scale=2.0)
    # RMSE per rollout step over every value of the split, averaged over the 3 steps; then x2 units
    diff = (y - x[:, -1:]).double()
    per_step = [float(torch.sqrt((diff[:, k] ** 2).mean())) for k in range(3)]
    assert got["rmse"] == pytest.approx(2.0 * np.mean(per_step), rel=1e-6)
    per_sample = [2.0 * np.mean([float(torch.sqrt((diff[i, k] ** 2).mean())) for k in range(3)])
                  for i in range(5)]  # fmt: skip
    assert got["per_sample"] == pytest.approx(per_sample, rel=1e-6)
    assert got["n"] == 5 and got["se"] == pytest.approx(np.std(per_sample, ddof=1) / np.sqrt(5), rel=1e-6)
    zero = score(Zero(), task_for("smoke"), data, batch_size=5)
    assert zero["rmse"] == pytest.approx(float(torch.sqrt((y**2).mean(dim=(0, 2, 3, 4))).mean()), rel=1e-6)


class _ZeroNet(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return torch.zeros_like(x[:, -2:])
        return torch.zeros(x.shape[0], 3, *[4 * s for s in x.shape[-3:]])


def test_a_model_that_predicts_the_trivial_answer_scores_exactly_the_baseline() -> None:
    data = _smoke_toy()
    base = score(Persistence(), task_for("smoke"), data, batch_size=2)
    residual = task_for("smoke", residual=True, train_set=data)
    assert residual.step_scale > 0
    assert score(_ZeroNet(), residual, data, batch_size=2) == base  # zero correction = persistence
    gen = torch.Generator().manual_seed(3)
    sr = TensorDataset(
        torch.randn(3, 3, 3, 4, 4, 4, generator=gen), torch.randn(3, 3, 16, 16, 16, generator=gen)
    )
    for kind in UPSAMPLERS:
        trivial = score(UpsampleMiddle(4, kind), task_for("turbulence"), sr, batch_size=2)
        task = task_for("turbulence", residual=True, train_set=sr, upsampler=kind)
        assert score(_ZeroNet(), task, sr, batch_size=2) == trivial


def test_upsamplers_commute_with_cube_rotations_and_spectral_keeps_block_means() -> None:
    gen = torch.Generator().manual_seed(4)
    lr = torch.randn(2, 3, 6, 6, 6, generator=gen, dtype=torch.float64)
    for kind in UPSAMPLERS:
        hr = upsample(lr, 4, kind)
        for m in G.octahedral().matrices[1:]:
            err = (upsample(G.rotate_vector(lr, m, 1), 4, kind) - G.rotate_vector(hr, m, 1)).abs().max()
            assert err < 1e-10, (kind, err)
    coef = torch.fft.fftn(lr, dim=(-3, -2, -1))
    coef[..., 3, :, :] = coef[..., :, 3, :] = coef[..., :, :, 3] = 0  # no Nyquist modes
    smooth = torch.fft.ifftn(coef, dim=(-3, -2, -1)).real
    means = upsample(smooth, 4, "spectral").reshape(2, 3, 6, 4, 6, 4, 6, 4).mean(dim=(3, 5, 7))
    assert torch.allclose(means, smooth, atol=1e-12)
    assert torch.allclose(upsample(torch.ones(1, 5, 5, 5), 4, "trilinear"), torch.ones(1, 20, 20, 20))


@pytest.mark.parametrize(("dataset", "name"), [("smoke", "gcnn"), ("smoke", "e2cnn"), ("turbulence", "gcnn")])
def test_residual_prediction_is_exactly_as_equivariant_as_the_network(dataset: str, name: str) -> None:
    task_name = "smoke" if dataset == "smoke" else "sr"
    torch.manual_seed(0)
    net = tiny_model(task_name, name)
    x, y = tiny_batch(task_name)
    task = task_for(dataset, residual=True, train_set=TensorDataset(x, y))
    probe = task.equivariance_probe((x, y))
    wrapped = task.as_module(net)
    assert wrapped is not net
    assert equivariance_error(wrapped, probe, task_name) < 1e-5
    assert equivariance_error(net, probe, task_name) < 1e-5
    cnn = task.as_module(tiny_model(task_name, "cnn"))  # the check can fail: a plain CNN is not equivariant
    assert equivariance_error(cnn, probe, task_name) > 1e-4


def test_verdicts_need_significance_three_seeds_and_beating_the_baseline() -> None:
    assert verdict([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], baseline=3.0)[0] == "reproduced"
    assert verdict([1.0, 1.5, 0.6], [1.1, 0.7, 1.6], baseline=3.0)[0] == "not significant"
    assert verdict([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], baseline=1.5)[0].startswith("not reproduced")
    assert verdict([1.0, 1.1], [2.0, 2.1], baseline=3.0)[0] == "inconclusive (n seeds < 3)"
    assert verdict([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], baseline=3.0)[0].startswith("NOT reproduced")


def _write_run(root: Path, dataset: str, model: str, seed: int, test: float) -> None:
    run = RunId(dataset, model, seed)
    metric = {"smoke": "rmse", "turbulence": "mae"}[dataset]
    metrics = {f"test_{metric}": test, f"best_valid_{metric}": test, f"test_{metric}_se": 0.01,
               "test_samples": 8, "parameters": 10, "equivariance_error": 0.0}  # fmt: skip
    run.train_metrics(root).parent.mkdir(parents=True, exist_ok=True)
    run.train_metrics(root).write_text(json.dumps(metrics))


@pytest.mark.parametrize(
    ("relaxed", "full", "seeds", "expected"),
    [
        ([0.50, 0.51, 0.49], [0.70, 0.71, 0.69], 3, "**reproduced**"),
        ([0.50, 0.71, 0.60], [0.70, 0.49, 0.61], 3, "**not significant**"),
        ([1.50, 1.51, 1.49], [1.70, 1.71, 1.69], 3, "**not reproduced (a model does not beat"),
        ([0.50, 0.51], [0.70, 0.71], 2, "**inconclusive (n seeds < 3)**"),
    ],
)
def test_report_findings_from_a_synthetic_metrics_dir(
    tmp_path: Path, relaxed: list[float], full: list[float], seeds: int, expected: str
) -> None:
    for seed in range(seeds):
        _write_run(tmp_path, "smoke", "rsteer", seed, relaxed[seed])
        _write_run(tmp_path, "smoke", "e2cnn", seed, full[seed])
    scores = {"persistence": {"rmse": 1.0, "se": 0.0, "n": 8}, "zero": {"rmse": 4.0, "se": 0.0, "n": 8}}
    path = baseline_metrics(tmp_path, "smoke")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"splits": {"valid": scores, "test": scores}}))
    params = parse_params({"train": {"smoke": {"models": ["rsteer", "e2cnn"], "seeds": list(range(seeds))}},
                           "landscape": {"models": {"smoke": ["rsteer", "e2cnn"]}}})  # fmt: skip
    runs = collect(params, tmp_path)["smoke"]
    lines = findings("smoke", runs, [], read_baselines(tmp_path, "smoke"))
    test_line = next(line for line in lines if "lower test RMSE" in line)
    assert expected in test_line, test_line


@pytest.mark.slow
def test_fit_metrics_hold_the_test_standard_error_and_sample_count(tiny_study: tuple[Path, object]) -> None:
    root, _ = tiny_study
    metrics = json.loads((root / "metrics" / "train" / "smoke-e2cnn-seed0.json").read_text())
    values = np.asarray(metrics["test_rmse_per_sample"])
    assert metrics["test_samples"] == len(values) == metrics["samples"]["test"]
    assert metrics["test_rmse_se"] == pytest.approx(values.std(ddof=1) / np.sqrt(len(values)))


@pytest.mark.slow
def test_fit_metrics_give_the_networks_own_equivariance_error(tiny_study: tuple[Path, object]) -> None:
    root, params = tiny_study
    read = lambda m: json.loads((root / "metrics" / "train" / f"smoke-{m}-seed0.json").read_text())  # noqa: E731
    cnn, e2cnn = read("cnn"), read("e2cnn")
    assert e2cnn["equivariance_error_network"] < 1e-5
    assert params.train.smoke.residual  # the residual form: the trivial last frame dilutes the error
    assert cnn["equivariance_error_network"] > 3 * cnn["equivariance_error"] > 0
