"""Turbulence solver cost: seconds per RK2 step against the FFT-only time, scipy.fft against pyFFTW.

    python benchmarks/turbulence_solver.py [--sizes 64 128] [--threads 2]

For each grid size and FFT backend (``pipelines.turbulence.solver.fft_backend``: ``scipy`` is
``scipy.fft``, ``pyfftw`` is ``pyfftw.interfaces.scipy_fft`` with its plan cache) it times

* one solver step (:meth:`SpectralSolver.step`, Heun / RK2: two right-hand sides) on the default
  synthetic-source physics, after one warm-up step (plans made), median of ``--repeats`` steps;
* the FFTs alone that one step needs: twice an ``irfftn`` of 6 fields (velocity, vorticity) and an
  ``rfftn`` of 3 (the nonlinear term), on arrays of the same shapes, median as well.

The rest of a step (products, projection, forcing, dealiasing) is the difference. Both backends get
``--threads`` FFT threads. The last line is ``ratio: <scipy s/step / chosen s/step>`` (the mean over the
sizes), where "chosen" is the backend the solver uses by default (``auto``: pyFFTW when it is installed,
else scipy.fft). On a shared machine the figures move with the load: rerun before trusting small gaps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.params import TurbulenceParams  # noqa: E402
from pipelines.turbulence.solver import (  # noqa: E402
    SolverConfig,
    SpectralSolver,
    fft_backend,
    initial_condition,
)


def median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(n: int, backend: str, threads: int, repeats: int) -> tuple[float, float]:
    s = TurbulenceParams().synthetic
    config = SolverConfig(n, s.viscosity, s.dt, s.forcing_power, s.forcing_wavenumber, threads, backend)
    uh0 = initial_condition(n, s.viscosity, s.forcing_power, s.initial_energy, s.seed, threads)
    solver = SpectralSolver(config, uh0)
    solver.step()  # warm-up: plans, caches
    step = median_seconds(solver.step, repeats)

    fft = fft_backend(backend)
    axes, shape = (-3, -2, -1), (n, n, n)
    spectral = np.repeat(solver.uh, 2, axis=0)  # (6, n, n, n//2+1) complex, like velocity + vorticity
    physical = np.ascontiguousarray(solver.velocity())

    def ffts() -> None:
        for _ in range(2):  # two right-hand sides per RK2 step
            fft.irfftn(spectral, s=shape, axes=axes, norm="forward", workers=threads)
            fft.rfftn(physical, axes=axes, norm="forward", workers=threads)

    ffts()
    return step, median_seconds(ffts, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    chosen = fft_backend("auto").__name__
    backends = ["scipy", "pyfftw"] if fft_backend("auto") is not fft_backend("scipy") else ["scipy"]
    print(f"RK2 step of the synthetic turbulence solver, float64, {args.threads} FFT threads, 2 shared CPU "
          f"cores; median of {args.repeats}; solver default FFT: {chosen}")  # fmt: skip
    per_step: dict[tuple[int, str], float] = {}
    for n in args.sizes:
        for backend in backends:
            step, ffts = measure(n, backend, args.threads, args.repeats)
            per_step[n, backend] = step
            print(f"{n:4d}^3 {backend:7s}: {step:8.4f} s/step   FFTs only {ffts:8.4f} s ({ffts / step:5.1%})")
        if len(backends) > 1:
            print(f"{n:4d}^3 scipy / pyfftw: {per_step[n, 'scipy'] / per_step[n, 'pyfftw']:.2f}")
    default = "pyfftw" if "pyfftw" in backends else "scipy"
    ratios = [per_step[n, "scipy"] / per_step[n, default] for n in args.sizes]
    print(f"ratio: {statistics.fmean(ratios):.2f}")


if __name__ == "__main__":
    main()
