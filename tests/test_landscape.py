"""Curvature and sharpness code against explicit Hessians and known quadratics."""

import numpy as np
import pytest
import torch
from torch import nn

from train.curvature import (
    FlatLoss,
    hutchinson_trace,
    lanczos,
    original_directions,
    output_filter_index,
    power_iteration,
    random_directions,
    sharpness,
    spectral_density,
    top_eigenvalues,
)

pytestmark = pytest.mark.usefixtures("float64_default")  # exact comparisons (tests/conftest.py)


class Quadratic(nn.Module):
    """L(w) = 1/2 w^T A w with a known symmetric A (as a 'model' whose output is the loss)."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.register_buffer("a", a)
        self.w = nn.Parameter(torch.randn(a.shape[0]))

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.w @ self.a @ self.w


def quadratic(eigs: np.ndarray, seed: int = 0) -> tuple[FlatLoss, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=gen))
    a = q @ torch.diag(torch.as_tensor(eigs)) @ q.T
    model = Quadratic(a)
    return FlatLoss(model, [(torch.zeros(1),)], lambda m, b: m(b[0])), a


def tiny_net_loss() -> FlatLoss:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    return FlatLoss(model, [(x[:8], y[:8]), (x[8:], y[8:])], lambda m, b: ((m(b[0]) - b[1]) ** 2).mean())


def explicit_hessian(flat: FlatLoss) -> np.ndarray:
    return torch.func.hessian(flat)(flat.w0.clone()).detach().numpy()


def test_hvp_matches_the_explicit_hessian_of_a_tiny_network() -> None:
    flat = tiny_net_loss()
    h = explicit_hessian(flat)
    v = torch.randn(flat.dim)
    assert np.allclose(flat.hvp(flat.w0, v).numpy(), h @ v.numpy(), rtol=1e-10, atol=1e-12)


def test_lanczos_top_eigenvalues_match_the_explicit_hessian() -> None:
    flat = tiny_net_loss()
    exact = np.sort(np.linalg.eigvalsh(explicit_hessian(flat)))[::-1]
    ours, matvecs = top_eigenvalues(flat, k=3, steps=flat.dim, seed=1)
    assert matvecs <= flat.dim
    assert np.allclose(ours, exact[:3], rtol=1e-4)
    assert exact.min() < 0  # this tiny net is not at a minimum: the spectrum has negative eigenvalues


def test_known_quadratic_spectrum_trace_and_power_iteration() -> None:
    eigs = np.array([10.0, 4.0, 2.0, 1.0, 0.5, -0.25, 0.1, 0.0])
    flat, a = quadratic(eigs)
    top, _ = top_eigenvalues(flat, k=2, steps=8, seed=0)
    assert np.allclose(top, [10.0, 4.0], rtol=1e-8)
    lam, iters = power_iteration(lambda v: flat.hvp(flat.w0, v), torch.randn(8), tol=1e-10, max_iter=2000)
    assert lam == pytest.approx(10.0, rel=1e-6) and iters > 1
    mean, err = hutchinson_trace(flat, probes=400, seed=0)
    assert abs(mean - eigs.sum()) < 4 * err + 1e-9


def test_slq_density_integrates_to_one_and_puts_mass_on_the_eigenvalues() -> None:
    eigs = np.array([5.0, 5.0, 5.0, 1.0, 1.0, 1.0, 1.0, -2.0])
    flat, _ = quadratic(eigs)
    out = spectral_density(flat, probes=20, steps=8, seed=0, width=0.05)
    assert out["weights"].sum() == pytest.approx(1.0, rel=1e-10)
    nodes = out["nodes"][out["weights"] > 1e-6]
    assert np.all(np.min(np.abs(nodes[:, None] - np.array([5.0, 1.0, -2.0])[None]), axis=1) < 1e-6)
    mass = {e: out["weights"][np.abs(out["nodes"] - e) < 1e-6].sum() for e in (5.0, 1.0, -2.0)}
    assert mass[5.0] == pytest.approx(3 / 8, abs=0.08) and mass[-2.0] == pytest.approx(1 / 8, abs=0.06)
    assert np.trapezoid(out["density"], out["grid"]) == pytest.approx(1.0, abs=1e-3)


def test_lanczos_terminates_on_an_invariant_subspace() -> None:
    a = torch.diag(torch.tensor([3.0, 3.0, 1.0, 1.0]))
    res = lanczos(lambda v: a @ v, torch.tensor([1.0, 1.0, 1.0, 1.0]), steps=4)
    assert res.matvecs == 2 and np.allclose(sorted(res.ritz()[0]), [1.0, 3.0])


def test_sharpness_of_a_quadratic_is_known_in_closed_form() -> None:
    eigs = np.array([2.0, 1.0, 0.5])
    flat, a = quadratic(eigs)
    flat.w0.zero_()  # at the minimum, L(t d) - L(0) = t^2/2 d^T A d
    dirs = random_directions(flat, count=5, seed=3)
    assert all(float(d.norm()) == pytest.approx(1.0) for d in dirs)
    ts = [0.1, 0.4, 0.7, 1.0]
    out = sharpness(flat, dirs, ts)
    expected = np.mean([t**2 / 2 * float(d @ a @ d) for d in dirs for t in ts])
    assert out["sharpness"] == pytest.approx(expected, rel=1e-12)
    again = random_directions(flat, count=5, seed=3)
    assert all(torch.equal(d, e) for d, e in zip(dirs, again, strict=True))  # shared across checkpoints


def test_the_study_codes_directions_are_the_same_draws_divided_by_the_parameter_count() -> None:
    flat = tiny_net_loss()
    unit, original = random_directions(flat, 3, seed=7), original_directions(flat, 3, seed=7)
    gen = torch.Generator().manual_seed(7)
    for u, d in zip(unit, original, strict=True):
        assert torch.equal(d, torch.randn(flat.dim, generator=gen, dtype=torch.float64) / flat.dim)
        assert torch.allclose(d / d.norm(), u, rtol=1e-12, atol=0)  # the unit directions' own draws
    ts = [0.1, 1.0]  # tiny steps: the loss barely moves, unlike along unit directions
    assert sharpness(flat, original, ts)["sharpness"] < sharpness(flat, unit, ts)["sharpness"]


def test_filter_normalised_directions_match_filter_norms() -> None:
    flat = tiny_net_loss()
    (d,) = random_directions(flat, count=1, seed=0, filter_normalised=True)
    parts = dict(zip(flat.names, d.split(flat.sizes), strict=True))
    weights = dict(zip(flat.names, flat.w0.split(flat.sizes), strict=True))
    w = weights["0.weight"].view(4, 3)
    assert torch.allclose(parts["0.weight"].view(4, 3).norm(dim=1), w.norm(dim=1))
    assert torch.count_nonzero(parts["0.bias"]) == 0


# tiny configurations of every bundled model family (task "smoke" and "sr")
FAMILIES = [
    ("smoke", "cnn", {"hidden": 3}),
    ("smoke", "gcnn", {"hidden": 2}),
    ("smoke", "rgcnn", {"hidden": 2}),
    ("smoke", "e2cnn", {"hidden": 2}),
    ("smoke", "rsteer", {"hidden": 2}),
    ("smoke", "gmcnn", {"hidden": 3, "layers": 2}),
    ("smoke", "gmcnn", {"hidden": 3, "layers": 2, "error": True, "grid": 8}),
    ("smoke", "gmcnn", {"hidden": 3, "layers": 3, "variant": "circular"}),
    ("sr", "cnn", {"hidden": 2, "enc_layers": 1}),
    ("sr", "gcnn", {"hidden": 2, "enc_layers": 1}),
    ("sr", "rgcnn", {"hidden": 1, "enc_layers": 1}),
]


def _family(task: str, name: str, hp: dict) -> FlatLoss:
    from models.registry import build_model

    torch.manual_seed(0)
    model = build_model(task, name, **hp)
    with torch.no_grad():  # move relaxed and error weights off their constant start: every norm differs
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return FlatLoss(model, [(torch.zeros(1),)], lambda m, b: torch.zeros(()))  # directions need no data


@pytest.mark.parametrize("task,name,hp", FAMILIES)
def test_filter_normalised_directions_match_per_output_filter_norms(task: str, name: str, hp: dict) -> None:
    flat = _family(task, name, hp)
    (d,) = random_directions(flat, count=1, seed=0, filter_normalised=True)
    # the Gaussian it was made from: one scale factor per whole filter, not per row of the storage layout
    raw = torch.randn(flat.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    filters = 0
    sizes = flat.sizes
    chunks = zip(flat.names, d.split(sizes), raw.split(sizes), flat.w0.split(sizes), flat.shapes, strict=True)
    for pname, dp, rp, wp, shape in chunks:
        idx = output_filter_index(flat.model, pname)
        if idx is None:  # biases, norm and PReLU parameters: not filters, left where they are
            assert len(shape) == 1 or pname.endswith(".bias"), pname
            assert torch.count_nonzero(dp) == 0
            continue
        assert idx.shape == shape
        ids = idx.reshape(-1)
        for f in ids.unique():
            sel = ids == f
            assert dp[sel].norm() == pytest.approx(float(wp[sel].norm()), rel=1e-10), (pname, int(f))
            ratio = dp[sel] / rp[sel]
            assert torch.allclose(ratio, ratio[:1].expand_as(ratio), rtol=1e-10, atol=0), (pname, int(f))
            filters += 1
    assert filters > 0


def _changed_rows(layer: nn.Module, pname: str, mask: torch.Tensor) -> frozenset[int]:
    """Rows (output channels) of the layer's expanded conv weight that move when ``mask`` entries move."""
    expand = getattr(layer, "dense_weight", None) or (lambda: layer.expand()[0])
    param = getattr(layer, pname)
    with torch.no_grad():
        before = expand().clone()
        saved = param.clone()
        param[mask] += 0.37
        after = expand()
        param.copy_(saved)
    return frozenset(torch.nonzero((after - before).flatten(1).abs().sum(1) > 0).reshape(-1).tolist())


@pytest.mark.parametrize("task,name,hp", [f for f in FAMILIES if f[1] != "cnn"] + [FAMILIES[0]])
def test_output_filters_are_the_output_fields_of_each_layer(task: str, name: str, hp: dict) -> None:
    """What a filter is, checked on the expanded kernels rather than on the storage layout: the entries of
    one filter of a layer's weight feed exactly one output field, and distinct filters distinct fields."""
    from models.gconv import GroupConv
    from models.gmcnn import GMConv
    from models.steerable import SteerableConv

    flat = _family(task, name, hp)
    kinds = (GroupConv, SteerableConv, GMConv)
    layers = {n: m for n, m in flat.model.named_modules() if isinstance(m, kinds)}
    assert layers
    for lname, layer in layers.items():
        if isinstance(layer, GroupConv):
            fields, main = layer.out_channels, "weight"
        elif isinstance(layer, SteerableConv):
            fields, main = layer.n_out, "weights" if layer.weights is not None else "relaxed_weights"
        else:
            fields, main = layer.kappa.shape[1], "kappa"
        for pname, _ in layer.named_parameters():
            idx = output_filter_index(flat.model, f"{lname}.{pname}")
            if idx is None or getattr(layer, "error_form", None) == "vector" and pname.startswith("error"):
                continue  # seed 003's error term acts after the conv (v varies in space)
            rows = [_changed_rows(layer, pname, idx == f) for f in idx.unique()]
            assert all(rows) and all(a.isdisjoint(b) for i, a in enumerate(rows) for b in rows[i + 1:])
            if pname == main:
                assert len(rows) == fields, (lname, pname)
                assert len({len(r) for r in rows}) == 1  # every field has the same number of channels


def test_lanczos_with_a_tolerance_stops_once_the_top_value_settles() -> None:
    eigs = np.linspace(-1.0, 10.0, 60)
    flat, _ = quadratic(eigs)
    v0 = torch.randn(flat.dim, generator=torch.Generator().manual_seed(0))
    res = lanczos(lambda v: flat.hvp(flat.w0, v), v0, steps=60, tol=1e-10)
    assert res.matvecs < 60
    assert res.ritz()[0][-1] == pytest.approx(10.0, rel=1e-8)


class Regularised(nn.Module):
    """A tiny network with a parameter-dependent regulariser (like the relaxed models' penalty)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def regularizer(self) -> torch.Tensor:
        return 0.3 * (self.net[0].weight ** 4).sum()


def uneven_losses() -> tuple[FlatLoss, FlatLoss]:
    """The same 16 samples as batches of 5, 3 and 8, and as one batch of 16."""
    torch.manual_seed(0)
    model = Regularised()
    x, y = torch.randn(16, 3), torch.randn(16, 2)

    def mse(m: nn.Module, b: tuple) -> torch.Tensor:
        return ((m(b[0]) - b[1]) ** 2).mean()

    split = [(x[:5], y[:5]), (x[5:8], y[5:8]), (x[8:], y[8:])]
    return FlatLoss(model, split, mse), FlatLoss(model, [(x, y)], mse)


def test_accumulated_hvp_over_uneven_batches_equals_the_explicit_hessian() -> None:
    flat, whole = uneven_losses()
    assert flat.samples == 16 and flat.weights == [5 / 16, 3 / 16, 8 / 16]
    h = torch.func.hessian(whole)(whole.w0.clone()).detach().numpy()  # one batch: the full-subset Hessian
    v = torch.randn(flat.dim, generator=torch.Generator().manual_seed(4))
    hv = flat.hvp(flat.w0, v).numpy()
    assert np.allclose(hv, h @ v.numpy(), rtol=1e-10, atol=1e-12)
    assert np.abs(hv).max() > 1e-3  # not trivially zero
    assert np.allclose(flat.hvp_single_graph(flat.w0, v).numpy(), hv, rtol=1e-10, atol=1e-12)


def test_accumulated_value_and_gradient_are_the_per_sample_mean() -> None:
    flat, whole = uneven_losses()
    w = flat.w0 + 0.1 * torch.randn(flat.dim, generator=torch.Generator().manual_seed(5))
    assert flat.value(w) == pytest.approx(whole.value(w), rel=1e-12)
    exact = torch.func.grad(whole)(w.clone())
    assert torch.allclose(flat.grad(w), exact, rtol=1e-10, atol=1e-13)
    # the old unweighted mean of batch means differs when the batches are unequal
    per_batch = [FlatLoss(flat.model, [b], flat.loss_of_batch) for b in flat.batches]
    reg = float(flat._regulariser(w))
    unweighted = np.mean([f.value(w) - reg for f in per_batch]) + reg
    assert abs(unweighted - flat.value(w)) > 1e-6


def test_landscape_subset_is_the_studys_fraction_of_the_training_set() -> None:
    from pipelines.landscape import subset_size
    from pipelines.params import LandscapeParams

    p = LandscapeParams()
    assert p.subset_fraction == 0.2
    assert subset_size(60, p) == 12  # the default study's 60 smoke training windows
    assert subset_size(1000, p) == 200
    assert subset_size(20, p) == 8  # the minimum count
    assert subset_size(5, p) == 5  # never more than exist
    assert subset_size(60, LandscapeParams(subset_fraction=1.0)) == 60
    assert subset_size(60, LandscapeParams(subset_fraction=0.01, subset_min_samples=2)) == 2
    with pytest.raises(ValueError, match="subset_batches"):  # one mechanism: the fraction decides
        LandscapeParams(subset_batches=1)


def test_l1_hessian_of_a_relu_net_has_zero_trace_and_the_mse_one_beside_it_is_measured() -> None:
    """Why SR curvature is also measured under MSE: L1 has no Gauss-Newton term and a ReLU net is
    piecewise linear in each single weight, so the L1 Hessian's diagonal (and trace) is exactly 0."""
    from pipelines.landscape import measure
    from pipelines.params import LandscapeParams

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 2))
    x, y = torch.randn(12, 3), torch.randn(12, 2)
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    l1 = FlatLoss(model, batches, lambda m, b: (m(b[0]) - b[1]).abs().mean())
    mse = FlatLoss(model, batches, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean())
    h_l1, h_mse = explicit_hessian(l1), explicit_hessian(mse)
    assert np.abs(np.diag(h_l1)).max() < 1e-12 and np.abs(h_l1).max() > 1e-3  # zero diagonal, not zero
    p = LandscapeParams(lanczos_steps=l1.dim, slq_probes=1, hutchinson_probes=64, top_k=1, directions=1)
    out, _ = measure(l1, p, mse)
    assert abs(out["trace"]) < 4 * out["trace_stderr"]  # Hutchinson: 0 up to its probe noise
    eigs = np.linalg.eigvalsh(h_mse)
    assert out["mse_max_eigenvalue"] == pytest.approx(eigs[-1], rel=1e-8)
    assert out["mse_min_ritz_value"] == pytest.approx(eigs[0], rel=1e-6, abs=1e-9 * eigs[-1])
    assert out["mse_trace"] > 0 and out["mse_loss"] == pytest.approx(mse.value(mse.w0))
    assert set(out["invariance"]) >= {"max_eigenvalue", "adaptive_max_eigenvalue", "mse_max_eigenvalue"}


def test_loss_standard_error_is_the_spread_of_equal_batches() -> None:
    from train.flatness import batch_loss_stderr

    flat = tiny_net_loss()  # two batches of 8
    per_batch = [FlatLoss(flat.model, [b], flat.loss_of_batch).value(flat.w0) for b in flat.batches]
    assert batch_loss_stderr(flat) == pytest.approx(np.std(per_batch, ddof=1) / np.sqrt(2), rel=1e-9)
    assert np.isnan(batch_loss_stderr(FlatLoss(flat.model, flat.batches[:1], flat.loss_of_batch)))


def test_resident_graphs_give_the_same_products_bit_for_bit_from_one_forward_per_batch() -> None:
    """Every product of a measurement is at w0: within resident_graphs each batch's gradient graph is built
    once and reused, with the products of the rebuilding path exactly; elsewhere, and for the batches over
    the memory budget, hvp rebuilds as before."""
    flat, _ = uneven_losses()  # three batches and a regulariser
    forwards = []
    loss_of_batch = flat.loss_of_batch
    flat.loss_of_batch = lambda m, b: forwards.append(1) or loss_of_batch(m, b)
    gen = torch.Generator().manual_seed(6)
    vs = [torch.randn(flat.dim, generator=gen) for _ in range(3)]
    rebuilt = [flat.hvp(flat.w0, v) for v in vs]
    assert len(forwards) == 3 * len(flat.batches)
    away = flat.w0 + 0.1 * vs[0]
    for max_bytes, forwards_per_product in ((None, 0), (0, len(flat.batches))):
        forwards.clear()
        with flat.resident_graphs(max_bytes):
            kept = [flat.hvp(flat.w0, v) for v in vs]
            # kept: one forward per batch for all three products; over the budget: each product rebuilds
            assert len(forwards) == 3 * forwards_per_product + (len(flat.batches) if max_bytes is None else 1)
            elsewhere = FlatLoss(flat.model, flat.batches, mse_of).hvp(away, vs[1])
            assert torch.equal(flat.hvp(away, vs[1]), elsewhere)
        assert all(torch.equal(a, b) for a, b in zip(rebuilt, kept, strict=True))
        assert flat._resident is None  # freed on exit


def mse_of(m: nn.Module, b: tuple) -> torch.Tensor:
    return ((m(b[0]) - b[1]) ** 2).mean()
