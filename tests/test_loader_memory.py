"""Loaders keep decoded data in memory (loaders/resident.py): each chunk is decoded once, and every sample is
bit for bit what the chunked path and a direct xarray read of the store give (tests/conftest.py stores)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import loaders.resident
from loaders import smoke_plume, turbulence_sr
from loaders.storage import open_store

DIRECTIONS = [0, 90, 180, 270]


def _expected_smoke(ds: Any, store: Any, i: int) -> np.ndarray:
    """Window ``i`` read straight from the store with xarray, normalised by the dataset's normalisers."""
    m = ds.meta(i)
    level, d, t0 = ds.level_index, DIRECTIONS.index(m["direction"]), m["time_index"]
    length = ds.input_frames + ds.output_frames
    parts = []
    for name in ds.fields:
        block = store[name].values[level, d, t0 : t0 + length]
        if name in ds.normalisers:
            block = ds.normalisers[name](block)
        parts.append(block if block.ndim == 4 else block[:, None])
    return np.concatenate(parts, axis=1).astype(np.float32)


@pytest.mark.parametrize(
    "options",
    [{}, {"fields": ("velocity", "smoke"), "normalise": "scale"}, {"normalise": "standard", "stride": 2}],
)
def test_resident_smoke_windows_equal_the_chunked_path_and_the_store(smoke_store: Path, options: dict):
    store = open_store(smoke_store, dask=False)
    straddles = 0
    for split in ("train", "valid", "test"):
        kept = smoke_plume(smoke_store, level=3, split=split, **options)
        chunked = smoke_plume(smoke_store, level=3, split=split, keep_in_memory=False, **options)
        assert kept.resident.enabled and not chunked.resident.enabled
        for i in reversed(range(len(kept))):  # the last series is read (and kept) first
            x, y = kept[i]
            want = _expected_smoke(kept, store, i)
            assert np.array_equal(torch.cat([x, y]).numpy(), want)  # bitwise (NaN-free data)
            x_old, y_old = chunked[i]
            assert torch.equal(x, x_old) and torch.equal(y, y_old)
            t0 = kept.meta(i)["time_index"]
            straddles += t0 // 10 != (t0 + kept.input_frames + kept.output_frames - 1) // 10
    assert straddles > 0  # the test split's windows cross the 10-frame time chunks


class _CountingArray:
    """A zarr array that counts chunk reads."""

    def __init__(self, array: Any):
        self.array, self.reads = array, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.array, name)

    def __getitem__(self, sel: Any) -> Any:
        self.reads += 1
        return self.array[sel]


def test_each_chunk_is_decoded_once_across_shuffled_epochs(smoke_store: Path):
    ds = smoke_plume(smoke_store, level=0, split="test", fields=("velocity", "smoke"), cache_chunks=1)
    counters = {}
    for name, reader in ds.readers.items():
        counters[name] = reader._array = _CountingArray(reader.array)
    first = [torch.cat(b, 1) for b in DataLoader(ds, batch_size=1, shuffle=False)]
    for seed in (0, 1):
        for _ in DataLoader(ds, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(seed)):
            pass
    # test split: frames 9..11 of 4 series, two time chunks each; a chunk cache of one would re-read them
    assert {name: c.reads for name, c in counters.items()} == {"velocity": 8, "smoke": 8}
    assert ds.resident.nbytes == 4 * 3 * 3 * 16 * 16 * 4  # 4 series x 3 frames x 3 channels, float32
    again = [torch.cat(b, 1) for b in DataLoader(ds, batch_size=1, shuffle=False)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_samples_are_copies_and_pickles_leave_the_memory_behind(smoke_store: Path, turbulence_store: Path):
    for ds in (smoke_plume(smoke_store, split="valid"), turbulence_sr(turbulence_store, split="train")):
        x, y = ds[1]
        want = (x.clone(), y.clone())
        x.add_(1.0), y.mul_(2.0)  # a caller writing into its sample must not alter the kept data
        assert all(torch.equal(a, b) for a, b in zip(ds[1], want, strict=True))
        assert ds.resident.nbytes > 0
        copy = pickle.loads(pickle.dumps(ds))  # a spawned DataLoader worker reads its own
        assert copy.resident.enabled and copy.resident.nbytes == 0
        assert all(torch.equal(a, b) for a, b in zip(copy[1], want, strict=True))


def test_a_split_over_the_memory_budget_streams_through_the_chunk_cache(
    smoke_store: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(loaders.resident, "RESIDENT_BYTES", 1000)
    streamed = smoke_plume(smoke_store, split="train")
    assert not streamed.resident.enabled
    forced = smoke_plume(smoke_store, split="train", keep_in_memory=True)
    assert forced.resident.enabled
    assert all(torch.equal(a, b) for a, b in zip(streamed[5], forced[5], strict=True))
    assert streamed.resident.nbytes == 0 and forced.resident.nbytes > 0


@pytest.mark.parametrize("normalise", [None, "scale"])
def test_resident_turbulence_samples_equal_the_chunked_path_and_the_store(
    turbulence_store: Path, normalise: str | None
):
    store = open_store(turbulence_store, dask=False)
    for split in ("train", "test"):
        kept = turbulence_sr(turbulence_store, split=split, normalise=normalise)
        chunked = turbulence_sr(turbulence_store, split=split, normalise=normalise, keep_in_memory=False)
        assert kept.resident.enabled and not chunked.resident.enabled
        for i in reversed(range(len(kept))):
            t = kept.meta(i)["time_index"]
            lrs, hr = store.lr.values[t - 1 : t + 2], store.hr.values[t]
            if normalise:
                lrs, hr = kept.normalisers["lr"](lrs), kept.normalisers["hr"](hr)
            for _ in range(2):  # the read that fills the memory and the one served from it
                got = kept[i]
                assert np.array_equal(got[0].numpy(), lrs) and np.array_equal(got[1].numpy(), hr)
                assert all(torch.equal(a, b) for a, b in zip(got, chunked[i], strict=True))
