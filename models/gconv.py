"""Regular group convolutions (and their relaxed versions) for finite groups of signed permutations.

Feature maps over the group are stored as ``[B, C * |G|, *space]`` with channel ``c * |G| + g``.
Every kernel is expanded by one gather built from :mod:`models.groups` index maps (exact rotations, no
interpolation), optionally combined over ``L`` relaxed filter banks, then used in a single conv call.

Three layer kinds cover a network (``rep`` is ``"vector"`` or ``"scalar"``; ``m`` its size, 1 or d):

* ``lift``: ``n_in`` fields of type ``rep`` -> ``n_out`` regular fields. Kernel for output element g is
  ``psi(R_g^-1 p) rho(g)^-1``.
* ``group``: regular -> regular, kernel for output g and input h is ``psi(g^-1 h, R_g^-1 p)``; it can be
  transposed (stride-2 upsampling).
* ``project``: regular -> ``n_out`` fields of type ``rep``, kernel for input h is ``rho(h) psi(R_h^-1 p)``
  (the general solution of the constraint; for scalars it pools over the group).

With ``relax = L > 0`` the layer holds ``L`` banks ``psi_l`` and weights ``w_l(g)`` of shape (L, |G|), indexed
by the output element (lift, group) or the input element (project); ``w = 1`` gives an equivariant layer.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import fastops
from models import groups as G
from models.expansion import ExpandedKernel, filters_along

Kind = Literal["lift", "group", "project"]
Rep = Literal["vector", "scalar"]


def _rep_gather(group: G.RotationGroup, rep: Rep) -> tuple[np.ndarray, np.ndarray]:
    if rep == "vector":
        return G.component_gather(group)
    if rep == "scalar":
        n = len(group)
        return np.zeros((n, 1), dtype=np.int64), np.ones((n, 1), dtype=np.int64)
    raise ValueError(f"rep must be 'vector' or 'scalar', got {rep!r}")


def _gather_plan(group: G.RotationGroup, kind: Kind, n_fields: int, rep: Rep, size: int):
    """Index ``[|G|, N]`` into the flattened base kernel and the matching signs (None if all +1)."""
    sp = G.kernel_index(group, size)  # [G, K]
    n, k = sp.shape
    if kind == "group":
        perm = G.regular_permutation(group)  # [G, G]
        idx = perm[:, :, None] * k + sp[:, None, :]  # [g, h, p]
        c = np.arange(n_fields)[None, :, None, None] * (n * k)
        return (c + idx[:, None]).reshape(n, -1), None
    src, sign = _rep_gather(group, rep)  # [G, m]
    m = src.shape[1]
    idx = src[:, :, None] * k + sp[:, None, :]  # [g, i, p]
    f = np.arange(n_fields)[None, :, None, None] * (m * k)
    full = (f + idx[:, None]).reshape(n, -1)
    sgn = np.broadcast_to(sign[:, None, :, None], (n, n_fields, m, k)).reshape(n, -1)
    return full, (None if np.all(sgn == 1) else sgn)


class GroupConv(ExpandedKernel):
    """One lift / group / project layer for ``group`` in ``group.dim`` spatial dimensions."""

    def __init__(
        self,
        group: G.RotationGroup,
        kind: Kind,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        rep: Rep = "vector",
        relax: int = 0,
        bias: bool = True,
        transposed: bool = False,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0 and not transposed:
            raise ValueError("an equivariant 'same' convolution needs an odd kernel_size")
        if transposed and kind != "group":
            raise ValueError("only group->group layers can be transposed")
        self.group, self.kind, self.rep = group, kind, rep
        self.dim, self.n = group.dim, len(group)
        self.kernel_size, self.transposed, self.padding_mode = kernel_size, transposed, padding_mode
        self.in_channels, self.out_channels, self.relax = in_channels, out_channels, relax
        self.m = 1 if rep == "scalar" else self.dim
        k = kernel_size**self.dim
        # base kernel laid out as [L, A, flat] with the gather running over `flat`
        if kind == "lift":
            a, flat, fan_in = out_channels, in_channels * self.m * k, in_channels * self.m * k
            n_fields = in_channels
        elif kind == "group":
            a, flat, fan_in = out_channels, in_channels * self.n * k, in_channels * self.n * k
            n_fields = in_channels
        else:
            a, flat, fan_in = in_channels, out_channels * self.m * k, in_channels * self.n * k
            n_fields = out_channels
        idx, sign = _gather_plan(group, kind, n_fields, rep, kernel_size)
        if not (np.sort(idx, axis=1) == np.arange(flat)).all():  # what expand()'s gather relies on
            raise AssertionError(f"the {kind} gather plan is not one permutation of the kernel per element")
        self.register_buffer("index", torch.as_tensor(idx, dtype=torch.long), persistent=False)
        self.register_buffer(
            "sign", None if sign is None else torch.as_tensor(sign, dtype=torch.float32), persistent=False
        )
        banks = max(relax, 1)
        # He init on the expanded fan-in; L banks summed with weight 1 keep the same variance
        std = math.sqrt(2.0 / fan_in) / math.sqrt(banks)
        self.weight = nn.Parameter(torch.randn(banks, a, flat) * std)
        self.relaxed_weights = nn.Parameter(torch.ones(relax, self.n)) if relax > 0 else None
        has_bias = bias and not (kind == "project" and rep == "vector")  # an invariant vector bias is 0
        self.bias = nn.Parameter(torch.zeros(out_channels)) if has_bias else None

    def expand(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        # torch.gather, not self.weight[:, :, self.index]: the backward of advanced indexing is
        # index_put_(accumulate=True), which on the CPU adds with float atomics from several threads once
        # the result has >= 32768 entries (3D relaxed layers, study-size 2D ones), so the gradient's
        # summation order, and a run's weights, changed from one run to the next. gather's backward
        # scatters each row on its own (every row of the plan is a permutation, so no two entries meet)
        # and sums the |G| copies in a fixed order; its double backward is a gather again.
        w = self.weight
        shape = (*w.shape[:2], *self.index.shape)
        w = torch.gather(w.unsqueeze(2).expand(shape), 3, self.index.expand(shape))  # [L, A, G, N]
        if self.sign is not None:
            w = w * self.sign.to(w.dtype)
        if self.relaxed_weights is None:
            w = w[0]
        else:
            w = torch.einsum("lagn,lg->agn", w, self.relaxed_weights.to(w.dtype))
        ks = (self.kernel_size,) * self.dim
        if self.kind == "project":
            # [Cin, G, O*m*K] -> [O*m, Cin*G, k...]
            w = w.reshape(self.in_channels, self.n, self.out_channels * self.m, -1).permute(2, 0, 1, 3)
            weight = w.reshape(self.out_channels * self.m, self.in_channels * self.n, *ks)
            return weight, self.bias
        cin = self.in_channels * (self.m if self.kind == "lift" else self.n)
        weight = w.reshape(self.out_channels * self.n, cin, *ks)
        bias = None if self.bias is None else self.bias.repeat_interleave(self.n)
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.kernel()
        weight = weight.to(x.dtype)
        bias = None if bias is None else bias.to(x.dtype)
        if self.transposed:
            fn = F.conv_transpose2d if self.dim == 2 else F.conv_transpose3d
            # stride = kernel size: non-overlapping blocks, exact under rotations about the grid centre
            return fn(x, weight.transpose(0, 1), bias, stride=self.kernel_size)
        conv = F.conv2d if self.dim == 2 else F.conv3d
        pad = self.kernel_size // 2
        if self.padding_mode == "circular":
            return conv(fastops.circular_pad(x, pad, self.dim), weight, bias)
        return conv(x, weight, bias, padding=pad)

    def output_filter_index(self, name: str) -> torch.Tensor | None:
        """Output filter of every entry of parameter ``name`` (None: the bias, left unperturbed).

        A filter is everything feeding one output field: ``weight[:, a]`` over all banks for lift and
        group layers; for the projection the output field sits inside ``flat`` (out-major). The relaxed
        table ``w_l(g)`` feeds output element g in lift/group layers (one filter per g) and every output
        in the projection (one filter).
        """
        if name == "weight":
            if self.kind != "project":
                return filters_along(self.weight.shape, 1)
            banks, a, flat = self.weight.shape
            ids = filters_along((banks, a, self.out_channels, flat // self.out_channels), 2)
            return ids.reshape(self.weight.shape)
        if name == "relaxed_weights":
            return filters_along(self.relaxed_weights.shape, None if self.kind == "project" else 1)
        return None

    def rescale_banks(self, factors: torch.Tensor) -> None:
        """``w_l(g) -> a_l w_l(g)``, ``psi_l -> psi_l / a_l`` in place: the same kernel (and function),
        other parameters. (The relaxation penalty is not invariant: it scales with ``a_l``.)"""
        if self.relaxed_weights is None:
            raise ValueError("rescale_banks needs a relaxed layer (relax > 0)")
        a = factors.to(self.weight.dtype).reshape(-1)
        with torch.no_grad():
            self.relaxed_weights.mul_(a[:, None])
            self.weight.div_(a[:, None, None])

    def relaxation_penalty(self) -> torch.Tensor:
        """``sum_l sum_{g,h} |w_l(g) - w_l(h)|``: zero exactly when every bank is group-constant."""
        if self.relaxed_weights is None:
            return self.weight.new_zeros(())
        w = self.relaxed_weights
        return (w[:, :, None] - w[:, None, :]).abs().sum()


class FieldNorm(nn.Module):
    """Batch norm with one statistic per field, shared over its group (and component) axis."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], self.bn.num_features
        return self.bn(x.reshape(b, c, -1)).reshape(x.shape)


def upsample_nearest(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x2 nearest upsampling of the last ``dim`` axes (exactly commutes with the grid rotations).

    A broadcast and a reshape per axis rather than ``repeat_interleave``, whose index-based backward
    zero-fills and scatters: the same two-term sums, so the same bits (tests/test_train_speed.py)."""
    for ax in range(x.dim() - dim, x.dim()):
        shape = list(x.shape)
        x = x.unsqueeze(ax + 1).expand(*shape[: ax + 1], 2, *shape[ax + 1 :])
        shape[ax] *= 2
        x = x.reshape(shape)
    return x
