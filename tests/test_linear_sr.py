"""The learned linear SR reference: exact on data that a per-mode linear map generates, never worse than the
spectral upsampler (a member of its class) on the data it was fitted on, real-valued, and scored by the
baselines stage beside the upsamplers."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from train.baselines import UpsampleMiddle, spectral_upsample, sr_baselines
from train.linear_sr import FourierLinear, _modes, alias_index


def _lr_frames(samples: int, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(samples, 3, 3, n, n, n, generator=gen, dtype=torch.float64)


def test_alias_index_maps_every_hr_mode_to_its_lr_alias() -> None:
    idx = alias_index(2, 3).reshape(6, 6, 6)
    assert idx[0, 0, 0] == 0 and idx[2, 2, 2] == 0 and idx[1, 4, 5] == (1 * 2 + 0) * 2 + 1


def test_fit_recovers_a_per_mode_linear_map_exactly() -> None:
    n, f = 4, 2
    x = _lr_frames(12, n)
    # a real map of the class (conjugate-symmetric weights): a fit to random real targets
    noise = torch.randn(12, 3, 8, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    truth = FourierLinear.fit(TensorDataset(_lr_frames(12, n, seed=5), noise), f, ridge=0.0)
    y = truth(x)
    fitted = FourierLinear.fit(TensorDataset(x, y), f, ridge=0.0)
    unseen = _lr_frames(3, n, seed=1)
    assert torch.allclose(fitted(unseen), truth(unseen), atol=1e-9)
    assert torch.allclose(fitted.weights, truth.weights, atol=1e-9)
    ridged = FourierLinear.fit(TensorDataset(x, y), f)  # the default ridge barely moves it
    assert torch.allclose(ridged(unseen), truth(unseen), atol=1e-4 * float(y.abs().max()))


def test_never_worse_than_the_spectral_upsampler_on_its_training_data() -> None:
    n, f = 4, 2
    x = _lr_frames(10, n).float()
    noise = torch.randn(10, 3, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    y = spectral_upsample(x[:, 1], f) * 1.3 + 0.2 * noise
    fitted = FourierLinear.fit(TensorDataset(x, y), f)
    spectral = UpsampleMiddle(f, "spectral")
    mse_fit, mse_spec = ((fitted(x) - y) ** 2).mean(), ((spectral(x) - y) ** 2).mean()
    assert mse_fit < mse_spec, (float(mse_fit), float(mse_spec))
    assert fitted(x).dtype == torch.float32


def test_output_is_real_to_round_off() -> None:
    n, f = 4, 2
    x = _lr_frames(6, n)
    y = torch.randn(6, 3, 8, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    fitted = FourierLinear.fit(TensorDataset(x, y), f)
    modes = _modes(x[:, 1])[:, :, fitted.alias]
    out = torch.einsum("kij,bjk->bik", fitted.weights, modes).reshape(6, 3, 8, 8, 8)
    hr = torch.fft.ifftn(out, dim=(-3, -2, -1), norm="forward")
    assert hr.imag.abs().max() < 1e-10 * hr.real.abs().max()


def test_the_baselines_stage_scores_the_learned_reference(turbulence_store) -> None:
    from train.data import SplitSpec, load_splits

    splits = load_splits("turbulence", turbulence_store, SplitSpec())
    modules = sr_baselines(splits["train"], 4)
    assert set(modules) == {"trilinear", "spectral", "fourier_linear"}
    x, y = next(iter(torch.utils.data.DataLoader(splits["train"], batch_size=8)))
    mse = {name: float(((m(x) - y) ** 2).mean()) for name, m in modules.items()}
    assert mse["fourier_linear"] < mse["spectral"], mse
