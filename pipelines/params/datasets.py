"""The dataset sections of params.yaml: ``datasets``, ``dataset_specs`` and each ``train.<name>``,
checked against the datasets' specs (pipelines/datasets.py) and the model catalog."""

from __future__ import annotations

import math
from typing import Any

from pipelines.params.base import BadKey, short_repr
from pipelines.params.hparams import check_hparams


def _check_hparam(key: str, value: Any, default: Any) -> None:
    """An override has its default's type: bool stays bool, int stays int (not bool), floats are finite."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif isinstance(default, (tuple, list)):
        ok = isinstance(value, (tuple, list)) and len(value) == len(default)
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    else:
        ok = True
    if not ok:
        raise BadKey(key, f"expected a value like the default {default!r}, got {short_repr(value)}")


def _model_spec(key: str, task: str, model: str) -> Any:
    """The spec of a model named under ``key``: a built-in name or a user model's import path."""
    from models.catalog import resolve_model  # no torch: validation stays fast

    try:
        return resolve_model(task, model)
    except ValueError as err:
        raise BadKey(key, str(err)) from None


def check_section(dataset: str, task: str, section: Any) -> None:
    """``train.<dataset>`` names models of its model task (``task``) with known, bounded hparams."""
    from models.catalog import MODEL_NAMES

    if task not in MODEL_NAMES:
        raise BadKey(dataset, f"model task {task!r} is not one of models/catalog.py's {sorted(MODEL_NAMES)}")
    for model in section.models:
        _model_spec(f"{dataset}.models", task, model)
    # overrides and hparams: of a known model, listed or not, so `-S train.smoke.models=[cnn]` keeps the
    # file valid
    for model in section.sweep_models or []:
        _model_spec(f"{dataset}.sweep_models", task, model)
    for model in section.optimiser_overrides:
        _model_spec(f"{dataset}.optimiser_overrides.{model}", task, model)
    for model, overrides in section.hparams.items():
        spec = _model_spec(f"{dataset}.hparams.{model}", task, model)
        extra = set(overrides) - set(spec.defaults)
        if extra:
            raise ValueError(f"{dataset}.hparams.{model}: unknown keys {sorted(extra)}")
        for key, value in overrides.items():
            _check_hparam(f"{dataset}.hparams.{model}.{key}", value, spec.defaults[key])
        check_hparams(f"{dataset}.hparams.{model}", spec, {**spec.defaults, **overrides})


def check_datasets(study: Any) -> None:
    """``study`` (a StudyParams): every listed dataset has a spec (built in or importable) and a
    ``train.<name>`` section of known models; a section of a dataset that is not listed is a typo."""
    from pipelines.datasets import BUILTIN, dataset_spec

    if not study.datasets or len(set(study.datasets)) != len(study.datasets):
        raise BadKey("datasets", f"must be a non-empty list without repeats, got {study.datasets}")
    taken = sorted(set(study.dataset_specs) & set(BUILTIN))
    if taken:
        raise BadKey(f"dataset_specs.{taken[0]}", f"{taken[0]!r} is a built-in dataset; choose another name")
    sections = study.train.sections()
    stray = sorted(set(sections) - set(BUILTIN) - set(study.datasets))
    if stray:
        raise BadKey(f"train.{stray[0]}", f"no dataset {stray[0]!r} in datasets {study.datasets}")
    for name in study.datasets:
        try:
            spec = dataset_spec(name, study)
        except ValueError as err:
            raise BadKey(f"datasets.{name}", str(err)) from None
        if name not in sections:
            raise BadKey(f"train.{name}", f"missing: dataset {name!r} is listed in datasets")
        if name not in BUILTIN:  # the built-ins' sections are checked by TrainParams itself
            check_section(f"train.{name}", spec.train.model_task, sections[name])
    unlisted = sorted(set(study.landscape.models) - set(study.datasets))
    if unlisted and any(study.landscape.models[d] for d in unlisted):
        raise BadKey(f"landscape.models.{unlisted[0]}", f"not one of datasets {study.datasets}")
    for name in study.publish.datasets:
        try:
            spec = dataset_spec(name, study)
        except ValueError as err:
            raise BadKey(f"publish.datasets.{name}", str(err)) from None
        if spec.publish is None:
            raise BadKey(f"publish.datasets.{name}", "its dataset spec names no publish kind")
