"""Steerable C4 CNN (E2CNN) and its relaxed version (RSteer), using e2cnn's kernel bases.

Only the steerable *basis* comes from e2cnn (the sampled basis of ``R2Conv.basisexpansion``); the filter is
expanded here and applied with ``F.conv2d``. So there is no eval-mode filter cache to go stale, ``deepcopy``
works, and the forward is a plain differentiable function of the parameters (torch.func, double backward).

Frame convention: e2cnn samples kernels with the image y axis pointing down, while this project's arrays
have y pointing up. Its C4 element g acts as our g^-1 on the grid but as g on the components, so the
e2cnn map is equivariant to ours after negating the y component of every vector in and out
(conjugation by diag(1, -1)). That sign flip is folded into the first and last filters.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from models import groups as G
from models.expansion import ExpandedKernel, filters_along, refresh_cached_filters
from models.gconv import FieldNorm

__all__ = ["SteerableConv", "SteerableNet", "refresh_cached_filters"]

SHARED_STEERABLE = (
    "steerable: each basis element's per-position weights in one orthonormal basis of the kernel points "
    "(equivariant part = sqrt(points) x E2CNN coefficient, symmetry-breaking part in Helmert contrasts)"
)


def _field_types(in_frames: int, hidden: int, out_fields: int):
    from e2cnn import gspaces
    from e2cnn import nn as enn

    gs = gspaces.Rot2dOnR2(N=4)
    vec_in = enn.FieldType(gs, [gs.irrep(1)] * in_frames)
    reg = enn.FieldType(gs, [gs.regular_repr] * hidden)
    vec_out = enn.FieldType(gs, [gs.irrep(1)] * out_fields)
    return vec_in, reg, vec_out


def _zero_mean_basis(n: int) -> torch.Tensor:
    """``[n - 1, n]`` orthonormal rows spanning the vectors with zero sum (Helmert's contrasts)."""
    q = torch.zeros(n - 1, n, dtype=torch.float64)  # cast to the weights' dtype where used
    for k in range(1, n):
        q[k - 1, :k] = 1.0
        q[k - 1, k] = -float(k)
        q[k - 1] /= math.sqrt(k * (k + 1))
    return q


class _OrthonormalPositions(nn.Module):
    """Parametrisation ``w = theta @ E``: ``E``'s rows are the constant 1/sqrt(P) and the zero-mean
    contrasts, an orthonormal basis of the kernel points, so the map is a rotation (norms unchanged)."""

    def __init__(self, points: int) -> None:
        super().__init__()
        basis = torch.cat([torch.full((1, points), 1 / math.sqrt(points), dtype=torch.float64),
                           _zero_mean_basis(points)])  # fmt: skip
        self.register_buffer("basis", basis)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return theta @ self.basis.to(theta)  # dtype and device of the weights

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return w @ self.basis.to(w).T


class _CoefficientScale(nn.Module):
    """Parametrisation ``c = theta / sqrt(P)``: E2CNN's coefficient in the orthonormal coordinates of
    :class:`_OrthonormalPositions` (``c`` repeated at every point is ``theta`` along the constant)."""

    def __init__(self, points: int) -> None:
        super().__init__()
        self.root = math.sqrt(points)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return theta / self.root

    def right_inverse(self, c: torch.Tensor) -> torch.Tensor:
        return c * self.root


class SteerableConv(ExpandedKernel):
    """A C4-steerable convolution; ``relaxed`` gives every basis element its own weight per kernel position.

    Field types must be uniform (one representation in, one out), so e2cnn's basis is a single block
    ``B[b, o, i, p]`` shared by every (output field, input field) pair; the filter of a pair is
    ``sum_b c[pair, b] B[b]`` (parameter ``weights``) and, relaxed, ``sum_b w[pair, b, p] B[b, :, :, p]``
    (parameter ``relaxed_weights``, the only weight then), seed 000's ``sum_l w_l(y) * psi_l(y)``.
    A product ``c[pair, b] * w[pair, b, p]`` would add a rescaling symmetry (c -> s c, w -> w / s) that
    changes the Hessian without changing the function, so it is not used. ``relax_scale`` (RSteer's hparam)
    selects the split form instead: the same ``w`` written as E2CNN's coefficient plus ``relax_scale`` times
    its zero-mean part in an orthonormal basis (same count, no redundant direction; see ``__init__``).
    """

    def __init__(
        self, in_type, out_type, kernel_size: int, relaxed: bool = False, bias: bool = True,
        relax_scale: float | None = None,
    ) -> None:
        super().__init__()
        from e2cnn import nn as enn

        if len({r.name for r in in_type.representations}) != 1:
            raise ValueError("SteerableConv needs a uniform input field type")
        if len({r.name for r in out_type.representations}) != 1:
            raise ValueError("SteerableConv needs a uniform output field type")
        with warnings.catch_warnings():  # e2cnn 0.2.3 indexes with uint8 masks (deprecated, harmless)
            warnings.simplefilter("ignore", UserWarning)
            conv = enn.R2Conv(in_type, out_type, kernel_size, padding=kernel_size // 2, bias=bias,
                              initialize=False)  # e2cnn's He init is a slow Python loop; see below
        (pair,) = conv.basisexpansion._representations_pairs
        # a private copy of the sampled basis: e2cnn shares basis modules between convolutions through a
        # global cache, so .double()/.to() on one model would otherwise change another's
        block = getattr(conv.basisexpansion, f"block_expansion_{pair}")
        self.register_buffer("basis", block.sampled_basis.clone())
        self.n_out, self.n_in = len(out_type), len(in_type)
        self.in_size, self.out_size = in_type.size, out_type.size
        self.kernel_size = kernel_size
        nb, n_points = self.basis.shape[0], kernel_size * kernel_size
        self.bias = None if conv.bias is None else nn.Parameter(torch.zeros(conv.bias.shape))
        self.register_buffer("bias_expansion", None if conv.bias is None else conv.bias_expansion.clone())
        # +-1 on input/output channels: the y-up / y-down conversion for vector fields (see module doc)
        self.register_buffer("in_sign", torch.ones(self.in_size), persistent=False)
        self.register_buffer("out_sign", torch.ones(self.out_size), persistent=False)
        coef = torch.randn(self.n_out * self.n_in, nb)
        with torch.no_grad():  # He-style: scale the expanded filter to variance 2 / fan_in
            filt = torch.einsum("boip,kb->koip", self.basis.to(coef.dtype), coef)
            coef.mul_(math.sqrt(2.0 / (self.in_size * n_points)) / filt.std())
        self.relax_scale = relax_scale
        if relaxed and relax_scale is not None:
            # split form: w[pair, b, p] = c[pair, b] + relax_scale * (d[pair, b, :] @ Q)[p], Q an orthonormal
            # basis of the zero-mean functions on the kernel points. c is E2CNN's coefficient (same init, same
            # weight decay), d the non-equivariant part (starts at 0); same count and no redundant direction.
            # Under Adam relax_scale is the relaxed part's step size relative to c's (docs/study.md, issue 11)
            self.weights = nn.Parameter(coef)
            self.relaxed_weights = nn.Parameter(torch.zeros(coef.shape[0], nb, n_points - 1))
            self.register_buffer("deviation_basis", _zero_mean_basis(n_points), persistent=False)
        elif relaxed:
            # the equivariant solution: each coefficient repeated at every kernel position, so RSteer starts
            # exactly equivariant and draws the same filter as an E2CNN built from the same seed
            self.weights = None
            self.relaxed_weights = nn.Parameter(coef[:, :, None].repeat(1, 1, n_points))
        else:
            self.weights = nn.Parameter(coef)
            self.relaxed_weights = None

    def expand(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.relaxed_weights is None:
            filt = torch.einsum("boip,kb->koip", self.basis.to(self.weights.dtype), self.weights)
        else:
            w = self.per_position_weights()
            filt = torch.einsum("boip,kbp->koip", self.basis.to(w.dtype), w)
        _, o, i, p = filt.shape
        # [(out field, in field), o, i, p] -> [out field * o, in field * i, k, k]
        filt = filt.reshape(self.n_out, self.n_in, o, i, p).transpose(1, 2)
        filt = filt.reshape(self.out_size, self.in_size, p)
        filt = filt * self.out_sign[:, None, None].to(filt.dtype) * self.in_sign[None, :, None].to(filt.dtype)
        filt = filt.reshape(self.out_size, self.in_size, self.kernel_size, self.kernel_size)
        bias = None if self.bias is None else self.bias_expansion.to(self.bias.dtype) @ self.bias
        return filt, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.kernel()
        bias = None if bias is None else bias.to(x.dtype)
        return F.conv2d(x, weight.to(x.dtype), bias, padding=self.kernel_size // 2)

    def per_position_weights(self) -> torch.Tensor:
        """``w[pair, b, p]``, the weight of basis element b at kernel point p (relaxed layers only)."""
        w = self.relaxed_weights
        if self.weights is None:
            return w
        dev = w @ self.deviation_basis.to(w.dtype)
        return self.weights[:, :, None] + self.relax_scale * dev

    def output_filter_index(self, name: str) -> torch.Tensor | None:
        """Output field of every entry of parameter ``name`` (rows are (out field, in field) pairs,
        out-major); None for the bias, which filter normalisation leaves unperturbed."""
        if name not in ("weights", "relaxed_weights"):
            return None
        shape = getattr(self, name).shape
        return (filters_along(shape, 0) // self.n_in).contiguous()

    def relaxation_penalty(self) -> torch.Tensor:
        """Smoothness of the per-position weights: sum of |differences| between adjacent kernel points.

        Zero exactly when every ``w[pair, b, :]`` is constant over the kernel, i.e. the layer is equivariant.
        """
        if self.relaxed_weights is None:
            return self.weights.new_zeros(())
        w = self.per_position_weights().reshape(-1, self.kernel_size, self.kernel_size)  # [pair * b, k, k]
        return (w[:, 1:, :] - w[:, :-1, :]).abs().sum() + (w[:, :, 1:] - w[:, :, :-1]).abs().sum()


class SteerableNet(nn.Module):
    """E2CNN (``relaxed=False``) or RSteer (``relaxed=True``): vector fields in/out, regular hidden fields.

    ``layers`` convolutions, batch norm (one statistic per regular field, as e2cnn's InnerBatchNorm) and
    ReLU after every hidden layer, in both variants so that the comparison is like for like.
    ``relax_scale``: RSteer in the split form (:class:`SteerableConv`); None keeps seed 000's form.
    """

    shared_parameterisation = SHARED_STEERABLE

    def __init__(
        self,
        hidden: int,
        layers: int = 5,
        kernel_size: int = 3,
        in_frames: int = 1,
        relaxed: bool = False,
        batch_norm: bool = True,
        alpha: float = 0.0,
        relax_scale: float | None = None,
    ) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError("layers must be >= 2")
        number = isinstance(relax_scale, (int, float)) and not isinstance(relax_scale, bool)
        if relax_scale is not None and not (number and math.isfinite(relax_scale) and relax_scale > 0):
            raise ValueError(f"relax_scale must be None or a positive number, got {relax_scale!r}")
        self.group = G.c4()
        self.alpha, self.in_frames, self.relax_scale = alpha, in_frames, relax_scale
        vec_in, reg, vec_out = _field_types(in_frames, hidden, 1)
        types = [vec_in] + [reg] * (layers - 1) + [vec_out]
        blocks: list[nn.Module] = []
        for i in range(layers):
            last = i == layers - 1
            conv = SteerableConv(types[i], types[i + 1], kernel_size, relaxed, not last, relax_scale)
            blocks.append(conv)
            if not last:
                blocks += ([FieldNorm(hidden)] if batch_norm else []) + [nn.ReLU()]
        flip = torch.tensor([1.0, -1.0])
        first, last_conv = blocks[0], blocks[-1]
        first.in_sign.copy_(flip.repeat(in_frames))
        last_conv.out_sign.copy_(flip)
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def regularizer(self) -> torch.Tensor:
        terms = [m.relaxation_penalty() for m in self.modules() if isinstance(m, SteerableConv)]
        return self.alpha * torch.stack(terms).sum()

    def direct_form(self) -> SteerableNet:
        """The same function in seed 000's direct form (one weight per basis element and kernel point).

        The split form (``relax_scale``) is a training preconditioner: it rescales the Hessian along the
        relaxed directions by ``relax_scale**2``. Curvature is measured in :meth:`shared_form`, a rotation
        of this copy. Other models are returned unchanged.
        """
        direct = copy.deepcopy(self)
        direct.relax_scale = None
        for conv in direct.modules():
            split = isinstance(conv, SteerableConv) and conv.weights is not None
            if split and conv.relaxed_weights is not None:
                w = conv.per_position_weights().detach().clone()
                del conv.weights, conv.relaxed_weights, conv.deviation_basis
                conv.weights, conv.relax_scale = None, None
                conv.relaxed_weights = nn.Parameter(w)
        return direct

    def as_relaxed(self) -> SteerableNet:
        """An E2CNN written in RSteer's direct form (a copy): each coefficient repeated at every kernel
        point. Same function and loss (the smoothness penalty is 0 there); a larger parameter space."""
        relaxed = copy.deepcopy(self)
        for conv in relaxed.modules():
            if isinstance(conv, SteerableConv) and conv.relaxed_weights is None:
                w = conv.weights.detach()[:, :, None].repeat(1, 1, conv.kernel_size**2)
                del conv.weights
                conv.weights, conv.relaxed_weights = None, nn.Parameter(w)
        return relaxed

    def shared_form(self) -> SteerableNet:
        """The same function with every weight in :data:`SHARED_STEERABLE` coordinates (a copy).

        E2CNN and RSteer (either form) land in one coordinate system: RSteer's direct form rotated
        (orthonormal, so its raw Hessian spectrum is the direct form's), its split form and E2CNN rescaled
        per coordinate. An E2CNN written as RSteer (``w = c`` at every point) has the E2CNN coordinates
        plus zeros. The parameters become ``...parametrizations.<name>.original`` (torch parametrize).
        """
        from torch.nn.utils import parametrize

        shared = self.direct_form()
        for conv in shared.modules():
            if not isinstance(conv, SteerableConv):
                continue
            points = conv.kernel_size**2
            if conv.relaxed_weights is not None:
                parametrize.register_parametrization(conv, "relaxed_weights", _OrthonormalPositions(points))
            else:
                parametrize.register_parametrization(conv, "weights", _CoefficientScale(points))
        return shared
