"""Downsampling of 3D fields whose last three axes are space ``[..., z, y, x]``.

* :func:`block_mean` -- exact means over aligned ``f x f x f`` blocks (a box filter followed by
  sampling at the block centres). It commutes with the 24 cube rotations, so it keeps the octahedral
  symmetry of the data, and it is what both the hr target and the lr input are made with.
* :func:`block_mean_dask` -- the same over a chunked dask array, one chunk at a time, so memory is a few
  chunks whatever the field size.
* :func:`stride_sample` and :func:`subcube` -- the two other ways to get a coarse field from JHTDB
  (every f-th point; a contiguous native-resolution region). They exist here so the docs can compare
  all three on the same field.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DaskArray = Any  # dask.array.Array; imported lazily so the numpy path does not pay for dask


def block_mean(a: np.ndarray, factor: int, dtype: Any = np.float32) -> np.ndarray:
    """Mean over aligned ``factor^3`` blocks of the last three axes.

    The sum runs one axis at a time, slowest axis first, as ``factor`` vectorised adds of strided
    slices: the first pass streams whole contiguous planes and every pass shrinks the array by
    ``factor``, which is 3-4x faster than one ``mean`` over a 6-D view (and allocates little).
    Accumulation is in float64 when ``dtype`` is float64, else in float32 (the sums of at most
    ``factor^3`` values lose far less than the float32 storage already does).
    """
    if factor == 1:
        return np.asarray(a, dtype=dtype)
    nz, ny, nx = a.shape[-3:]
    if nz % factor or ny % factor or nx % factor:
        raise ValueError(f"factor {factor} does not divide the spatial shape {(nz, ny, nx)}")
    acc = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    out = np.asarray(a, dtype=acc)
    for axis in (-3, -2, -1):  # slowest axis first: whole contiguous planes, and the array shrinks early
        parts = [out[_along(axis, slice(i, None, factor), out.ndim)] for i in range(factor)]
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        out = total
    out *= 1.0 / factor**3
    return out.astype(dtype, copy=False)


def _along(axis: int, index: slice, ndim: int) -> tuple:
    key = [slice(None)] * ndim
    key[axis] = index
    return tuple(key)


def stride_sample(a: np.ndarray, factor: int, offset: int = 0) -> np.ndarray:
    """Every ``factor``-th point along each spatial axis (what the JHTDB server does with strides)."""
    s = slice(offset, None, factor)
    return a[..., s, s, s]


def subcube(a: np.ndarray, size: int, origin: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """A contiguous native-resolution ``size^3`` region starting at ``origin`` (z, y, x)."""
    z, y, x = origin
    return a[..., z : z + size, y : y + size, x : x + size]


def aligned_chunks(chunks: tuple[int, ...], factor: int, target: int) -> tuple[int, ...]:
    """Chunk sizes along one axis that are multiples of ``factor`` and close to ``target``."""
    n = sum(chunks)
    step = max(factor, (target // factor) * factor)
    sizes = [step] * (n // step)
    if n % step:
        sizes.append(n % step)
    return tuple(sizes)


def block_mean_dask(x: DaskArray, factor: int, dtype: Any = np.float32) -> DaskArray:
    """:func:`block_mean` applied chunk by chunk; spatial chunks are first aligned to ``factor``."""
    if factor == 1:
        return x.astype(dtype)
    chunks = list(x.chunks)
    realign = False
    for axis in range(x.ndim - 3, x.ndim):
        if any(c % factor for c in chunks[axis]):
            chunks[axis] = aligned_chunks(chunks[axis], factor, max(chunks[axis]))
            realign = True
    if realign:
        x = x.rechunk(tuple(chunks))
    out_chunks = tuple(
        tuple(c // factor for c in cs) if axis >= x.ndim - 3 else cs for axis, cs in enumerate(x.chunks)
    )
    return x.map_blocks(block_mean, factor, dtype, chunks=out_chunks, dtype=dtype)
