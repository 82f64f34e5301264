"""Small but real smoke-stage configurations shared by the smoke tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from pipelines.params import StudyParams, parse_params

REPO = Path(__file__).resolve().parent.parent

# 32 x 32 box, 12 steps, levels E_0 and E_1: every code path of the stage, in seconds.
SMALL_SMOKE = {
    "resolution": 32,
    "box_size": 32.0,
    "inflow_center": [16.0, 4.0],
    "inflow_radius": 3.0,
    "steps": 12,
    "keep_start": 0,
    "keep_stop": 12,
    "levels": [0, 1],
    "input_frames": 1,
    "output_frames": 2,
    "splits": {"train": 0.5, "valid": 0.25, "test": 0.25},
    "batch_size": 3,
}


def small_params(**smoke_overrides: object) -> StudyParams:
    return parse_params({"smoke": {**SMALL_SMOKE, **smoke_overrides}})


def write_params(path: Path, params: StudyParams) -> Path:
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    return path


def ccw_quarter_turn(field: np.ndarray, vector: bool) -> np.ndarray:
    """A counter-clockwise quarter turn of ``[..., (component,) y, x]`` arrays, written out by index.

    Independent of models.groups on purpose, so symmetry tests do not check a rotation against itself.
    Cell (y, x) of an N x N grid (y up) moves to (x, N-1-y), i.e. out[y, x] = in[N-1-x, y]; a vector's
    components (u, v) become (-v, u).
    """
    n = field.shape[-1]
    assert field.shape[-2] == n, "square grids only"
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    turned = field[..., n - 1 - x, y]
    if not vector:
        return turned
    u, v = turned[..., 0, :, :], turned[..., 1, :, :]
    return np.stack([-v, u], axis=-3)
