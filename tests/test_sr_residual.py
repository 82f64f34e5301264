"""The residual super-resolution path: it starts at the upsampling, sees a periodic box, and learns.

Issue 11: every SR model tied the spectral baseline to 5 digits. A random head added noise of the
residual's own size; training removed it by switching the ReLUs off (a dead net, correction exactly 0);
zero padding made the 8^3 lr box look walled.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import TensorDataset  # noqa: E402

from models.registry import build_model  # noqa: E402
from tests.test_models import _one_thread  # noqa: E402, F401 (autouse fixture)
from train.baselines import spectral_upsample, trilinear_upsample  # noqa: E402
from train.kinds import task_for  # noqa: E402

TINY = {"cnn": {"hidden": 2}, "gcnn": {"hidden": 1}, "rgcnn": {"hidden": 1}}


def _model(name: str, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("sr", name, enc_layers=1, **{**TINY[name], **extra})


def _data(n: int = 4, samples: int = 2) -> TensorDataset:
    """hr = spectral upsampling of the middle lr frame + a local linear correction a net can learn."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(samples, 3, 3, n, n, n, generator=gen)
    mid = x[:, 1]
    y = spectral_upsample(mid, 4) + 0.8 * (trilinear_upsample(mid, 4) - spectral_upsample(mid, 4))
    return TensorDataset(x, y)


@pytest.mark.parametrize("name", sorted(TINY))
def test_residual_model_starts_exactly_at_the_upsampling(name):
    data = _data()
    task = task_for("turbulence", residual=True, train_set=data, upsampler="spectral")
    x, _ = data[:2]
    with torch.no_grad():
        assert torch.equal(task.predict(_model(name), x), task.reference(x))


@pytest.mark.parametrize("name", sorted(TINY))
def test_sr_net_commutes_with_periodic_shifts(name):
    # the box is periodic: shifting the lr input by one cell shifts the hr output by 4 cells (zero
    # padding breaks this near every face)
    model = _model(name, zero_head=False).double()
    x = torch.randn(2, 3, 3, 4, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
        for dim in (-3, -2, -1):
            shifted = model(torch.roll(x, 1, dim))
            assert torch.allclose(shifted, torch.roll(out, 4, dim), atol=1e-12)
    zeros = _model(name, zero_head=False, padding="zeros").double()
    with torch.no_grad():
        assert not torch.allclose(zeros(torch.roll(x, 1, -1)), torch.roll(zeros(x), 4, -1), atol=1e-6)


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_few_steps_on_one_batch_beat_the_upsampling(name):
    data = _data()
    task = task_for("turbulence", residual=True, train_set=data, upsampler="spectral")
    batch = data[:2]
    model = _model(name)
    baseline = float(torch.nn.functional.l1_loss(task.reference(batch[0]), batch[1]))
    # the default's lr; 3e-3 already kills every ReLU of a 1-wide rgcnn (docs/study.md), 1e-2 of a gcnn
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(60):
        loss = task.loss(model, batch)
        optimiser.zero_grad()
        loss.backward()
        if step == 0:  # the correction gets a gradient although it starts at zero
            assert float(model.head.weight.grad.abs().max()) > 0
        optimiser.step()
    assert float(task.loss(model, batch)) < 0.9 * baseline


def test_unknown_padding_is_refused():
    with pytest.raises(ValueError, match="padding"):
        _model("cnn", padding="reflect")
