"""From the params schema to the plain arguments the training library takes (shared by the run stages),
and a run's identity: the one definition of what a trained run depends on.

The identity is recorded in every checkpoint (train/checkpoints.py) and is the train stage's stamp
(pipelines/matrix.py): a change to anything in it, the code included, retrains the run from scratch; the
landscape stage verifies a checkpoint against it before measuring. dvc.yaml lists each params key it reads
(``run_params``) in the train and landscape stages, and each code path (``TRAIN_CODE``) as a dependency;
tests/test_staleness.py checks both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loaders.scratch import params_key
from loaders.storage import store_digest
from pipelines.params import TaskTrainParams
from train.data import SplitSpec, model_hparams
from train.loop import OptimiserConfig
from train.runs import RunId
from train.tasks import SmokeTask, SuperResolutionTask, task_for


def split_spec(section: TaskTrainParams, level: int | None = None) -> SplitSpec:
    """How a run's data is cut; ``level`` (smoke) defaults to the first of ``section.levels``."""
    level = section.levels[0] if level is None else level
    return SplitSpec(normalise=section.normalise, level=level, window_stride=section.window_stride)


def run_levels(dataset: str, section: TaskTrainParams, model_name: str) -> list[int | None]:
    """The levels ``model_name`` is trained at: smoke's ``levels`` it is listed for (all of them at the
    first, ``sweep_models`` at the others); ``[None]`` for a dataset without levels."""
    if dataset != "smoke":
        return [None]
    return [lv for lv in section.levels if model_name in section.models_at(lv)]


def run_id(
    dataset: str, model_name: str, seed: int, section: TaskTrainParams, level: int | None = None
) -> RunId:
    """The run's files (train/runs.py); a smoke run without ``level`` is the first level's."""
    if dataset == "smoke":
        return RunId(dataset, model_name, seed, section.levels[0] if level is None else level)
    return RunId(dataset, model_name, seed)


def optimiser_config(section: TaskTrainParams, model_name: str | None = None) -> OptimiserConfig:
    """The optimiser a run trains with: ``section.optimiser`` plus ``model_name``'s overrides, if any."""
    opt = section.optimiser if model_name is None else section.optimiser_for(model_name)
    return OptimiserConfig(**opt.model_dump())


def hparams_of(dataset: str, model_name: str, section: TaskTrainParams) -> dict[str, Any]:
    return model_hparams(dataset, model_name, section.hparams.get(model_name, {}))


def task_of(dataset: str, section: TaskTrainParams, train_set: Any) -> SmokeTask | SuperResolutionTask:
    """The task a run trains (and its landscape is measured) with: rollout length and residual form."""
    return task_for(dataset, section.train_rollout, section.residual, train_set, section.upsampler)


ROOT = Path(__file__).resolve().parent.parent
# the code a trained run executes: what defines the model, the data, the loop and its configuration
TRAIN_CODE = ("models", "loaders", "train", "pipelines/params", "pipelines/run_config.py", "pipelines/fit.py")
LANDSCAPE_CODE = (*TRAIN_CODE[:-1], "pipelines/landscape.py")
# the fields of train.<dataset> that shape the task a run trains on, per dataset (the others are unused)
LAYOUT = {
    "smoke": ("levels", "normalise", "train_rollout", "window_stride", "residual"),
    "turbulence": ("normalise", "residual", "upsampler"),
}


def run_params(dataset: str) -> tuple[str, ...]:
    """The params keys a run of ``dataset`` reads (its model's entries of hparams and overrides)."""
    fields = ("hparams", "optimiser", "optimiser_overrides", *LAYOUT[dataset])
    return (*(f"train.{dataset}.{f}" for f in fields), "compute.device")


def code_digest(paths: Iterable[str]) -> str:
    """sha256 over the repository's Python sources under ``paths`` (relative to the repository)."""
    digest = hashlib.sha256()
    for rel in sorted(set(paths)):
        path = ROOT / rel
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            digest.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def run_identity(
    dataset: str, model_name: str, seed: int, section: TaskTrainParams, hparams: dict[str, Any], data: Path,
    device: str = "auto", level: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What a run's checkpoints and metrics depend on, and nothing else (``run_params`` names the params):
    the data's content, this model and its hparams, its optimiser (overrides applied), the seed, the task
    layout (for smoke the run's own level, default the first: not the list, so adding a level leaves the
    others' runs alone), the device and the code. Another model's hparams or another seed in the list are
    not in it, so those runs are left alone; a rebuilt store with other content or an edited model is."""
    layout = section.model_dump(mode="json", include=set(LAYOUT[dataset]) - {"levels"})
    if dataset == "smoke":
        layout["level"] = section.levels[0] if level is None else level
    return {
        "data": store_digest(data),
        "dataset": dataset,
        "model": model_name,
        "hp": hparams,
        "optimiser": section.optimiser_for(model_name).model_dump(mode="json"),
        "seed": seed,
        "layout": layout,
        "device": device,
        "code": code_digest(TRAIN_CODE),
    }


def run_key(
    dataset: str, model_name: str, seed: int, section: TaskTrainParams, hparams: dict[str, Any], data: Path,
    device: str = "auto", level: int | None = None,
) -> str:  # fmt: skip
    """The identity as a short hash: the train stage's stamp of the run."""
    return params_key(run_identity(dataset, model_name, seed, section, hparams, data, device, level))
