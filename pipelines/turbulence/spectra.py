"""Energy spectra and single-time statistics of periodic velocity fields.

Fourier coefficients here are ``scipy.fft.rfftn(u, axes=(-3, -2, -1), norm="forward")`` of a field
``u[component, z, y, x]`` with components ordered (u_x, u_y, u_z): with that normalisation
``u(x) = sum_k uh_k exp(i k.x)``, so Parseval reads ``<|u|^2> = sum_k |uh_k|^2`` over the full
(not half) spectrum. The half spectrum stored by ``rfftn`` is accounted for by :func:`rfft_weights`.
"""

from __future__ import annotations

import numpy as np
import scipy.fft


def wavenumbers(shape: tuple[int, int, int], length: float = 2 * np.pi) -> tuple[np.ndarray, ...]:
    """Broadcastable (kz, ky, kx) for the rfft layout of a field of spatial ``shape`` (z, y, x)."""
    nz, ny, nx = shape
    scale = 2 * np.pi / length
    kz = np.fft.fftfreq(nz, 1.0 / nz)[:, None, None] * scale
    ky = np.fft.fftfreq(ny, 1.0 / ny)[None, :, None] * scale
    kx = np.fft.rfftfreq(nx, 1.0 / nx)[None, None, :] * scale
    return kz, ky, kx


def rfft_weights(nx: int) -> np.ndarray:
    """How many modes of the full spectrum each rfft column stands for (its conjugate twin counts too)."""
    w = np.full(nx // 2 + 1, 2.0)
    w[0] = 1.0
    if nx % 2 == 0:
        w[-1] = 1.0
    return w[None, None, :]


def to_fourier(u: np.ndarray, workers: int = 1) -> np.ndarray:
    return scipy.fft.rfftn(
        np.asarray(u, dtype=np.float64), axes=(-3, -2, -1), norm="forward", workers=workers
    )


def energy_spectrum(uh: np.ndarray, shape: tuple[int, int, int], length: float = 2 * np.pi) -> tuple:
    """Shell-summed spectrum ``(k, E)`` with ``sum(E) * dk`` equal to the kinetic energy ``<|u|^2>/2``.

    Shell ``m`` collects modes with ``round(|k| / dk) == m`` where ``dk = 2 pi / length``.
    """
    kz, ky, kx = wavenumbers(shape, length)
    dk = 2 * np.pi / length
    shell = np.rint(np.sqrt(kz**2 + ky**2 + kx**2) / dk).astype(np.int64)
    density = 0.5 * rfft_weights(shape[2]) * np.sum(np.abs(uh) ** 2, axis=0)
    energy = np.bincount(shell.ravel(), weights=density.ravel())
    k = np.arange(energy.size) * dk
    return k, energy / dk


def field_spectrum(u: np.ndarray, length: float = 2 * np.pi, workers: int = 1) -> tuple:
    """:func:`energy_spectrum` of a physical field ``u[component, z, y, x]`` on a box of side ``length``."""
    u = np.asarray(u)
    return energy_spectrum(to_fourier(u, workers), u.shape[-3:], length)


def fit_slope(k: np.ndarray, energy: np.ndarray, k_range: tuple[float, float]) -> float:
    """Least-squares slope of log E against log k over shells with ``k_range[0] <= k <= k_range[1]``."""
    sel = (k >= k_range[0]) & (k <= k_range[1]) & (energy > 0)
    if sel.sum() < 2:
        raise ValueError(f"fewer than two spectrum shells in the fit range {k_range}")
    return float(np.polyfit(np.log(k[sel]), np.log(energy[sel]), 1)[0])


def flow_statistics(
    k: np.ndarray, energy: np.ndarray, viscosity: float, k_max: float, dissipation: float | None = None
) -> dict[str, float]:
    """Textbook single-point statistics from a spectrum (the same quantities JHTDB lists for its data).

    ``dissipation``: the measured one, for a large-eddy simulation, whose resolved spectrum holds only the
    molecular part (the rest leaves through the sub-grid model); the statistics are then those of the
    flow at ``viscosity`` that the simulation stands for. By default it is ``2 nu sum k^2 E(k)``.
    """
    dk = k[1] - k[0]
    kinetic = float(np.sum(energy) * dk)
    if dissipation is None:
        dissipation = float(2 * viscosity * np.sum(k**2 * energy) * dk)
    u_rms = float(np.sqrt(2 * kinetic / 3))
    taylor = float(np.sqrt(15 * viscosity * u_rms**2 / dissipation))
    eta = float((viscosity**3 / dissipation) ** 0.25)
    integral = float(np.pi / (2 * u_rms**2) * np.sum(energy[1:] / k[1:]) * dk)
    return {
        "kinetic_energy": kinetic,
        "dissipation": dissipation,
        "u_rms": u_rms,
        "taylor_microscale": taylor,
        "re_lambda": u_rms * taylor / viscosity,
        "kolmogorov_length": eta,
        "kolmogorov_time": float(np.sqrt(viscosity / dissipation)),
        "integral_scale": integral,
        "large_eddy_turnover_time": integral / u_rms,
        "k_max_eta": k_max * eta,
    }


def axis_statistics(uh: np.ndarray, shape: tuple[int, int, int]) -> dict[str, list[float]]:
    """Per-axis second moments: ``<u_i^2>`` and the longitudinal gradients ``<(du_i/dx_i)^2>``, in (x, y, z).

    In an isotropic field each triple is equal up to sampling noise.
    """
    kz, ky, kx = wavenumbers(shape)
    w = rfft_weights(shape[2])
    power = w * np.abs(uh) ** 2
    variance = [float(np.sum(power[i])) for i in range(3)]
    gradient = [float(np.sum(power[i] * k**2)) for i, k in enumerate((kx, ky, kz))]
    return {"velocity_variance": variance, "longitudinal_gradient_variance": gradient}


def relative_divergence(uh: np.ndarray, shape: tuple[int, int, int]) -> float:
    """rms of div u over the rms of the whole velocity gradient: 0 if solenoidal, ~eps at round-off."""
    kz, ky, kx = wavenumbers(shape)
    w = rfft_weights(shape[2])
    div = kx * uh[0] + ky * uh[1] + kz * uh[2]
    grad = (kx**2 + ky**2 + kz**2) * np.sum(np.abs(uh) ** 2, axis=0)
    denominator = float(np.sum(w * grad))
    return float(np.sqrt(np.sum(w * np.abs(div) ** 2) / denominator)) if denominator > 0 else 0.0
