"""Finite rotation groups acting on grids: the one rotation utility of the project.

Data (smoke plume symmetrisation, turbulence downsampling checks), models (kernel rotation) and tests
all use these functions, so there is a single definition of "rotate a field".

Conventions
-----------
* A group element is an integer signed-permutation matrix ``R`` acting on physical coordinates
  ordered ``(x, y)`` in 2D and ``(x, y, z)`` in 3D. Rotations are about the centre of the grid.
* Arrays store space last and in reverse coordinate order: ``[..., y, x]`` in 2D and
  ``[..., z, y, x]`` in 3D, with the y axis pointing "up" (index 0 is the bottom row).
* Vector fields carry their components on ``component_axis`` in coordinate order ``(u_x, u_y[, u_z])``.
* The action is the standard one: ``(g . f)(p) = f(R^-1 p)`` for scalars and
  ``(g . u)(p) = R u(R^-1 p)`` for vectors. The C4 generator is the counter-clockwise quarter turn,
  ``(x, y) -> (-y, x)``, so ``(u, v) -> (-v, u)``.

Every operation is an exact index permutation plus sign flips (never interpolation), so it commutes
bitwise with anything else that is exact, and works on numpy arrays and torch tensors alike.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor

CCW_QUARTER_TURN = np.array([[0, -1], [1, 0]], dtype=np.int64)


def _is_torch(a: Array) -> bool:
    return type(a).__module__.startswith("torch")


def _flip(a: Array, axes: list[int]) -> Array:
    if not axes:
        return a
    if _is_torch(a):
        return a.flip(axes)
    return np.flip(a, axis=axes)


def _permute(a: Array, order: list[int]) -> Array:
    if order == list(range(len(order))):
        return a
    return a.permute(*order) if _is_torch(a) else np.transpose(a, order)


def _signed_permutation(matrix: np.ndarray) -> tuple[list[int], list[int]]:
    """For a signed permutation R return (source, sign) with (R v)_i = sign[i] * v[source[i]]."""
    m = np.asarray(matrix)
    if (
        m.ndim != 2
        or m.shape[0] != m.shape[1]
        or not np.all(np.abs(m).sum(axis=0) == 1)
        or not np.all(np.abs(m).sum(axis=1) == 1)
    ):
        raise ValueError(f"expected a signed permutation matrix, got {m.tolist()}")
    source = [int(np.flatnonzero(row)[0]) for row in m]
    sign = [int(m[i, j]) for i, j in enumerate(source)]
    return source, sign


def rotate_scalar(a: Array, matrix: np.ndarray) -> Array:
    """Rotate a scalar field whose last ``d`` axes are space (``[..., y, x]`` or ``[..., z, y, x]``)."""
    d = np.asarray(matrix).shape[0]
    if a.ndim < d:
        raise ValueError(f"array with {a.ndim} axes cannot hold a {d}-D field")
    source, sign = _signed_permutation(matrix)
    nlead = a.ndim - d

    def axis_of(coord: int) -> int:  # array axis that holds physical coordinate `coord`
        return nlead + (d - 1 - coord)

    # (g.f)(p) = f(R^T p); coordinate j of the output is coordinate i=source[j]... of the input read
    # through R^T, whose entry (i, j) equals R[j, i]: output axis for coord j takes input coord source[j].
    order = list(range(nlead)) + [0] * d
    for j in range(d):
        order[axis_of(j)] = axis_of(source[j])
    out = _permute(a, order)
    return _flip(out, [axis_of(j) for j in range(d) if sign[j] < 0])


def rotate_vector(a: Array, matrix: np.ndarray, component_axis: int) -> Array:
    """Rotate a vector field: move the grid like :func:`rotate_scalar` and map the components by ``R``.

    ``component_axis`` must come before the spatial axes (for example ``[..., c, y, x]``).
    """
    d = np.asarray(matrix).shape[0]
    cax = component_axis % a.ndim
    if cax >= a.ndim - d:
        raise ValueError("component_axis must precede the spatial axes")
    if a.shape[cax] != d:
        raise ValueError(f"a {d}-D vector field needs {d} components on axis {cax}, found {a.shape[cax]}")
    out = rotate_scalar(a, matrix)
    source, sign = _signed_permutation(matrix)
    parts = []
    for i in range(d):
        index = [slice(None)] * a.ndim
        index[cax] = slice(source[i], source[i] + 1)
        comp = out[tuple(index)]
        parts.append(-comp if sign[i] < 0 else comp)
    if _is_torch(a):
        import torch

        return torch.cat(parts, dim=cax)
    return np.concatenate(parts, axis=cax)


def rotate_point(point: tuple[float, ...], matrix: np.ndarray, box_size: float) -> tuple[float, ...]:
    """Rotate a physical point of a cube/square box ``[0, box_size]^d`` about the box centre."""
    p = np.asarray(point, dtype=float) - box_size / 2
    return tuple(float(v) for v in np.asarray(matrix) @ p + box_size / 2)


def rotate_vector_value(vector: tuple[float, ...], matrix: np.ndarray) -> tuple[float, ...]:
    """Rotate a constant vector (for example a buoyancy direction)."""
    return tuple(float(v) for v in np.asarray(matrix) @ np.asarray(vector, dtype=float))


@dataclass(frozen=True)
class RotationGroup:
    """A finite group of signed-permutation matrices with its Cayley table and inverses."""

    name: str
    matrices: np.ndarray = field(repr=False)  # (|G|, d, d), identity first

    def __len__(self) -> int:
        return len(self.matrices)

    @property
    def dim(self) -> int:
        return int(self.matrices.shape[1])

    def index(self, matrix: np.ndarray) -> int:
        for i, m in enumerate(self.matrices):
            if np.array_equal(m, matrix):
                return i
        raise KeyError(f"matrix {np.asarray(matrix).tolist()} is not an element of {self.name}")

    @cached_property
    def cayley(self) -> np.ndarray:
        """``cayley[a, b]`` is the index of ``g_a g_b``."""
        n = len(self)
        return np.array(
            [[self.index(self.matrices[a] @ self.matrices[b]) for b in range(n)] for a in range(n)]
        )

    @cached_property
    def inverse(self) -> np.ndarray:
        return np.array([self.index(m.T) for m in self.matrices])

    def act_scalar(self, a: Array, g: int) -> Array:
        return rotate_scalar(a, self.matrices[g])

    def act_vector(self, a: Array, g: int, component_axis: int) -> Array:
        return rotate_vector(a, self.matrices[g], component_axis)


def c4() -> RotationGroup:
    """Cyclic group of quarter turns; element k is k counter-clockwise quarter turns."""
    mats = [np.linalg.matrix_power(CCW_QUARTER_TURN, k) for k in range(4)]
    return RotationGroup("C4", np.stack(mats).astype(np.int64))


def c4_rotation(k: int) -> np.ndarray:
    """Matrix of ``k`` counter-clockwise quarter turns (any integer k)."""
    return np.linalg.matrix_power(CCW_QUARTER_TURN, k % 4).astype(np.int64)


def octahedral(reflections: bool = False) -> RotationGroup:
    """The 24 rotations of the cube (O), or all 48 symmetries including reflections (O_h)."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3), dtype=np.int64)
            for i, j in enumerate(perm):
                m[i, j] = signs[i]
            if reflections or round(np.linalg.det(m)) == 1:
                mats.append(m)
    mats.sort(key=lambda m: (not np.array_equal(m, np.eye(3, dtype=np.int64)), m.flatten().tolist()))
    return RotationGroup("Oh" if reflections else "O", np.stack(mats))


# --- helpers for models: the same index maps, precomputed for kernels and group channels ----------------


def trivial(dim: int) -> RotationGroup:
    """The one-element group in ``dim`` dimensions (turns the group layers into plain convolutions)."""
    return RotationGroup(f"1_{dim}d", np.eye(dim, dtype=np.int64)[None])


def kernel_index(group: RotationGroup, size: int) -> np.ndarray:
    """``idx[g]`` with ``rotate_scalar(k, R_g).reshape(..., -1) == k.reshape(..., -1)[..., idx[g]]``.

    Rotating a flattened cubic kernel is then one gather, which autograd differentiates any number of times.
    """
    base = np.arange(size**group.dim).reshape((size,) * group.dim)
    return np.stack([np.ascontiguousarray(rotate_scalar(base, m)).reshape(-1) for m in group.matrices])


def regular_permutation(group: RotationGroup) -> np.ndarray:
    """``perm[g, h]`` is the index of ``g^-1 h``; the regular action is ``(g . f)(h) = f(perm[g, h])``."""
    return group.cayley[group.inverse]


def component_gather(group: RotationGroup) -> tuple[np.ndarray, np.ndarray]:
    """``(source, sign)`` of shape (|G|, d) with ``(R_g v)_i = sign[g, i] * v[source[g, i]]``."""
    pairs = [_signed_permutation(m) for m in group.matrices]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def act_regular(a: Array, group: RotationGroup, g: int, group_axis: int) -> Array:
    """Left regular action on a field over the group: permute ``group_axis`` and rotate the grid.

    ``group_axis`` must precede the spatial axes, e.g. ``[batch, channel, group, z, y, x]``.
    """
    perm = regular_permutation(group)[g]
    ax = group_axis % a.ndim
    if _is_torch(a):
        import torch

        moved = a.index_select(ax, torch.as_tensor(perm, device=a.device))
    else:
        moved = np.take(a, perm, axis=ax)
    return rotate_scalar(moved, group.matrices[g])
