"""What training needs to know about a dataset kind, found by the dataset's name.

A :class:`TrainKind` says how a store is cut into train / valid / test datasets, which model task of
``models/catalog.py`` its models come from, its metric, how the task a run trains with is built and which
trivial predictors every model must beat. The two built-in kinds are registered here; another kind is
registered by the pipelines layer when it resolves that dataset's spec (pipelines/datasets.py), in every
process that runs it. Nothing heavy is imported here (a kind's functions may be given by import path, as
the built-ins' are): the params schema reads ``model_task`` from here, and the dataset stages, which do not
depend on the training code, validate their params with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.spec import import_attr

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset


SPLITS = ("train", "valid", "test")
# the metric names, spelt once: the task classes (train/tasks.py) compute them, the kinds below name
# theirs, and every file key is train.runs.metric_key(name)
RMSE = "rmse"
MAE = "mae"


@dataclass(frozen=True)
class SplitSpec:
    """How a dataset's store is cut into train / valid / test for training."""

    normalise: str | None = "scale"
    level: int = 0  # smoke only: the symmetry level trained on
    window_stride: int = 1  # smoke only: spacing of training windows
    valid_stride: int = 1  # smoke only: spacing of validation windows (test windows: always 1)


Ref = str  # "package.module:name": imported when first used, so this module stays light


def load_ref(ref: str, what: str) -> Any:
    """The object ``package.module:name`` names; ``what`` says whose it is in the message."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what}={ref!r} is not of the form package.module:name")
    try:
        return import_attr(ref)
    except ValueError as err:
        raise ValueError(f"{what}={err}") from None


@dataclass(frozen=True)
class TrainKind:
    """A dataset kind as training sees it; each function is given itself or by its ``Ref``.

    ``splits(data, spec)``: {"train", "valid", "test"} -> Dataset, normalised with the train statistics;
    ``task(train_rollout=, residual=, train_set=, upsampler=)``: the task object a run trains with (options
    a kind does not use are ignored); ``baselines(splits)``: name -> trivial predictor module.
    """

    name: str
    model_task: str  # the models/catalog.py task its models are built for ("smoke": 2D C4, "sr": 3D)
    metric: str  # its task's metric (RMSE, MAE): what its metrics files are keyed by
    splits: Callable[[Path, SplitSpec], dict[str, Dataset]] | Ref
    task: Callable[..., Any] | Ref
    baselines: Callable[[dict[str, Dataset]], dict[str, nn.Module]] | Ref
    # held_out(stores, spec, train_set): one test set over held-out stores (simulations never trained on),
    # normalised with ``train_set``'s statistics; None: the kind has no held-out test
    held_out: Callable[[list[Path], SplitSpec, Dataset], Dataset] | Ref | None = None

    def _function(self, field: str) -> Callable[..., Any]:
        value = getattr(self, field)
        return load_ref(value, f"the {field} of dataset {self.name!r}") if isinstance(value, str) else value

    def load_splits(self, data: Path, spec: SplitSpec) -> dict[str, Dataset]:
        return self._function("splits")(data, spec)

    def load_held_out(self, stores: list[Path], spec: SplitSpec, train_set: Dataset) -> Dataset:
        if self.held_out is None:
            raise ValueError(f"dataset {self.name!r} has no held-out test set")
        return self._function("held_out")(stores, spec, train_set)

    def make_task(self, **options: Any) -> Any:
        task = self._function("task")(**options)
        if task.metric_name != self.metric:
            raise ValueError(f"dataset {self.name!r}: its task computes {task.metric_name!r}, its kind says "
                             f"{self.metric!r}")  # fmt: skip
        return task

    def make_baselines(self, splits: dict[str, Dataset]) -> dict[str, nn.Module]:
        return self._function("baselines")(splits)


# the built-in kinds: their functions live beside the code they call (torch, loaders)
SMOKE = TrainKind("smoke", "smoke", RMSE, "train.data:smoke_splits", "train.tasks:smoke_task",
                  "train.baselines:smoke_predictors", "train.data:smoke_held_out")  # fmt: skip
TURBULENCE = TrainKind("turbulence", "sr", MAE, "train.data:turbulence_splits", "train.tasks:sr_task",
                       "train.baselines:sr_predictors")  # fmt: skip

_KINDS: dict[str, TrainKind] = {kind.name: kind for kind in (SMOKE, TURBULENCE)}


def register(kind: TrainKind) -> TrainKind:
    """Make ``kind`` known by its name in this process; registering another kind under a taken name is
    refused (two modules claiming one dataset name would silently swap each other's data)."""
    known = _KINDS.setdefault(kind.name, kind)
    if known != kind:
        raise ValueError(f"dataset name {kind.name!r} is already registered to another kind")
    return kind


def train_kind(dataset: str) -> TrainKind:
    if dataset not in _KINDS:
        raise ValueError(
            f"unknown dataset {dataset!r}; known here: {sorted(_KINDS)} (a dataset of your own is known once "
            "params.yaml's dataset_specs names its module)"
        )
    return _KINDS[dataset]


def task_for(
    dataset: str, train_rollout: int | None = None, residual: bool = False, train_set: object = None,
    upsampler: str = "trilinear",
) -> Any:  # fmt: skip
    """The task object a run of ``dataset`` trains with, built by its kind: the smoke task carries its
    training rollout length; a residual task needs the training split (the size of the residual;
    super-resolution: its grid ratio and lr -> hr unit conversion)."""
    if residual and train_set is None:
        raise ValueError("a residual task needs train_set (size of the residual; SR: grid ratio and units)")
    return train_kind(dataset).make_task(
        train_rollout=train_rollout, residual=residual, train_set=train_set, upsampler=upsampler
    )
