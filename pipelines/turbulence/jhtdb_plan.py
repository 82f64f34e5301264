"""Planning of the JHTDB download: the cutout requests (within the service's limits) behind the blocks of
the stored grid, and where the stored points lie."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.params import JHTDBParams
from pipelines.turbulence.jhtdb_payload import reply_limit

BYTES_PER_POINT = 3 * 4  # three float32 components, the unit of the service's request-size limit


@dataclass(frozen=True)
class Cutout:
    """One request: ``count`` points along (x, y, z) from the 1-based ``start`` every ``stride`` points."""

    time_index: int
    start: tuple[int, int, int]
    count: tuple[int, int, int]
    stride: int

    @property
    def end(self) -> tuple[int, int, int]:
        return tuple(s + (c - 1) * self.stride for s, c in zip(self.start, self.count, strict=True))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(nz, ny, nx) of the reply."""
        return self.count[2], self.count[1], self.count[0]

    @property
    def points(self) -> int:
        return math.prod(self.count)

    @property
    def span_bytes(self) -> int:
        """Size of the unstrided box the server reads: what its per-request byte limit counts."""
        return math.prod(e - s + 1 for s, e in zip(self.start, self.end, strict=True)) * BYTES_PER_POINT

    @property
    def max_reply_bytes(self) -> int:
        """The most a well-formed reply can take: 3 components per point plus the coordinates."""
        return reply_limit(3 * self.points + sum(self.count) + 3)

    def query(self, dataset: str) -> dict[str, Any]:
        (xs, ys, zs), (xe, ye, ze) = self.start, self.end
        return {
            "function": "velocity", "dataset": dataset,
            "xs": xs, "xe": xe, "ys": ys, "ye": ye, "zs": zs, "ze": ze,
            "ts": self.time_index, "te": self.time_index,
            "stridex": self.stride, "stridey": self.stride, "stridez": self.stride, "stridet": 1,
            "filter_width": 1,
        }  # fmt: skip

    def describe(self) -> str:
        (xs, ys, zs), (xe, ye, ze) = self.start, self.end
        return f"t={self.time_index} x={xs}..{xe} y={ys}..{ye} z={zs}..{ze} stride={self.stride}"


@dataclass(frozen=True)
class Block:
    """A box of the stored (hr) grid at one JHTDB time step: start ``lo`` and ``size`` in (z, y, x)."""

    time_index: int
    lo: tuple[int, int, int]
    size: tuple[int, int, int]

    @property
    def name(self) -> str:
        z, y, x = self.lo
        return f"t{self.time_index:05d}_z{z:04d}_y{y:04d}_x{x:04d}"


def native_factor(p: JHTDBParams) -> int:
    """Native grid points per stored point along an axis (1 for a subcube)."""
    return 1 if p.mode == "subcube" else p.factor


def block_edge(p: JHTDBParams, n: int) -> tuple[int, int, int]:
    """Largest (bz, by, bx) block of stored points whose request respects both service limits."""
    f = native_factor(p)
    per_point = f**3 if p.mode == "box" else 1  # box mode requests every native point of a cell
    budget = p.max_points_per_request // per_point
    if budget < 1:
        raise ValueError(f"one {f}^3 box cell exceeds max_points_per_request={p.max_points_per_request}")
    bz = min(n, int(round(budget ** (1 / 3))) + 1)
    while bz > 1 and bz**3 > budget:
        bz -= 1
    by = min(n, math.isqrt(budget // bz))
    bx = min(n, budget // (bz * by))
    limit = p.max_request_mb * 2**20
    while True:
        span = [(b * f if p.mode == "box" else (b - 1) * f + 1) for b in (bz, by, bx)]
        if math.prod(span) * BYTES_PER_POINT <= limit or (bz, by, bx) == (1, 1, 1):
            return bz, by, bx
        bz, by, bx = max(1, bz // 2), max(1, by // 2), max(1, bx // 2)


def plan_blocks(p: JHTDBParams, n: int, time_indices: list[int]) -> list[Block]:
    """Every (time step, block) of an ``n^3`` stored grid, time-major so a resume fills steps in order."""
    edges = block_edge(p, n)
    starts = [range(0, n, e) for e in edges]
    return [
        Block(int(t), (z, y, x), (min(edges[0], n - z), min(edges[1], n - y), min(edges[2], n - x)))
        for t in time_indices
        for z in starts[0]
        for y in starts[1]
        for x in starts[2]
    ]


def cutout_for(p: JHTDBParams, block: Block) -> Cutout:
    """The request behind a block; starts are wrapped into [1, grid] and ends may run past it (periodic)."""
    f = native_factor(p)
    start = [(o + lo * f - 1) % p.grid_points + 1 for o, lo in zip(p.origin, block.lo[::-1], strict=True)]
    if p.mode == "box":
        count, stride = [s * f for s in block.size[::-1]], 1
    else:
        count, stride = list(block.size[::-1]), f
    return Cutout(block.time_index, tuple(start), tuple(count), stride)  # type: ignore[arg-type]


def stored_coordinates(p: JHTDBParams, n: int) -> dict[str, np.ndarray]:
    """Physical positions (x, y, z) of the stored points: the mean position of what each one averages.

    Positions increase monotonically even when a box wraps around the periodic domain.
    """
    f = native_factor(p)
    offset = (f - 1) / 2 if p.mode == "box" else 0.0
    dx = p.domain_length / p.grid_points
    return {
        axis: (origin - 1 + np.arange(n) * f + offset) * dx
        for axis, origin in zip(("x", "y", "z"), p.origin, strict=True)
    }
