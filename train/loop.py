"""A plain torch training loop: Adam, StepLR, early stopping, "early"/"best"/"last" checkpoints, resume.

Checkpoints are verified data (train/checkpoints.py): each records the run it belongs to and a checksum,
holds only tensors and plain containers (they load with ``torch.load(weights_only=True)``), and has the
same bytes for the same weights. ``last.pt`` is rewritten after every epoch; a rerun of the same run
continues from it when it, ``best.pt`` and ``early.pt`` verify and agree, and starts over otherwise.
The wall-clock time is the one thing kept outside the checkpoints: ``train_seconds.json`` beside them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from loaders.storage import write_json_atomic
from models.expansion import expanded_once
from train.checkpoints import CheckpointError, load_checkpoint, remove_dead_temporaries, save_checkpoint
from train.device import loader_options, to_device


@dataclass(frozen=True)
class OptimiserConfig:
    """Adam + StepLR + early stopping on the validation metric (the study's recipe)."""

    lr: float = 1e-3
    weight_decay: float = 4e-4
    batch_size: int = 8
    max_epochs: int = 6
    lr_step_epochs: int = 1
    lr_gamma: float = 0.9
    patience: int = 5
    min_improvement: float = 0.0  # relative; smaller gains do not reset the patience
    early_epoch: int = 3
    max_train_batches: int | None = None
    num_workers: int = 0


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# glibc's mallopt parameters and the largest mmap threshold it accepts on 64-bit Linux
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX = -1, -3, 32 * 1024 * 1024
TRIM_THRESHOLD = 1024**3


def keep_freed_memory() -> bool:
    """Let this process's malloc keep freed blocks (up to 32 MiB each, 1 GiB at the heap's top) for reuse.

    A training step allocates and frees the same activation buffers every time; glibc's defaults hand the
    large ones back to the kernel and take them again page by page (a 3D SR step's 12 MB buffers cost
    ~12,000 page faults: a transposed convolution's step took 46 ms of CPU, 27 ms with this). Only where
    memory comes from changes, not any value. Linux/glibc only; elsewhere a no-op (returns False)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mmap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    return bool(mmap) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


SECONDS_FILE = "train_seconds.json"
CHECKPOINT_FILES = ("last.pt", "best.pt", "early.pt")


def _read_seconds(path: Path) -> float:
    try:
        return float(json.loads(path.read_text())["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0  # wall time only: an unreadable record costs the earlier invocations' time, no result


def _shapes(weights: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in weights.items()}


def resumable_state(
    run_dir: Path, identity: Mapping[str, Any], early_epoch: int, model: nn.Module
) -> dict[str, Any] | None:
    """``last.pt``'s state when it, ``best.pt`` and ``early.pt`` verify as this run's, agree on their
    epochs and hold weights of ``model``'s shapes; otherwise None, with every checkpoint of the run
    removed (it starts over, and says why)."""
    if not any((run_dir / name).exists() for name in CHECKPOINT_FILES):
        return None
    expected = _shapes(model.state_dict())
    try:
        state = load_checkpoint(run_dir / "last.pt", run=identity)
        early = early_epoch if state["epoch"] >= early_epoch else 0  # 0: not written yet
        for name, epoch in {
            "last.pt": state["epoch"],
            "best.pt": state["best_epoch"],
            "early.pt": early,
        }.items():
            if not epoch:
                continue
            weights = state if name == "last.pt" else load_checkpoint(run_dir / name, run=identity)
            if weights["epoch"] != epoch:
                raise CheckpointError(f"{run_dir / name} is epoch {weights['epoch']}, {epoch} expected")
            if _shapes(weights["model"]) != expected:
                raise CheckpointError(f"{run_dir / name} holds another architecture's weights")
        return state
    except (CheckpointError, KeyError, TypeError) as err:
        print(f"{run_dir}: not resumable ({err}); starting over")
        for name in (*CHECKPOINT_FILES, SECONDS_FILE):
            (run_dir / name).unlink(missing_ok=True)
        return None


@dataclass
class History:
    epoch: list[int]
    train_loss: list[float]
    valid_metric: list[float]
    lr: list[float]

    @classmethod
    def empty(cls) -> History:
        return cls([], [], [], [])

    def as_dict(self) -> dict[str, list]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "valid_metric": self.valid_metric,
            "lr": self.lr,
        }


def evaluate(model: nn.Module, task: Any, loader: DataLoader, device: torch.device | None = None) -> float:
    """The task's metric over a whole split, with the model in eval mode and no gradients; each kernel is
    expanded once for the pass (the weights do not change in it; a smoke rollout calls the model 6 times a
    batch)."""
    model.eval()
    sums, count = None, 0
    with torch.no_grad(), expanded_once(model):
        for batch in loader:
            s, n = task.errors(model, to_device(batch, device))
            sums = s if sums is None else sums + s
            count += n
    return task.reduce(sums, count)


def train(
    model: nn.Module,
    task: Any,
    train_set: Dataset,
    valid_set: Dataset,
    settings: OptimiserConfig,
    run_dir: Path,
    seed: int,
    config_key: Mapping[str, Any] | str,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Train until ``max_epochs`` or early stopping; returns the history and the best epoch.

    ``device``: where the model, batches and losses live (None: wherever the model already is, the CPU
    for a fresh model); ``task`` must have its own tensors there too (:func:`train.device.task_on`).
    ``config_key``: the run's identity (pipelines/run_config.py ``run_identity``), recorded in every
    checkpoint; a checkpoint of another identity is never resumed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(run_dir)
    keep_freed_memory()
    identity = dict(config_key) if isinstance(config_key, Mapping) else {"config_key": config_key}
    gen = seed_everything(seed)
    if device is not None:
        model.to(device)
    cuda = device is not None and device.type == "cuda"
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, settings.lr_step_epochs, settings.lr_gamma)
    history, best, best_epoch, start = History.empty(), float("inf"), 0, 1
    # the patience counts from the last epoch that beat `reference` by min_improvement (with 0: best_epoch)
    reference, improved_epoch = best, best_epoch
    clock = run_dir / SECONDS_FILE  # wall time of every epoch, over all the invocations of this run
    state = resumable_state(run_dir, identity, settings.early_epoch, model)
    seconds = _read_seconds(clock) if state is not None else 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])  # it moves its state to its parameters' device
        scheduler.load_state_dict(state["scheduler"])
        history = History(**{k: list(v) for k, v in state["history"].items()})
        best, best_epoch, start = state["best"], state["best_epoch"], state["epoch"] + 1
        reference = state.get("plateau_reference", best)
        improved_epoch = state.get("improved_epoch", best_epoch)
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if cuda and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        print(f"resuming {run_dir} after epoch {state['epoch']}")

    loading = loader_options(device, settings.num_workers)  # worker processes and pinned memory overlap I/O
    valid_loader = DataLoader(valid_set, batch_size=settings.batch_size, **loading)
    stopped_early = False
    for epoch in range(start, settings.max_epochs + 1):
        # never before early.pt exists: the landscape stage measures it
        if epoch - improved_epoch > settings.patience and improved_epoch > 0 and epoch > settings.early_epoch:
            stopped_early = True
            break
        train_loader = DataLoader(
            train_set, batch_size=settings.batch_size, shuffle=True, generator=gen,
            drop_last=len(train_set) > settings.batch_size, **loading,
        )  # fmt: skip
        model.train()
        epoch_start = time.perf_counter()
        total, batches = 0.0, 0
        limit = settings.max_train_batches or len(train_loader)
        bar = tqdm(
            train_loader,
            total=min(limit, len(train_loader)),
            desc=f"epoch {epoch}",
            leave=False,
            disable=None,
        )
        for batch in bar:
            if batches >= limit:
                break
            loss = task.loss(model, to_device(batch, device)) + model.regularizer()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            value = loss.item()  # one device sync per step
            total += value
            batches += 1
            bar.set_postfix(loss=f"{value:.4g}")
        scheduler.step()
        valid = evaluate(model, task, valid_loader, device)
        seconds += time.perf_counter() - epoch_start  # evaluate() returns a float: the device has synced
        history.epoch.append(epoch)
        history.train_loss.append(total / max(batches, 1))
        history.valid_metric.append(valid)
        history.lr.append(optimiser.param_groups[0]["lr"])
        if epoch == settings.early_epoch:
            save_checkpoint(run_dir / "early.pt", {"model": model.state_dict(), "epoch": epoch}, identity)
        if valid < best:
            best, best_epoch = valid, epoch
            save_checkpoint(run_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch}, identity)
        if valid < reference * (1.0 - settings.min_improvement):
            reference, improved_epoch = valid, epoch
        state = {
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "history": history.as_dict(),
            "best": best,
            "best_epoch": best_epoch,
            "plateau_reference": reference,
            "improved_epoch": improved_epoch,
            "epoch": epoch,
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if cuda:
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        save_checkpoint(run_dir / "last.pt", state, identity)
        write_json_atomic(clock, {"epoch": epoch, "train_seconds": seconds})  # after last.pt: never ahead
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": history.train_loss[-1], "valid_metric": valid})
    return {
        "history": history.as_dict(),
        "best_epoch": best_epoch,
        "best_valid": best,
        "stopped_early": stopped_early,
        "train_seconds": seconds,
    }


def write_curves(path: Path, history: dict[str, list], extra: dict[str, Any]) -> None:
    """Per-epoch rows for ``dvc plots``."""
    rows = [{**extra, **{key: history[key][i] for key in history}} for i in range(len(history["epoch"]))]
    write_json_atomic(path, rows)
