"""Early stopping in train.loop: the patience counts from the last epoch that beat the best by
``min_improvement``, the best checkpoint still follows every gain, and a resumed run keeps the count and
its time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from pipelines.params import OptimiserParams
from train.loop import load_checkpoint, train


class _Linear(torch.nn.Linear):
    def regularizer(self) -> torch.Tensor:
        return torch.zeros(())


class _ScriptedTask:
    """Trains on a real loss; its validation metric is the next scripted value, one per epoch."""

    def __init__(self, values: list[float]) -> None:
        self.values: Iterator[float] = iter(values)

    def loss(self, model: torch.nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
        return model(batch[0]).pow(2).mean()

    def errors(self, model: torch.nn.Module, batch: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
        return torch.tensor(next(self.values), dtype=torch.float64), 1

    def reduce(self, sums: torch.Tensor, count: int) -> float:
        return float(sums) / count


def _data() -> tuple[TensorDataset, TensorDataset]:
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x), TensorDataset(x[:2])  # one validation batch: one scripted value per epoch


# 1.0, then a 2% gain (epoch 2), then gains of 0.5%, 0.3%, 0.2%, 0.1%: each a new best
CREEPING = [1.0, 0.98, 0.975, 0.972, 0.970, 0.969, 0.968, 0.967]


def _train(tmp_path: Path, task: _ScriptedTask, min_improvement: float, **kwargs) -> dict:
    settings = OptimiserParams(max_epochs=8, early_epoch=1, batch_size=4, patience=2,
                               min_improvement=min_improvement)  # fmt: skip
    torch.manual_seed(0)
    return train(_Linear(3, 1), task, *_data(), settings, tmp_path, seed=0, config_key="k", **kwargs)


def test_without_a_threshold_every_gain_resets_the_patience(tmp_path: Path) -> None:
    result = _train(tmp_path, _ScriptedTask(CREEPING), 0.0)
    assert result["history"]["epoch"] == list(range(1, 9))
    assert not result["stopped_early"] and result["best_epoch"] == 8


def test_gains_below_the_threshold_do_not_reset_the_patience(tmp_path: Path) -> None:
    result = _train(tmp_path, _ScriptedTask(CREEPING), 0.01)
    # the last 1% gain is epoch 2; epochs 3 and 4 use up the patience of 2, so epoch 5 never runs
    assert result["history"]["epoch"] == [1, 2, 3, 4]
    assert result["stopped_early"]
    assert result["best_epoch"] == 4 and result["best_valid"] == pytest.approx(0.972)  # still the best
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 4
    # 0.25%: epochs 3 and 4 count; 5 alone (0.2%) does not, but 6 beats epoch 4 by 0.31%: gains add up
    quarter = _train(tmp_path / "quarter", _ScriptedTask(CREEPING), 0.0025)
    assert quarter["history"]["epoch"] == list(range(1, 9)) and not quarter["stopped_early"]
    assert load_checkpoint(tmp_path / "quarter" / "last.pt")["improved_epoch"] == 6


class _Stop(Exception):
    pass


def test_a_resumed_run_keeps_counting_from_the_last_real_gain(tmp_path: Path) -> None:
    task = _ScriptedTask(CREEPING)  # one script across both processes' epochs

    def stop_after_three(epoch: int, _: dict) -> None:
        if epoch == 3:
            raise _Stop

    with pytest.raises(_Stop):
        _train(tmp_path, task, 0.01, on_epoch=stop_after_three)
    clock = tmp_path / "train_seconds.json"  # wall clock stays out of last.pt (identical bytes)
    first = json.loads(clock.read_text())["train_seconds"]
    assert first > 0
    result = _train(tmp_path, task, 0.01)  # resumes from last.pt after epoch 3
    assert result["history"]["epoch"] == [1, 2, 3, 4] and result["stopped_early"]
    # the run's time counts the first invocation's three epochs as well as the resumed one
    assert result["train_seconds"] > first
    assert result["train_seconds"] == json.loads(clock.read_text())["train_seconds"]


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_a_threshold_outside_zero_to_one_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="min_improvement"):
        OptimiserParams(min_improvement=value)
