"""Symmetry levels E_i and the checks that the stored data keeps its promises.

Level E_i has four directions. Direction k is simulation ``1 + k*i`` of the buoyancy ladder turned by
k counter-clockwise quarter turns (grid and vector components), so E_0 is exactly C4-symmetric and larger
i break the symmetry more. All rotations go through :mod:`models.groups`.
"""

from __future__ import annotations

import numpy as np

from models.groups import c4_rotation, rotate_scalar, rotate_vector

# Array layouts used here: velocity [..., time, component, y, x]; smoke [..., time, y, x].
VELOCITY_COMPONENT_AXIS = -3


def rotate_frames(
    velocity: np.ndarray, smoke: np.ndarray, quarter_turns: int
) -> tuple[np.ndarray, np.ndarray]:
    r = c4_rotation(quarter_turns)
    return rotate_vector(velocity, r, VELOCITY_COMPONENT_AXIS), rotate_scalar(smoke, r)


def rotate_velocity(velocity: np.ndarray, quarter_turns: int) -> np.ndarray:
    """Velocity frames ``[..., component, y, x]`` turned by ``quarter_turns`` CCW (grid and components)."""
    return rotate_vector(velocity, c4_rotation(quarter_turns), VELOCITY_COMPONENT_AXIS)


def undo_directions(velocity: np.ndarray) -> np.ndarray:
    """Turn direction k of ``velocity[direction, ...]`` back by -k quarter turns (to direction 0's frame)."""
    return np.stack([rotate_vector(velocity[k], c4_rotation(-k), VELOCITY_COMPONENT_AXIS) for k in range(4)])


def equivariance_errors(velocity: np.ndarray) -> dict[str, float]:
    """How far a four-direction set ``velocity[direction, time, component, y, x]`` is from C4-symmetric.

    ``relative``: mean over k=1..3 of |R^-k x_k - x_0| / |x_0| (Frobenius norms over all frames) — the
    error a C4-equivariant predictor trained on direction 0 would see on direction k. ``symmetric``:
    the same difference normalised by (|x_k| + |x_0|) / 2, bounded by 2 and insensitive to which
    direction is called the reference. ``orbit``: |x - P x| / |x| with P the group average over C4,
    the distance to the nearest exactly symmetric set.
    """
    back = undo_directions(np.asarray(velocity, dtype=np.float64))
    ref = back[0]
    diffs = [np.linalg.norm(back[k] - ref) for k in range(1, 4)]
    norms = [np.linalg.norm(back[k]) for k in range(4)]
    mean = back.mean(axis=0)
    return {
        "relative": float(np.mean([d / norms[0] for d in diffs])),
        "symmetric": float(np.mean([2 * d / (norms[k + 1] + norms[0]) for k, d in enumerate(diffs)])),
        "orbit": float(np.linalg.norm(back - mean[None]) / np.linalg.norm(back)),
    }


# the largest orbit distance (relative) that counts as round-off for four separately simulated directions
# of a symmetric setup: measured 1e-14 at the default (64^2, 110 frames); an iterative pressure solve may
# leave its own tolerance (``solver.rel_tol``, 1e-8 by default) behind, times a margin
C4_ROUND_OFF = 1e-6


def c4_round_off(solver_rel_tol: float) -> float:
    """The orbit distance allowed for a level declared exactly C4-symmetric (see :data:`C4_ROUND_OFF`)."""
    return max(C4_ROUND_OFF, 100 * solver_rel_tol)


def check_exactly_c4(velocity: np.ndarray, what: str, scenario: str, allowed: float) -> float:
    """Raise ``ValueError`` naming the scenario and the measured orbit distance unless the four directions
    ``velocity[direction, time, component, y, x]`` are C4-symmetric to ``allowed``; returns the distance."""
    orbit = equivariance_errors(velocity)["orbit"]
    if not orbit <= allowed:  # NaN fails too
        raise ValueError(
            f"smoke.scenario={scenario!r}: {what} is declared exactly C4-symmetric, but its four separately "
            f"simulated directions are at orbit distance {orbit:.3g} from the nearest C4-symmetric set "
            f"(round-off allows {allowed:.0e}): the scenario's `rotated` or `sources` does not turn the "
            "whole setup (a source or force left unturned?)"
        )
    return orbit


def max_c4_violation(velocity: np.ndarray, smoke: np.ndarray) -> float:
    """Largest absolute difference between direction k and direction 0 turned by k (0 when exact)."""
    worst = 0.0
    for k in range(1, 4):
        v_rot, s_rot = rotate_frames(velocity[0], smoke[0], k)
        worst = max(
            worst, float(np.max(np.abs(velocity[k] - v_rot))), float(np.max(np.abs(smoke[k] - s_rot)))
        )
    return worst


def staggered_divergence_from_centres(velocity: np.ndarray, dx: float) -> tuple[np.ndarray, float]:
    """Discrete divergence of the MAC field behind cell-centred velocities ``[..., 2, y, x]``.

    In a closed box the wall faces carry zero normal velocity, and each centre value is the mean of
    its two faces, so the faces follow exactly from f[i+1] = 2 u[i] - f[i] with f[0] = 0. Returns the
    divergence per cell and the largest mismatch at the far wall (should be ~0: a consistency check).
    """
    v = np.asarray(velocity, dtype=np.float64)
    fx = _faces(v[..., 0, :, :], -1)  # x faces along the last axis
    fy = _faces(v[..., 1, :, :], -2)
    div = (np.diff(fx, axis=-1) + np.diff(fy, axis=-2)) / dx
    wall = max(float(np.max(np.abs(fx[..., -1]))), float(np.max(np.abs(fy[..., -1, :]))))
    return div, wall


def _faces(centre: np.ndarray, axis: int) -> np.ndarray:
    """Closed-box face values behind centre values along ``axis``: f[0] = 0, f[i+1] = 2 c[i] - f[i]."""
    c = np.moveaxis(centre, axis, -1)
    f = np.zeros(c.shape[:-1] + (c.shape[-1] + 1,))
    for i in range(c.shape[-1]):
        f[..., i + 1] = 2 * c[..., i] - f[..., i]
    return np.moveaxis(f, -1, axis)


# --- the published symmetry-level curve -------------------------------------------------------------------

# The published E_0..E_9 errors (Wang et al. 2022; data_gen.ipynb of Rose-STL-Lab/Approximately-Equivariant-
# Nets, last cell) are computed on files holding the states after steps 11..60 (frames 11..60), of which the
# cell compares positions 10..48, i.e. frames 21..59 (steps, not positions: a longer run compares the same
# frames; a run too short to reach them compares every kept frame).
PUBLISHED_FRAMES = (21, 60)


def published_frame_slice(keep_start: int, keep_stop: int) -> slice:
    """The kept frames (``keep_start..keep_stop-1``) the published definition compares: frames 21..59."""
    first, stop = max(PUBLISHED_FRAMES[0], keep_start), min(PUBLISHED_FRAMES[1], keep_stop)
    return slice(first - keep_start, stop - keep_start) if first < stop else slice(None)


def lower_faces(velocity: np.ndarray) -> np.ndarray:
    """The staggered (MAC) velocity behind cell-centred ``[..., 2, y, x]`` as PhiFlow's
    ``staggered_tensor()`` cropped to the grid: u_x on the n left x-faces, u_y on the n lower y-faces
    (the far wall face, always 0, dropped). These are the values the published errors were computed on."""
    v = np.asarray(velocity, dtype=np.float64)
    n_x, n_y = v.shape[-1], v.shape[-2]
    fx = _faces(v[..., 0, :, :], -1)[..., :n_x]
    fy = _faces(v[..., 1, :, :], -2)[..., :n_y, :]
    return np.stack([fx, fy], axis=-3)


def published_level_error(unrotated: np.ndarray) -> float:
    """The published definition of a level's data equivariance error, in velocity units.

    ``unrotated[k, frame, component, y, x]``: the staggered velocity (:func:`lower_faces`) of the four
    UNROTATED simulations behind the level's directions, buoyancy indices 1, 1+i, 1+2i, 1+3i, over the
    frames being compared (:func:`published_frame_slice` of the kept frames). The error is the mean over
    frames, components and grid points of (|x_0 - x_1| + |x_0 - x_2| + |x_0 - x_3|) / 3: how far the
    stronger-buoyancy plumes are from the first one, not a distance to a C4-symmetric set (that is
    :func:`equivariance_errors`' ``orbit``).
    """
    x = np.asarray(unrotated, dtype=np.float64)
    if x.shape[0] != 4:
        raise ValueError(f"need the four simulations of a level along axis 0, got shape {x.shape}")
    return float(np.mean(sum(np.abs(x[0] - x[k]) for k in range(1, 4)) / 3))
