"""Training steps per second of every model at the embedded default's size (params.yaml), on one torch thread,
with the group convolutions' kernel expanded the old way (advanced indexing) and the current way (gather).

    python benchmarks/train_step.py [--steps 6] [--repeats 4] [--threads 1]

A step is what the train stage does per batch: forward (a residual one-step prediction for smoke, the SR
correction), loss, backward, Adam. Batches are random tensors of the stage's shapes and batch sizes (smoke
4 x [2, 64, 64], super-resolution 2 x [3, 3, 16, 16, 16] -> [3, 64, 64, 64]), so no store is needed.

before: ``GroupConv.expand`` indexing ``weight[:, :, index]``, whose backward (``index_put_`` with
accumulation) adds with float atomics from several threads on large kernels (non-deterministic; on one
thread it is serial); after: ``torch.gather`` (models/gconv.py). The two sum the same products in another
order, so their weights after ``--steps`` steps differ in the last bits: the largest difference is printed
(the tolerance). Models without a GroupConv (e2cnn, rsteer, gmcnn) run the same code both times.
Prints samples/s per model side by side and finally ``ratio: <geometric mean of after / before>`` over the
models the change touches.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml
from torch.nn import functional as F

from models.gconv import GroupConv
from models.registry import build_model

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {  # (task, batch, input, target): the train stage's batch sizes and grids
    "smoke": ("smoke", 4, (2, 64, 64), (2, 64, 64)),
    "turbulence": ("sr", 2, (3, 3, 16, 16, 16), (3, 64, 64, 64)),
}


def _indexed_expand(self: GroupConv) -> tuple[torch.Tensor, torch.Tensor | None]:
    """GroupConv.expand as it was before the gather: only the first line differs."""
    w = self.weight[:, :, self.index]
    if self.sign is not None:
        w = w * self.sign.to(w.dtype)
    w = w[0] if self.relaxed_weights is None else torch.einsum("lagn,lg->agn", w, self.relaxed_weights)
    ks = (self.kernel_size,) * self.dim
    if self.kind == "project":
        w = w.reshape(self.in_channels, self.n, self.out_channels * self.m, -1).permute(2, 0, 1, 3)
        return w.reshape(self.out_channels * self.m, self.in_channels * self.n, *ks), self.bias
    cin = self.in_channels * (self.m if self.kind == "lift" else self.n)
    bias = None if self.bias is None else self.bias.repeat_interleave(self.n)
    return w.reshape(self.out_channels * self.n, cin, *ks), bias


@contextlib.contextmanager
def _indexing() -> Iterator[None]:
    current = GroupConv.expand
    GroupConv.expand = _indexed_expand  # type: ignore[method-assign]
    try:
        yield
    finally:
        GroupConv.expand = current  # type: ignore[method-assign]


def _train(dataset: str, name: str, hparams: dict, steps: int) -> tuple[float, torch.Tensor]:
    """Samples/s of ``steps`` steps from the seeded initial weights, and the weights after the last."""
    task, batch, x_shape, y_shape = SHAPES[dataset]
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, *x_shape, generator=gen), torch.randn(batch, *y_shape, generator=gen)
    torch.manual_seed(0)
    model = build_model(task, name, **hparams).train()
    if dataset == "turbulence":  # the default zero head would send no gradient into the rest at first
        torch.nn.init.normal_(model.head.weight, std=0.01)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(steps):
        out = model(x)
        pred = x[:, -2:] + 0.1 * out if dataset == "smoke" else 0.1 * out
        loss = F.mse_loss(pred, y) + model.regularizer()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    rate = steps * batch / (time.perf_counter() - start)
    return rate, torch.cat([p.detach().flatten() for p in model.parameters()])


def _compare(dataset: str, name: str, hparams: dict, steps: int, repeats: int) -> tuple[float, float, float]:
    """Median samples/s before and after, the two alternating (so a change of load hits both alike), and
    the largest weight difference after ``steps`` steps."""
    before, after = [], []
    for k in range(repeats):
        for indexed in (False, True) if k % 2 == 0 else (True, False):
            with _indexing() if indexed else contextlib.nullcontext():
                rate, weights = _train(dataset, name, hparams, steps)
            (before if indexed else after).append((rate, weights))
    diff = float((before[-1][1] - after[-1][1]).abs().max())
    return statistics.median(r for r, _ in before), statistics.median(r for r, _ in after), diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    train = yaml.safe_load(args.params.read_text())["train"]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps x {args.repeats} repeats")
    header = f"{'model':22s} {'before':>10s} {'after':>10s} {'after/before':>13s} {'max |dw|':>10s}"
    print(header + "  (samples/s)")
    ratios = []
    for dataset in ("smoke", "turbulence"):
        for name in train[dataset]["models"]:
            hparams = train[dataset].get("hparams", {}).get(name, {})
            task = SHAPES[dataset][0]
            touched = any(isinstance(m, GroupConv) for m in build_model(task, name, **hparams).modules())
            label = f"{dataset} {name}"
            if not touched:
                rate = statistics.median(
                    _train(dataset, name, hparams, args.steps)[0] for _ in range(args.repeats)
                )
                print(f"{label:22s} {'(same code)':>10s} {rate:10.1f}")
                continue
            before, after, diff = _compare(dataset, name, hparams, args.steps, args.repeats)
            ratios.append(after / before)
            print(f"{label:22s} {before:10.1f} {after:10.1f} {after / before:13.3f} {diff:10.2e}")
    print(f"ratio: {math.exp(statistics.fmean(math.log(r) for r in ratios)):.3f}")


if __name__ == "__main__":
    main()
