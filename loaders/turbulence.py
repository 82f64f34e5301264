"""Isotropic-turbulence super-resolution samples as a torch ``Dataset``.

    ds = turbulence_sr("data/turbulence.zarr", split="train")                       # local store
    ds = turbulence_sr("symflow/isotropic-turbulence-sr", split="test", normalise="scale")

A sample is ``(lrs, hr)``: ``lrs`` the ``window`` low-resolution frames around the centre time
(``(window, 3, n, n, n)``, published window 3 = t-1, t, t+1) and ``hr`` the high-resolution frame at the
centre (``(3, N, N, N)``), float32, components (u_x, u_y, u_z), space (z, y, x).

Store layout: ``loaders.layouts.TURBULENCE`` (checked on open): two arrays of dims
``(time, component, z, y, x)``, by default ``lr`` and ``hr``; ``attrs["splits"]`` maps each split to the
centre positions along ``time``; ``attrs["window"]`` (default 3) is the number of low-resolution frames per
sample.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from loaders.layouts import TURBULENCE, check
from loaders.normalisation import NormaliseMode, Normaliser, field_stats
from loaders.resident import Resident, keep_resident
from loaders.sources import Source, check_kind, resolve_source
from loaders.storage import ChunkReader, open_dataset, open_group
from loaders.windows import canonical_split

STORE_NAME = "turbulence.zarr"
DEFAULT_PAIR = ("lr", "hr")
COMPONENTS = ["u_x", "u_y", "u_z"]


def sample_centres(splits_attr: str | dict[str, Any]) -> dict[str, list[int]]:
    """``{split: centre positions}`` from the ``splits`` attribute (lists, or dicts holding one list)."""
    raw = json.loads(splits_attr) if isinstance(splits_attr, str) else splits_attr
    out: dict[str, list[int]] = {}
    for name, value in raw.items():
        if isinstance(value, dict):
            value = next(v for v in value.values() if isinstance(v, list))
        out[canonical_split(name)] = [int(v) for v in value]
    return {s: out[s] for s in ("train", "valid", "test") if s in out}


def window_of(group: Any) -> int:
    return int(group.attrs.get("window", 3))


def pair_config(group: Any, pair: tuple[str, str]) -> str:
    """Config name of a resolution pair, e.g. ``lr16_hr64``."""
    return "_".join(f"{name}{group[name].shape[-1]}" for name in pair)


def _blocks(group: Any, name: str, times: list[int]) -> Iterator[np.ndarray]:
    arr = group[name]
    for t in times:
        yield np.asarray(arr[t])


def compute_stats(group: Any, pair: tuple[str, str] = DEFAULT_PAIR) -> dict[str, dict[str, Any]]:
    """Train-split statistics of both resolutions, per velocity component.

    The low-resolution field counts every frame of every training window (a frame shared by two windows
    counts twice, as it does in training); the high-resolution field counts the centre frames.
    """
    centres = sample_centres(group.attrs["splits"])["train"]
    half = window_of(group) // 2
    lr_times = [t + k for t in centres for k in range(-half, half + 1)]
    lo, hi = pair
    return {
        pair_config(group, pair): {
            lo: field_stats(_blocks(group, lo, lr_times), 0, COMPONENTS),
            hi: field_stats(_blocks(group, hi, centres), 0, COMPONENTS),
        }
    }


class TurbulenceSR(Dataset):
    """Lazy super-resolution samples of one split (see the module docstring)."""

    def __init__(
        self,
        source: Source,
        split: str = "train",
        pair: tuple[str, str] = DEFAULT_PAIR,
        normalise: NormaliseMode | None = None,
        cache_chunks: int = 4,
        keep_in_memory: bool | None = None,
    ):
        meta = open_dataset(source.zarr_url, cache_dir=source.cache_dir)  # metadata and coordinates only
        check_kind(meta, TURBULENCE, source.description)
        if tuple(pair) == DEFAULT_PAIR:  # the published layout; other pairs are the caller's own arrays
            check(meta, TURBULENCE, source.description)
        group = open_group(source.zarr_url, check=False, cache_dir=source.cache_dir)  # files checked
        for name in pair:
            if name not in group or group[name].ndim != 5:
                raise ValueError(f"{source.description} has no (time, component, z, y, x) array {name!r}")
        self.split = canonical_split(split)
        self.centres = sample_centres(group.attrs["splits"]).get(self.split, [])
        if not self.centres:
            raise ValueError(f"split {self.split!r} has no samples in {source.description}")
        self.window = window_of(group)
        self.source, self.pair = source, tuple(pair)
        # the time axis is the first one: a frame is one chunk read, cached across overlapping windows
        self.readers = {
            name: ChunkReader(source.zarr_url, name, 0, cache_chunks, source.cache_dir) for name in self.pair
        }
        self.normalisers: dict[str, Normaliser] = {}
        if normalise is not None:
            config = pair_config(group, self.pair)
            stats = (source.stats or {}).get("configs", {}).get(config)
            if stats is None:
                stats = compute_stats(group, self.pair)[config]
            self.stats = stats
            self.normalisers = {name: Normaliser(stats[name], normalise, -4) for name in self.pair}
        lo_frame, hi_frame = (int(np.prod(group[name].shape[1:])) for name in self.pair)
        nbytes = 4 * len(self.centres) * (self.window * lo_frame + hi_frame)
        self.resident: Resident[tuple[torch.Tensor, torch.Tensor]] = Resident(
            keep_resident(nbytes, keep_in_memory)
        )

    def __len__(self) -> int:
        return len(self.centres)

    def meta(self, i: int) -> dict[str, int]:
        return {"time_index": self.centres[i]}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.centres[i]
        if not self.resident.enabled:
            return self._read(t)
        lrs, hr = self.resident.get(t, lambda: self._read(t))
        return lrs.clone(), hr.clone()  # callers may write into a sample

    def _read(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.window // 2
        lo, hi = self.pair
        lrs = self.readers[lo].read((), t - half, t + half + 1)
        hr = self.readers[hi].read((), t, t + 1)[0]
        if self.normalisers:
            lrs, hr = self.normalisers[lo](lrs), self.normalisers[hi](hr)
        return (
            torch.from_numpy(np.ascontiguousarray(lrs, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32)),
        )


def turbulence_sr(
    source: str | Path,
    split: str = "train",
    pair: tuple[str, str] = DEFAULT_PAIR,
    normalise: NormaliseMode | None = None,
    revision: str | None = None,
    cache_chunks: int = 4,
    cache_dir: str | Path | None = None,
    keep_in_memory: bool | None = None,
) -> TurbulenceSR:
    """Super-resolution samples of one split from a local store, a local repo folder or a Hub repo.

    ``pair`` names the (low, high) resolution arrays; ``normalise`` is ``None``, ``"standard"`` or
    ``"scale"`` (see :mod:`loaders.normalisation`), using the published train-split statistics. Files of a
    Hub repo are cached on local disk in ``cache_dir`` (default: huggingface_hub's cache). ``keep_in_memory``
    (default: when the split fits :data:`loaders.resident.RESIDENT_BYTES`) keeps each sample after its
    first read, so later epochs read no chunk.
    """
    source = resolve_source(source, STORE_NAME, revision, cache_dir)
    return TurbulenceSR(source, split, pair, normalise, cache_chunks, keep_in_memory)
