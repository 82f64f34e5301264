"""Flatness measures labelled invariant stay put under reparameterisations that keep the function.

One test per model family: the reparameterisation must leave the outputs unchanged (checked), every
measure labelled invariant unchanged to round-off, and the raw Hessian's top eigenvalue in the stored
coordinates visibly changed (so each test fails on a raw, non-invariant measure).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from models.gconv import GroupConv
from models.registry import build_model
from models.steerable import SteerableNet
from train.curvature import FlatLoss, output_filter_index, top_eigenvalues
from train.flatness import INVARIANCE, AdaptiveHessian, invariant_measures, shared_form

pytestmark = pytest.mark.usefixtures("float64_default")  # exact comparisons (tests/conftest.py)


def _mse(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return ((model(batch[0]) - batch[1]) ** 2).mean()


def _perturbed(model: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():  # off the constant starts (relaxed weights 1, zero head): a generic point
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _data(task: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(2)
    if task == "smoke":
        return [(torch.randn(3, 2, 6, 6, generator=gen), torch.randn(3, 2, 6, 6, generator=gen))]
    return [(torch.randn(2, 3, 3, 2, 2, 2, generator=gen), torch.randn(2, 3, 8, 8, 8, generator=gen))]


def _raw_top(model: nn.Module, data: list) -> float:
    flat = FlatLoss(model, data, _mse)
    return float(top_eigenvalues(flat, 1, min(flat.dim, 60), seed=0)[0][0])


def _measures(model: nn.Module, data: list) -> dict:
    """What the landscape reports: shared coordinates, raw top eigenvalue there, the adaptive measures."""
    shared, _ = shared_form(model)
    flat = FlatLoss(shared, data, _mse)
    out = invariant_measures(flat, top_k=2, steps=min(flat.dim, 60), probes=3, directions=2,
                             displacements=[0.1, 0.5], seed=0)  # fmt: skip
    out["max_eigenvalue"] = float(top_eigenvalues(flat, 1, min(flat.dim, 60), seed=0)[0][0])
    out["loss"] = flat.value(flat.w0)
    return out


def _check(a: nn.Module, b: nn.Module, data: list, invariant: list[str]) -> None:
    with torch.no_grad():
        assert torch.allclose(a(data[0][0]), b(data[0][0]), rtol=1e-10, atol=1e-12)  # the same function
    ma, mb = _measures(a, data), _measures(b, data)
    for key in invariant:
        assert key.removesuffix("_stderr") in INVARIANCE or key == "adaptive_trace_stderr"
        np.testing.assert_allclose(ma[key], mb[key], rtol=1e-7, atol=1e-12, err_msg=key)
    raw_a, raw_b = _raw_top(a, data), _raw_top(b, data)
    assert abs(raw_a - raw_b) > 0.02 * max(raw_a, raw_b), (raw_a, raw_b)  # raw coordinates do move


ALL_ADAPTIVE = ["adaptive_max_eigenvalue", "adaptive_top_eigenvalues", "adaptive_trace",
                "adaptive_trace_stderr", "adaptive_sharpness"]  # fmt: skip


def test_rsteer_split_and_direct_forms_measure_alike() -> None:
    split = _perturbed(SteerableNet(hidden=1, layers=2, relaxed=True, relax_scale=4.0, batch_norm=False))
    _check(split, split.direct_form(), _data("smoke"), [*ALL_ADAPTIVE, "max_eigenvalue", "loss"])


def test_e2cnn_written_as_rsteer_keeps_its_adaptive_curvature() -> None:
    e2cnn = _perturbed(SteerableNet(hidden=1, layers=2, batch_norm=False))
    relaxed = e2cnn.as_relaxed()
    data = _data("smoke")
    _check(e2cnn, relaxed, data, ["adaptive_max_eigenvalue", "adaptive_top_eigenvalues", "loss"])
    # the exact adaptive trace (Hutchinson draws differ with the coordinate count): coordinates at 0 add 0
    traces = []
    for model in (e2cnn, relaxed):
        flat = FlatLoss(shared_form(model)[0], data, _mse)
        scale = flat.w0.abs()
        traces.append(float((torch.func.hessian(flat)(flat.w0.clone()).diagonal() * scale**2).sum()))
    np.testing.assert_allclose(traces[0], traces[1], rtol=1e-9)


def test_relu_layer_rescaling_of_a_cnn_leaves_adaptive_measures_unchanged() -> None:
    cnn = _perturbed(build_model("smoke", "cnn", hidden=2, layers=3, batch_norm=False))
    rescaled = copy.deepcopy(cnn)
    lift, nxt = rescaled.net[0], rescaled.net[2]  # lift -> ReLU -> group conv
    assert isinstance(rescaled.net[1], nn.ReLU)
    with torch.no_grad():  # ReLU(a z) = a ReLU(z) for a > 0
        lift.weight.mul_(5.0)
        lift.bias.mul_(5.0)
        nxt.weight.div_(5.0)
    _check(cnn, rescaled, _data("smoke"), [*ALL_ADAPTIVE, "loss"])


def test_rgcnn_bank_rescaling_is_removed_by_the_shared_form() -> None:
    rgcnn = _perturbed(
        build_model("smoke", "rgcnn", hidden=1, layers=3, banks=2, alpha=0.0, batch_norm=False)
    )
    rescaled = copy.deepcopy(rgcnn)
    gen = torch.Generator().manual_seed(3)
    for conv in rescaled.modules():
        if isinstance(conv, GroupConv) and conv.relaxed_weights is not None:
            conv.rescale_banks(0.3 + 3 * torch.rand(conv.relaxed_weights.shape[0], generator=gen))
    _check(rgcnn, rescaled, _data("smoke"), [*ALL_ADAPTIVE, "max_eigenvalue", "loss"])


def test_adaptive_hessian_is_the_explicitly_scaled_hessian_of_a_tiny_network() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    flat = FlatLoss(model, [(x[:8], y[:8]), (x[8:], y[8:])], _mse)
    s = flat.w0.abs()
    explicit = (s[:, None] * torch.autograd.functional.hessian(flat, flat.w0.clone()) * s[None, :]).numpy()
    op = AdaptiveHessian(flat)
    v = torch.randn(flat.dim)
    np.testing.assert_allclose(op.hvp(flat.w0, v).numpy(), explicit @ v.numpy(), rtol=1e-9, atol=1e-12)
    m = invariant_measures(flat, top_k=2, steps=flat.dim, probes=200, directions=1, displacements=[0.1],
                           seed=0)  # fmt: skip
    np.testing.assert_allclose(
        m["adaptive_top_eigenvalues"], np.linalg.eigvalsh(explicit)[::-1][:2], rtol=1e-8
    )
    assert abs(m["adaptive_trace"] - np.trace(explicit)) < 4 * m["adaptive_trace_stderr"]


def test_shared_coordinates_keep_each_layers_output_filters() -> None:
    direct = _perturbed(SteerableNet(hidden=2, layers=2, relaxed=True, batch_norm=False))
    shared, label = shared_form(direct)
    assert "orthonormal" in label
    names = [n for n, _ in shared.named_parameters() if n.endswith(".original")]
    assert names  # the steerable weights are parametrised
    for name in names:
        plain = name.replace(".parametrizations.", ".").removesuffix(".original")
        assert torch.equal(output_filter_index(shared, name), output_filter_index(direct, plain))


def test_sr_landscape_writes_the_mse_hessian_the_coordinates_and_the_invariance(
    turbulence_store, tmp_path
) -> None:
    """The stage end to end on a tiny SR run: trained on L1, measured with the MSE Hessian beside it."""
    import json

    from pipelines.fit import run_training
    from pipelines.landscape import run_landscape
    from pipelines.params import parse_params
    from tests.conftest import TINY_SMOKE, TINY_TURBULENCE

    torch.set_default_dtype(torch.float32)  # the stage's own dtype
    params = parse_params({
        "compute": {"device": "cpu"}, "smoke": TINY_SMOKE, "turbulence": TINY_TURBULENCE,
        "train": {"turbulence": {"models": ["rgcnn"], "seeds": [0],
                                 "hparams": {"rgcnn": {"hidden": 1, "enc_layers": 1, "banks": 2}},
                                 "optimiser": {"max_epochs": 1, "early_epoch": 1, "batch_size": 2}}},
        "landscape": {"models": {"smoke": [], "turbulence": ["rgcnn"]}, "checkpoints": ["best"],
                      "subset_min_samples": 2, "subset_batch_size": 1, "directions": 1,
                      "displacements": [0.5], "top_k": 1, "lanczos_steps": 3, "slq_probes": 1,
                      "hutchinson_probes": 2, "original_sharpness": True},
    })  # fmt: skip
    runs, metrics = tmp_path / "runs", tmp_path / "metrics"
    run_training("turbulence", "rgcnn", 0, params, turbulence_store, runs, metrics)
    run_landscape("turbulence", "rgcnn", 0, "best", params, turbulence_store, runs, metrics)
    land = json.loads((metrics / "landscape" / "turbulence-rgcnn-seed0-best.json").read_text())
    assert land["batches"] == 2 and land["loss_stderr"] >= 0  # two batches: a batch-to-batch spread
    assert land["parameterisation"].startswith("group:")
    assert land["mse_max_eigenvalue"] >= land["mse_min_ritz_value"] and land["mse_loss"] > 0
    assert {"adaptive_max_eigenvalue", "mse_trace", "max_eigenvalue"} <= set(land["invariance"])
    assert "NOT" in land["invariance"]["max_eigenvalue"] and "NOT" not in land["invariance"]["adaptive_trace"]
    # the study code's variant: on the whole training split (not the subset), labelled as not comparable
    assert land["sharpness_original_samples"] == land["train_samples"] > land["samples"]
    assert land["sharpness_original"] > 0 and "study code" in land["invariance"]["sharpness_original"]
