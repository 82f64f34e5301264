"""From the params schema to the plain arguments the training library takes (shared by the run stages),
and a run's identity: the one definition of what a trained run depends on.

The identity is recorded in every checkpoint (train/checkpoints.py) and is the train stage's stamp
(pipelines/matrix.py): a change to anything in it, the code included, retrains the run from scratch; the
landscape stage verifies a checkpoint against it before measuring. dvc.yaml lists each params key it reads
(``run_params``) in the train and landscape stages, and each code path (``TRAIN_CODE``) as a dependency;
tests/test_staleness.py checks both. A user model's own module (``package.module:NAME``) is digested too,
and must be a declared dependency of both stages under ``dvc repro`` (:func:`check_models_declared`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loaders.scratch import params_key
from loaders.storage import store_digest
from models.catalog import resolve_model
from models.spec import code_modules
from pipelines.datasets import code_of, dataset_spec
from pipelines.params import TaskTrainParams
from pipelines.user_code import check_declared, installed, module_file
from train.data import SplitSpec, model_hparams
from train.kinds import task_for, train_kind
from train.loop import OptimiserConfig
from train.runs import RunId


def split_spec(section: TaskTrainParams, level: int | None = None) -> SplitSpec:
    """How a run's data is cut; ``level`` (smoke) defaults to the first of ``section.levels``."""
    level = section.levels[0] if level is None else level
    return SplitSpec(
        normalise=section.normalise, level=level, window_stride=section.window_stride,
        valid_stride=section.valid_stride,
    )  # fmt: skip


def run_levels(dataset: str, section: TaskTrainParams, model_name: str) -> list[int | None]:
    """The levels ``model_name`` is trained at: smoke's ``levels`` it is listed for (all of them at the
    first, ``sweep_models`` at the others); ``[None]`` for a dataset without levels."""
    if not has_levels(dataset):
        return [None]
    return [lv for lv in section.levels if model_name in section.models_at(lv)]


def run_id(
    dataset: str, model_name: str, seed: int, section: TaskTrainParams, level: int | None = None
) -> RunId:
    """The run's files (train/runs.py); a smoke run without ``level`` is the first level's."""
    if has_levels(dataset):
        return RunId(dataset, model_name, seed, section.levels[0] if level is None else level)
    return RunId(dataset, model_name, seed)


def optimiser_config(section: TaskTrainParams, model_name: str | None = None) -> OptimiserConfig:
    """The optimiser a run trains with: ``section.optimiser`` plus ``model_name``'s overrides, if any."""
    opt = section.optimiser if model_name is None else section.optimiser_for(model_name)
    return OptimiserConfig(**opt.model_dump())


def hparams_of(dataset: str, model_name: str, section: TaskTrainParams) -> dict[str, Any]:
    return model_hparams(dataset, model_name, section.hparams.get(model_name, {}))


def task_of(dataset: str, section: TaskTrainParams, train_set: Any) -> Any:
    """The task a run trains (and its landscape is measured) with: rollout length and residual form."""
    return task_for(dataset, section.train_rollout, section.residual, train_set, section.upsampler)


ROOT = Path(__file__).resolve().parent.parent
# the code a trained run executes: what defines the model, the data, the loop and its configuration
TRAIN_CODE = (
    "models", "loaders", "train", "pipelines/params", "pipelines/datasets.py", "pipelines/run_config.py",
    "pipelines/user_code.py",
    "pipelines/fit.py",
)  # fmt: skip
LANDSCAPE_CODE = (*TRAIN_CODE[:-1], "pipelines/landscape.py")


def layout_fields(dataset: str) -> tuple[str, ...]:
    """The fields of train.<dataset> that shape the task a run trains on (its spec's ``run_fields``; the
    others are unused)."""
    return dataset_spec(dataset).run_fields


def has_levels(dataset: str) -> bool:
    """Whether ``dataset`` is trained per symmetry level (``train.<dataset>.levels``, as smoke is)."""
    return dataset_spec(dataset).has_levels


def run_params(dataset: str) -> tuple[str, ...]:
    """The params keys a run of ``dataset`` reads (its model's entries of hparams and overrides)."""
    fields = ("hparams", "optimiser", "optimiser_overrides", *layout_fields(dataset))
    return (*(f"train.{dataset}.{f}" for f in fields), "compute.device")


def code_digest(paths: Iterable[str], modules: dict[str, Path] | None = None) -> str:
    """sha256 over the repository's Python sources under ``paths`` (relative to the repository) and the
    ``modules`` outside it (source file by module name: a moved folder keeps its digest)."""
    digest = hashlib.sha256()
    for rel in sorted(set(paths)):
        path = ROOT / rel
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            digest.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    for name, f in sorted((modules or {}).items()):
        digest.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def model_code(dataset: str, model_name: str) -> dict[str, Path]:
    """The source files of a user model's own modules by module name; none for a built-in model."""
    if ":" not in model_name:
        return {}
    spec = resolve_model(train_kind(dataset).model_task, model_name)
    files = {name: module_file(name) for name in code_modules(model_name, spec)}
    return {name: path for name, path in files.items() if not installed(path)}


def check_models_declared(models: dict[str, list[str]], key_pattern: str) -> None:
    """Under ``dvc repro``, refuse to run unless each user model's module files are dependencies of the
    running stage in dvc.yaml. ``models``: names by dataset, listed under the params key ``key_pattern``
    (``train.{dataset}.models``)."""
    for dataset, names in models.items():
        for name in names:
            what = f"{key_pattern.format(dataset=dataset)} lists {name!r}"
            check_declared(what, model_code(dataset, name).values(), "docs/models.md")


def run_identity(
    dataset: str, model_name: str, seed: int, section: TaskTrainParams, hparams: dict[str, Any], data: Path,
    device: str = "auto", level: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What a run's checkpoints and metrics depend on, and nothing else (``run_params`` names the params):
    the data's content, this model and its hparams, its optimiser (overrides applied), the seed, the task
    layout (for smoke the run's own level, default the first: not the list, so adding a level leaves the
    others' runs alone), the device and the code. Another model's hparams or another seed in the list are
    not in it, so those runs are left alone; a rebuilt store with other content or an edited model is (a
    dataset of your own: its module's too)."""
    own_code = code_of(dataset_spec(dataset))  # a dataset of your own: its module's source
    layout = section.model_dump(mode="json", include=set(layout_fields(dataset)) - {"levels"})
    if has_levels(dataset):
        layout["level"] = section.levels[0] if level is None else level
    return {
        **({"dataset_code": own_code} if own_code else {}),
        "data": store_digest(data),
        "dataset": dataset,
        "model": model_name,
        "hp": hparams,
        "optimiser": section.optimiser_for(model_name).model_dump(mode="json"),
        "seed": seed,
        "layout": layout,
        "device": device,
        "code": code_digest(TRAIN_CODE, model_code(dataset, model_name)),
    }


def held_out_digest(stores: Iterable[Path]) -> str | None:
    """Content address of a run's held-out test stores (smoke's Domain test), None without any. Not part of
    the identity its checkpoints record (the weights do not depend on it) but of its train stamp and
    metrics: new held-out data re-scores a finished run without retraining it, and never keeps old scores."""
    digests = {Path(s).name: store_digest(s) for s in stores}
    return params_key(digests) if digests else None


def run_key(
    dataset: str, model_name: str, seed: int, section: TaskTrainParams, hparams: dict[str, Any], data: Path,
    device: str = "auto", level: int | None = None,
) -> str:  # fmt: skip
    """The identity as a short hash: the train stage's stamp of the run."""
    return params_key(run_identity(dataset, model_name, seed, section, hparams, data, device, level))
