"""Loaders: window arithmetic, lazy chunk-aware reads, normalisation, DataLoader workers; the storage
layer's layouts, checksums and manifests, on stores the real stages wrote (tests/conftest.py)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from loaders import smoke_plume, turbulence_sr
from loaders.layouts import SMOKE, TURBULENCE, LayoutError, check
from loaders.normalisation import Normaliser, field_stats
from loaders.storage import (
    COMPLETE_MARKER,
    ChunkReader,
    StoreError,
    file_manifest,
    open_group,
    open_store,
    publish_store,
    read_provenance,
)
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
    ds = open_store(smoke_store)
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
    train = open_store(smoke_store).velocity.values[0, :, :6].astype(np.float64)
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
    ds = open_store(smoke_store)
    for t0 in range(0, 10):
        assert np.array_equal(reader.read((1, 2), t0, t0 + 3), ds.velocity.values[1, 2, t0 : t0 + 3])
        assert len(reader._cache) <= 2
    # the handle and cache stay on the reader and are dropped on pickling: a worker opens its own
    copy = pickle.loads(pickle.dumps(reader))
    assert reader._array is not None and copy._array is None and not copy._cache
    assert np.array_equal(copy.read((0, 1), 8, 12), ds.velocity.values[0, 1, 8:12])


def test_incomplete_store_is_refused(smoke_store: Path, tmp_path: Path):
    broken = tmp_path / "broken.zarr"
    shutil.copytree(smoke_store, broken)
    (broken / COMPLETE_MARKER).unlink()
    with pytest.raises(StoreError, match="incomplete"):
        smoke_plume(broken)
    with pytest.raises(FileNotFoundError, match="no such local store or repo folder"):
        smoke_plume(tmp_path / "missing" / "store.zarr")


def test_turbulence_samples(turbulence_store: Path):
    ds = open_store(turbulence_store)
    train = turbulence_sr(turbulence_store, split="train")
    assert len(train) == 3
    lrs, hr = train[1]
    assert lrs.shape == (3, 3, 2, 2, 2) and hr.shape == (3, 8, 8, 8)
    assert np.array_equal(lrs.numpy(), ds.lr.values[3:6]) and np.array_equal(hr.numpy(), ds.hr.values[4])
    scaled = turbulence_sr(turbulence_store, split="validation", normalise="scale")
    rms = np.sqrt((ds.hr.values[[1, 4, 7]].astype(np.float64) ** 2).sum(axis=1).mean())
    np.testing.assert_allclose(scaled[0][1].numpy(), ds.hr.values[10] / rms, rtol=1e-5)


# --- layouts ---------------------------------------------------------------------------------------------
def test_stores_the_stages_write_match_their_layouts(smoke_store: Path, turbulence_store: Path):
    check(smoke_store, SMOKE)
    check(turbulence_store, TURBULENCE)
    check(open_store(smoke_store), SMOKE)
    with pytest.raises(LayoutError, match="variable 'hr'"):
        check(smoke_store, TURBULENCE)


def test_check_rejects_drifted_stores(smoke_store: Path, turbulence_store: Path, tmp_path: Path):
    ds = open_store(smoke_store, dask=False)
    with pytest.raises(
        LayoutError, match=r"variable 'smoke'\('level', 'direction', 'time', 'y', 'x'\) is missing"
    ):
        check(ds.drop_vars("smoke"), SMOKE)
    with pytest.raises(LayoutError, match=r"'velocity' has dims \('level', 'time', 'direction'"):
        check(ds.transpose("level", "time", "direction", ...), SMOKE)
    no_windows = ds.copy()
    del no_windows.attrs["windows"]
    with pytest.raises(LayoutError, match="attribute 'windows' is missing"):
        check(no_windows, SMOKE)
    turb = open_store(turbulence_store, dask=False)
    del turb.attrs["source_description"]
    with pytest.raises(LayoutError, match="attribute 'source_description' is missing"):
        check(turb, TURBULENCE)
    # the loader checks the layout when it opens a store, before any sample is read
    publish_store(no_windows.load(), tmp_path / "no_windows.zarr")
    with pytest.raises(LayoutError, match="'windows' is missing"):
        smoke_plume(tmp_path / "no_windows.zarr")


# --- corruption ------------------------------------------------------------------------------------------
def test_every_stored_array_carries_a_crc32c_checksum(smoke_store: Path, turbulence_store: Path):
    for store in (smoke_store, turbulence_store):
        group = open_group(store)
        for name, array in group.arrays():
            codecs = [c["name"] for c in array.metadata.to_dict()["codecs"]]
            assert codecs[-1] == "crc32c", (store.name, name, codecs)


def _copy(store: Path, tmp_path: Path) -> Path:
    out = tmp_path / store.name
    shutil.copytree(store, out)
    return out


# level index 1 (E_3), direction index 2 (180 degrees), time chunk 0 (frames 0..9), whole frames
CHUNK = "velocity/c/1/2/0/0/0/0"


def test_flipped_bytes_in_a_chunk_raise_where_data_is_read(smoke_store: Path, tmp_path: Path):
    store = _copy(smoke_store, tmp_path)
    # opened (its sha256 manifest checked) before the damage: the chunk's crc32c catches it on read
    train = smoke_plume(store, level=3, split="train")
    data = bytearray((store / CHUNK).read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = bytes(
        b ^ 0xFF for b in data[len(data) // 2 : len(data) // 2 + 8]
    )
    (store / CHUNK).write_bytes(bytes(data))
    good = smoke_plume(smoke_store, level=3, split="train")
    assert torch.equal(train[0][0], good[0][0])  # direction 0 is intact and reads the same
    series_180 = [i for i in range(len(train)) if train.meta(i)["direction"] == 180]
    with pytest.raises(StoreError, match=f"{store}.*chunk {CHUNK} of array 'velocity'.*corrupt"):
        train[series_180[0]]
    # a training loop over the loader stops with that error instead of finishing on garbage
    with pytest.raises(StoreError, match=CHUNK):
        for _ in DataLoader(smoke_plume(store, level=3, split="train"), batch_size=4):
            pass


def test_missing_chunk_is_refused_on_open(smoke_store: Path, tmp_path: Path):
    store = _copy(smoke_store, tmp_path)
    (store / CHUNK).unlink()  # zarr alone would fill the gap with NaN
    for opener in (smoke_plume, open_store, open_group):
        with pytest.raises(StoreError, match=f"missing, e.g. \\['{CHUNK}'\\]"):
            opener(store)


def test_swapped_chunk_passes_crc_but_not_verification_or_publish(smoke_store: Path, tmp_path: Path):
    from pipelines.params import PublishParams
    from pipelines.publish.stage import publish

    store = _copy(smoke_store, tmp_path)
    shutil.copyfile(store / "velocity/c/1/1/0/0/0/0", store / CHUNK)  # direction 90's frames, valid chunk
    swapped = open_store(store, verify=False).velocity.values
    assert np.array_equal(swapped[1, 2, :10], swapped[1, 1, :10])  # reads "fine": crc32c cannot see it
    with pytest.raises(StoreError, match=f"differ from the manifest, e.g. \\['{CHUNK}'\\]"):
        open_store(store, verify=True)
    params = PublishParams(
        repos={"smoke": "tester/smoke-plume", "turbulence": "tester/t"}, datasets=["smoke"]
    )
    with pytest.raises(StoreError, match=CHUNK):
        publish(params, {"smoke": store}, tmp_path / "hub")
    assert not (tmp_path / "hub" / "smoke-plume").exists()


# --- content-only metadata -------------------------------------------------------------------------------
def test_provenance_is_content_only_and_run_facts_go_to_metrics(smoke_store: Path):
    prov = read_provenance(open_store(smoke_store))
    assert set(prov) == {"params", "versions", "metrics"}
    assert {"sim_steps_per_second", "wall_seconds", "run"}.isdisjoint(prov["metrics"])
    assert prov["metrics"]["orbit_distance"]["E0"] == 0.0  # a function of the data: kept
    metrics = json.loads((smoke_store.parent / "smoke.json").read_text())
    assert metrics["sim_steps_per_second"] > 0 and metrics["run"]["created_utc"] and metrics["run"]["host"]
    assert "-dirty" not in json.dumps(prov) and set(
        json.loads((smoke_store / COMPLETE_MARKER).read_text())
    ) == {"files"}


def _same_bytes(first: Path, second: Path) -> None:
    files = file_manifest(first, skip=())  # every file: zarr.json, _COMPLETE.json and the chunks
    assert files == file_manifest(second, skip=()), first.name
    assert {"zarr.json", COMPLETE_MARKER} <= set(files) and len(files) > 20


def test_building_the_same_smoke_store_twice_gives_identical_bytes(smoke_store: Path, tmp_path: Path):
    from tests.conftest import build_smoke_store

    _same_bytes(smoke_store, build_smoke_store(tmp_path))


def test_building_the_same_turbulence_store_twice_gives_identical_bytes(
    turbulence_store: Path, tmp_path: Path
):
    from tests.conftest import build_turbulence_store

    _same_bytes(turbulence_store, build_turbulence_store(tmp_path))


# --- sources: local paths, level names, dataset kinds, shard-sized reads --------------------------------
@pytest.mark.parametrize("path", ["data/nope.zarr", "./nope", "/abs/nope", "~/nope", "a/b/c", "nope.zarr"])
def test_local_looking_paths_fail_at_once_without_the_hub(path: str):
    from loaders.sources import looks_local

    assert looks_local(path)
    with pytest.raises(FileNotFoundError, match="never looked up on the Hub"):
        smoke_plume(path)
    assert not looks_local("symflow/smoke-plume-c4") and not looks_local("hf://datasets/a/b@main")


def test_level_accepts_the_hub_config_name(smoke_store: Path):
    by_name, by_number = smoke_plume(smoke_store, level="E3"), smoke_plume(smoke_store, level=3)
    assert by_name.level == 3 and torch.equal(by_name[5][1], by_number[5][1])
    with pytest.raises(ValueError, match=r"level 7 is not in this dataset; it has levels \[0, 3\]"):
        smoke_plume(smoke_store, level="E7")
    with pytest.raises(ValueError, match="config name like 'E5', got 'five'"):
        smoke_plume(smoke_store, level="five")


def test_wrong_dataset_kind_is_named(smoke_store: Path, turbulence_store: Path):
    with pytest.raises(LayoutError, match=r"holds a turbulence dataset .*not a smoke dataset.*turbulence_sr"):
        smoke_plume(turbulence_store)
    with pytest.raises(LayoutError, match=r"holds a smoke dataset .*not a turbulence dataset.*smoke_plume"):
        turbulence_sr(smoke_store)


def test_sharded_arrays_are_read_a_shard_at_a_time(tmp_path: Path):
    import zarr

    from loaders.cache import read_unit

    arr = zarr.create_array(
        tmp_path / "a.zarr", shape=(2, 40, 3, 8), chunks=(1, 1, 3, 8), shards=(1, 20, 3, 8), dtype="float32"
    )
    arr[:] = np.arange(arr.size, dtype=np.float32).reshape(arr.shape)
    assert read_unit(arr, 1) == 20 and read_unit(arr, 1, max_bytes=8 * 96) == 8  # 96 bytes a frame
    reader = ChunkReader(str(tmp_path / "a.zarr"), "", 1, cache_chunks=2)
    reader._array = arr
    assert np.array_equal(reader.read((1,), 17, 23), arr[1, 17:23])
    assert sorted(reader._cache) == [((1,), 0), ((1,), 1)]  # two blocks of 20 frames, not six of one
