"""A learned linear super-resolution reference: least squares per Fourier mode, fitted on the training split.

Every linear map from the middle lr frame to hr that commutes with periodic shifts by one lr cell acts mode by
mode in Fourier space: hr mode ``K`` depends only on lr mode ``k = K mod n`` (the lr modes are the aliases
of the hr modes under the block mean). So the most general such map is one 3 x 3 complex matrix per hr mode,
mixing the three velocity components; it is fitted by least squares on the training samples, in the task's
normalised units, with a small ridge term so that modes the training set barely excites stay near zero
instead of fitting noise.

It is a baseline in the sense of :mod:`train.baselines` (takes the model's input, scored by the task's own
metric), but not a trivial one: a network that does not beat it has learnt nothing a linear filter could
not. Unlike the upsamplers it is not constrained to commute with rotations.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

RIDGE = 1e-6  # relative to the mean input power of each mode: 0 would leave unexcited modes undetermined


def _modes(middle: torch.Tensor) -> torch.Tensor:
    """[B, 3, n, n, n] -> [B, 3, n^3] complex128 Fourier coefficients."""
    return torch.fft.fftn(middle.to(torch.float64), dim=(-3, -2, -1), norm="forward").flatten(-3)


def alias_index(n: int, factor: int) -> torch.Tensor:
    """For each hr mode (flattened, ``(factor n)^3``) the flat index of its lr alias ``K mod n``."""
    big = n * factor
    k = torch.arange(big) % n
    kz, ky, kx = torch.meshgrid(k, k, k, indexing="ij")
    return ((kz * n + ky) * n + kx).flatten()


class FourierLinear(nn.Module):
    """hr = IFFT(W[K] @ FFT(middle lr frame)[K mod n]), one complex 3 x 3 matrix ``W[K]`` per hr mode."""

    def __init__(self, weights: torch.Tensor, n: int, factor: int):
        super().__init__()
        self.n, self.factor = n, factor
        self.register_buffer("weights", weights)  # [(factor n)^3, 3, 3] complex128
        self.register_buffer("alias", alias_index(n, factor))

    @classmethod
    def fit(cls, train_set: Dataset, factor: int, ridge: float = RIDGE) -> FourierLinear:
        """Least squares over every training sample, all modes at once (normal equations per mode)."""
        xs, ys = [], []
        for x, y in DataLoader(train_set, batch_size=16):
            xs.append(_modes(x[:, x.shape[1] // 2]))
            ys.append(_modes(y))
        x_modes, y_modes = torch.cat(xs), torch.cat(ys)  # [S, 3, n^3], [S, 3, N^3]
        n = round(x_modes.shape[-1] ** (1 / 3))
        if n**3 != x_modes.shape[-1] or (n * factor) ** 3 != y_modes.shape[-1]:
            shapes = f"lr {x_modes.shape[-1]} / hr {y_modes.shape[-1]} modes"
            raise ValueError(f"{shapes} do not fit an upsampling factor of {factor}")
        a = x_modes[:, :, alias_index(n, factor)].permute(2, 0, 1)  # [N^3, S, 3]: inputs of each hr mode
        b = y_modes.permute(2, 0, 1)  # [N^3, S, 3]
        gram = a.mH @ a  # [N^3, 3, 3]
        power = gram.diagonal(dim1=-2, dim2=-1).real.mean(dim=-1).clamp_min(1e-30)
        eye = torch.eye(3, dtype=gram.dtype)
        solved = torch.linalg.solve(gram + ridge * power[:, None, None] * eye, a.mH @ b)  # [N^3, 3, 3]
        return cls(solved.mT.contiguous(), n, factor)  # W[K] maps an input column to an output column

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        modes = _modes(x[:, x.shape[1] // 2])[:, :, self.alias]  # [B, 3, N^3]
        out = torch.einsum("kij,bjk->bik", self.weights, modes)
        big = self.n * self.factor
        hr = torch.fft.ifftn(out.reshape(*out.shape[:2], big, big, big), dim=(-3, -2, -1), norm="forward")
        return hr.real.to(x.dtype)

    def regularizer(self) -> torch.Tensor:
        return torch.zeros(())
