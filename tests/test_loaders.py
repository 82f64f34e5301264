"""Loaders: window arithmetic, lazy chunk-aware reads, normalisation, DataLoader workers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader

from loaders import smoke_plume, turbulence_sr
from loaders.normalisation import Normaliser, field_stats
from loaders.sources import ChunkReader
from loaders.storage import COMPLETE_MARKER, StoreError
from loaders.windows import WindowIndex, split_ranges


def test_window_index_covers_every_window_once():
    idx = WindowIndex(series=3, start=4, stop=11, length=3, stride=2)
    got = [idx[i] for i in range(len(idx))]
    assert got == [(s, t) for s in range(3) for t in (4, 6, 8)]
    assert idx[-1] == (2, 8) and all(t + 3 <= 11 for _, t in got)
    assert len(WindowIndex(2, 0, 2, 3)) == 0
    with pytest.raises(IndexError):
        idx[len(idx)]
    assert split_ranges('{"test": {"time_index": [9, 12]}, "train": {"time_index": [0, 6]}}') == {
        "train": (0, 6),
        "test": (9, 12),
    }


def test_field_stats_match_numpy_and_normaliser_inverts():
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(n, 2, 5, 5)) for n in (3, 1, 4)]
    stats = field_stats(blocks, 1, ["u", "v"])
    allx = np.concatenate(blocks)
    np.testing.assert_allclose(stats["mean"], allx.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(stats["std"], allx.std(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(stats["rms"], np.sqrt((allx**2).sum(axis=1).mean()), rtol=1e-12)
    for mode in ("standard", "scale"):
        norm = Normaliser(stats, mode, -3)
        x = allx.astype(np.float32)
        np.testing.assert_allclose(norm.inverse(torch.from_numpy(norm(x))).numpy(), x, rtol=1e-5, atol=1e-6)
    # "scale" is one scalar: it commutes with the quarter turn (u, v) -> (-v, u) of a vector field
    scale = Normaliser(stats, "scale", -3)
    x = allx[:1].astype(np.float32)
    turn = lambda a: np.stack([-np.rot90(a[:, 1], axes=(-2, -1)), np.rot90(a[:, 0], axes=(-2, -1))], 1)  # noqa: E731
    np.testing.assert_allclose(scale(turn(x)), turn(scale(x)), rtol=1e-6)


def test_smoke_windows_equal_store_slices(smoke_store: Path):
    ds = xr.open_zarr(smoke_store)
    train = smoke_plume(smoke_store, level=3, split="train")
    assert len(train) == 4 * (6 - 3 + 1)  # 4 directions x windows of 1 + 2 in 6 frames
    for i in range(len(train)):
        x, y = train[i]
        m = train.meta(i)
        d = [0, 90, 180, 270].index(m["direction"])
        frames = ds.velocity.values[1, d, m["time_index"] : m["time_index"] + 3]
        assert x.dtype == torch.float32 and x.shape == (1, 2, 16, 16) and y.shape == (2, 2, 16, 16)
        assert np.array_equal(x.numpy(), frames[:1]) and np.array_equal(y.numpy(), frames[1:])
        assert m["time_index"] + 3 <= 6  # never reaches into the validation frames

    sub = smoke_plume(
        smoke_store,
        level=0,
        directions=[180],
        split="test",
        input_frames=2,
        output_frames=1,
        fields=("velocity", "smoke"),
    )
    x, y = sub[0]
    assert len(sub) == 1 and x.shape == (2, 3, 16, 16)
    assert np.array_equal(x[:, 2].numpy(), ds.smoke.values[0, 2, 9:11])
    with pytest.raises(ValueError, match="directions"):
        smoke_plume(smoke_store, directions=[45])
    with pytest.raises(ValueError, match="level 7"):
        smoke_plume(smoke_store, level=7)


def test_smoke_normalisation_uses_train_statistics(smoke_store: Path):
    raw = smoke_plume(smoke_store, level=0, split="valid")
    norm = smoke_plume(smoke_store, level=0, split="valid", normalise="standard")
    train = xr.open_zarr(smoke_store).velocity.values[0, :, :6].astype(np.float64)
    mean, std = train.mean(axis=(0, 1, 3, 4)), train.std(axis=(0, 1, 3, 4))
    x_raw, _ = raw[2]
    x_norm, y_norm = norm[2]
    want = (x_raw.numpy() - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(x_norm.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.denormalise(y_norm).numpy(), raw[2][1].numpy(), rtol=1e-5, atol=1e-6)


def test_dataloader_workers_give_the_same_batches(smoke_store: Path):
    ds = smoke_plume(smoke_store, level=3, split="train", cache_chunks=1)
    serial = [torch.cat([x.flatten(1), y.flatten(1)], 1) for x, y in DataLoader(ds, batch_size=5)]
    parallel = DataLoader(ds, batch_size=5, num_workers=2, multiprocessing_context="fork")
    assert all(
        torch.equal(a, torch.cat([x.flatten(1), y.flatten(1)], 1))
        for a, (x, y) in zip(serial, parallel, strict=True)
    )


def test_chunk_reader_cache_is_bounded(smoke_store: Path):
    reader = ChunkReader(str(smoke_store), "velocity", 2, cache_chunks=2)
    ds = xr.open_zarr(smoke_store)
    for t0 in range(0, 10):
        assert np.array_equal(reader.read((1, 2), t0, t0 + 3), ds.velocity.values[1, 2, t0 : t0 + 3])
        assert len(reader._cache) <= 2


def test_incomplete_store_is_refused(smoke_store: Path, tmp_path: Path):
    broken = tmp_path / "broken.zarr"
    shutil.copytree(smoke_store, broken)
    (broken / COMPLETE_MARKER).unlink()
    with pytest.raises(StoreError, match="incomplete"):
        smoke_plume(broken)
    with pytest.raises(FileNotFoundError, match="not a local path"):
        smoke_plume(tmp_path / "missing" / "store.zarr")


def test_turbulence_samples(turbulence_store: Path):
    ds = xr.open_zarr(turbulence_store)
    train = turbulence_sr(turbulence_store, split="train")
    assert len(train) == 3
    lrs, hr = train[1]
    assert lrs.shape == (3, 3, 2, 2, 2) and hr.shape == (3, 8, 8, 8)
    assert np.array_equal(lrs.numpy(), ds.lr.values[3:6]) and np.array_equal(hr.numpy(), ds.hr.values[4])
    scaled = turbulence_sr(turbulence_store, split="validation", normalise="scale")
    rms = np.sqrt((ds.hr.values[[1, 4, 7]].astype(np.float64) ** 2).sum(axis=1).mean())
    np.testing.assert_allclose(scaled[0][1].numpy(), ds.hr.values[10] / rms, rtol=1e-5)
