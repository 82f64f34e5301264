"""Loss-landscape measurements on a flat parameter vector: sharpness, Hessian spectra, trace.

The loss is evaluated functionally (``torch.func.functional_call``) at any point ``w`` of parameter
space, so a perturbation never depends on module state. That also sidesteps the e2cnn pitfall where
convolutions cache their expanded filters in eval mode: :func:`deterministic` keeps those layers in
train mode (they re-expand from the weights on every call) while normalisation layers use their running
statistics, so the loss is a deterministic function of ``w``.

Hessian-vector products use double backward; every product a measurement takes is at the same point
``w0``, so within :meth:`FlatLoss.resident_graphs` each batch's gradient graph is built once and only the
second backward runs per product (the same arithmetic, bit for bit). Spectra come from Lanczos with full
re-orthogonalisation: its extreme Ritz values give the top eigenvalues, and stochastic Lanczos quadrature
(SLQ, several random start vectors) gives the spectral density. The trace is Hutchinson's estimator.
Plain power iteration (the original study's method) is kept as the baseline for
``benchmarks/hessian_top_eig.py``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.expansion import filters_along
from train.resident import ResidentGraphs, graph_budget

Tensor = torch.Tensor
LossOfBatch = Callable[[nn.Module, tuple[Tensor, ...]], Tensor]


def _caches_filters(module: nn.Module) -> bool:
    """e2cnn convolutions expand and cache their filters when switched to eval mode."""
    return hasattr(module, "expand_parameters") and hasattr(module, "basisexpansion")


@contextlib.contextmanager
def deterministic(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for normalisation/dropout, train mode for filter-caching convolutions; restored after."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for m in model.modules():
        if _caches_filters(m):
            m.train()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


class FlatLoss:
    """``L(w)``: the mean per-sample loss over fixed batches (each batch's mean loss weighted by its size,
    so unequal batches count as their samples) plus the model's regulariser, as a function of a flat
    parameter vector ``w``. ``w0`` holds the model's current parameters.

    Values, gradients and Hessian-vector products are accumulated batch by batch (all three are linear in
    the per-batch losses), so memory scales with one batch, not with the whole subset (within
    :meth:`resident_graphs`, with the graphs it keeps). Everything runs on the model's device: the batches
    are moved there once, here.
    """

    def __init__(self, model: nn.Module, batches: Sequence[tuple[Tensor, ...]], loss_of_batch: LossOfBatch):
        self.model = model
        self.batches = list(batches)
        if not self.batches:
            raise ValueError("FlatLoss needs at least one batch")
        self.loss_of_batch = loss_of_batch
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        device = params[self.names[0]].device if self.names else torch.device("cpu")
        self.batches = [tuple(t.to(device) if isinstance(t, Tensor) else t for t in b) for b in self.batches]
        self.shapes = [params[n].shape for n in self.names]
        self.sizes = [params[n].numel() for n in self.names]
        self.w0 = torch.cat([params[n].detach().reshape(-1) for n in self.names]).clone()
        counts = [len(b[0]) for b in self.batches]
        self.samples = sum(counts)
        self.weights = [c / self.samples for c in counts]  # batch share of the per-sample mean
        self._resident: ResidentGraphs | None = None  # gradient graphs at w0, kept during a measurement

    @property
    def dim(self) -> int:
        return int(self.w0.numel())

    def unflatten(self, w: Tensor) -> dict[str, Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, w.split(self.sizes), self.shapes, strict=True)}

    def _batch_loss(self, w: Tensor, i: int) -> Tensor:
        with deterministic(self.model):
            loss = _loss_with_params(self.model, self.unflatten(w), self.batches[i], self.loss_of_batch)
        return self.weights[i] * loss

    def _regulariser(self, w: Tensor) -> Tensor:
        with deterministic(self.model):
            return _regulariser_with_params(self.model, self.unflatten(w))

    def __call__(self, w: Tensor) -> Tensor:
        """The whole loss as one differentiable expression (for ``torch.func`` and the reference HVP)."""
        return sum(self._batch_loss(w, i) for i in range(len(self.batches))) + self._regulariser(w)

    def value(self, w: Tensor) -> float:
        with torch.no_grad():
            return float(sum(float(self._batch_loss(w, i)) for i in range(len(self.batches)))) + float(
                self._regulariser(w)
            )

    def _pieces(self) -> list[Callable[[Tensor], Tensor]]:
        """The batches' weighted losses, then the regulariser: the terms of ``L``, in summation order."""
        pieces = [lambda x, i=i: self._batch_loss(x, i) for i in range(len(self.batches))]
        return [*pieces, self._regulariser]

    def _accumulate(self, w: Tensor, term: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """Sum over the batches and the regulariser of ``term(w_leaf, piece)``, one graph at a time."""
        total = torch.zeros_like(w)
        for piece in self._pieces():
            leaf = w.detach().requires_grad_(True)
            value = piece(leaf)
            if value.requires_grad:  # a model without a regulariser gives a constant zero
                total += term(leaf, value)
        return total

    def grad(self, w: Tensor) -> Tensor:
        """Gradient at ``w``, accumulated batch by batch."""
        return self._accumulate(w, lambda leaf, loss: torch.autograd.grad(loss, leaf)[0].detach())

    def hvp(self, w: Tensor, v: Tensor) -> Tensor:
        """Hessian-vector product at ``w`` by double backward, one batch's graph at a time (at ``w0``
        inside :meth:`resident_graphs`: each batch's gradient graph built once, then reused)."""
        if self._resident is not None and torch.equal(w, self.w0):
            return self._resident.hvp(v)

        def term(leaf: Tensor, loss: Tensor) -> Tensor:
            (g,) = torch.autograd.grad(loss, leaf, create_graph=True)
            (hv,) = torch.autograd.grad(g @ v, leaf, allow_unused=True)
            return torch.zeros_like(leaf) if hv is None else hv.detach()

        return self._accumulate(w, term)

    @contextlib.contextmanager
    def resident_graphs(self, max_bytes: int | None = None) -> Iterator[FlatLoss]:
        """Within: Hessian-vector products at ``w0`` keep each batch's gradient graph (built on the first
        product) and run only the second backward through it: the forward and first backward, a third to
        half of a product, are paid once per measurement instead of once per product. The products are
        those of :meth:`hvp`, bit for bit (the same graphs, the same order). Graphs are kept while they fit
        ``max_bytes`` (default: :func:`train.resident.graph_budget`); the rest are rebuilt per product.
        Freed on exit."""
        budget = graph_budget(self.w0.device) if max_bytes is None else max_bytes
        self._resident = ResidentGraphs(self._pieces(), self.w0, budget)
        try:
            yield self
        finally:
            self._resident = None

    def hvp_single_graph(self, w: Tensor, v: Tensor) -> Tensor:
        """The same product through one double-backward graph over every batch (memory grows with the
        subset): the reference for tests and ``benchmarks/hvp_memory.py``."""
        w = w.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self(w), w, create_graph=True)
        (hv,) = torch.autograd.grad(g @ v, w)
        return hv.detach()


class _Bound(nn.Module):
    """Lets ``functional_call`` swap parameters for a whole loss evaluation, not just ``forward``."""

    def __init__(self, model: nn.Module, fn: Callable[[nn.Module], Tensor]):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self) -> Tensor:
        return self.fn(self.model)


def _loss_with_params(
    model: nn.Module, params: dict[str, Tensor], batch: tuple, loss_of_batch: LossOfBatch
) -> Tensor:
    bound = _Bound(model, lambda m: loss_of_batch(m, batch))
    return torch.func.functional_call(bound, {f"model.{n}": t for n, t in params.items()}, ())


def _regulariser_with_params(model: nn.Module, params: dict[str, Tensor]) -> Tensor:
    if not hasattr(model, "regularizer"):
        first = next(iter(params.values()))
        return torch.zeros((), dtype=first.dtype, device=first.device)
    bound = _Bound(model, lambda m: m.regularizer())
    return torch.func.functional_call(bound, {f"model.{n}": t for n, t in params.items()}, ())


# ----------------------------------------------------------------------------------------------- sharpness


def output_filter_index(model: nn.Module, name: str) -> Tensor | None:
    """Which output filter each entry of parameter ``name`` feeds, or None for a non-filter parameter.

    A layer says so itself through ``output_filter_index(param_name)`` (group, steerable and GM layers,
    whose filters are not their first axis); otherwise plain convs and linears use axis 0 (axis 1 for
    transposed convs) and 1-D parameters (biases, norm scales, PReLU slopes) are not filters.
    """
    owner, _, attr = name.rpartition(".")
    parts = name.split(".")
    if parts[-1] == "original" and len(parts) >= 3 and parts[-3] == "parametrizations":
        # torch parametrize (train/flatness.py's shared coordinates): the maps keep the layer's shapes
        owner, attr = ".".join(parts[:-3]), parts[-2]
    module = model.get_submodule(owner) if owner else model
    method = getattr(module, "output_filter_index", None)
    if method is not None:
        return method(attr)
    param = getattr(module, attr)
    if param.dim() < 2:
        return None
    return filters_along(param.shape, 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0)


def random_directions(flat: FlatLoss, count: int, seed: int, filter_normalised: bool = False) -> list[Tensor]:
    """Directions shared across checkpoints through ``seed``.

    Plain: uniformly random unit vectors over all parameters (a normalised Gaussian). Filter-normalised
    (Li et al. 2018): the entries of the direction feeding one output filter (all weights of one output
    channel/field, whatever the layer's storage layout: :func:`output_filter_index`) are rescaled to the
    norm of the same entries of the current weights. Non-filter parameters (biases, norm parameters) get a
    zero direction, Li et al.'s choice for biases and batch norm, so they stay at their current values.
    """
    gen = torch.Generator().manual_seed(seed)
    index = [output_filter_index(flat.model, n) for n in flat.names]
    out = []
    for _ in range(count):
        d = torch.randn(flat.dim, generator=gen, dtype=torch.float64).to(flat.w0)  # same draw on any device
        if not filter_normalised:
            out.append(d / d.norm())
            continue
        parts = []
        for chunk, w, idx in zip(d.split(flat.sizes), flat.w0.split(flat.sizes), index, strict=True):
            if idx is None:
                parts.append(torch.zeros_like(chunk))
                continue
            ids = idx.reshape(-1).to(chunk.device)
            n = int(ids.max()) + 1
            d_norm = chunk.new_zeros(n).index_add_(0, ids, chunk**2).sqrt()
            w_norm = w.new_zeros(n).index_add_(0, ids, w**2).sqrt()
            parts.append(chunk * (w_norm / d_norm.clamp_min(1e-12))[ids])
        out.append(torch.cat(parts))
    return out


def original_directions(flat: FlatLoss, count: int, seed: int) -> list[Tensor]:
    """The study code's directions: standard normal vectors divided by the parameter count (length about
    ``1 / sqrt(dim)``, so the perturbation shrinks with the model's size)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(flat.dim, generator=gen, dtype=torch.float64).to(flat.w0) / flat.dim
            for _ in range(count)]  # fmt: skip


def sharpness(flat: FlatLoss, directions: Sequence[Tensor], displacements: Sequence[float]) -> dict:
    """phi(w, D, T) = 1/(|D||T|) sum_t sum_d |L(w + t d) - L(w)|, plus the individual losses."""
    base = flat.value(flat.w0)
    grid = [[flat.value(flat.w0 + t * d) for t in displacements] for d in directions]
    phi = float(np.mean([[abs(v - base) for v in row] for row in grid]))
    return {"sharpness": phi, "base_loss": base, "losses": grid, "displacements": list(displacements)}


# --------------------------------------------------------------------------------------------- Hessian


@dataclass
class LanczosResult:
    alpha: np.ndarray  # diagonal of the tridiagonal matrix
    beta: np.ndarray  # off-diagonal
    matvecs: int

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and the squared first components of their eigenvectors (SLQ weights)."""
        t = np.diag(self.alpha) + np.diag(self.beta, 1) + np.diag(self.beta, -1)
        values, vectors = np.linalg.eigh(t)
        return values, vectors[0] ** 2


def lanczos(
    matvec: Callable[[Tensor], Tensor], v0: Tensor, steps: int, tol: float | None = None
) -> LanczosResult:
    """Up to ``steps`` Lanczos iterations with full re-orthogonalisation (stable for the sizes used here).

    With ``tol``, stop as soon as the largest Ritz value changes by less than ``tol`` (relative) in one step.
    """
    basis = [v0 / v0.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    previous_top = None
    for j in range(steps):
        w = matvec(basis[j])
        alpha = float(w @ basis[j])
        alphas.append(alpha)
        if tol is not None:
            top = LanczosResult(np.array(alphas), np.array(betas), len(alphas)).ritz()[0][-1]
            if previous_top is not None and abs(top - previous_top) <= tol * max(abs(top), 1e-12):
                break
            previous_top = top
        q = torch.stack(basis)
        w = w - q.T @ (q @ w)  # full re-orthogonalisation, twice is enough
        w = w - q.T @ (q @ w)
        beta = float(w.norm())
        if j == steps - 1 or beta < 1e-10 * max(1.0, abs(alpha)):
            break
        betas.append(beta)
        basis.append(w / beta)
    return LanczosResult(np.array(alphas), np.array(betas), matvecs=len(alphas))


def top_eigenvalues(flat: FlatLoss, k: int, steps: int, seed: int) -> tuple[np.ndarray, int]:
    """The ``k`` largest Hessian eigenvalues (descending) from the Ritz values of ``steps`` Lanczos steps."""
    gen = torch.Generator().manual_seed(seed)
    v0 = torch.randn(flat.dim, generator=gen, dtype=torch.float64).to(flat.w0)
    result = lanczos(lambda v: flat.hvp(flat.w0, v), v0, min(steps, flat.dim))
    values, _ = result.ritz()
    return values[::-1][:k].copy(), result.matvecs


def spectral_density(
    flat: FlatLoss,
    probes: int,
    steps: int,
    seed: int,
    grid: np.ndarray | None = None,
    width: float | None = None,
) -> dict:
    """Stochastic Lanczos quadrature: Ritz nodes and weights over ``probes`` Rademacher start vectors,
    and their Gaussian-smoothed density on ``grid``. Each run's largest Ritz values are also the Lanczos
    estimates of the top eigenvalues, so a caller needing both does not pay twice."""
    gen = torch.Generator().manual_seed(seed)
    nodes, weights, per_probe = [], [], []
    matvecs = 0
    for _ in range(probes):
        v0 = (torch.randint(0, 2, (flat.dim,), generator=gen) * 2 - 1).to(flat.w0)
        result = lanczos(lambda v: flat.hvp(flat.w0, v), v0, min(steps, flat.dim))
        values, w = result.ritz()
        per_probe.append(values)
        nodes.append(values)
        weights.append(w / probes)
        matvecs += result.matvecs
    node_arr, weight_arr = np.concatenate(nodes), np.concatenate(weights)
    span = float(node_arr.max() - node_arr.min()) or 1.0
    width = width or span / 200
    if grid is None:
        grid = np.linspace(node_arr.min() - 0.05 * span, node_arr.max() + 0.05 * span, 400)
    density = (
        weight_arr[None, :] * np.exp(-((grid[:, None] - node_arr[None, :]) ** 2) / (2 * width**2))
    ).sum(axis=1) / (width * math.sqrt(2 * math.pi))
    return {
        "nodes": node_arr, "weights": weight_arr, "grid": grid, "density": density, "matvecs": matvecs,
        "ritz_per_probe": per_probe,  # each probe's Ritz values: its extremes converge first (top-k for free)
    }  # fmt: skip


def hutchinson_trace(flat: FlatLoss, probes: int, seed: int) -> tuple[float, float]:
    """Trace estimate E[v^T H v] over Rademacher ``v``; returns (mean, standard error)."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(probes):
        v = (torch.randint(0, 2, (flat.dim,), generator=gen) * 2 - 1).to(flat.w0)
        samples.append(float(v @ flat.hvp(flat.w0, v)))
    return float(np.mean(samples)), float(
        np.std(samples, ddof=1) / math.sqrt(probes)
    ) if probes > 1 else math.nan


def power_iteration(
    matvec: Callable[[Tensor], Tensor], v0: Tensor, tol: float, max_iter: int
) -> tuple[float, int]:
    """The study's method: iterate v <- Hv/|Hv| until the Rayleigh quotient changes by < tol relative."""
    v = v0 / v0.norm()
    eig = None
    for i in range(1, max_iter + 1):
        hv = matvec(v)
        new = float(v @ hv)
        v = hv / hv.norm()
        if eig is not None and abs(new - eig) <= tol * max(abs(new), 1e-12):
            return new, i
        eig = new
    return float(eig), max_iter
