"""The super-resolution task: which time steps are stored, which samples they form, and the splits.

A sample is a window of ``window`` consecutive source time steps (published: 3, i.e. t-1, t, t+1); the
low-resolution input is the whole window and the high-resolution target is its centre step. Windows
never overlap, so samples in different splits share no time step, whichever way they are assigned.

Source time steps are grouped into *slots* of ``window`` consecutive steps followed by ``gap`` unused
steps; the samples are ``n`` slots drawn with the seed (JHTDB, where the time range is much longer than
needed, like the published draw from [2, 1023]) or all of them (synthetic, whose run is exactly as long as
needed). The gap keeps consecutive samples a stated fraction of a large-eddy turnover time apart
(:func:`spacing_gap`), so a test target is not a few solver steps from a training target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SamplePlan:
    """Stored time steps (sorted source indices) and, per sample, its centre position and split."""

    time_index: np.ndarray  # (n_times,) source time indices, ascending
    centre: np.ndarray  # (n_samples,) position of each sample's centre along the stored time axis
    split: np.ndarray  # (n_samples,) "train" / "valid" / "test"
    window: int

    def splits(self) -> dict[str, list[int]]:
        """Machine-readable splits: centre positions along the stored time axis, per split."""
        return {name: sorted(int(c) for c in self.centre[self.split == name]) for name in SPLITS}

    def window_positions(self, centre: int) -> list[int]:
        half = self.window // 2
        return list(range(centre - half, centre + half + 1))


def plan_samples(
    first: int,
    last: int,
    counts: dict[str, int],
    window: int,
    seed: int,
    strategy: str = "random",
    draw: bool = True,
    gap: int = 0,
) -> SamplePlan:
    """Choose disjoint windows of source steps in ``[first, last]`` and assign them to splits.

    ``draw=True`` picks the slots at random (seeded); ``draw=False`` takes the first ``n`` slots in time.
    ``strategy="random"`` assigns samples to splits by a seeded shuffle (as published);
    ``"time_blocks"`` gives train the earliest samples, then valid, then test, which keeps the strongly
    time-correlated neighbours of a training sample out of the evaluation splits. ``gap``: unused source
    steps after each window, so two samples' windows are at least ``gap + 1`` steps apart.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be odd and >= 1, got {window}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    n = sum(counts.values())
    n_slots = (last - first + 1 + gap) // (window + gap)
    if n_slots < n:
        raise ValueError(
            f"time range [{first}, {last}] holds {n_slots} disjoint windows of {window} steps {gap} steps "
            f"apart, {n} are needed"
        )
    rng = np.random.default_rng(seed)
    slots = np.sort(rng.choice(n_slots, size=n, replace=False)) if draw else np.arange(n)
    starts = first + slots * (window + gap)
    time_index = (starts[:, None] + np.arange(window)[None, :]).ravel()
    centre = np.arange(n) * window + window // 2
    order = rng.permutation(n) if strategy == "random" else np.arange(n)
    if strategy not in ("random", "time_blocks"):
        raise ValueError(f"unknown split strategy {strategy!r}")
    split = np.empty(n, dtype=object)
    start = 0
    for name in SPLITS:
        split[order[start : start + counts[name]]] = name
        start += counts[name]
    return SamplePlan(time_index=time_index, centre=centre, split=split, window=window)


def check_plan(plan: SamplePlan) -> None:
    """Raise ``ValueError`` if a window is not consecutive source steps or two splits share a step."""
    owner: dict[int, str] = {}
    for c, name in zip(plan.centre, plan.split, strict=True):
        positions = plan.window_positions(int(c))
        if positions[0] < 0 or positions[-1] >= plan.time_index.size:
            raise ValueError(f"sample centred at position {c} runs off the stored time axis")
        steps = plan.time_index[positions]
        if np.any(np.diff(steps) != 1):
            raise ValueError(f"sample centred at position {c} is not consecutive in time: {steps.tolist()}")
        for step in steps.tolist():
            if owner.setdefault(step, name) != name:
                raise ValueError(f"time step {step} is shared by splits {owner[step]} and {name}")


def spacing_gap(fraction: float, turnover_time: float, step_dt: float) -> int:
    """Unused source steps between consecutive windows so that the time from the last step of one window
    to the first step of the next, ``(gap + 1) * step_dt``, is at least ``fraction * turnover_time``."""
    if fraction <= 0:
        return 0
    return max(0, math.ceil(fraction * turnover_time / step_dt - 1e-9) - 1)


def synthetic_span(n_samples: int, window: int, gap: int) -> int:
    """Stored source steps a synthetic run needs: ``n`` windows with ``gap`` steps between them."""
    return n_samples * window + (n_samples - 1) * gap


def min_time_gap(plan: SamplePlan, a: str, b: str) -> int:
    """Smallest number of source steps from a step of split ``a``'s windows to one of split ``b``'s."""
    steps = {name: [plan.time_index[plan.window_positions(int(c))] for c in plan.centre[plan.split == name]]
             for name in (a, b)}  # fmt: skip
    return int(min(np.abs(x[:, None] - y[None, :]).min() for x in steps[a] for y in steps[b]))


def nearest_train_distance(
    plan: SamplePlan, hr_at: Callable[[int], np.ndarray]
) -> dict[str, dict[str, float]]:
    """For each valid / test sample, the relative L2 distance |y - y_train| / |y| of its hr target to the
    nearest training hr target (``hr_at(centre position)`` reads one target); min and median per split.
    A leak shows up as a small minimum: neighbouring solver steps differ by a few per cent."""
    train = [np.asarray(hr_at(int(c)), dtype=np.float64) for c in plan.centre[plan.split == "train"]]
    out = {}
    for name in SPLITS[1:]:
        dists = []
        for c in plan.centre[plan.split == name]:
            y = np.asarray(hr_at(int(c)), dtype=np.float64)
            dists.append(min(float(np.linalg.norm(y - t) / np.linalg.norm(y)) for t in train))
        if dists:
            out[name] = {"min": float(np.min(dists)), "median": float(np.median(dists)), "count": len(dists)}
    return out
