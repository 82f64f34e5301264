"""Smoke plumes as a torch ``Dataset`` of (input frames, target frames) windows.

    ds = smoke_plume("data/smoke.zarr", level=5, split="train")        # local store
    ds = smoke_plume("data/hub/smoke-plume-c4", level=5, split="valid")      # local repo folder
    ds = smoke_plume("symflow/smoke-plume-c4", level="E5", normalise="scale")  # Hub repo, cached on disk

A sample is ``(x, y)`` with ``x`` of shape ``(input_frames, C, H, W)`` and ``y`` of shape
``(output_frames, C, H, W)``, float32; ``C`` is 2 (velocity u, v) or 3 with ``fields=("velocity", "smoke")``
(smoke density appended as the last channel). Windows are cut per (level, direction) series inside one
split, so they never straddle train / valid / test.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from loaders.layouts import SMOKE, check
from loaders.normalisation import NormaliseMode, Normaliser, field_stats
from loaders.resident import Resident, keep_resident
from loaders.sources import Source, check_kind, resolve_source
from loaders.storage import ChunkReader, open_dataset, open_group
from loaders.windows import WindowIndex, canonical_split, split_ranges

STORE_NAME = "smoke.zarr"
FIELDS = ("velocity", "smoke")


def config_name(level: int) -> str:
    return f"E{int(level)}"


def parse_level(level: int | str | None) -> int | None:
    """A symmetry level as a number: ``5``, ``"5"`` or the Hub config name ``"E5"`` (or ``"E_5"``)."""
    if level is None:
        return None
    if not isinstance(level, (str, bool)):
        try:
            return operator.index(level)  # int or numpy integer, not 5.0
        except TypeError:
            pass
    match = re.fullmatch(r"\s*(?:[Ee]_?)?(\d+)\s*", level) if isinstance(level, str) else None
    if match is None:
        raise ValueError(f"level must be a number or a config name like 'E5', got {level!r}")
    return int(match.group(1))


def _train_blocks(group: Any, name: str, level_index: int, start: int, stop: int) -> Iterator[np.ndarray]:
    arr = group[name]
    for d in range(arr.shape[1]):
        yield np.asarray(arr[level_index, d, start:stop])


def compute_stats(group: Any) -> dict[str, dict[str, Any]]:
    """Train-split statistics per level config: velocity per component (u, v) and smoke density."""
    ranges = split_ranges(group.attrs["splits"])
    start, stop = ranges["train"]
    out = {}
    for li, level in enumerate(np.asarray(group["level"][:]).tolist()):
        out[config_name(level)] = {
            "velocity": field_stats(_train_blocks(group, "velocity", li, start, stop), 1, ["u", "v"]),
            "smoke": field_stats(_train_blocks(group, "smoke", li, start, stop), None, None),
        }
    return out


class SmokePlumeWindows(Dataset):
    """Lazy windows over one level of a smoke-plume store (see the module docstring)."""

    def __init__(
        self,
        source: Source,
        level: int | str | None = None,
        directions: Sequence[int] | None = None,
        input_frames: int | None = None,
        output_frames: int | None = None,
        split: str = "train",
        normalise: NormaliseMode | None = None,
        fields: Sequence[str] = ("velocity",),
        stride: int = 1,
        cache_chunks: int = 4,
        keep_in_memory: bool | None = None,
        stats: dict[str, Any] | None = None,
    ):
        level = parse_level(level)  # bad input fails before any read
        meta = open_dataset(source.zarr_url, cache_dir=source.cache_dir)  # metadata and coordinates only
        check_kind(meta, SMOKE, source.description)
        check(meta, SMOKE, source.description)
        group = open_group(source.zarr_url, check=False, cache_dir=source.cache_dir)  # files checked
        levels = np.asarray(group["level"][:]).tolist()
        all_dirs = np.asarray(group["direction"][:]).tolist()
        level = levels[0] if level is None else level
        if level not in levels:
            raise ValueError(
                f"level {level} is not in this dataset; it has levels {levels} "
                f"(configs {[config_name(lv) for lv in levels]})"
            )
        directions = list(all_dirs if directions is None else directions)
        unknown = sorted(set(directions) - set(all_dirs))
        if unknown or not directions:
            raise ValueError(
                f"directions {unknown or directions} not available; choose from {all_dirs} (degrees)"
            )
        bad_fields = [f for f in fields if f not in FIELDS]
        if bad_fields or not fields or fields[0] != "velocity":
            raise ValueError(
                f"fields must start with 'velocity' and be drawn from {FIELDS}, got {list(fields)}"
            )
        windows = json.loads(group.attrs["windows"])
        self.input_frames = int(input_frames or windows["input_frames"])
        self.output_frames = int(output_frames or windows["output_frames"])
        self.split = canonical_split(split)
        start, stop = split_ranges(group.attrs["splits"])[self.split]
        self.index = WindowIndex(len(directions), start, stop, self.input_frames + self.output_frames, stride)
        if len(self.index) == 0:
            raise ValueError(
                f"split {self.split!r} has {stop - start} frames, fewer than one window of "
                f"{self.input_frames} + {self.output_frames}"
            )
        self.source, self.level, self.directions, self.fields = source, level, directions, tuple(fields)
        self.level_index = levels.index(level)
        self.direction_index = [all_dirs.index(d) for d in directions]
        # a direction is its simulation turned, buoyancy included: equal magnitudes are one simulation
        magnitudes = np.linalg.norm(np.asarray(group["buoyancy"][self.level_index]), axis=-1)
        self.simulations = len({round(float(m), 12) for m in magnitudes[self.direction_index]})
        url, cache_dir = source.zarr_url, source.cache_dir
        self.readers = {name: ChunkReader(url, name, 2, cache_chunks, cache_dir) for name in self.fields}
        # the frames the windows of a series cover (never the split's tail that no window reaches)
        self.span = (self.index.per_series - 1) * self.index.stride + self.index.length
        frame_bytes = 4 * (1 + len(self.fields)) * int(np.prod(group["velocity"].shape[-2:]))
        nbytes = len(directions) * self.span * frame_bytes
        self.resident: Resident[torch.Tensor] = Resident(keep_resident(nbytes, keep_in_memory))
        self.normalisers: dict[str, Normaliser] = {}
        if normalise is not None:
            stats = stats or (source.stats or {}).get("configs", {}).get(config_name(level))
            if stats is None:  # a bare store: compute them the same way the publish stage does
                stats = compute_stats(group)[config_name(level)]
            self.stats = stats
            self.normalisers = {
                "velocity": Normaliser(stats["velocity"], normalise, -3),  # (..., component, y, x)
                "smoke": Normaliser(stats["smoke"], normalise, None),
            }

    def __len__(self) -> int:
        return len(self.index)

    def effective_size(self) -> dict[str, int]:
        """Distinct simulations behind the windows (rotated copies of one simulation count once) and the
        windows with rotated copies counted once (they still overlap in time)."""
        return {"simulations": self.simulations, "windows": self.index.per_series * self.simulations}

    def meta(self, i: int) -> dict[str, int]:
        """Level, direction (degrees) and first time index of window ``i``."""
        series, t0 = self.index[i]
        return {"level": self.level, "direction": self.directions[series], "time_index": t0}

    def _frames(self, series: int, t0: int, t1: int) -> np.ndarray:
        prefix = (self.level_index, self.direction_index[series])
        parts = []
        for name in self.fields:
            block = self.readers[name].read(prefix, t0, t1)
            if name in self.normalisers:
                block = self.normalisers[name](block)
            parts.append(block if block.ndim == 4 else block[:, None])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def _tensor(self, series: int, t0: int, t1: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self._frames(series, t0, t1), dtype=np.float32))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        series, t0 = self.index[i]
        length = self.input_frames + self.output_frames
        if self.resident.enabled:  # the whole series read once; the same elementwise steps, so same bits
            start = self.index.start
            block = self.resident.get(series, lambda: self._tensor(series, start, start + self.span))
            frames = block[t0 - start : t0 - start + length].clone()  # callers may write into a sample
        else:
            frames = self._tensor(series, t0, t0 + length)
        return frames[: self.input_frames], frames[self.input_frames :]

    def denormalise(self, y: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation of a (…, C, H, W) velocity (and smoke) tensor."""
        if not self.normalisers:
            return y
        out = y.clone()
        out[..., :2, :, :] = self.normalisers["velocity"].inverse(y[..., :2, :, :])
        if "smoke" in self.fields:
            out[..., 2, :, :] = self.normalisers["smoke"].inverse(y[..., 2, :, :])
        return out


def smoke_plume(
    source: str | Path,
    level: int | str | None = None,
    directions: Sequence[int] | None = None,
    input_frames: int | None = None,
    output_frames: int | None = None,
    split: str = "train",
    normalise: NormaliseMode | None = None,
    fields: Sequence[str] = ("velocity",),
    revision: str | None = None,
    stride: int = 1,
    cache_chunks: int = 4,
    cache_dir: str | Path | None = None,
    keep_in_memory: bool | None = None,
    stats: dict[str, Any] | None = None,
    store: str | None = None,
) -> SmokePlumeWindows:
    """The smoke-plume windows of one symmetry level from a local store, a local repo folder or a Hub repo.

    ``level`` (a number or the Hub config name, ``5`` or ``"E5"``) defaults to the first level in the data;
    ``directions`` (degrees, subset of 0/90/180/270)
    defaults to all four; window lengths default to the ones the data was published with; ``normalise`` is
    ``None``, ``"standard"`` or ``"scale"`` (see :mod:`loaders.normalisation`), using the published
    train-split statistics. Files of a Hub repo are cached on local disk in ``cache_dir`` (default:
    huggingface_hub's cache), so only the first epoch downloads. ``keep_in_memory`` (default: when the
    split's frames fit :data:`loaders.resident.RESIDENT_BYTES`) keeps each series' frames after its first
    read, so every chunk is decoded once; ``False`` reads each window through an LRU of ``cache_chunks``.
    ``stats`` (a level's ``{"velocity": ..., "smoke": ...}``, as another dataset's ``.stats``) normalises
    with those instead: a held-out store scored with the statistics its model was trained with.
    ``store`` reads another store of a repo (folder or Hub) than the training one, by its path under
    ``zarr/``: ``"smoke_domain/b003.zarr"``, a held-out ladder of the Domain test, normalised with the repo's
    training statistics.
    """
    level = parse_level(level)
    resolved = resolve_source(source, store or STORE_NAME, revision, cache_dir)
    if store is not None and resolved.kind == "store":
        raise ValueError(f"store={store!r} names a store inside a repo, but {source} is a store itself")
    return SmokePlumeWindows(
        resolved,
        level,
        directions,
        input_frames,
        output_frames,
        split,
        normalise,
        fields,
        stride,
        cache_chunks,
        keep_in_memory,
        stats,
    )
