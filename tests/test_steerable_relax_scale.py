"""RSteer's split form (hparam ``relax_scale``): E2CNN at init, no redundancy, small relaxed steps."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from models.equivariance import equivariance_error  # noqa: E402
from models.registry import build_model, count_parameters  # noqa: E402
from tests.test_models import TOL, _one_thread, build_small, sample  # noqa: E402, F401 (autouse fixture)

ROOT = Path(__file__).resolve().parents[1]


def _convs(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if type(m).__name__ == "SteerableConv"]


def test_split_form_starts_as_e2cnn_with_seed000_parameter_count() -> None:
    model, x = build_small("smoke", "rsteer", relax_scale=0.1), sample("smoke", batch=1)
    torch.manual_seed(0)
    e2 = build_model("smoke", "e2cnn", hidden=2, in_frames=2).double()
    assert torch.allclose(e2.eval()(x), model.eval()(x), atol=1e-12)  # same seed, same function
    assert equivariance_error(model.train(), x, "smoke") < TOL
    # same number of weights as seed 000's form: c (one per basis element) + 8 zero-mean coordinates
    assert count_parameters(model) == count_parameters(build_small("smoke", "rsteer"))
    for conv in _convs(model):
        assert torch.equal(conv.relaxed_weights, torch.zeros_like(conv.relaxed_weights))


def test_split_form_deviation_basis_is_orthonormal_and_zero_mean() -> None:
    conv = _convs(build_small("smoke", "rsteer", relax_scale=0.1))[1]
    q = conv.deviation_basis.double()
    assert q.shape == (8, 9)
    assert torch.allclose(q @ q.T, torch.eye(8, dtype=q.dtype), atol=1e-12)
    assert torch.allclose(q.sum(dim=1), torch.zeros(8, dtype=q.dtype), atol=1e-12)


def test_split_form_relaxed_step_is_scaled_and_breaks_only_by_the_deviation() -> None:
    scale = 0.1
    model, x = build_small("smoke", "rsteer", relax_scale=scale), sample("smoke", batch=1)
    conv = _convs(model)[1]
    before = conv.per_position_weights().detach().clone()
    torch.manual_seed(3)
    step = torch.randn_like(conv.relaxed_weights)
    with torch.no_grad():
        conv.relaxed_weights.add_(step)
    after = conv.per_position_weights().detach()
    # a unit step on the relaxed coordinates moves the per-position weights by relax_scale (orthonormal
    # basis), and never their mean over the kernel points: that stays E2CNN's coefficient c
    assert torch.allclose((after - before).norm(), scale * step.norm(), rtol=1e-12)
    assert torch.allclose(after.mean(dim=2), conv.weights.detach(), atol=1e-12)
    assert equivariance_error(model, x, "smoke") > 1e-4
    assert float(build_small("smoke", "rsteer", relax_scale=scale).regularizer().detach()) == 0.0


def test_embedded_default_trains_rsteer_in_the_split_form() -> None:
    # issue 11: seed 000's form (one free weight per point, same step size as c) fails to beat persistence
    # on the test split of the embedded default; the split form with a small relaxed step does (docs/study.md)
    from pipelines.params import load_params
    from pipelines.run_config import hparams_of

    params = load_params(ROOT / "params.yaml")
    hp = hparams_of("smoke", "rsteer", params.train.smoke)
    assert hp["relax_scale"] is not None and 0 < hp["relax_scale"] < 1
    model = build_model("smoke", "rsteer", **hp)
    assert all(c.weights is not None and c.relaxed_weights.shape[-1] == 8 for c in _convs(model))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "0.1", True])
def test_relax_scale_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="relax_scale"):
        build_model("smoke", "rsteer", hidden=2, relax_scale=bad)
