"""Bundled models: exact equivariance (and its absence in the CNN), relaxation, double backward, params."""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import pytest

torch = pytest.importorskip("torch")

from models import groups as G  # noqa: E402
from models.equivariance import act_input, act_output, equivariance_error  # noqa: E402
from models.registry import (  # noqa: E402
    MODEL_NAMES,
    build_model,
    count_parameters,
    default_hparams,
    expanded_once,
    refresh_cached_filters,
)

warnings.filterwarnings("ignore", message="indexing with dtype torch.uint8")

# tiny configurations of every registered model (test_every_registered_model_is_tested): 16x16 smoke,
# 4^3 -> 16^3 SR
SMALL = {
    ("smoke", "cnn"): {"hidden": 6},
    ("smoke", "gcnn"): {"hidden": 3},
    ("smoke", "rgcnn"): {"hidden": 2},
    ("smoke", "e2cnn"): {"hidden": 3},
    ("smoke", "rsteer"): {"hidden": 2},
    ("smoke", "gmcnn"): {"hidden": 3, "grid": 16},
    # a random head: the default zero head makes every SR output 0, and equivariance checks vacuous
    ("sr", "cnn"): {"hidden": 2, "enc_layers": 1, "zero_head": False},
    ("sr", "gcnn"): {"hidden": 1, "enc_layers": 1, "zero_head": False},
    ("sr", "rgcnn"): {"hidden": 1, "enc_layers": 1, "zero_head": False},
}
ALL = [(task, name) for task, names in MODEL_NAMES.items() for name in names]
EQUIVARIANT = [k for k in ALL if k[1] != "cnn"]
RELAXED = [("smoke", "rgcnn", {}), ("smoke", "rsteer", {}), ("smoke", "gmcnn", {"error": True}),
           ("smoke", "gmcnn", {"error": True, "variant": "circular"}), ("sr", "rgcnn", {})]
TOL = 1e-10  # float64 throughout


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: one thread is faster and does not fight other test processes for the cores
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(task: str, name: str, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(task, name, **{**SMALL[(task, name)], **extra}).double()


def sample(task: str, batch: int = 2, frames: int = 2, seed: int = 1, sr_size: int = 4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if task == "smoke":
        return torch.randn(batch, 2 * frames, 16, 16, generator=gen, dtype=torch.float64)
    return torch.randn(batch, 3, 3, *(sr_size,) * 3, generator=gen, dtype=torch.float64)


def build_small(task: str, name: str, **extra) -> torch.nn.Module:
    return small(task, name, in_frames=2, **extra) if task == "smoke" else small(task, name, **extra)


def relaxed_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    names = (".error", ".error_vector")
    return [p for n, p in model.named_parameters() if "relaxed_weights" in n or n.endswith(names)]


# ---------------------------------------------------------------- interface


def test_every_registered_model_is_tested() -> None:
    # a new built-in model gets its tiny size here, and every test below iterating ALL then covers it
    assert sorted(SMALL) == sorted(ALL)


def test_registry_interface() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet': not a built-in smoke model \['cnn', "):
        build_model("smoke", "resnet")
    with pytest.raises(ValueError, match="allowed"):
        build_model("video", "cnn")
    with pytest.raises(ValueError, match="hidden"):
        build_model("smoke", "cnn", hiden=3)
    hp = default_hparams("sr", "gcnn")
    hp["hidden"] = -1  # a copy: the registry's defaults are untouched
    assert default_hparams("sr", "gcnn")["hidden"] != -1


def test_package_import_stays_light() -> None:
    code = "import sys, models, models.groups; assert not {'torch', 'e2cnn'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("task,name", ALL)
def test_shapes_group_regularizer(task: str, name: str) -> None:
    model = build_small(task, name)
    y = model(sample(task))
    assert y.shape == ((2, 2, 16, 16) if task == "smoke" else (2, 3, 16, 16, 16))
    assert float(model.regularizer().detach()) == 0.0
    assert (model.group is None) == (name == "cnn")
    assert torch.equal(model(sample(task)), y)  # deterministic forward
    assert_independent_copy(model, sample(task))


def assert_independent_copy(model: torch.nn.Module, x: torch.Tensor) -> None:
    """A deep copy computes the same outputs, and its parameters are its own: changing them leaves the
    original alone (and vice versa, for cached filters built from them)."""
    model.eval()
    before = model(x)
    twin = copy.deepcopy(model)
    assert torch.equal(twin(x), before)
    originals = {id(p) for p in model.parameters()}
    assert all(id(p) not in originals for p in twin.parameters())
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.1)
    refresh_cached_filters(twin)
    assert not torch.allclose(twin(x), before)
    assert torch.equal(model(x), before)


# ---------------------------------------------------------------- exact equivariance


@pytest.mark.parametrize("task,name", EQUIVARIANT)
def test_equivariant_models(task: str, name: str) -> None:
    model = build_small(task, name)
    model.train()  # the check itself switches to eval; make some BN statistics non-trivial first
    model(sample(task, seed=5))
    assert equivariance_error(model, sample(task, batch=1), task) < TOL


@pytest.mark.parametrize("task", ["smoke", "sr"])
def test_cnn_is_not_equivariant(task: str) -> None:
    # the same check fails for the plain CNN: the test can fail
    assert equivariance_error(build_small(task, "cnn"), sample(task), task) > 1e-2


def test_equivariance_elementwise_sr_gcnn() -> None:
    # model(g.x) == g.model(x) for each of the 24 rotations, vector components included
    model, x = build_small("sr", "gcnn"), sample("sr", batch=1)
    y = model(x)
    for m in G.octahedral().matrices:
        assert torch.allclose(model(act_input(x, "sr", m)), act_output(y, m), atol=1e-12, rtol=0)


def test_sr_gcnn_with_reflections() -> None:
    model = small("sr", "gcnn", reflections=True)
    assert len(model.group) == 48
    x = torch.randn(1, 3, 3, 2, 2, 2, dtype=torch.float64)
    assert equivariance_error(model, x, "sr") < TOL


def test_scalar_channels_flag_is_only_grid_equivariant() -> None:
    model = small("sr", "gcnn", scalar_channels=True)
    x = sample("sr", batch=1, sr_size=2)
    assert equivariance_error(model, x, "sr", action="scalar") < TOL  # what the original guaranteed
    assert equivariance_error(model, x, "sr", action="vector") > 1e-2  # ... but velocity is a vector


# ---------------------------------------------------------------- relaxed models


@pytest.mark.parametrize("task,name,extra", RELAXED)
def test_relaxed_models_break_symmetry_gradually(task: str, name: str, extra: dict) -> None:
    model, x = build_small(task, name, **extra), sample(task, batch=1, sr_size=2)
    assert equivariance_error(model, x, task) < TOL  # exactly equivariant at initialisation
    params = relaxed_params(model)
    assert params
    start = [p.detach().clone() for p in params]
    noise = [torch.randn_like(p) for p in params]
    errors = []
    for eps in (1e-3, 1e-2, 1e-1):
        with torch.no_grad():
            for p, p0, n in zip(params, start, noise, strict=True):
                p.copy_(p0 + eps * n)
        refresh_cached_filters(model)
        errors.append(equivariance_error(model, x, task))
    assert errors[0] > 1e-6 and errors[0] < errors[1] < errors[2]


@pytest.mark.parametrize("task,name,extra", RELAXED)
def test_relaxation_regularizer(task: str, name: str, extra: dict) -> None:
    model = build_small(task, name, alpha=0.5, **extra)
    assert float(model.regularizer().detach()) == 0.0
    with torch.no_grad():
        for p in relaxed_params(model):
            p.add_(0.1 * torch.randn_like(p))
    reg = model.regularizer()
    assert float(reg.detach()) > 0
    (grad,) = torch.autograd.grad(reg, relaxed_params(model)[0])
    assert grad.abs().sum() > 0


# ---------------------------------------------------------------- e2cnn filter caching


@pytest.mark.parametrize("name", ["e2cnn", "rsteer"])
def test_eval_mode_sees_weight_perturbation(name: str) -> None:
    model = build_small("smoke", name).eval()
    x = sample("smoke")
    before = model(x)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    refresh_cached_filters(model)
    assert not torch.allclose(model(x), before)
    assert_independent_copy(model, x)  # no cached non-leaf filters to trip deepcopy


def test_refresh_rebuilds_native_e2cnn_cache() -> None:
    from e2cnn import gspaces
    from e2cnn import nn as enn

    gs = gspaces.Rot2dOnR2(N=4)
    # one dtype throughout: e2cnn caches sampled bases process-wide in the dtype of their first use
    vec, reg = enn.FieldType(gs, [gs.irrep(1)]), enn.FieldType(gs, [gs.regular_repr])
    conv = enn.R2Conv(vec, reg, 3).double().eval()
    stale = conv.filter.clone()
    with torch.no_grad():
        conv.weights.add_(1.0)
    assert torch.equal(conv.filter, stale)  # the pitfall
    refresh_cached_filters(conv)
    assert not torch.equal(conv.filter, stale)


def test_expanded_once_matches_per_call() -> None:
    model, x = build_small("smoke", "rgcnn"), sample("smoke")
    ref = model(model(x)[:, :2].repeat(1, 2, 1, 1))
    with expanded_once(model):
        out = model(model(x)[:, :2].repeat(1, 2, 1, 1))
    assert torch.allclose(out, ref, atol=1e-12)
    (g,) = torch.autograd.grad(out.sum(), relaxed_params(model)[0])
    assert torch.isfinite(g).all()


# ---------------------------------------------------------------- differentiability


@pytest.mark.parametrize("task,name", ALL)
def test_double_backward(task: str, name: str) -> None:
    model = build_small(task, name, **({"error": True} if name == "gmcnn" else {}))
    x = sample(task, batch=2)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = model(x).pow(2).mean() + model.regularizer()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    vec = [torch.randn_like(p) for p in params]
    hvp = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vec, strict=True)), params)
    assert all(torch.isfinite(h).all() for h in hvp)
    assert sum(float(h.abs().sum()) for h in hvp) > 0


def test_torch_func_functional_call() -> None:
    from torch.func import functional_call, grad

    model = build_small("smoke", "gcnn").eval()
    x = sample("smoke")
    params = {k: v.detach() for k, v in model.named_parameters()}
    loss = lambda p: functional_call(model, p, (x,)).pow(2).mean()  # noqa: E731
    g = grad(loss)(params)
    # the functional gradient equals autograd's on the module itself, parameter by parameter
    model.zero_grad()
    model(x).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert torch.allclose(g[name], p.grad, rtol=1e-10, atol=1e-12), name
    assert any(float(v.abs().max()) > 0 for v in g.values())
    # and it is the derivative: a small step along it lowers the loss by about |g|^2 * step
    step = 1e-6
    moved = {k: v - step * g[k] for k, v in params.items()}
    drop = float(loss(params) - loss(moved))
    assert drop == pytest.approx(step * sum(float((v**2).sum()) for v in g.values()), rel=1e-3)


# ---------------------------------------------------------------- parameter counts


def _smoke_group_count(hidden: int, group: int, layers: int, frames: int, banks: int = 0) -> int:
    lb = max(banks, 1)
    relax = banks * group  # one (L, |G|) weight table per layer
    lift = lb * hidden * 2 * frames * 9 + hidden + relax
    mid = (layers - 2) * (lb * hidden * hidden * group * 9 + hidden + relax)
    head = lb * hidden * 2 * 9 + relax
    return lift + mid + head + (layers - 1) * 2 * hidden


def _e2cnn_count(hidden: int, layers: int, frames: int, relaxed: bool) -> int:
    # e2cnn's C4 basis at kernel 3: 12 coefficients per (vector, regular) pair, 24 per (regular, regular);
    # RSteer has one direct weight per (basis element, kernel point) instead: 9 per coefficient
    r = 9 if relaxed else 1
    return r * (12 * frames * hidden + (layers - 2) * 24 * hidden**2 + 12 * hidden) + \
        (layers - 1) * hidden + (layers - 1) * 2 * hidden


def _sr_count(hidden: int, group: int, enc: int, ups: tuple[int, int], banks: int = 0) -> int:
    lb, relax = max(banks, 1), banks * group
    lift = lb * hidden * 9 * 27 + hidden + relax
    convs = (enc + sum(ups)) * (lb * hidden * hidden * group * 27 + hidden + relax)
    transposed = 2 * (lb * hidden * hidden * group * 8 + hidden + relax)
    return lift + convs + transposed + lb * hidden * 3 * 27 + relax


def _gm_count(hidden: int, layers: int, frames: int, error: bool) -> int:
    """The project's first form (variant "circular"): a plain stack of radius-1 GMConvs."""
    widths = [2 * frames] + [hidden] * (layers - 1) + [2]
    pairs = zip(widths[:-1], widths[1:], strict=True)
    return sum(27 * a * b * (2 if error else 1) for a, b in pairs) + (layers - 1) * hidden


def _gm_seed003_count(
    hidden: int, blocks: int, frames: int, error: bool, radius: int = 1, grid: int = 64
) -> int:
    """Seed 003's layout: embedding 2F -> C (+ bias), blocks of GMConv (|N| C^2 + C bias, doubled
    coefficients and a 4 grid^2 vector with the error term) + PReLU (1), head C -> 2 (no bias)."""
    n = (2 * radius + 1) ** 2 * (3 if radius == 1 else 4)
    block = n * hidden**2 * (2 if error else 1) + hidden + 1 + (4 * grid**2 if error else 0)
    return 2 * frames * hidden + hidden + blocks * block + 2 * hidden


def test_parameter_counts_match_formulas() -> None:
    counts = {(t, n): count_parameters(build_model(t, n)) for t, names in MODEL_NAMES.items() for n in names}
    assert counts[("smoke", "cnn")] == _smoke_group_count(148, 1, 5, 1)
    assert counts[("smoke", "gcnn")] == _smoke_group_count(74, 4, 5, 1)
    assert counts[("smoke", "rgcnn")] == _smoke_group_count(43, 4, 5, 1, banks=3)
    assert counts[("smoke", "e2cnn")] == _e2cnn_count(91, 5, 1, relaxed=False)
    assert counts[("smoke", "rsteer")] == _e2cnn_count(30, 5, 1, relaxed=True)
    assert counts[("smoke", "gmcnn")] == _gm_seed003_count(15, 4, 1, error=False)
    assert counts[("sr", "cnn")] == _sr_count(24, 1, 6, (1, 0))
    assert counts[("sr", "gcnn")] == _sr_count(5, 24, 6, (1, 0))
    assert counts[("sr", "rgcnn")] == _sr_count(3, 24, 6, (1, 0), banks=3)
    # budgets: smoke models within 10% of each other, GM-CNN tiny, SR near the study's ~125-135k
    smoke = [counts[("smoke", n)] for n in ("cnn", "gcnn", "rgcnn", "e2cnn", "rsteer")]
    assert max(smoke) / min(smoke) < 1.1
    assert 20_000 <= counts[("smoke", "gmcnn")] <= 30_000
    assert all(120_000 <= counts[("sr", n)] <= 140_000 for n in MODEL_NAMES["sr"])
    # formulas also hold off the defaults (in_frames, error term)
    gcnn3 = build_model("smoke", "gcnn", hidden=5, in_frames=3)
    assert count_parameters(gcnn3) == _smoke_group_count(5, 4, 5, 3)
    circular = build_model("smoke", "gmcnn", variant="circular", hidden=4, layers=5, error=True)
    assert count_parameters(circular) == _gm_count(4, 5, 1, True)
    assert count_parameters(build_model("smoke", "gmcnn", variant="circular", hidden=16, layers=5)) == 22_528
    with_error = build_model("smoke", "gmcnn", hidden=4, layers=3, error=True, grid=8)
    assert count_parameters(with_error) == _gm_seed003_count(4, 3, 1, True, grid=8)
    wider = build_model("smoke", "gmcnn", hidden=4, layers=3, radius=2, in_frames=2)
    assert count_parameters(wider) == _gm_seed003_count(4, 3, 2, False, radius=2)
    # the embedded defaults (params.yaml train.smoke.hparams) stay near 17-23k parameters
    assert count_parameters(build_model("smoke", "rsteer", hidden=5)) == _e2cnn_count(5, 5, 1, True)
    assert count_parameters(build_model("smoke", "gmcnn", hidden=14)) == _gm_seed003_count(14, 4, 1, False)
    assert _e2cnn_count(5, 5, 1, True) == 17_340 and _gm_seed003_count(14, 4, 1, False) == 21_298


# ---------------------------------------------------------------- RSteer: one direct weight per basis element


def test_rsteer_has_one_direct_weight_per_basis_element_and_position() -> None:
    model = build_small("smoke", "rsteer")
    convs = [m for m in model.modules() if type(m).__name__ == "SteerableConv"]
    for conv in convs:
        names = {n for n, _ in conv.named_parameters()}
        assert names <= {"relaxed_weights", "bias"} and conv.weights is None  # no coefficient tensor
        pairs, nb, points = conv.relaxed_weights.shape
        assert (pairs, nb, points) == (conv.n_out * conv.n_in, conv.basis.shape[0], 9)
        # initialised to the equivariant solution: the same value at every kernel position
        w = conv.relaxed_weights.detach()
        assert torch.equal(w, w[:, :, :1].expand_as(w))
    # and drawn as E2CNN's coefficients: the same seed gives the same function
    torch.manual_seed(0)
    e2 = build_model("smoke", "e2cnn", hidden=2, in_frames=2).double()
    x = sample("smoke")
    assert torch.allclose(e2.eval()(x), model.eval()(x), atol=1e-12)


def test_rsteer_has_no_rescaling_symmetry() -> None:
    # a product c * w could be rescaled (c -> 2c, w -> w/2) without changing the function; one direct
    # weight cannot: scaling the only weight tensor of a layer changes the output
    model, x = build_small("smoke", "rsteer").eval(), sample("smoke")
    before = model(x)
    conv = next(m for m in model.modules() if type(m).__name__ == "SteerableConv")
    with torch.no_grad():
        conv.relaxed_weights.mul_(2.0)
    assert not torch.allclose(model(x), before, atol=1e-6)


def test_rsteer_fresh_is_equivariant_and_perturbed_is_not() -> None:
    model, x = build_small("smoke", "rsteer"), sample("smoke", batch=1)
    assert equivariance_error(model, x, "smoke") < TOL
    assert float(model.regularizer().detach()) == 0.0
    torch.manual_seed(3)
    with torch.no_grad():
        for p in relaxed_params(model):
            p.add_(0.05 * torch.randn_like(p))
    assert equivariance_error(model, x, "smoke") > 1e-3
    reg = build_small("smoke", "rsteer", alpha=1.0)
    with torch.no_grad():
        for p, q in zip(relaxed_params(reg), relaxed_params(model), strict=True):
            p.copy_(q)
    assert float(reg.regularizer().detach()) > 0  # the smoothness penalty acts on the one weight tensor
