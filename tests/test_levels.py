"""The published symmetry-level error definition (data_gen.ipynb, last cell) and its frame alignment."""

import numpy as np
import pytest

from pipelines.params import SmokeParams
from pipelines.smoke.levels import lower_faces, published_frame_slice, published_level_error


def test_lower_faces_recovers_the_staggered_field_behind_cell_centres() -> None:
    rng = np.random.default_rng(0)
    n = 6
    fx = np.concatenate([np.zeros((3, n, 1)), rng.normal(size=(3, n, n - 1)), np.zeros((3, n, 1))], axis=-1)
    fy = np.concatenate([np.zeros((3, 1, n)), rng.normal(size=(3, n - 1, n)), np.zeros((3, 1, n))], axis=-2)
    centres = np.stack([(fx[..., 1:] + fx[..., :-1]) / 2, (fy[..., 1:, :] + fy[..., :-1, :]) / 2], axis=-3)
    faces = lower_faces(centres)
    assert faces.shape == (3, 2, n, n)
    assert np.allclose(faces[:, 0], fx[..., :n], atol=1e-12)  # the n lower/left faces, far wall dropped
    assert np.allclose(faces[:, 1], fy[..., :n, :], atol=1e-12)


def test_published_level_error_is_the_mean_absolute_difference_to_the_first_simulation() -> None:
    base = np.random.default_rng(1).normal(size=(5, 2, 4, 4))
    assert published_level_error(np.stack([base] * 4)) == 0.0
    shifted = np.stack([base, base + 0.3, base - 0.6, base + 0.9])
    assert published_level_error(shifted) == pytest.approx((0.3 + 0.6 + 0.9) / 3, rel=1e-12)
    with pytest.raises(ValueError, match="four simulations"):
        published_level_error(shifted[:3])


def test_default_frames_are_the_published_ones() -> None:
    p = SmokeParams()
    frames = np.arange(p.keep_start, p.keep_stop)  # frame t = the state after t steps
    assert frames[0] == 11 and frames[-1] == 60 and p.n_frames == 50  # torch.save(data[10:60]) of steps 1..61
    compared = frames[published_frame_slice(p.keep_start, p.keep_stop)]
    assert compared[0] == 21 and compared[-1] == 59  # the cell's d[10:-1]
    longer = np.arange(11, 111)  # a longer run compares the same frames, not more
    assert list(longer[published_frame_slice(11, 111)]) == list(range(21, 60))
    short = np.arange(0, 13)  # a run that never reaches frame 21 compares what it kept
    assert list(short[published_frame_slice(0, 13)]) == list(range(13))
