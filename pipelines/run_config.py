"""From the params schema to the plain arguments the training library takes (shared by the run stages)."""

from __future__ import annotations

from typing import Any

from pipelines.params import TaskTrainParams
from train.data import SplitSpec, model_hparams
from train.loop import OptimiserConfig
from train.tasks import SmokeTask, SuperResolutionTask, task_for


def split_spec(section: TaskTrainParams) -> SplitSpec:
    return SplitSpec(normalise=section.normalise, level=section.level, window_stride=section.window_stride)


def optimiser_config(section: TaskTrainParams, model_name: str | None = None) -> OptimiserConfig:
    """The optimiser a run trains with: ``section.optimiser`` plus ``model_name``'s overrides, if any."""
    opt = section.optimiser if model_name is None else section.optimiser_for(model_name)
    return OptimiserConfig(**opt.model_dump())


def hparams_of(dataset: str, model_name: str, section: TaskTrainParams) -> dict[str, Any]:
    return model_hparams(dataset, model_name, section.hparams.get(model_name, {}))


def task_of(dataset: str, section: TaskTrainParams, train_set: Any) -> SmokeTask | SuperResolutionTask:
    """The task a run trains (and its landscape is measured) with: rollout length and residual form."""
    return task_for(dataset, section.train_rollout, section.residual, train_set, section.upsampler)
