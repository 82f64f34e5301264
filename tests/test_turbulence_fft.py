"""The turbulence solver's FFT backend (pyFFTW by default, scipy.fft the fallback) leaves its output alone."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.turbulence.solver import SolverConfig, SpectralSolver, fft_backend, initial_condition


def run(fft: str, n: int = 16, steps: int = 6) -> SpectralSolver:
    uh0 = initial_condition(n, 0.02, 0.1, 0.5, seed=3, workers=1)
    solver = SpectralSolver(SolverConfig(n, 0.02, 0.02, 0.1, 2.0, workers=2, fft=fft), uh0)
    for _ in range(steps):
        solver.step()
    return solver


def test_pyfftw_steps_match_scipy_fft_to_round_off() -> None:
    pytest.importorskip("pyfftw")
    ours, ref = run("pyfftw"), run("scipy")
    assert ours.fft is not ref.fft and ref.fft.__name__ == "scipy.fft"
    scale = float(np.max(np.abs(ref.uh)))
    assert scale > 1e-3 and ours.steps == ref.steps == 6
    assert float(np.max(np.abs(ours.uh - ref.uh))) <= 1e-12 * scale
    assert abs(ours.energy() - ref.energy()) <= 1e-12 * ref.energy()
    assert np.allclose(ours.velocity(), ref.velocity(), rtol=0, atol=1e-12 * scale)
    assert not np.allclose(ref.uh, run("scipy", steps=5).uh)  # six steps are not five: the check can fail


def test_auto_prefers_pyfftw_and_names_are_checked() -> None:
    pyfftw = pytest.importorskip("pyfftw.interfaces.scipy_fft")
    assert fft_backend("auto") is pyfftw
    assert fft_backend("scipy").__name__ == "scipy.fft"
    with pytest.raises(ValueError, match="unknown FFT backend 'fftw3'"):
        fft_backend("fftw3")
