"""Index arithmetic for sliding windows over several time series (no I/O here).

A dataset of ``series`` time series, each cut to the time-index range ``[start, stop)`` of one split, yields
every window of ``length`` consecutive frames that lies wholly inside the range, moving by ``stride``. The
flat sample index runs over series first-major: ``i = series * per_series + k``, window ``k`` starting at
``start + k * stride``. Windows never cross a split boundary, so train / valid / test share no frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Hub convention names the middle split "validation"; the stores name it "valid". Both are accepted.
SPLIT_ALIASES = {"train": "train", "valid": "valid", "validation": "valid", "test": "test"}
HUB_SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}
SPLIT_ORDER = ("train", "valid", "test")


def canonical_split(split: str) -> str:
    try:
        return SPLIT_ALIASES[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; use one of train, valid (or validation), test") from None


def split_ranges(splits_attr: str | dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Parse a store's ``splits`` attribute into ``{split: (start, stop)}`` time-index ranges."""
    raw = json.loads(splits_attr) if isinstance(splits_attr, str) else splits_attr
    out = {}
    for name, value in raw.items():
        rng = value["time_index"] if isinstance(value, dict) else value
        out[canonical_split(name)] = (int(rng[0]), int(rng[1]))
    return {name: out[name] for name in SPLIT_ORDER if name in out}


@dataclass(frozen=True)
class WindowIndex:
    series: int
    start: int
    stop: int
    length: int
    stride: int = 1

    def __post_init__(self) -> None:
        if self.series < 0 or self.length < 1 or self.stride < 1 or self.stop < self.start:
            raise ValueError(f"invalid window index {self}")

    @property
    def per_series(self) -> int:
        span = self.stop - self.start - self.length
        return 0 if span < 0 else span // self.stride + 1

    def __len__(self) -> int:
        return self.series * self.per_series

    def __getitem__(self, i: int) -> tuple[int, int]:
        """``(series, first time index)`` of window ``i`` (negative indices count from the end)."""
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"window {i} out of range for {n} windows")
        series, k = divmod(i, self.per_series)
        return series, self.start + k * self.stride
