"""The turbulence stage's figures: the energy spectra of the stored fields, and the three JHTDB
downsampling modes compared on one field (docs/turbulence.md shows both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from loaders.storage import open_store
from pipelines.params import TurbulenceParams
from pipelines.turbulence.base import DOMAIN
from pipelines.turbulence.downsample import block_mean, stride_sample, subcube
from pipelines.turbulence.spectra import field_spectrum


def store_spectra(path: Path, length: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Time-averaged spectra of the stored hr and lr fields over a region of side ``length``."""
    ds = open_store(path)
    out = {}
    for name in ("hr", "lr"):
        spectra = [field_spectrum(ds[name][t].values, length) for t in range(ds.sizes["time"])]
        out[name] = (spectra[0][0], np.mean([e for _, e in spectra], axis=0))
    return out


def plot_spectrum(
    path: Path,
    p: TurbulenceParams,
    result: dict[str, Any],
    spectra: dict,
    reference: tuple[str, np.ndarray, np.ndarray] | None,
    eps: float | None,
) -> None:
    """Stored spectra (and the source's own, if any), raw and compensated by the dissipation ``eps``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, axc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    curves = []
    if reference is not None:
        curves.append((*reference, "k-"))
    curves += [(f"{name} {p.hr_resolution if name == 'hr' else p.lr_resolution}$^3$", *spectra[name], style)
               for name, style in (("hr", "C0--"), ("lr", "C1-."))]  # fmt: skip
    for label, k, e, style in curves:
        sel = (k > 0) & (e > 0)
        ax.loglog(k[sel], e[sel], style, label=label)
        if eps is not None:
            axc.semilogx(k[sel], e[sel] * k[sel] ** (5 / 3) / eps ** (2 / 3), style, label=label)
    lo, hi = p.spectrum_fit_range
    k_ref, e_ref = curves[0][1], curves[0][2]
    anchor = float(np.interp(lo, k_ref, e_ref))
    kk = np.linspace(lo, hi * 2, 20)
    ax.loglog(kk, anchor * (kk / lo) ** (-5 / 3), "r:", label=r"$k^{-5/3}$")
    if "spectrum_slope" in result:
        slope = result["spectrum_slope"]
        ax.loglog(kk[kk <= hi], anchor * (kk[kk <= hi] / lo) ** slope, "g-", lw=3, alpha=0.4,
                  label=f"fit {lo:g}..{hi:g}: slope {slope:.2f}")  # fmt: skip
    for a in (ax, axc):
        a.axvspan(lo, hi, color="0.9", zorder=0)
        a.set_xlabel("wavenumber k")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    top = max(float(np.max(e)) for _, _, e, _ in curves)
    ax.set_ylim(top * 1e-9, top * 3)  # below that is the dealiased cut-off and round-off
    ax.set_ylabel("E(k)")
    ax.set_title(f"energy spectrum ({p.source})")
    axc.set_ylabel(r"$\epsilon^{-2/3} k^{5/3} E(k)$")
    axc.set_title("compensated: an inertial range is a plateau near 1.5")
    if eps is None:
        axc.text(0.5, 0.5, "dissipation unknown for this source", ha="center", transform=axc.transAxes)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mode_spectra(field: np.ndarray, factor: int, length: float = DOMAIN) -> dict[str, tuple]:
    """Spectra of a native field and of its three coarse versions (factor ``factor``) for the docs figure."""
    n = field.shape[-1]
    m = n // factor
    return {
        "native": field_spectrum(field, length),
        "box (block mean)": field_spectrum(block_mean(field, factor, np.float64), length),
        "stride (every k-th point)": field_spectrum(stride_sample(field, factor), length),
        "subcube (contiguous region)": field_spectrum(subcube(field, m), length * m / n),
    }


def plot_modes(path: Path, field: np.ndarray, factor: int, label: str) -> dict[str, float]:
    """Spectra of the three JHTDB downsampling modes applied to one native field; returns aliasing ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spectra = mode_spectra(field, factor)
    k_nat, e_nat = spectra["native"]
    n_coarse = field.shape[-1] // factor
    fig, (ax, axr) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ratios = {}
    for (name, (k, e)), style in zip(spectra.items(), ("k-", "C0-", "C3--", "C2-."), strict=True):
        sel = (k > 0) & (e > 0)
        ax.loglog(k[sel], e[sel], style, label=name)
        if name != "native":
            common = sel & (k <= field.shape[-1] / 3)  # the native field is dealiased beyond n / 3
            ratio = e[common] / np.interp(k[common], k_nat, e_nat)
            axr.semilogx(k[common], ratio, style, label=name)
            # upper half of the band the coarse field resolves (a subcube's band starts higher: it is small)
            nyquist = (n_coarse / 2) * (k[1] - k[0]) * (1 + 1e-9)
            top = (k > nyquist / 2) & (k <= min(nyquist, field.shape[-1] / 3))
            if top.any():
                ratios[name] = float(np.mean(e[top] / np.interp(k[top], k_nat, e_nat)))
    for a in (ax, axr):
        a.axvline(n_coarse / 2, color="0.5", lw=0.8, ls=":")
        a.set_xlabel("wavenumber k")
        a.legend(fontsize=8)
    ax.set_ylim(float(np.max(e_nat)) * 1e-9, float(np.max(e_nat)) * 3)
    ax.set_ylabel("E(k)")
    ax.set_title(f"{label}: {field.shape[-1]}$^3$ -> {n_coarse}$^3$ (factor {factor})")
    axr.set_ylabel("E_mode(k) / E_native(k)")
    axr.set_yscale("log")
    axr.set_ylim(1e-3, 1e3)
    axr.set_title("ratio to native: > 1 aliased, < 1 filtered")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return ratios
