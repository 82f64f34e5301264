"""Trivial predictors every trained model must beat, as parameter-free modules (and, for super-resolution,
the learned linear reference of :mod:`train.linear_sr`).

They take exactly the model's input and are scored by the task's own ``errors`` / ``reduce``, so a
baseline and a model are measured on the same windows, splits and metric.

Smoke (input ``[B, F*2, H, W]``, the last ``F`` frames flattened): *persistence* repeats the last input frame
over the whole rollout (its rollout is constant), *zero* predicts no motion.

Super-resolution (input ``[B, 3, 3, n, n, n]``: frames t-1, t, t+1 of the low-res velocity): upsample the
middle frame (time t) to the high-res grid. The field is periodic and lr is the mean over aligned
``f^3`` blocks of hr, so hr cell ``j`` sits at lr position ``(j + 1/2) / f - 1/2``. *trilinear* interpolates
periodically between lr cell centres; *spectral* is the band-limited (Fourier) interpolant, deconvolved by
the block-mean transfer function so that its own block means give back the lr field exactly.

Both upsamplers commute with the 24 cube rotations (and with C4 in a plane): they act per component, are
linear, and treat every axis and both directions of an axis alike (periodic, symmetric offsets).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from train.linear_sr import FourierLinear

UPSAMPLERS = ("trilinear", "spectral")


def trilinear_upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Periodic trilinear upsampling of ``[..., n, n, n]`` by ``factor`` (cell-centred grids)."""
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    shape = x.shape
    v = x.reshape(-1, 1, *shape[-3:])
    # one periodic ghost cell per side, then torch's cell-centred interpolation; the ghost part is cut off
    v = F.pad(v, (1, 1, 1, 1, 1, 1), mode="circular")
    v = F.interpolate(v, scale_factor=factor, mode="trilinear", align_corners=False)
    v = v[..., factor:-factor, factor:-factor, factor:-factor]
    return v.reshape(*shape[:-3], *v.shape[-3:])


def _spectral_1d(x: torch.Tensor, factor: int, dim: int, deconvolve: bool) -> torch.Tensor:
    n = x.shape[dim]
    coef = torch.fft.fft(x.to(torch.float64), dim=dim, norm="forward")
    k = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64, device=x.device)
    weight = torch.exp(2j * math.pi * k * (1.0 / factor - 1.0) / 2.0 / n)  # hr cell 0 sits at lr -3/8 (f=4)
    if deconvolve:  # the mean over f hr cells multiplies mode k by sin(pi k / n) / (f sin(pi k / (f n)))
        box = torch.ones_like(k)
        nz = k != 0
        box[nz] = torch.sin(math.pi * k[nz] / n) / (factor * torch.sin(math.pi * k[nz] / (factor * n)))
        weight = weight / box
    if n % 2 == 0:
        weight[n // 2] = 0.0  # the Nyquist mode has no symmetric place on the finer grid: drop it
    shape = [1] * x.ndim
    shape[dim] = n
    coef = coef * weight.reshape(shape)
    out_shape = list(x.shape)
    out_shape[dim] = factor * n
    hr = torch.zeros(out_shape, dtype=coef.dtype, device=coef.device)
    half = (n + 1) // 2
    hr.narrow(dim, 0, half).copy_(coef.narrow(dim, 0, half))
    hr.narrow(dim, factor * n - (n - half), n - half).copy_(coef.narrow(dim, half, n - half))
    return torch.fft.ifft(hr, dim=dim, norm="forward").real.to(x.dtype)


def spectral_upsample(x: torch.Tensor, factor: int, deconvolve: bool = True) -> torch.Tensor:
    """Band-limited periodic upsampling of ``[..., n, n, n]``; ``deconvolve``: its block means are ``x``."""
    for dim in (-3, -2, -1):
        x = _spectral_1d(x, factor, x.ndim + dim, deconvolve)
    return x


def upsample(x: torch.Tensor, factor: int, kind: str = "trilinear") -> torch.Tensor:
    if kind == "trilinear":
        return trilinear_upsample(x, factor)
    if kind == "spectral":
        return spectral_upsample(x, factor)
    raise ValueError(f"unknown upsampler {kind!r}; choose from {UPSAMPLERS}")


class Persistence(nn.Module):
    """Smoke: the next frame equals the last input frame (velocity has 2 components)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -2:]

    def regularizer(self) -> torch.Tensor:
        return torch.zeros(())


class Zero(nn.Module):
    """Smoke: no motion at all."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, -2:])

    def regularizer(self) -> torch.Tensor:
        return torch.zeros(())


class UpsampleMiddle(nn.Module):
    """Super-resolution: upsample the middle lr frame, mapped from lr to hr normalised units.

    With normalised data, lr_phys = lr * lr_scale + lr_shift and hr = (hr_phys - hr_shift) / hr_scale, per
    component; ``gain`` = lr_scale / hr_scale and ``offset`` = (lr_shift - hr_shift) / hr_scale.
    """

    def __init__(
        self, factor: int, kind: str = "trilinear", gain: Sequence[float] = (1.0,) * 3,
        offset: Sequence[float] = (0.0,) * 3,
    ):  # fmt: skip
        super().__init__()
        if kind not in UPSAMPLERS:
            raise ValueError(f"unknown upsampler {kind!r}; choose from {UPSAMPLERS}")
        self.factor, self.kind = int(factor), kind
        per_component = (1, -1, 1, 1, 1)
        self.register_buffer("gain", torch.tensor(list(gain), dtype=torch.float32).reshape(per_component))
        self.register_buffer("offset", torch.tensor(list(offset), dtype=torch.float32).reshape(per_component))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        middle = x[:, x.shape[1] // 2]
        return upsample(middle, self.factor, self.kind) * self.gain + self.offset

    def regularizer(self) -> torch.Tensor:
        return torch.zeros(())


def lr_to_hr_units(dataset: object) -> tuple[list[float], list[float]]:
    """``(gain, offset)`` of :class:`UpsampleMiddle` for a super-resolution dataset's normalisation."""
    normalisers = getattr(dataset, "normalisers", None) or {}
    if not normalisers:
        return [1.0] * 3, [0.0] * 3
    lo, hi = dataset.pair  # type: ignore[attr-defined]
    a, b = normalisers[lo], normalisers[hi]
    gain = [float(s) for s in a.scale / b.scale]
    offset = [float(o) for o in (a.shift - b.shift) / b.scale]
    return gain, offset


def smoke_baselines() -> dict[str, nn.Module]:
    return {"persistence": Persistence(), "zero": Zero()}


def sr_baselines(dataset: object, factor: int) -> dict[str, nn.Module]:
    """The two upsamplers and the learned linear reference, fitted on ``dataset`` (the training split)."""
    gain, offset = lr_to_hr_units(dataset)
    modules: dict[str, nn.Module] = {kind: UpsampleMiddle(factor, kind, gain, offset) for kind in UPSAMPLERS}
    modules["fourier_linear"] = FourierLinear.fit(dataset, factor)  # type: ignore[arg-type]
    return modules


def smoke_predictors(splits: dict[str, object]) -> dict[str, nn.Module]:
    """The smoke kind's trivial predictors (train/kinds.py)."""
    return smoke_baselines()


def sr_predictors(splits: dict[str, object]) -> dict[str, nn.Module]:
    """The turbulence kind's trivial predictors, fitted on the training split (train/kinds.py)."""
    return sr_baselines(splits["train"], sr_factor(splits["train"]))


def sr_factor(dataset: object) -> int:
    """hr / lr grid ratio of a super-resolution dataset, from one sample."""
    x, y = dataset[0]  # type: ignore[index]
    factor, rem = divmod(y.shape[-1], x.shape[-1])
    if rem:
        raise ValueError(f"hr size {y.shape[-1]} is not a multiple of lr size {x.shape[-1]}")
    return factor
