"""GM-CNN: convolution written with group matrices of the wallpaper group p4 (seed 003).

Features are functions on Gamma = Z^2 x| C4, stored ``[B, C, 4, H, W]``. A layer is a sum over a small
neighbourhood N of group elements s = (offset, j) (offsets in [-r, r]^2 times the quarter turns j within
word radius r, i.e. {-1, 0, 1} for r = 1) of coefficient matrices times group diagonals:

    out = sum_{s in N} kappa_s D_s f,     (D_s f)(t, k) = f(t + R^k offset, k + j)

D_s is right multiplication by s, so the layer commutes with the left action of C4 (rotation about the grid
centre plus a cyclic shift of k). Each D_s is an index permutation of the flattened group; the layer applies
the same sum as one dense convolution over (orientation, y, x) for speed.

Two variants (``GMCNN(variant=...)``, docs/models.md says where each comes from):

* ``"seed003"`` (default), seed 003's form. The image is finitely supported on Z^2 and extended by zero
  (its appendix D.2), i.e. zero padding, which keeps C4 exact on a square grid. The error term is its
  low-displacement-rank one (eq. 12 and "an additional error matrix with the same structure as the group
  matrix"): a second coefficient set eps_s on the same group diagonals, weighted per group element by a
  learnable vector v, ``E f = diag(v) sum_s eps_s D_s f``. With v constant E is a group matrix; eps starts
  at 0 and v at 1. Layout (its appendix A.1.1): pointwise embedding, ``layers`` residual GMConv + PReLU
  blocks at constant width, pointwise head.
* ``"circular"``, the project's first form: periodic grid (circular padding), error term eps_s on the group
  diagonals of the direct product Z_H x Z_W x C4 (offsets that do not turn with k), plain stack of
  ``layers`` GMConvs with ReLU.

Vector fields enter by the lift f(t, k) = R^-k u(t) (the field seen in frame k) and leave by the
projection u(t) = mean_k R^k f(t, k); both are parameter free and exactly equivariant.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import fastops
from models import groups as G
from models.expansion import filters_along

Variant = Literal["seed003", "circular"]
ErrorForm = Literal["vector", "direct"]


def neighbourhood(radius: int) -> list[tuple[int, int, int]]:
    """``(j, dy, dx)`` of the radius-``radius`` neighbourhood, in each factor (C4 and each grid axis)."""
    if radius < 1:
        raise ValueError("radius must be >= 1")
    turns = (-1, 0, 1) if radius == 1 else (-1, 0, 1, 2)  # radius >= 2 reaches all of C4
    steps = range(-radius, radius + 1)
    return list(itertools.product(turns, steps, steps))


def _diagonal_index(h: int, w: int, rotate_offsets: bool, radius: int, periodic: bool) -> np.ndarray:
    """``index[s, (k, y, x)]``: flat position of ``f`` read by ``D_s`` (or ``E_s``) at output (k, y, x).

    Off the grid (zero extension, ``periodic=False``) the index is ``4 h w``: an appended zero entry.
    """
    ks, ys, xs = np.meshgrid(np.arange(4), np.arange(h), np.arange(w), indexing="ij")
    rows = []
    for j, dy, dx in neighbourhood(radius):
        ox, oy = np.zeros_like(xs), np.zeros_like(ys)
        for k in range(4):
            r = G.c4_rotation(k) if rotate_offsets else np.eye(2, dtype=np.int64)
            ox[k], oy[k] = r @ np.array([dx, dy])
        yy, xx = ys + oy, xs + ox
        flat = (((ks + j) % 4) * h + yy % h) * w + xx % w
        if not periodic:
            flat = np.where((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w), flat, 4 * h * w)
        rows.append(flat)
    return np.stack(rows).reshape(len(rows), -1)


def _dense_maps(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each diagonal's coefficient lands in a dense p4 conv weight ``[k_out, k_in, K, K]`` (-1: none).

    The sum of coefficient-times-diagonal is a linear map that commutes with translations, so it is also a
    convolution over (orientation, y, x); writing it densely lets one ``conv2d`` apply it.
    """
    size = 2 * radius + 1
    rot = np.full((4, 4, size, size), -1, dtype=np.int64)
    direct = np.full((4, 4, size, size), -1, dtype=np.int64)
    for n, (j, dy, dx) in enumerate(neighbourhood(radius)):
        for k in range(4):
            ox, oy = G.c4_rotation(k) @ np.array([dx, dy])
            rot[k, (k + j) % 4, oy + radius, ox + radius] = n
            direct[k, (k + j) % 4, dy + radius, dx + radius] = n
    return rot, direct


class GMConv(nn.Module):
    """Group-matrix convolution on p4 over a radius-``radius`` neighbourhood.

    ``error``: None, ``"vector"`` (seed 003: ``diag(v) sum_s eps_s D_s``, v over the 4 * grid^2 group
    elements of the grid, so the layer only runs on that grid) or ``"direct"`` (``sum_s eps_s E_s`` with
    non-turning offsets). ``forward`` applies it as one dense convolution; :meth:`forward_diagonals` applies
    the group diagonals one by one (the definition, slow) and is the reference the tests compare against.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        error: ErrorForm | None = None,
        bias: bool = True,
        radius: int = 1,
        padding: Literal["zeros", "circular"] = "circular",
        grid: int | None = None,
    ) -> None:
        super().__init__()
        if error not in (None, "vector", "direct"):
            raise ValueError(f"error must be None, 'vector' or 'direct', got {error!r}")
        if error == "vector" and not grid:
            raise ValueError("the 'vector' error term needs the grid size")
        self.radius, self.padding, self.error_form, self.grid = radius, padding, error, grid
        n = len(neighbourhood(radius))
        std = math.sqrt(2.0 / (n * in_channels))
        self.kappa = nn.Parameter(torch.randn(n, out_channels, in_channels) * std)
        self.error = nn.Parameter(torch.zeros(n, out_channels, in_channels)) if error else None
        self.error_vector = nn.Parameter(torch.ones(4, grid, grid)) if error == "vector" else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        rot, direct = _dense_maps(radius)
        # index n points at an appended zero block (entries no diagonal reaches)
        for name, where in (("map_rot", rot), ("map_direct", direct)):
            self.register_buffer(name, torch.as_tensor(np.where(where < 0, n, where)), persistent=False)
        self._index: dict[tuple, torch.Tensor] = {}

    def _place(self, coef: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        n, co, ci = coef.shape
        size = 2 * self.radius + 1
        padded = torch.cat([coef, coef.new_zeros(1, co, ci)])[where]  # [4, 4, K, K, co, ci]
        return padded.permute(4, 0, 5, 1, 2, 3).reshape(co * 4, ci * 4, size, size)

    def dense_weight(self) -> torch.Tensor:
        """``[C_out * 4, C_in * 4, K, K]`` with channel ``c * 4 + k`` (the error term of form "direct"
        included; the "vector" one is applied separately because v depends on the position)."""
        w = self._place(self.kappa, self.map_rot)
        if self.error_form == "direct":
            w = w + self._place(self.error, self.map_direct)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, four, h, w = x.shape
        r = self.radius
        xf = x.reshape(b, c * four, h, w)
        weight = self.dense_weight()
        if self.error_form == "vector":
            if (h, w) != (self.grid, self.grid):
                raise ValueError(f"the error vector is sized for a {self.grid}^2 grid, got {h}x{w}")
            weight = torch.cat([weight, self._place(self.error, self.map_rot)])
        if self.padding == "circular":
            out = F.conv2d(fastops.circular_pad(xf, r, 2), weight.to(x.dtype))
        else:
            out = F.conv2d(xf, weight.to(x.dtype), padding=r)
        out = out.reshape(b, -1, four, h, w)
        if self.error_form == "vector":
            main, err = out.chunk(2, dim=1)
            out = main + self.error_vector.to(x.dtype) * err
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)[None, :, None, None, None]
        return out

    def _diagonals(self, h: int, w: int, device: torch.device, rotate: bool) -> torch.Tensor:
        key = (h, w, str(device), rotate)
        if key not in self._index:
            index = _diagonal_index(h, w, rotate, self.radius, self.padding == "circular")
            self._index[key] = torch.as_tensor(index, device=device)
        return self._index[key]

    @staticmethod
    def _mix_and_move(f: torch.Tensor, coef: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        mixed = torch.einsum("soc,bcn->bson", coef.to(f.dtype), f)
        mixed = torch.cat([mixed, mixed.new_zeros(*mixed.shape[:-1], 1)], dim=-1)  # the zero extension
        out = mixed[:, 0].index_select(-1, index[0])
        for s in range(1, index.shape[0]):
            out = out + mixed[:, s].index_select(-1, index[s])
        return out

    def forward_diagonals(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_s kappa_s D_s f`` plus the error term, with explicit group diagonals, plus the bias."""
        b, c, four, h, w = x.shape
        f = x.reshape(b, c, four * h * w)
        rotating = self._diagonals(h, w, x.device, True)
        out = self._mix_and_move(f, self.kappa, rotating)
        if self.error_form == "direct":
            out = out + self._mix_and_move(f, self.error, self._diagonals(h, w, x.device, False))
        elif self.error_form == "vector":
            v = self.error_vector.to(x.dtype).reshape(-1)
            out = out + v * self._mix_and_move(f, self.error, rotating)
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)[None, :, None]
        return out.reshape(b, -1, four, h, w)

    def distance_to_group_matrices(self) -> torch.Tensor:
        """Squared Frobenius distance (seed 003, eq. 13) of the layer's matrix from the group matrices.

        The matrix is ``sum_s diag(a_s) D_s`` with coefficients ``a_s(h) = kappa_s + eps_s v(h)`` at group
        element h ("vector" form); distinct diagonals do not overlap, so the nearest group matrix has
        ``a_s = mean_h a_s(h)`` and the distance is ``||eps||^2 * ||v - mean(v)||^2`` (0 without the term).
        """
        if self.error_form != "vector":
            return self.kappa.new_zeros(())
        v = self.error_vector
        return self.error.pow(2).sum() * (v - v.mean()).pow(2).sum()

    def output_filter_index(self, name: str) -> torch.Tensor | None:
        """Output channel of each coefficient (axis 1 of kappa and eps); v, which weights every output,
        is one filter; the bias is not a filter."""
        if name in ("kappa", "error"):
            return filters_along(getattr(self, name).shape, 1)
        if name == "error_vector":
            return filters_along(self.error_vector.shape, None)
        return None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_index"] = {}
        return state


class Pointwise(nn.Module):
    """``out[o] = sum_c W[o, c] f[c] (+ b[o])`` at every group element: seed 003's 1x1 convolutions."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels) * math.sqrt(2.0 / in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("oc,bc...->bo...", self.weight.to(f.dtype), f)
        if self.bias is not None:
            out = out + self.bias.to(f.dtype).reshape(1, -1, *([1] * (f.dim() - 2)))
        return out


def _frame_matrices() -> torch.Tensor:
    return torch.as_tensor(np.stack([G.c4_rotation(k) for k in range(4)]), dtype=torch.float32)


class GMCNN(nn.Module):
    """Lift -> GM layers -> projection to one vector field; ``variant`` picks the layout (module doc).

    ``"seed003"``: pointwise embedding (2F -> C), ``layers`` blocks ``h + PReLU(GMConv(h))``, pointwise head
    (C -> 2, no bias: a constant vector projects to 0). ``"circular"``: ``layers`` GMConvs (2F -> C ... C
    -> 2) with ReLU between. ``error`` adds each variant's error term to every radius-r GMConv; ``grid``
    is the image size, needed by the seed's error vector.
    """

    def __init__(
        self,
        hidden: int = 15,
        layers: int = 4,
        in_frames: int = 1,
        error: bool = False,
        alpha: float = 0.0,
        variant: Variant = "seed003",
        radius: int = 1,
        grid: int = 64,
    ) -> None:
        super().__init__()
        self.group = G.c4()
        self.alpha, self.in_frames, self.variant = alpha, in_frames, variant
        if variant == "seed003":
            if layers < 1:
                raise ValueError("layers must be >= 1")
            self.embed = Pointwise(2 * in_frames, hidden)
            self.convs = nn.ModuleList(
                GMConv(hidden, hidden, "vector" if error else None, True, radius, "zeros", grid)
                for _ in range(layers)
            )
            self.acts = nn.ModuleList(nn.PReLU() for _ in range(layers))
            self.head = Pointwise(hidden, 2, bias=False)
        elif variant == "circular":
            if layers < 2:
                raise ValueError("layers must be >= 2")
            widths = [2 * in_frames] + [hidden] * (layers - 1) + [2]
            self.convs = nn.ModuleList(
                GMConv(widths[i], widths[i + 1], "direct" if error else None, i < layers - 1, radius)
                for i in range(layers)
            )
        else:
            raise ValueError(f"variant must be 'seed003' or 'circular', got {variant!r}")
        self.register_buffer("rot", _frame_matrices(), persistent=False)  # R^k, k = 0..3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        rot = self.rot.to(x.dtype)
        u = x.reshape(b, self.in_frames, 2, h, w)
        # lift: f(t, k) = R^-k u(t) = R^k^T u(t)
        f = torch.einsum("kji,bfjyx->bfikyx", rot, u).reshape(b, 2 * self.in_frames, 4, h, w)
        if self.variant == "seed003":
            f = self.embed(f)
            for conv, act in zip(self.convs, self.acts, strict=True):
                f = f + act(conv(f))
            f = self.head(f)
        else:
            for i, conv in enumerate(self.convs):
                f = conv(f)
                if i < len(self.convs) - 1:
                    f = torch.relu(f)
        # project: u(t) = mean_k R^k f(t, k)
        return torch.einsum("kij,bjkyx->biyx", rot, f) / 4

    def regularizer(self) -> torch.Tensor:
        """``alpha`` times the size of the symmetry-breaking error term (0 without it).

        seed003: the summed squared distance of each layer's matrix from the group matrices (seed 003,
        eq. 13; :meth:`GMConv.distance_to_group_matrices`). circular: ``sum |eps|``.
        """
        zero = self.convs[0].kappa.new_zeros(())
        if self.variant == "seed003":
            terms = [c.distance_to_group_matrices() for c in self.convs if c.error is not None]
        else:
            terms = [c.error.abs().sum() for c in self.convs if c.error is not None]
        return self.alpha * torch.stack(terms).sum() if terms else zero
