"""GM-CNN: convolution written with group matrices of the wallpaper group p4 on a periodic grid.

Features are functions on Gamma = Z_H x Z_W x| C4, stored ``[B, C, 4, H, W]``. A layer is a sum over a small
neighbourhood N of group elements s = (offset, j) (3x3 offsets times j in {-1, 0, 1}, i.e. radius 1 in
each factor) of coefficient matrices times group diagonals:

    out = sum_{s in N} kappa_s D_s f,     (D_s f)(t, k) = f(t + R^k offset, k + j)

D_s is right multiplication by s, so the layer commutes with the left action of C4 (rotation about the grid
centre plus a cyclic shift of k). Each D_s is an index permutation of the flattened group; the layer applies
the same sum as one dense circular convolution over (orientation, y, x) for speed.

Optional error term (approximate equivariance): a second coefficient set eps_s (same shape as kappa) on the
group diagonals of the *direct* product Z_H x Z_W x C4, ``(E_s f)(t, k) = f(t + offset, k + j)``. Its
offsets do not turn with k, so it is translation- but not rotation-equivariant; eps starts at 0.

Vector fields enter by the lift f(t, k) = R^-k u(t) (the field seen in frame k) and leave by the
projection u(t) = mean_k R^k f(t, k); both are parameter free and exactly equivariant.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import groups as G


def _diagonal_index(h: int, w: int, rotate_offsets: bool) -> np.ndarray:
    """``index[s, (k, y, x)]``: flat position of ``f`` read by ``D_s`` (or ``E_s``) at output (k, y, x)."""
    ks, ys, xs = np.meshgrid(np.arange(4), np.arange(h), np.arange(w), indexing="ij")
    rows = []
    for j, dy, dx in itertools.product((-1, 0, 1), (-1, 0, 1), (-1, 0, 1)):
        ox = np.zeros_like(xs)
        oy = np.zeros_like(ys)
        for k in range(4):
            r = G.c4_rotation(k) if rotate_offsets else np.eye(2, dtype=np.int64)
            vx, vy = r @ np.array([dx, dy])
            ox[k], oy[k] = vx, vy
        kk, yy, xx = (ks + j) % 4, (ys + oy) % h, (xs + ox) % w
        rows.append((kk * h + yy) * w + xx)
    return np.stack(rows).reshape(27, -1)


def _dense_maps() -> tuple[np.ndarray, np.ndarray]:
    """Where each diagonal's coefficient lands in a dense p4 conv weight ``[k_out, k_in, 3, 3]`` (-1: none).

    The sum of coefficient-times-diagonal is a linear map that commutes with translations, so it is also a
    convolution over (orientation, y, x); writing it densely lets one circular ``conv2d`` apply it.
    """
    rot = np.full((4, 4, 3, 3), -1, dtype=np.int64)
    direct = np.full((4, 4, 3, 3), -1, dtype=np.int64)
    for n, (j, dy, dx) in enumerate(itertools.product((-1, 0, 1), (-1, 0, 1), (-1, 0, 1))):
        for k in range(4):
            ox, oy = G.c4_rotation(k) @ np.array([dx, dy])
            rot[k, (k + j) % 4, oy + 1, ox + 1] = n
            direct[k, (k + j) % 4, dy + 1, dx + 1] = n
    return rot, direct


class GMConv(nn.Module):
    """Group-matrix convolution on p4 with a radius-1 neighbourhood (27 diagonals).

    ``forward`` applies it as one dense circular convolution; :meth:`forward_diagonals` applies the group
    diagonals one by one (the definition, slow) and is kept as the reference the tests compare against.
    """

    def __init__(self, in_channels: int, out_channels: int, error: bool = False, bias: bool = True) -> None:
        super().__init__()
        std = math.sqrt(2.0 / (27 * in_channels))
        self.kappa = nn.Parameter(torch.randn(27, out_channels, in_channels) * std)
        self.error = nn.Parameter(torch.zeros(27, out_channels, in_channels)) if error else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        rot, direct = _dense_maps()
        # index 27 points at an appended zero block (entries no diagonal reaches)
        for name, where in (("map_rot", rot), ("map_direct", direct)):
            self.register_buffer(name, torch.as_tensor(np.where(where < 0, 27, where)), persistent=False)
        self._index: dict[tuple[int, int, str], torch.Tensor] = {}

    def dense_weight(self) -> torch.Tensor:
        """``[C_out * 4, C_in * 4, 3, 3]`` with channel ``c * 4 + k``."""
        co, ci = self.kappa.shape[1:]

        def place(coef: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
            padded = torch.cat([coef, coef.new_zeros(1, co, ci)])[where]  # [4, 4, 3, 3, co, ci]
            return padded.permute(4, 0, 5, 1, 2, 3).reshape(co * 4, ci * 4, 3, 3)

        w = place(self.kappa, self.map_rot)
        if self.error is not None:
            w = w + place(self.error, self.map_direct)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, four, h, w = x.shape
        xp = F.pad(x.reshape(b, c * four, h, w), (1, 1, 1, 1), mode="circular")
        bias = None if self.bias is None else self.bias.to(x.dtype).repeat_interleave(four)
        out = F.conv2d(xp, self.dense_weight().to(x.dtype), bias)
        return out.reshape(b, -1, four, h, w)

    def _diagonals(self, h: int, w: int, device: torch.device, rotate: bool) -> torch.Tensor:
        key = (h, w, f"{device}{rotate}")
        if key not in self._index:
            self._index[key] = torch.as_tensor(_diagonal_index(h, w, rotate), device=device)
        return self._index[key]

    @staticmethod
    def _mix_and_move(f: torch.Tensor, coef: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        mixed = torch.einsum("soc,bcn->bson", coef.to(f.dtype), f)
        out = mixed[:, 0].index_select(-1, index[0])
        for s in range(1, index.shape[0]):
            out = out + mixed[:, s].index_select(-1, index[s])
        return out

    def forward_diagonals(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_s kappa_s D_s f (+ eps_s E_s f) + bias`` with explicit group diagonals."""
        b, c, four, h, w = x.shape
        f = x.reshape(b, c, four * h * w)
        out = self._mix_and_move(f, self.kappa, self._diagonals(h, w, x.device, True))
        if self.error is not None:
            out = out + self._mix_and_move(f, self.error, self._diagonals(h, w, x.device, False))
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)[None, :, None]
        return out.reshape(b, -1, four, h, w)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_index"] = {}
        return state


def _frame_matrices() -> torch.Tensor:
    return torch.as_tensor(np.stack([G.c4_rotation(k) for k in range(4)]), dtype=torch.float32)


class GMCNN(nn.Module):
    """Lift -> ``layers`` GMConvs (ReLU between) -> projection to one vector field."""

    def __init__(
        self, hidden: int = 16, layers: int = 5, in_frames: int = 1, error: bool = False, alpha: float = 0.0
    ) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError("layers must be >= 2")
        self.group = G.c4()
        self.alpha, self.in_frames = alpha, in_frames
        widths = [2 * in_frames] + [hidden] * (layers - 1) + [2]
        self.convs = nn.ModuleList(
            GMConv(widths[i], widths[i + 1], error, bias=i < layers - 1) for i in range(layers)
        )
        self.register_buffer("rot", _frame_matrices(), persistent=False)  # R^k, k = 0..3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        rot = self.rot.to(x.dtype)
        u = x.reshape(b, self.in_frames, 2, h, w)
        # lift: f(t, k) = R^-k u(t) = R^k^T u(t)
        f = torch.einsum("kji,bfjyx->bfikyx", rot, u).reshape(b, 2 * self.in_frames, 4, h, w)
        for i, conv in enumerate(self.convs):
            f = conv(f)
            if i < len(self.convs) - 1:
                f = torch.relu(f)
        # project: u(t) = mean_k R^k f(t, k)
        return torch.einsum("kij,bjkyx->biyx", rot, f) / 4

    def regularizer(self) -> torch.Tensor:
        """``alpha * sum |eps|``: the size of the symmetry-breaking error term (0 without it)."""
        terms = [c.error.abs().sum() for c in self.convs if c.error is not None]
        if not terms:
            return self.convs[0].kappa.new_zeros(())
        return self.alpha * torch.stack(terms).sum()
