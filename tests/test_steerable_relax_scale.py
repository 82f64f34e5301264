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


def _perturbed(model: torch.nn.Module, seed: int = 3) -> torch.nn.Module:
    """The split form away from its E2CNN start, so the relaxed part matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in _convs(model):
            shape = conv.relaxed_weights.shape
            conv.relaxed_weights.add_(torch.randn(shape, generator=gen, dtype=torch.float64))
    return model


def test_direct_form_is_the_same_function_in_seed000s_parameterisation() -> None:
    model, x = _perturbed(build_small("smoke", "rsteer", relax_scale=0.1)), sample("smoke", batch=2)
    direct = model.direct_form()
    assert direct.relax_scale is None and model.relax_scale == 0.1  # the trained model is left as it was
    assert torch.allclose(direct.eval()(x), model.eval()(x), atol=1e-12)
    assert count_parameters(direct) == count_parameters(model)
    seed000 = build_small("smoke", "rsteer")  # seed 000's form: one tensor per layer, no coefficient
    assert [n for n, _ in direct.named_parameters()] == [n for n, _ in seed000.named_parameters()]
    for conv, split in zip(_convs(direct), _convs(model), strict=True):
        assert conv.weights is None
        assert torch.allclose(conv.relaxed_weights, split.per_position_weights(), atol=0)


def test_split_form_scales_curvature_along_the_relaxed_part_by_relax_scale_squared() -> None:
    # the same function, another Hessian: why raw curvature is compared only in shared coordinates
    model, x = _perturbed(build_small("smoke", "rsteer", relax_scale=0.1)), sample("smoke", batch=1)
    model.eval()
    direct = model.direct_form().eval()
    conv, dconv = _convs(model)[1], _convs(direct)[1]
    gen = torch.Generator().manual_seed(1)
    d = torch.randn(conv.relaxed_weights.shape, generator=gen, dtype=torch.float64)
    step = 0.1 * d @ conv.deviation_basis.double()  # the same move of w, in each form's coordinates

    def curvature(net: torch.nn.Module, param: torch.nn.Parameter, v: torch.Tensor) -> float:
        loss = (net(x) ** 2).sum()
        (g,) = torch.autograd.grad(loss, param, create_graph=True)
        (hv,) = torch.autograd.grad((g * v).sum(), param)
        return float((hv * v).sum())

    split_curv = curvature(model, conv.relaxed_weights, d)
    direct_curv = curvature(direct, dconv.relaxed_weights, step / 0.1)
    assert split_curv == pytest.approx(0.1**2 * direct_curv, rel=1e-8)
