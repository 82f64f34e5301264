"""Downsampling benchmark: naive whole-array numpy against the turbulence stage's dask path.

    python benchmarks/turbulence_downsample.py [--size 512] [--hr 64] [--lr-factor 4]

Both paths turn the same synthetic ``(3, size, size, size)`` float32 velocity field, stored as zarr on
disk chunked and encoded like the stage's source pieces, into the hr target (block mean to ``hr^3``)
and the lr input (block mean of hr by ``lr-factor``), and write both to zarr:

* naive: read the whole array into memory, then ``reshape(...).mean(...)`` over 6-D views;
* ours: :func:`pipelines.turbulence.downsample.block_mean_dask` over the stored chunks, written through xarray
  under :func:`pipelines.turbulence.downsample_scheduler` with the default compute params, as the stage
  does (local threads; a dask cluster only when ``compute.scheduler_address`` is set).

Each path runs in a fresh subprocess. Throughput is input MB per second of wall time for read + filter +
write. Memory is sampled every 10 ms as the summed RSS of the process and its children; "working"
memory is that peak minus the same sum just before the work starts (interpreter and libraries), which is
what grows with the field. The last line is ``ratio: <throughput ours / naive>   memory_ratio: <naive
peak / ours>``, the memory ratio on absolute peaks; working-memory figures are printed above it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class MemorySampler:
    """Peak of the summed RSS of this process and its children, sampled in a background thread."""

    def __init__(self, interval: float = 0.01):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.baseline = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        import psutil

        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval)

    def __enter__(self) -> MemorySampler:
        self.baseline = self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def make_field(path: Path, size: int, hr: int) -> tuple[int, ...]:
    """A reproducible random float32 field written slab by slab (never whole in memory), chunked and
    encoded like the stage's source pieces."""
    import zarr

    from pipelines.turbulence.stage import piece_encoding

    shape = (3, size, size, size)
    chunks = piece_encoding(shape, size // hr)["chunks"]
    arr = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype="float32", compressors=None)
    slab = chunks[1]
    for c in range(3):
        for z in range(0, size, slab):
            rng = np.random.default_rng([c, z])
            arr[c, z : z + slab] = rng.standard_normal((min(slab, size - z), size, size), dtype=np.float32)
    return chunks


def run_naive(src: Path, out: Path, hr: int, lr_factor: int) -> dict:
    import zarr

    with MemorySampler() as mem:
        start = time.perf_counter()
        field = zarr.open_array(str(src), mode="r")[...]  # the whole field in memory
        f = field.shape[-1] // hr
        hr_field = field.reshape(3, hr, f, hr, f, hr, f).mean(axis=(2, 4, 6))
        m = hr // lr_factor
        lr_field = hr_field.reshape(3, m, lr_factor, m, lr_factor, m, lr_factor).mean(axis=(2, 4, 6))
        group = zarr.open_group(str(out), mode="w")
        group.create_array("hr", data=hr_field.astype(np.float32))
        group.create_array("lr", data=lr_field.astype(np.float32))
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak": mem.peak, "baseline": mem.baseline, "input_bytes": field.nbytes}


def run_dask(src: Path, out: Path, hr: int, lr_factor: int) -> dict:
    import dask.array as da
    import xarray as xr

    from pipelines.params import ComputeParams
    from pipelines.turbulence.downsample import block_mean_dask
    from pipelines.turbulence.stage import downsample_scheduler

    with downsample_scheduler(ComputeParams()), MemorySampler() as mem:
        start = time.perf_counter()
        field = da.from_zarr(str(src))
        hr_field = block_mean_dask(field, field.shape[-1] // hr)
        lr_field = block_mean_dask(hr_field, lr_factor)
        m = hr // lr_factor
        ds = xr.Dataset(
            {
                "hr": (("component", "z", "y", "x"), hr_field.rechunk((3, hr, hr, hr))),  # as the stage does
                "lr": (("component", "z_lr", "y_lr", "x_lr"), lr_field.rechunk((3, m, m, m))),
            }
        )
        ds.to_zarr(str(out), mode="w", zarr_format=3, consolidated=False)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak": mem.peak, "baseline": mem.baseline, "input_bytes": field.nbytes}


def launch(kind: str, src: Path, dst: Path, hr: int, lr_factor: int) -> dict:
    cmd = [sys.executable, __file__, "--run", kind, "--src", str(src), "--dst", str(dst)]
    cmd += ["--hr", str(hr), "--lr-factor", str(lr_factor)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{kind} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def max_difference(a: Path, b: Path) -> float:
    import zarr

    worst = 0.0
    for name in ("hr", "lr"):
        x = zarr.open_array(str(a / name), mode="r")[...]
        y = zarr.open_array(str(b / name), mode="r")[...]
        worst = max(worst, float(np.max(np.abs(x - y))))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="points per axis of the synthetic field")
    parser.add_argument("--hr", type=int, default=64)
    parser.add_argument("--lr-factor", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--run", choices=("naive", "dask"), help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        fn = run_naive if args.run == "naive" else run_dask
        print("RESULT " + json.dumps(fn(Path(args.src), Path(args.dst), args.hr, args.lr_factor)))
        return 0
    if args.size % args.hr or args.hr % args.lr_factor:
        parser.error("size must be a multiple of hr, and hr a multiple of lr-factor")
    work = Path(tempfile.mkdtemp(prefix="turb-bench-", dir=args.workdir))
    try:
        src = work / "field.zarr"
        t0 = time.perf_counter()
        chunks = make_field(src, args.size, args.hr)
        print(
            f"field: 3 x {args.size}^3 float32 = {3 * args.size**3 * 4 / 2**20:.0f} MiB in chunks {chunks}, "
            f"written in {time.perf_counter() - t0:.1f} s; hr {args.hr}^3, lr {args.hr // args.lr_factor}^3"
        )
        naive = launch("naive", src, work / "naive.zarr", args.hr, args.lr_factor)
        ours = launch("dask", src, work / "dask.zarr", args.hr, args.lr_factor)
        diff = max_difference(work / "naive.zarr", work / "dask.zarr")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, r in (("naive numpy", naive), ("stage dask", ours)):
        r["mbps"] = r["input_bytes"] / 2**20 / r["seconds"]
        r["working"] = max(r["peak"] - r["baseline"], 1)
        print(
            f"{name:12s} throughput {r['mbps']:8.1f} MB/s ({r['seconds']:6.2f} s)   peak memory "
            f"{r['peak'] / 2**20:6.0f} MiB ({r['working'] / 2**20:6.0f} MiB above the idle process)"
        )
    print(f"max |naive - dask| = {diff:.2e}; working-memory ratio (naive / ours) = "
          f"{naive['working'] / ours['working']:.2f}")  # fmt: skip
    print(f"ratio: {ours['mbps'] / naive['mbps']:.2f}   memory_ratio: {naive['peak'] / ours['peak']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
