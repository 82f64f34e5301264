"""Samples per second of our smoke loader next to the original study's way of loading, on the same data.

    python benchmarks/loader_throughput.py [--store data/smoke.zarr] [--seconds 20]

* ours: :func:`loaders.smoke_plume` over a local zarr store as the training stage uses it: each series'
  frames are decoded (and their crc32c checked) on first use and kept in memory (loaders/resident.py);
* ours, chunked: the same with ``keep_in_memory=False``: every window reads its chunks through an LRU of a
  few decoded chunks (the path for splits over the memory budget; the default before the memory);
* original: one ``.pt`` file per simulation; every sample ``torch.load``-s the whole file and slices its
  window (as the study's loader did). The ``.pt`` files are written here from the same store, so loading
  them unpickles nothing downloaded (and ``weights_only=True`` refuses arbitrary objects anyway).

* ours without checksums: the same store re-written without the crc32c codec every stored chunk carries
  (loaders/storage.py), to show what corruption detection costs on the read path (with the memory, only
  the first read of each chunk pays it: see the first-epoch line, which opens fresh datasets each time).

* Hub: the same store published (the publish stage's repo folder: sharded zarr) to the loopback Hub stand-in
  (tests/hub_standin.py, a real HTTP server on 127.0.0.1) and read by ``smoke_plume("<repo id>")``: one
  shuffled epoch with an empty disk cache (every shard downloaded once, whole), then one with fresh
  datasets over the filled cache, each timed against an epoch over the local store (``--no-hub`` skips it).

All are read in the same shuffled order through a ``DataLoader`` (batch 8, no workers), in ``--rounds``
interleaved rounds of ``--seconds / --rounds`` each (the best round of each is kept: the machine may be
shared, and the load changes between runs). Without ``--store`` a store of the study's full size (levels
E0, E5, E9; four directions; 50 frames of 2 x 64 x 64) is assembled by the smoke stage's own code from
random fields (no simulation) and written through the storage layer to a temporary folder. Prints the
figures, the memory kept (ours) and the peak traced memory (chunked), the Hub-first-epoch / local and
Hub-second-epoch / local ratios, and finally ``ratio: <ours / original>`` (best rounds; the per-round
ratios are printed too).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from zarr.codecs import ZstdCodec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loaders import smoke_plume  # noqa: E402
from loaders.storage import (  # noqa: E402
    COMPLETE_MARKER,
    file_manifest,
    open_group,
    open_store,
    provenance,
    publish_store,
    to_json,
    write_json_atomic,
)
from loaders.windows import WindowIndex, split_ranges  # noqa: E402

CHUNKS = {"level": 1, "direction": 1, "time": 10}  # the smoke stage's chunking


def synthetic_store(path: Path) -> Path:
    """The smoke stage's layout at full size (levels 0, 5, 9; 50 frames of 64 x 64), random values."""
    from pipelines.params import SmokeParams
    from pipelines.smoke.stage import assemble_levels, plan_jobs

    p = SmokeParams(levels=[0, 5, 9], solver_symmetry_check=False)
    rng = np.random.default_rng(7)
    n, t = p.resolution, p.n_frames
    sims = {
        job.label: xr.Dataset(
            {
                "velocity": (("time", "component", "y", "x"), rng.normal(0.1, 0.5, (t, 2, n, n))),
                "smoke": (("time", "y", "x"), rng.random((t, n, n))),
            }
        )
        for job in plan_jobs(p)
    }
    ds = assemble_levels(p, sims)
    ds.attrs["provenance"] = to_json(provenance(p.model_dump(mode="json")))
    encoding = {
        v: {"chunks": tuple(CHUNKS.get(d, ds.sizes[d]) for d in ds[v].dims)} for v in ("velocity", "smoke")
    }
    publish_store(ds, path, encoding)
    return path


def without_checksums(store: Path, path: Path) -> Path:
    """``store`` re-written with zstd only (no crc32c), plus a completion marker: the baseline."""
    ds = open_store(store).load()
    encoding = {name: {"compressors": (ZstdCodec(level=0, checksum=False),)} for name in ds.variables}
    for name in ("velocity", "smoke"):
        encoding[name]["chunks"] = ds[name].encoding["chunks"]
    for var in ds.variables.values():
        var.encoding = {}
    ds.to_zarr(path, mode="w", encoding=encoding, consolidated=True, zarr_format=3)
    write_json_atomic(path / COMPLETE_MARKER, {"files": file_manifest(path)})
    return path


class OriginalStyle(Dataset):
    """One pickled tensor file per simulation; each sample loads the whole file and slices a window."""

    def __init__(self, files: list[Path], start: int, stop: int, n_in: int, n_out: int):
        self.files, self.n_in = files, n_in
        self.index = WindowIndex(len(files), start, stop, n_in + n_out)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        series, t0 = self.index[i]
        frames = torch.load(self.files[series], weights_only=True)[t0 : t0 + self.index.length]
        return frames[: self.n_in], frames[self.n_in :]


def write_pt_files(store: Path, folder: Path) -> list[Path]:
    group = open_group(str(store))
    velocity = group["velocity"]
    files = []
    for li in range(velocity.shape[0]):
        for d in range(velocity.shape[1]):
            path = folder / f"sim_{li}_{d}.pt"
            torch.save(torch.from_numpy(np.asarray(velocity[li, d])), path)
            files.append(path)
    return files


def throughput(dataset: Dataset, seconds: float, seed: int = 0) -> tuple[float, int, float, float]:
    """(samples/s, samples read, peak traced MB, samples per CPU second) over shuffled batches for at most
    ``seconds``.

    The rate is timed without tracing; the memory peak comes from a separate traced pass of 200 samples.
    The CPU rate (process time, all threads) is the steadier figure on a loaded, shared machine.
    """
    loader = DataLoader(dataset, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(seed))

    def run(budget: float, limit: int | None = None) -> tuple[int, float, float]:
        n, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < budget and (limit is None or n < limit):
            for x, _ in loader:
                n += x.shape[0]
                if time.perf_counter() - start >= budget or (limit is not None and n >= limit):
                    break
        return n, time.perf_counter() - start, time.process_time() - cpu

    n, elapsed, cpu = run(seconds)
    tracemalloc.start()
    run(seconds, limit=200)
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return n / elapsed, n, peak, n / max(cpu, 1e-9)


def epoch_seconds(make: Callable[[], Dataset], seed: int = 0) -> float:
    """Wall time to build the dataset and read one whole shuffled epoch (batch 8, no workers)."""
    start = time.perf_counter()
    loader = DataLoader(make(), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(seed))
    for _ in loader:
        pass
    return time.perf_counter() - start


def hub_epochs(store: Path, tmp: Path, levels: list[int], kw: dict) -> tuple[float, float, float, int]:
    """(local epoch s, Hub first epoch s, Hub second epoch s, requests) through the loopback Hub stand-in."""
    from tests.hub_standin import HubStandIn

    repo = "bench/smoke-plume"
    with HubStandIn() as hub:
        # huggingface_hub reads the endpoint when it is first imported, which happens below
        os.environ.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_TOKEN="hf_bench",
                          HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HOME=str(tmp / "hf_home"))  # fmt: skip
        from huggingface_hub import HfApi

        from pipelines.params import PublishParams
        from pipelines.publish.stage import publish

        params = PublishParams(repos={"smoke": repo, "turbulence": "bench/t"}, datasets=["smoke"])
        publish(params, {"smoke": store}, tmp / "hub")
        api = HfApi()
        api.create_repo(repo, repo_type="dataset")
        api.upload_folder(repo_id=repo, folder_path=str(tmp / "hub" / "smoke-plume"), repo_type="dataset")
        cache = tmp / "loader_cache"

        def windows(source: str | Path) -> Callable[[], Dataset]:
            return lambda: ConcatDataset(
                [smoke_plume(source, level=lv, cache_dir=cache, **kw) for lv in levels]
            )

        local = min(epoch_seconds(windows(store)) for _ in range(2))
        before = len(hub.requests)
        first = epoch_seconds(windows(repo))
        second = min(epoch_seconds(windows(repo)) for _ in range(2))  # fresh datasets: disk cache only
        return local, first, second, len(hub.requests) - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", type=Path, default=None, help="smoke store (default: a synthetic full-size one)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="time budget per loader")
    parser.add_argument("--split", default="train")
    parser.add_argument("--no-hub", action="store_true", help="skip the loopback-Hub epochs")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of every loader (best kept)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or synthetic_store(Path(tmp) / "smoke.zarr")
        plain = without_checksums(store, Path(tmp) / "plain.zarr")
        group = open_group(str(store))
        levels = [int(v) for v in group["level"][:]]
        start, stop = split_ranges(group.attrs["splits"])[
            args.split if args.split != "validation" else "valid"
        ]
        n_in, n_out = 1, 6 if stop - start >= 7 else 1

        def windows(path: Path, **kw: Any) -> ConcatDataset:
            kw.update(split=args.split, input_frames=n_in, output_frames=n_out)
            return ConcatDataset([smoke_plume(path, level=lv, **kw) for lv in levels])

        ours, ours_plain, chunked = windows(store), windows(plain), windows(store, keep_in_memory=False)
        original = OriginalStyle(write_pt_files(store, Path(tmp)), start, stop, n_in, n_out)
        assert len(ours) == len(original)
        x_a, y_a = ours[len(ours) - 1]
        x_b, y_b = original[len(original) - 1]
        assert torch.equal(x_a, x_b) and torch.equal(y_a, y_b), "the two loaders disagree"
        chunk_mb = np.prod(group["velocity"].chunks) * 4 / 1e6
        print(
            f"data: {store if args.store else 'synthetic full-size store'}; {len(ours)} windows of "
            f"{n_in} + {n_out} frames; zarr chunk {group['velocity'].chunks} = {chunk_mb:.2f} MB"
        )
        for i in (0, 3, len(ours) - 1):
            for other in (ours_plain, chunked):
                assert all(torch.equal(a, b) for a, b in zip(ours[i], other[i], strict=True))
        contenders = {"ours": ours, "plain": ours_plain, "chunked": chunked, "original": original}
        runs: dict[str, list[tuple[float, int, float, float]]] = {name: [] for name in contenders}
        budget = args.seconds / max(args.rounds, 1)
        for _ in range(max(args.rounds, 1)):
            for name, dataset in contenders.items():
                runs[name].append(throughput(dataset, budget))
        best = {name: max(r) for name, r in runs.items()}
        cpu = {name: max(x[3] for x in r) for name, r in runs.items()}
        round_ratios = [a[0] / b[0] for a, b in zip(runs["ours"], runs["original"], strict=True)]
        resident_mb = sum(d.resident.nbytes for d in ours.datasets) / 1e6
        first_epoch = len(ours) / min(epoch_seconds(lambda: windows(store)) for _ in range(2))
        sim_mb = original.files[0].stat().st_size / 1e6
        if not args.no_hub:
            kw = {"split": args.split, "input_frames": n_in, "output_frames": n_out}
            local_s, first_s, second_s, requests = hub_epochs(store, Path(tmp), levels, kw)
    (ours_rate, ours_n, _, _), (plain_rate, plain_n, _, _) = best["ours"], best["plain"]
    (chunked_rate, chunked_n, chunked_mb, _), (orig_rate, orig_n, _, _) = best["chunked"], best["original"]
    # tracemalloc sees numpy buffers but not torch's C++ allocations, so the original's peak is its file size
    print(
        f"ours (zarr, decoded once, kept): {ours_rate:9.1f} samples/s  ({ours_n} samples; "
        f"{resident_mb:.1f} MB of decoded frames kept in memory)"
    )
    print(
        f"ours without crc32c checksums:   {plain_rate:9.1f} samples/s  ({plain_n} samples; "
        f"checksum read overhead {100 * (plain_rate / ours_rate - 1):+.1f}% wall time per sample)"
    )
    print(
        f"per CPU second: with crc32c {cpu['ours']:.1f}, without {cpu['plain']:.1f} samples "
        f"(checksum overhead {100 * (cpu['plain'] / cpu['ours'] - 1):+.1f}% CPU time per sample)"
    )
    print(
        f"ours, chunked (no memory):       {chunked_rate:9.1f} samples/s  ({chunked_n} samples; "
        f"peak traced {chunked_mb:.1f} MB, cache <= 4 chunks of {chunk_mb:.2f} MB per array)"
    )
    print(
        f"ours, first epoch of fresh datasets (open, decode and check every chunk): {first_epoch:.1f} "
        f"samples/s ({first_epoch / orig_rate:.2f}x the original)"
    )
    print(
        f"original (torch.load per item): {orig_rate:9.1f} samples/s  ({orig_n} samples; "
        f"loads a whole {sim_mb:.2f} MB simulation per sample)"
    )
    if not args.no_hub:
        print(
            f"epoch over the Hub stand-in (loopback, disk cache): first {first_s:.2f} s, "
            f"second {second_s:.2f} s; local store {local_s:.2f} s; {requests} HTTP requests"
        )
        print(f"hub first epoch / local: {first_s / local_s:.2f}  (target <= 5)")
        print(f"hub second epoch / local: {second_s / local_s:.2f}  (target <= 1.5)")
    print(
        f"per CPU second (steadier on a shared machine): ours {cpu['ours']:.1f}, "
        f"chunked {cpu['chunked']:.1f}, original {cpu['original']:.1f} samples "
        f"(ours / original {cpu['ours'] / cpu['original']:.2f})"
    )
    print(f"ours / original per round: {', '.join(f'{r:.2f}' for r in round_ratios)}")
    print(f"ratio: {ours_rate / orig_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
