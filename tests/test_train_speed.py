"""Issue 21 §3: the training step's cheaper paths give the bits of the ones they replace, and a validation
pass expands each kernel once (benchmarks/train_step.py times them)."""

from __future__ import annotations

import platform
import sys

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from models.fastops import circular_pad
from models.gconv import GroupConv, upsample_nearest
from models.registry import build_model
from train.loop import evaluate, keep_freed_memory
from train.tasks import SmokeTask, score


@pytest.mark.parametrize("shape,dim,pad", [((2, 3, 5, 6, 7), 3, 1), ((2, 3, 6, 7), 2, 2)])
def test_circular_pad_has_the_bits_of_f_pad(shape: tuple[int, ...], dim: int, pad: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, requires_grad=True)
    padded = [*shape[:-dim], *(s + 2 * pad for s in shape[-dim:])]
    grad = torch.randn(padded, generator=gen)  # corners sum 2^dim terms: any change of order shows
    ref = F.pad(x, (pad,) * (2 * dim), mode="circular")
    out = circular_pad(x, pad, dim)
    assert torch.equal(out, ref)
    assert torch.equal(torch.autograd.grad(out, x, grad)[0], torch.autograd.grad(ref, x, grad)[0])
    # double backward (the landscape's Hessian-vector products) agrees too
    w = torch.randn(shape, generator=gen, requires_grad=True)
    hvps = []
    for pad_fn in (circular_pad, lambda t, p, d: F.pad(t, (p,) * (2 * d), mode="circular")):
        (g,) = torch.autograd.grad((pad_fn(x * w, pad, dim) ** 2 * grad).sum(), x, create_graph=True)
        hvps.append(torch.autograd.grad(g.sum(), w)[0])
    assert torch.allclose(hvps[0], hvps[1], rtol=1e-6, atol=0)
    # the backward's own backward is the pad: <P^T g, v> differentiated in g gives P v
    g = grad.clone().requires_grad_(True)
    (folded,) = torch.autograd.grad(circular_pad(x, pad, dim), x, g, create_graph=True)
    v = torch.randn(shape, generator=gen)
    assert torch.equal(torch.autograd.grad(folded, g, v)[0], F.pad(v, (pad,) * (2 * dim), mode="circular"))

def test_upsample_nearest_has_the_bits_of_repeat_interleave() -> None:
    x = torch.randn(2, 3, 4, 5, 6, requires_grad=True)
    ref = x.repeat_interleave(2, -3).repeat_interleave(2, -2).repeat_interleave(2, -1)
    out = upsample_nearest(x, 3)
    grad = torch.randn(out.shape)
    assert torch.equal(out, ref)
    assert torch.equal(torch.autograd.grad(out, x, grad)[0], torch.autograd.grad(ref, x, grad)[0])


def test_a_validation_pass_expands_each_kernel_once(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = build_model("smoke", "gcnn", hidden=2, layers=3)
    calls = []
    expand = GroupConv.expand
    monkeypatch.setattr(GroupConv, "expand", lambda self: calls.append(self) or expand(self))
    data = TensorDataset(torch.randn(4, 1, 2, 8, 8), torch.randn(4, 6, 2, 8, 8))  # 2 batches x 6 steps
    metric = evaluate(model, SmokeTask(residual=True), DataLoader(data, batch_size=2))
    layers = [m for m in model.modules() if isinstance(m, GroupConv)]
    assert sorted(map(id, calls)) == sorted(map(id, layers))  # once each, not 12 times
    calls.clear()
    with torch.no_grad():  # the cached kernels gave the bits of expanding at every call
        x, y = data.tensors
        sq = (torch.stack([SmokeTask(residual=True).errors(model, (x[i:i + 2], y[i:i + 2]))[0]
                           for i in (0, 2)]).sum(0))  # fmt: skip
    assert metric == SmokeTask.reduce(sq, 2 * (2 * 2 * 8 * 8))  # two batches of 2 x 2 x 8 x 8 values
    assert len(calls) == 2 * 6 * len(layers)


GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_training_keeps_freed_memory_on_glibc() -> None:
    assert keep_freed_memory() is True  # mallopt accepted both settings (values unchanged: train_step.py)


class _TwoPassTask:
    """The task's two methods only: score() falls back to one prediction for each."""

    def __init__(self, task: object) -> None:
        self._task = task

    def __getattr__(self, name: str) -> object:
        if name == "errors_and_samples":
            raise AttributeError(name)
        return getattr(self._task, name)


def test_score_predicts_once_per_batch_with_the_bits_of_two_passes() -> None:
    torch.manual_seed(0)
    model = build_model("smoke", "gcnn", hidden=2, layers=3)
    data = TensorDataset(torch.randn(5, 1, 2, 8, 8), torch.randn(5, 6, 2, 8, 8))  # a short last batch
    task = SmokeTask(residual=True, step_scale=0.3)
    calls = []
    forward = model.forward
    model.forward = lambda x: calls.append(1) or forward(x)  # type: ignore[method-assign]
    one = score(model, task, data, batch_size=2, scale=2.0)
    assert len(calls) == 3 * 6  # 3 batches x 6 rollout steps, one rollout each
    two = score(model, _TwoPassTask(task), data, batch_size=2, scale=2.0)  # type: ignore[arg-type]
    assert len(calls) == 3 * 6 * 3  # the fallback rolls out twice per batch
    assert one == two  # every number, per-sample values included, has the same bits
