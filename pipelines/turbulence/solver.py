"""Pseudo-spectral solver for forced, incompressible 3D Navier-Stokes on the periodic box [0, 2 pi)^3.

    du/dt = u x omega - grad(p + |u|^2 / 2) + nu lap u + f,     div u = 0

* velocity kept as Fourier coefficients (float64, ``rfftn`` with ``norm="forward"``), components
  (u_x, u_y, u_z) on axis 0 and space as (z, y, x), like every other array in the project;
* the nonlinear term in rotational form, evaluated in physical space and projected onto divergence-free
  fields, which also removes the pressure; 2/3-rule dealiasing (modes with ``|k_i| > n/3`` are zero);
* viscosity treated exactly by an integrating factor, time stepping by Heun's method (RK2);
* forcing at constant power ``P``: the modes with ``0 < |k| <= k_f`` are amplified by ``P / (2 E_f)``, so
  energy enters at exactly the rate ``P`` and only at the largest scales (``E_f`` is their energy). In
  the stationary state the dissipation equals ``P``, which pins the Kolmogorov scale to
  ``(nu^3 / P)^(1/4)`` and makes the resolution check ``k_max eta >= 1`` predictable from the params.

The scheme uses only isotropic operations on a cubic lattice, so it commutes with the 24 cube rotations
to round-off; the tests check that.

``subgrid="spectral"`` adds the spectral eddy viscosity of Chollet & Lesieur (1981) in the
"spectral-dynamic" form of Metais & Lesieur (1992): the modes at ``|k|`` lose energy at ``nu_t(k) k^2``,

    nu_t(k) = 0.31 (5 - m) / (m + 1) sqrt(3 - m) C_K^(-3/2) (1 + 34.5 exp(-3.03 k_c / k)) sqrt(E(k_c) / k_c),

the drain into the scales an inertial range would have beyond the cut-off ``k_c`` (the largest complete
shell under the 2/3 rule), with ``m`` the spectrum's slope just below it (0.447 C_K^(-3/2) for m = 5/3;
less drain where the spectrum is steeper, more where energy piles up). It depends on ``|k|`` and two
shell energies only, so it is isotropic, always dissipative, and zero for a field with no energy at the
cut-off; with it a coarse grid carries a ``k^(-5/3)`` range up to ``k_c`` at any Reynolds number (a
large-eddy simulation).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
import scipy.fft

from pipelines.turbulence.spectra import energy_spectrum, rfft_weights, wavenumbers


def fft_backend(name: str = "auto") -> ModuleType:
    """The FFT functions (``rfftn`` / ``irfftn`` with scipy.fft's signature) the solver calls.

    ``pyfftw``: ``pyfftw.interfaces.scipy_fft`` with pyFFTW's plan cache on (a step repeats the same
    transforms); ``scipy``: ``scipy.fft``; ``auto``: pyFFTW when it is installed (benchmarks/
    turbulence_solver.py measured it faster), else scipy.fft. Both compute the same transforms to
    float64 round-off.
    """
    if name not in ("auto", "pyfftw", "scipy"):
        raise ValueError(f"unknown FFT backend {name!r}: auto, pyfftw or scipy")
    if name != "scipy":
        try:
            import pyfftw
            from pyfftw.interfaces import scipy_fft
        except ImportError:
            if name == "pyfftw":
                raise
            return scipy.fft
        pyfftw.interfaces.cache.enable()
        pyfftw.interfaces.cache.set_keepalive_time(60.0)  # plans outlive the gap between two steps
        return scipy_fft
    return scipy.fft


KOLMOGOROV_CONSTANT = 1.5  # the C_K of model_spectrum and of the eddy viscosity
SUBGRID_MODELS = ("none", "spectral")
PRECISIONS = {"float64": (np.float64, np.complex128), "float32": (np.float32, np.complex64)}


def eddy_viscosity_profile(k_over_kc: np.ndarray) -> np.ndarray:
    """Chollet-Lesieur's cusp ``C_K^(-3/2) (1 + 34.5 exp(-3.03 k_c / k))``: flat for k << k_c and 2.7 x
    at the cut-off, where the triads with the missing scales are most active."""
    x = np.asarray(k_over_kc, dtype=np.float64)
    cusp = np.exp(-3.03 / np.where(x > 0, x, 1.0)) * (x > 0)
    return KOLMOGOROV_CONSTANT**-1.5 * (1.0 + 34.5 * cusp)


def slope_coefficient(m: float) -> float:
    """Metais & Lesieur's (1992) factor ``0.31 (5 - m) / (m + 1) sqrt(3 - m)`` for a spectrum ``k^-m`` at
    the cut-off: 0.447 for m = 5/3, smaller for steeper spectra (zero from m = 3), larger for a pile-up;
    m is clipped to [0, 3]."""
    m = min(max(m, 0.0), 3.0)
    return 0.31 * (5.0 - m) / (m + 1.0) * np.sqrt(3.0 - m)


@dataclass(frozen=True)
class SolverConfig:
    resolution: int
    viscosity: float
    dt: float
    forcing_power: float
    forcing_wavenumber: float
    workers: int = 1
    fft: str = "auto"  # see fft_backend
    subgrid: str = "none"  # see SUBGRID_MODELS and the module doc
    precision: str = "float64"  # float32 halves the cost of a step (the stored field is float32 anyway)

    def __post_init__(self) -> None:
        if self.subgrid not in SUBGRID_MODELS:
            raise ValueError(f"unknown subgrid model {self.subgrid!r}: one of {', '.join(SUBGRID_MODELS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: one of {', '.join(PRECISIONS)}")


class SpectralSolver:
    """State and time stepping; ``uh`` is the (3, n, n, n//2+1) complex Fourier state."""

    def __init__(self, config: SolverConfig, uh: np.ndarray):
        self.config = config
        self.fft = fft_backend(config.fft)
        n = config.resolution
        real, cplx = PRECISIONS[config.precision]
        self.shape = (n, n, n)
        kz, ky, kx = wavenumbers(self.shape)
        k2 = kz**2 + ky**2 + kx**2
        cut = n / 3.0
        self.keep = (np.abs(kz) <= cut) & (np.abs(ky) <= cut) & (np.abs(kx) <= cut)
        forced = (k2 > 0) & (k2 <= config.forcing_wavenumber**2 + 1e-9)
        self.weights = rfft_weights(n)
        # the forced modes are a handful: keep their indices and weights instead of full-size masks
        self.forced = np.nonzero(np.broadcast_to(forced, k2.shape))
        self.forced_weights = np.broadcast_to(self.weights, k2.shape)[self.forced]
        self.cutoff_shell = int(n // 3)  # largest shell that the 2/3 rule leaves complete
        shell = np.rint(np.sqrt(k2)).astype(np.int64)
        weights = np.broadcast_to(self.weights, k2.shape)
        # the modes of the cut-off shell and of half of it: their energies give E(k_c) and the slope there
        self.probe_shells = (self.cutoff_shell // 2, self.cutoff_shell)
        self.probe_modes = [np.nonzero(shell == m) for m in self.probe_shells]
        self.probe_weights = [weights[modes] for modes in self.probe_modes]
        # nu_t(k) k^2 per unit sqrt(E(k_c) / k_c); None without a model
        self.eddy_k2 = None
        if config.subgrid == "spectral":
            self.eddy_k2 = (eddy_viscosity_profile(np.sqrt(k2) / self.cutoff_shell) * k2).astype(real)
        inv_k2 = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
        decay = np.exp(-config.viscosity * k2 * config.dt)  # exact viscous factor over one step
        # the operators in the state's precision, so that no product promotes a float32 state
        self.kz, self.ky, self.kx, self.k2, self.inv_k2, self.decay = (
            a.astype(real) for a in (kz, ky, kx, k2, inv_k2, decay)
        )
        self.uh = self.project((uh * self.keep).astype(cplx))
        self.time = 0.0
        self.steps = 0
        self.last_cfl = 0.0

    # --- operators -------------------------------------------------------------------------------------
    def project(self, vh: np.ndarray) -> np.ndarray:
        """Leray projection onto divergence-free fields (removes the k = 0 mean as well)."""
        div = self.kx * vh[0] + self.ky * vh[1] + self.kz * vh[2]
        div *= self.inv_k2
        out = np.empty_like(vh)
        out[0] = vh[0] - self.kx * div
        out[1] = vh[1] - self.ky * div
        out[2] = vh[2] - self.kz * div
        out[:, 0, 0, 0] = 0.0
        return out

    def velocity(self) -> np.ndarray:
        """Physical velocity (3, n, n, n), float64."""
        return self.fft.irfftn(
            self.uh, s=self.shape, axes=(-3, -2, -1), norm="forward", workers=self.config.workers
        )

    def _rhs(self, uh: np.ndarray) -> tuple[np.ndarray, float]:
        kx, ky, kz = self.kx, self.ky, self.kz
        both = np.empty((6,) + uh.shape[1:], dtype=uh.dtype)
        both[:3] = uh
        both[3] = 1j * (ky * uh[2] - kz * uh[1])  # vorticity = i k x uh
        both[4] = 1j * (kz * uh[0] - kx * uh[2])
        both[5] = 1j * (kx * uh[1] - ky * uh[0])
        phys = self.fft.irfftn(
            both, s=self.shape, axes=(-3, -2, -1), norm="forward", workers=self.config.workers
        )
        u, w = phys[:3], phys[3:]
        speed = float(np.max(np.abs(u[0]) + np.abs(u[1]) + np.abs(u[2])))
        cross = np.empty_like(u)
        cross[0] = u[1] * w[2] - u[2] * w[1]
        cross[1] = u[2] * w[0] - u[0] * w[2]
        cross[2] = u[0] * w[1] - u[1] * w[0]
        nh = self.fft.rfftn(cross, axes=(-3, -2, -1), norm="forward", workers=self.config.workers)
        nh *= self.keep
        nh = self.project(nh)
        self._add_forcing(uh, nh)
        return nh, speed

    def _add_forcing(self, uh: np.ndarray, nh: np.ndarray) -> None:
        modes = uh[(slice(None),) + self.forced]
        energy = 0.5 * float(np.sum(self.forced_weights * np.sum(np.abs(modes) ** 2, axis=0)))
        if energy > 0:
            nh[(slice(None),) + self.forced] += (self.config.forcing_power / (2.0 * energy)) * modes

    def shell_energy(self, uh: np.ndarray, which: int) -> float:
        """Energy of probe shell ``which`` (0: k_c / 2, 1: the cut-off shell k_c)."""
        modes = uh[(slice(None),) + self.probe_modes[which]]
        return 0.5 * float(np.sum(self.probe_weights[which] * np.sum(np.abs(modes) ** 2, axis=0)))

    def eddy_amplitude(self, uh: np.ndarray) -> float:
        """``slope_coefficient(m) sqrt(E(k_c) / k_c)``, the scale of the eddy viscosity, with m the spectrum's
        slope between k_c / 2 and k_c; 0 without a sub-grid model or without energy at the cut-off."""
        if self.eddy_k2 is None:
            return 0.0
        half, cutoff = self.shell_energy(uh, 0), self.shell_energy(uh, 1)
        if cutoff <= 0.0:
            return 0.0
        lo, hi = self.probe_shells
        m = float(np.log(half / cutoff) / np.log(hi / lo)) if half > 0 else 0.0
        return float(slope_coefficient(m) * np.sqrt(cutoff / self.cutoff_shell))

    def step_decay(self) -> np.ndarray:
        """Molecular (and eddy) viscous factor over one step; the eddy viscosity is frozen over the step."""
        if self.eddy_k2 is None:
            return self.decay
        nu_k2 = self.config.viscosity * self.k2 + self.eddy_amplitude(self.uh) * self.eddy_k2
        return np.exp(-self.config.dt * nu_k2)

    def step(self) -> None:
        """One Heun (RK2) step with the viscous integrating factor."""
        dt = self.config.dt
        decay = self.step_decay()
        n0, speed = self._rhs(self.uh)
        predictor = decay * (self.uh + dt * n0)
        n1, _ = self._rhs(predictor)
        self.uh = decay * (self.uh + 0.5 * dt * n0) + 0.5 * dt * n1
        self.time += dt
        self.steps += 1
        self.last_cfl = speed * dt / (2 * np.pi / self.config.resolution)

    # --- diagnostics -----------------------------------------------------------------------------------
    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        return energy_spectrum(self.uh, self.shape)

    def energy(self) -> float:
        return 0.5 * float(np.sum(self.weights * np.abs(self.uh) ** 2))

    def dissipation(self) -> float:
        """Molecular plus sub-grid (eddy-viscous) dissipation: what the forcing balances."""
        molecular = self.config.viscosity * float(np.sum(self.weights * self.k2 * np.abs(self.uh) ** 2))
        return molecular + self.subgrid_dissipation()

    def subgrid_dissipation(self) -> float:
        """Energy the eddy viscosity removes per unit time (the flux into the unresolved scales)."""
        if self.eddy_k2 is None:
            return 0.0
        power = self.weights * np.abs(self.uh) ** 2
        return self.eddy_amplitude(self.uh) * float(np.sum(self.eddy_k2 * power))


def model_spectrum(k: np.ndarray, viscosity: float, dissipation: float, energy: float) -> np.ndarray:
    """Pope's model spectrum (Turbulent Flows, eq. 6.246, textbook constants) for a flow with the given
    kinetic energy and dissipation; its large-eddy length is ``energy^1.5 / dissipation``."""
    eta = (viscosity**3 / dissipation) ** 0.25
    length = energy**1.5 / dissipation
    kk = np.where(k > 0, k, 1.0)
    f_l = (kk * length / np.sqrt((kk * length) ** 2 + 6.78)) ** (5.0 / 3.0 + 2.0)
    f_eta = np.exp(-5.2 * (((kk * eta) ** 4 + 0.4**4) ** 0.25 - 0.4))
    return np.where(k > 0, 1.5 * dissipation ** (2.0 / 3.0) * kk ** (-5.0 / 3.0) * f_l * f_eta, 0.0)


def initial_condition(
    resolution: int, viscosity: float, dissipation: float, energy: float, seed: int, workers: int = 1
) -> np.ndarray:
    """Random-phase solenoidal field with the model spectrum of the target flow, scaled to ``energy``
    (the box cuts off wavenumbers below 1, so the model alone would fall short of it).

    Starting from the right spectrum (rather than white noise) shortens the spin-up: only the phases
    have to organise themselves into turbulence.
    """
    n = resolution
    rng = np.random.default_rng(seed)
    uh = scipy.fft.rfftn(
        rng.standard_normal((3, n, n, n)), axes=(-3, -2, -1), norm="forward", workers=workers
    )
    shape = (n, n, n)
    kz, ky, kx = wavenumbers(shape)
    k2 = kz**2 + ky**2 + kx**2
    div = (kx * uh[0] + ky * uh[1] + kz * uh[2]) * np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
    uh = np.stack([uh[0] - kx * div, uh[1] - ky * div, uh[2] - kz * div])
    cut = n / 3.0
    uh *= (np.abs(kz) <= cut) & (np.abs(ky) <= cut) & (np.abs(kx) <= cut)
    uh[:, 0, 0, 0] = 0.0
    k, spectrum = energy_spectrum(uh, shape)
    target = model_spectrum(k, viscosity, dissipation, energy)
    target *= energy / np.sum(target)
    gain = np.sqrt(np.divide(target, spectrum, out=np.zeros_like(target), where=spectrum > 0))
    return uh * gain[np.rint(np.sqrt(k2)).astype(np.int64)]
