"""What a training run is built from: its model (by name, seeded) and its data splits (by dataset name).

Plain arguments only (names, paths, numbers), so the training and landscape stages share one way to build
a run without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset

from loaders.smoke import smoke_plume
from loaders.turbulence import turbulence_sr
from models.registry import build_model, default_hparams
from train.kinds import SPLITS, SplitSpec, train_kind
from train.loop import seed_everything

__all__ = ["SplitSpec", "build", "load_splits", "model_hparams", "output_scale"]


def load_splits(dataset: str, data: Path, spec: SplitSpec) -> dict[str, Dataset]:
    """train / valid / test datasets, normalised with the train-split statistics (the dataset's kind,
    train/kinds.py, reads its store)."""
    return train_kind(dataset).load_splits(data, spec)


def smoke_splits(data: Path, spec: SplitSpec) -> dict[str, Dataset]:
    strides = {"train": spec.window_stride, "valid": spec.valid_stride, "test": 1}
    options = {"level": spec.level, "normalise": spec.normalise}
    return {split: smoke_plume(data, split=split, stride=strides[split], **options) for split in SPLITS}


class HeldOut(ConcatDataset):
    """The windows of every split of held-out stores (simulations no run trains on), normalised like the
    training split; ``effective_size`` counts each store's simulations once, whatever its splits."""

    def __init__(self, parts: list[list[Dataset]], train_set: Dataset):
        super().__init__([part for store in parts for part in store])
        self.normalisers = getattr(train_set, "normalisers", {})  # output_scale: the training units
        self._parts = parts

    def effective_size(self) -> dict[str, int]:
        sizes = [[part.effective_size() for part in store] for store in self._parts]
        return {
            "simulations": sum(store[0]["simulations"] for store in sizes),
            "windows": sum(s["windows"] for store in sizes for s in store),
        }


def smoke_held_out(stores: list[Path], spec: SplitSpec, train_set: Dataset) -> HeldOut:
    """The smoke *Domain* test set: the non-overlapping windows of the held-out stores at ``spec.level``,
    normalised with the training split's statistics (``train_set.stats``), not each store's own."""
    stats = getattr(train_set, "stats", None) if spec.normalise else None
    options = {"level": spec.level, "normalise": spec.normalise, "stats": stats}
    # windows that share no frame (stride = window length): overlapping ones cost a rollout each and add
    # little (their errors are nearly the same), and the per-window standard error assumes independence
    parts = []
    for store in stores:
        length = smoke_plume(store, split="test", **options).index.length  # the store's window length
        parts.append([smoke_plume(store, split=split, stride=length, **options) for split in SPLITS])
    return HeldOut(parts, train_set)


def turbulence_splits(data: Path, spec: SplitSpec) -> dict[str, Dataset]:
    return {split: turbulence_sr(data, split=split, normalise=spec.normalise) for split in SPLITS}


def output_scale(dataset: Dataset) -> float:
    """Factor from normalised to physical units of the target (1 without normalisation)."""
    normalisers = getattr(dataset, "normalisers", {}) or {}
    target = (
        "velocity" if "velocity" in normalisers else (dataset.pair[1] if hasattr(dataset, "pair") else None)
    )
    if target is None or target not in normalisers:
        return 1.0
    scale = normalisers[target].scale
    if not (scale == scale[0]).all() or (normalisers[target].shift != 0).any():
        raise ValueError("metrics in physical units need the 'scale' normalisation (one factor per field)")
    return float(scale[0])


def model_hparams(dataset: str, model_name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The model's default size for this dataset's task, with ``overrides`` applied."""
    return {**default_hparams(train_kind(dataset).model_task, model_name), **overrides}


def build(dataset: str, model_name: str, seed: int, hparams: dict[str, Any]) -> torch.nn.Module:
    """The model with its initial weights, which depend on the seed only."""
    seed_everything(seed)
    return build_model(train_kind(dataset).model_task, model_name, **hparams)
