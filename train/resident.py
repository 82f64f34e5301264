"""Gradient graphs kept across Hessian-vector products at one point (``FlatLoss.resident_graphs``).

Every product a landscape measurement takes (Lanczos, SLQ, Hutchinson, the adaptive Hessian) is at the
same weights ``w0``. A product by double backward is a forward and a first backward with
``create_graph`` (the gradient as a differentiable function of ``w``), then a second backward of
``g . v``; only the last depends on ``v``. Keeping each term's gradient graph runs the first two once per
measurement. The arithmetic of every product is that of rebuilding it (the same graph, the same terms in
the same order), so the products are bit for bit those of ``FlatLoss.hvp`` without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Tensor = torch.Tensor


def graph_budget(device: torch.device) -> int:
    """Bytes of kept graphs by default: a quarter of the memory free on ``device`` (CUDA: free device
    memory; otherwise the host's available memory). Only the speed depends on it: a graph not kept is
    rebuilt per product, with the same arithmetic."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 4
    import psutil

    return psutil.virtual_memory().available // 4


class ResidentGraphs:
    """The terms of a loss (``pieces``: each a function of the flat weights, summed in this order) with
    their gradient graphs at ``w0``, kept in order while their saved tensors total at most ``max_bytes``
    (built on the first product); the terms beyond rebuild theirs per product."""

    def __init__(self, pieces: Sequence[Callable[[Tensor], Tensor]], w0: Tensor, max_bytes: int):
        self.pieces = list(pieces)
        self.w0 = w0
        self.max_bytes = max_bytes
        self.graphs: list[tuple[Tensor, Tensor | None] | None] | None = None
        self.kept_bytes = 0

    def _gradient(self, piece: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor | None]:
        """(leaf, gradient with its graph) of one term at ``w0``; None for a constant term (a model
        without a regulariser gives a constant zero)."""
        leaf = self.w0.detach().requires_grad_(True)
        value = piece(leaf)
        if not value.requires_grad:
            return leaf, None
        return leaf, torch.autograd.grad(value, leaf, create_graph=True)[0]

    def _build(self) -> list[tuple[Tensor, Tensor | None] | None]:
        graphs: list[tuple[Tensor, Tensor | None] | None] = []
        for piece in self.pieces:
            if self.kept_bytes > self.max_bytes:
                graphs.append(None)
                continue
            storages: dict[int, int] = {}  # the graph's saved tensors, by storage (shared ones once)

            def pack(t: Tensor, storages: dict[int, int] = storages) -> Tensor:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                kept = self._gradient(piece)
            self.kept_bytes += sum(storages.values())
            graphs.append(kept if self.kept_bytes <= self.max_bytes else None)
        return graphs

    def hvp(self, v: Tensor) -> Tensor:
        """The Hessian-vector product at ``w0``, term by term in order (as ``FlatLoss.hvp`` sums it)."""
        if self.graphs is None:
            self.graphs = self._build()
        total = torch.zeros_like(self.w0)
        for piece, kept in zip(self.pieces, self.graphs, strict=True):
            leaf, g = kept if kept is not None else self._gradient(piece)  # over the budget: rebuilt
            if g is None:
                continue
            (hv,) = torch.autograd.grad(g @ v, leaf, retain_graph=kept is not None, allow_unused=True)
            total += torch.zeros_like(leaf) if hv is None else hv.detach()
        return total
