"""A circular pad whose backward costs one copy, with the bits of ``F.pad(mode="circular")``.

``F.pad(mode="circular")`` is a composite of slice copies, so autograd builds its backward from
``SliceBackward`` nodes that each zero-fill a tensor of the padded size and add it whole. In the
super-resolution models' training step (every 3D convolution pads circularly) that was about a third of the
time. :func:`circular_pad` adds the wrapped slabs back into one clone of the gradient, in the order autograd
did, each value the sum of the same two terms: the same bits (tests/test_models.py checks it). The
backward is itself a linear map whose adjoint is the pad, so its own backward (the landscape's
Hessian-vector products) is one pad, not autograd's whole-tensor copies of every in-place slab addition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _wraps(shape: torch.Size, pad: int, dim: int) -> list[tuple[int, slice, slice]]:
    """``F.pad``'s circular copies in its order: per axis from the last, (axis, destination, source) in the
    padded tensor; ``shape`` is the unpadded one."""
    copies = []
    for ax in range(len(shape) - 1, len(shape) - 1 - dim, -1):
        size = shape[ax] + 2 * pad
        copies.append((ax, slice(0, pad), slice(size - 2 * pad, size - pad)))
        copies.append((ax, slice(size - pad, size), slice(pad, 2 * pad)))
    return copies


def _along(ax: int, index: slice) -> tuple[slice, ...]:
    return (slice(None),) * ax + (index,)


class _CircularPad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:  # type: ignore[override]
        ctx.pad, ctx.dim = pad, dim
        return F.pad(x, (pad,) * (2 * dim), mode="circular")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        return _CircularFold.apply(grad, ctx.pad, ctx.dim), None, None


class _CircularFold(torch.autograd.Function):
    """The pad's adjoint: each wrapped slab added back onto the slab it copies, then the centre."""

    @staticmethod
    def forward(ctx, grad: torch.Tensor, pad: int, dim: int) -> torch.Tensor:  # type: ignore[override]
        ctx.pad, ctx.dim = pad, dim
        spatial = range(grad.dim() - dim, grad.dim())
        inner = torch.Size(s - 2 * pad if i in spatial else s for i, s in enumerate(grad.shape))
        g = grad.clone()
        for ax, dest, src in reversed(_wraps(inner, pad, dim)):
            g[_along(ax, src)] += g[_along(ax, dest)]
            g[_along(ax, dest)] = 0  # as autograd: a copied-over slab sends nothing further back
        centre = tuple(slice(pad, s - pad) if i in spatial else slice(None) for i, s in enumerate(g.shape))
        return g[centre]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        return _CircularPad.apply(grad, ctx.pad, ctx.dim), None, None


def circular_pad(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """``F.pad(x, (pad,) * 2 * dim, mode="circular")`` (the last ``dim`` axes) with a cheaper backward."""
    if pad == 0:
        return x
    return _CircularPad.apply(x, pad, dim)
