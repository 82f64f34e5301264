"""The solver's sub-grid model (``synthetic.subgrid: spectral``): it only removes energy, is silent where
there is nothing at the cut-off, keeps the cube symmetry, and is what holds a coarse low-viscosity
solve near k^-5/3 instead of piling energy up at the cut-off."""

from __future__ import annotations

import numpy as np
import pytest

from models.groups import octahedral, rotate_vector
from pipelines.turbulence.solver import (
    KOLMOGOROV_CONSTANT,
    SolverConfig,
    SpectralSolver,
    initial_condition,
    slope_coefficient,
)
from pipelines.turbulence.spectra import energy_spectrum, fit_slope, to_fourier, wavenumbers


def solver(uh: np.ndarray, subgrid: str, n: int, nu: float = 1e-3, dt: float = 0.02, power: float = 0.1,
           precision: str = "float64") -> SpectralSolver:  # fmt: skip
    return SpectralSolver(SolverConfig(n, nu, dt, power, 2.0, subgrid=subgrid, precision=precision), uh)


def test_eddy_viscosity_only_drains_energy_and_the_budget_counts_it() -> None:
    uh = initial_condition(16, 1e-3, 0.1, 0.5, seed=6)
    dt = 0.01
    plain, les = solver(uh, "none", 16, dt=dt, power=0.0), solver(uh, "spectral", 16, dt=dt, power=0.0)
    e0, budget = les.energy(), 0.0
    assert les.subgrid_dissipation() > 0.5 * les.dissipation() > 0  # the eddy part dominates at nu = 1e-3
    for _ in range(20):  # free decay
        before = les.dissipation()
        plain.step()
        les.step()
        budget += 0.5 * (before + les.dissipation())
        assert les.subgrid_dissipation() > 0
    assert les.energy() < plain.energy() - 0.02 * e0  # faster decay than molecular viscosity alone
    # dE/dt = -(molecular + sub-grid dissipation): what the model removes is what dissipation() reports
    de, expected = les.energy() - e0, -dt * budget
    assert abs(de - expected) < 0.02 * abs(expected), (de, expected)


def test_eddy_viscosity_vanishes_without_energy_at_the_cutoff() -> None:
    # a shear wave u_x = sin(2 y): an exact solution (no nonlinear transfer) that never reaches k_c
    n, nu, dt = 16, 1e-3, 0.05
    y = np.arange(n) * 2 * np.pi / n
    u = np.zeros((3, n, n, n))
    u[0] = np.sin(2 * y)[None, :, None]
    plain, les = (solver(to_fourier(u), model, n, nu, dt, 0.0) for model in ("none", "spectral"))
    e0 = les.energy()
    for _ in range(20):
        plain.step()
        les.step()
    assert les.eddy_amplitude(les.uh) == 0.0 and les.subgrid_dissipation() == 0.0
    np.testing.assert_array_equal(les.uh, plain.uh)
    assert les.energy() == pytest.approx(e0 * np.exp(-2 * nu * 4 * 20 * dt), rel=1e-12)


def test_les_commutes_with_cube_rotations() -> None:
    u0 = solver(initial_condition(16, 1e-3, 0.1, 0.5, seed=5), "none", 16).velocity()
    reference = solver(to_fourier(u0), "spectral", 16)
    for _ in range(3):
        reference.step()
    assert reference.subgrid_dissipation() > 0
    for R in octahedral().matrices[[1, 7, 13, 22]]:
        s = solver(to_fourier(rotate_vector(u0, R, component_axis=0)), "spectral", 16)
        for _ in range(3):
            s.step()
        np.testing.assert_allclose(s.velocity(), rotate_vector(reference.velocity(), R, 0), atol=1e-11)


def test_eddy_viscosity_drains_the_kolmogorov_flux_from_a_kolmogorov_spectrum() -> None:
    # the model's calibration: on E(k) = C_K eps^(2/3) k^(-5/3) up to k_c it removes about eps
    n, eps = 48, 0.1
    rng = np.random.default_rng(0)
    uh = to_fourier(rng.standard_normal((3, n, n, n)))
    kz, ky, kx = wavenumbers((n, n, n))
    k2 = kz**2 + ky**2 + kx**2
    div = (kx * uh[0] + ky * uh[1] + kz * uh[2]) / np.where(k2 > 0, k2, 1.0)
    uh = np.stack([uh[0] - kx * div, uh[1] - ky * div, uh[2] - kz * div])  # solenoidal
    shell = np.rint(np.sqrt(k2)).astype(np.int64)
    k, spectrum = energy_spectrum(uh, (n, n, n))
    inertial = (k >= 1) & (k <= n // 3)
    kolmogorov = KOLMOGOROV_CONSTANT * eps ** (2 / 3) * np.where(inertial, k, 1.0) ** (-5 / 3)
    target = np.where(inertial, kolmogorov, 0.0)
    uh *= np.sqrt(np.divide(target, spectrum, out=np.zeros_like(target), where=spectrum > 0))[shell]
    les = solver(uh, "spectral", n, nu=0.0)
    assert fit_slope(*les.spectrum(), (2, n // 3)) == pytest.approx(-5 / 3, abs=0.02)
    assert 0.8 * eps < les.subgrid_dissipation() < 1.3 * eps
    assert solver(uh, "none", n, nu=0.0).subgrid_dissipation() == 0.0
    # the slope factor: Chollet-Lesieur's 0.441 at m = 5/3, nothing for m >= 3, more for a pile-up
    assert slope_coefficient(5 / 3) == pytest.approx(0.447, abs=0.002)
    steeper_to_shallower = [slope_coefficient(m) for m in (3.5, 2.5, 5 / 3, 1.0)]
    assert steeper_to_shallower[0] == 0.0 and np.all(np.diff(steeper_to_shallower) > 0)


def test_model_keeps_a_coarse_low_viscosity_spectrum_near_kolmogorov() -> None:
    # nu = 1e-4 at 32^3 (k_max eta ~ 0.04): unresolved. Without a model energy piles up at the cut-off
    # (the spectrum rises towards equipartition); with it the slope over 3 <= k <= 10 stays near -5/3.
    n, nu, dt = 32, 1e-4, 0.03
    uh = initial_condition(n, nu, 0.0928, 0.5, seed=1)
    slopes = {}
    for subgrid in ("none", "spectral"):
        s = solver(uh, subgrid, n, nu, dt, 0.0928)
        for _ in range(50):
            s.step()
        slopes[subgrid] = fit_slope(*s.spectrum(), (3, 10))
    assert slopes["none"] > -1.0, slopes
    assert -2.5 < slopes["spectral"] < -1.4, slopes


def test_float32_state_tracks_float64() -> None:
    uh = initial_condition(16, 1e-3, 0.1, 0.5, seed=7)
    ref, single = solver(uh, "spectral", 16), solver(uh, "spectral", 16, precision="float32")
    for _ in range(5):
        ref.step()
        single.step()
    assert single.uh.dtype == np.complex64 and single.velocity().dtype == np.float32
    scale = float(np.max(np.abs(ref.uh)))
    assert float(np.max(np.abs(single.uh - ref.uh))) < 1e-5 * scale
    assert float(np.max(np.abs(single.uh - ref.uh))) > 0  # it did run in single precision
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        SolverConfig(16, 1e-3, 0.02, 0.1, 2.0, precision="float16")
    with pytest.raises(ValueError, match="unknown subgrid model 'smagorinsky'"):
        SolverConfig(16, 1e-3, 0.02, 0.1, 2.0, subgrid="smagorinsky")
