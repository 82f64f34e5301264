"""The ``train`` and ``landscape`` sections, the whole study schema, and reading params files."""


from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from models.catalog import MODEL_NAMES, resolve_model  # no torch: validation stays fast
from pipelines.params.base import (
    MAX_EPOCHS,
    BadKey,
    ComputeParams,
    NonNegativeInt,
    ParamsError,
    PositiveFloat,
    PositiveInt,
    Seed,
    Strict,
    check_budget,
    one_line,
    short_repr,
)
from pipelines.params.datasets import check_datasets, check_section
from pipelines.params.publish import PublishParams
from pipelines.params.smoke import SmokeParams
from pipelines.params.turbulence import (
    TurbulenceParams,
)
from pipelines.params.yaml_unique import load_yaml


class OptimiserParams(Strict):
    """Adam + StepLR + early stopping on the validation metric (the study's recipe)."""

    lr: Annotated[float, Field(gt=0, le=10)] = Field(1e-3, description="Adam learning rate (0, 10]")
    weight_decay: Annotated[float, Field(ge=0)] = 4e-4
    batch_size: PositiveInt = 8
    max_epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)] = Field(6, description=f"at most {MAX_EPOCHS}")
    lr_step_epochs: PositiveInt = Field(1, description="StepLR: the learning rate is multiplied by lr_gamma"
                                        " every lr_step_epochs epochs")  # fmt: skip
    lr_gamma: Annotated[float, Field(gt=0, le=1)] = 0.9
    patience: PositiveInt = Field(5, description="epochs without validation improvement before stopping")
    min_improvement: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0,
        description="relative validation improvement below which an epoch does not count as one for"
        " `patience` (0.005: stop once `patience` epochs together improved the best by under 0.5%)",
    )
    early_epoch: PositiveInt = Field(3, description="the 'early' checkpoint of the study")
    max_train_batches: PositiveInt | None = Field(None, description="cap on batches per epoch (None: all)")
    num_workers: NonNegativeInt = 0

    @model_validator(mode="after")
    def _early_within_budget(self) -> OptimiserParams:
        if self.early_epoch > self.max_epochs:
            raise ValueError(f"early_epoch={self.early_epoch} is after max_epochs={self.max_epochs}")
        return self


class TaskTrainParams(Strict):
    """Which models and seeds to train on one dataset, with model size overrides."""

    models: list[str] = Field(
        description="models trained, each a built-in name (docs/models.md) or the import path"
        " `package.module:NAME` of a models.spec.ModelSpec in a module of your own"
    )
    seeds: list[Seed] = [0, 1]
    hparams: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-model overrides of each model's defaults (its spec: models/catalog.py), each"
        " bounded (hidden 1-4096, odd kernel_size, ...: pipelines/params/hparams.py and the spec)",
    )
    optimiser: OptimiserParams = OptimiserParams()
    normalise: Literal["standard", "scale"] | None = "scale"
    levels: list[NonNegativeInt] = Field(
        [0],
        description="smoke only: the symmetry levels trained on, one run per (level, model, seed); the first"
        " is the study's level (tables, cards, landscapes), the others form the level sweep",
    )
    sweep_models: list[str] | None = Field(
        None,
        description="smoke only: which of `models` are trained at the levels after the first (None: every"
        " one); known model names, listed in `models` or not, so `-S train.smoke.models=[cnn]` stays valid",
    )
    train_rollout: PositiveInt | None = Field(
        None,
        description="smoke only: autoregressive steps in the training loss (None: the data's output_frames);"
        " validation and test always roll out over all output frames",
    )
    window_stride: PositiveInt = Field(1, description="smoke only: spacing of training windows")
    valid_stride: PositiveInt = Field(
        1,
        description="smoke only: spacing of validation windows (model selection and early stopping);"
        " the window length (input + output frames) gives windows that share no frame; test: always 1",
    )
    residual: bool = Field(
        True,
        description="the network predicts a correction to the trivial prediction: the last input frame"
        " (smoke) or the upsampled middle low-res frame (turbulence); false: it predicts the target itself",
    )
    upsampler: Literal["trilinear", "spectral"] = Field(
        "spectral", description="turbulence only: the upsampling a residual network corrects"
    )
    optimiser_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-model changes to `optimiser` (e.g. gmcnn: {lr: 1.0e-3}); part of that model's run"
        " key only",
    )

    @field_validator("models", "seeds", "levels")
    @classmethod
    def _non_empty_unique(cls, values: list) -> list:
        if not values or len(set(values)) != len(values):
            raise ValueError(f"must be a non-empty list without repeats, got {short_repr(values)}")
        return values

    @field_validator("sweep_models")
    @classmethod
    def _distinct(cls, values: list[str] | None) -> list[str] | None:
        if values is not None and len(set(values)) != len(values):
            raise ValueError(f"must be a list without repeats, got {short_repr(values)}")
        return values

    def models_at(self, level: int) -> list[str]:
        """The models trained at ``level``: all of ``models`` at the first level, those of them in
        ``sweep_models`` at the others."""
        if level == self.levels[0] or self.sweep_models is None:
            return list(self.models)
        return [m for m in self.models if m in self.sweep_models]

    @model_validator(mode="after")
    def _overrides_valid(self) -> TaskTrainParams:
        for model, changes in self.optimiser_overrides.items():
            extra = sorted(set(changes) - set(OptimiserParams.model_fields))
            if extra:
                raise ValueError(f"optimiser_overrides.{model}: unknown keys {extra}")
            try:
                self.optimiser_for(model)
            except ValidationError as exc:
                raise ValueError(f"optimiser_overrides.{model}: {exc.errors()[0]['msg']}") from None
        return self

    def optimiser_for(self, model: str) -> OptimiserParams:
        """``optimiser`` with ``model``'s overrides applied (validated as a whole)."""
        changes = self.optimiser_overrides.get(model)
        if not changes:
            return self.optimiser
        return OptimiserParams(**{**self.optimiser.model_dump(), **changes})


class TrainParams(Strict):
    """One section per dataset: ``smoke`` and ``turbulence`` built in, ``<name>`` for a dataset of your own
    (listed in ``datasets``, its spec in ``dataset_specs``)."""

    model_config = ConfigDict(extra="allow")  # merged with Strict's
    # by default every built-in model of the task
    smoke: TaskTrainParams = TaskTrainParams(models=list(MODEL_NAMES["smoke"]))
    turbulence: TaskTrainParams = TaskTrainParams(
        models=list(MODEL_NAMES["sr"]), optimiser=OptimiserParams(batch_size=4)
    )

    @model_validator(mode="before")
    @classmethod
    def _sections_of_other_datasets(cls, raw: Any) -> Any:
        """Another dataset's section is a TaskTrainParams like the built-ins' (its name is checked against
        ``datasets`` by StudyParams)."""
        if not isinstance(raw, dict):
            return raw
        out = dict(raw)
        for name, value in raw.items():
            if name not in cls.model_fields:
                try:
                    out[name] = TaskTrainParams.model_validate(value)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    key = ".".join(str(p) for p in (name, *first["loc"]))
                    raise BadKey(key, first["msg"].removeprefix("Value error, ")) from None
        return out

    def sections(self) -> dict[str, TaskTrainParams]:
        """Every dataset's section by dataset name."""
        return {"smoke": self.smoke, "turbulence": self.turbulence, **(self.model_extra or {})}

    @model_validator(mode="after")
    def _known_models(self) -> TrainParams:
        from pipelines.datasets import BUILTIN  # no torch: validation stays fast

        for dataset, spec in BUILTIN.items():
            check_section(dataset, spec.train.model_task, getattr(self, dataset))
        return self



# Landscape budget: each count is capped, and the whole stage's estimate must fit check_budget's limits.
MAX_DIRECTIONS = 1000
MAX_LANCZOS_STEPS = 2000
MAX_PROBES = 10_000
MAX_SUBSET_SAMPLES = 1_000_000
LANDSCAPE_CELL_PASSES_PER_S = 1e9  # grid cells through a model per second, forward; deliberately optimistic
NOMINAL_WEIGHTS = 1e6  # weights of one model (the defaults have 0.1-0.6 M): sizes the kept vectors


class LandscapeParams(Strict):
    """Sharpness and Hessian measurements at each checkpoint (definitions: docs/pipeline.md, "Models,
    training, loss landscapes", and train/curvature.py). Each count is capped and the stage's estimated time
    and memory (every model, seed and checkpoint) are checked against the limits, like the data stages'."""

    models: dict[str, list[str]] = Field(
        default_factory=lambda: {"smoke": ["e2cnn", "rsteer", "gcnn", "rgcnn"],
                                 "turbulence": ["cnn", "gcnn", "rgcnn"]},  # fmt: skip
        description="models measured per dataset (each must also be trained)",
    )
    checkpoints: list[Literal["early", "best"]] = ["early", "best"]
    subset_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        0.2, description="share of the training set the loss and Hessian are measured on (study: 20%)"
    )
    subset_min_samples: Annotated[int, Field(gt=0, le=MAX_SUBSET_SAMPLES)] = Field(
        8, description="at least this many samples (or all of them)"
    )
    subset_batch_size: Annotated[int, Field(gt=0, le=4096)] = Field(
        8, description="samples per batch; curvature is accumulated batch by batch (memory of one batch)"
    )
    directions: Annotated[int, Field(gt=0, le=MAX_DIRECTIONS)] = Field(
        5, description="random unit directions of the sharpness (each held in memory: one weight vector)"
    )
    displacements: list[PositiveFloat] = Field([0.1, 0.4, 0.7, 1.0], min_length=1, max_length=100)
    direction_seed: Seed = 0
    filter_normalised: bool = Field(
        True, description="also report Li et al. 2018 filter-normalised sharpness"
    )
    original_sharpness: bool = Field(
        False, description="also the study code's sharpness (normal directions / parameter count, on the"
        " whole training split): a labelled variant, not comparable across model sizes",
    )
    top_k: Annotated[int, Field(gt=0, le=MAX_LANCZOS_STEPS)] = 5
    lanczos_steps: Annotated[int, Field(gt=0, le=MAX_LANCZOS_STEPS)] = Field(
        20, description="Lanczos steps per run (the top-k come from the first run; each step keeps one"
        " weight vector)",
    )
    slq_probes: Annotated[int, Field(gt=0, le=MAX_PROBES)] = Field(
        2, description="Lanczos runs from random start vectors for the density"
    )
    hutchinson_probes: Annotated[int, Field(gt=0, le=MAX_PROBES)] = 8

    def passes_per_checkpoint(self) -> int:
        """Forward-pass equivalents over the subset at one checkpoint (an HVP costs about four)."""
        losses = 1 + self.directions * len(self.displacements) * (2 if self.filter_normalised else 1)
        return losses + 4 * (self.slq_probes * self.lanczos_steps + self.hutchinson_probes)

    def subset_samples(self) -> int:
        """Samples per pass, before the training set's size is known: at least subset_min_samples (the
        optimistic bound, so that only a budget impossible at any size is refused here)."""
        return self.subset_min_samples


class StudyParams(Strict):
    """Root of params.yaml. Sections not yet used by any stage are optional."""

    datasets: list[str] = Field(
        ["smoke", "turbulence"],
        description="the dataset kinds the study trains, scores and reports on: built-in (smoke, turbulence)"
        " or named in dataset_specs",
    )
    dataset_specs: dict[str, str] = Field(
        default_factory=dict,
        description="<name>: package.module:NAME, the DatasetSpec of a dataset of your own"
        " (docs/extending.md)",
    )
    compute: ComputeParams = ComputeParams()
    smoke: SmokeParams = SmokeParams()
    publish: PublishParams = PublishParams()
    turbulence: TurbulenceParams = TurbulenceParams()
    train: TrainParams = Field(default_factory=TrainParams)
    landscape: LandscapeParams = LandscapeParams()

    @model_validator(mode="after")
    def _datasets_resolve(self) -> StudyParams:
        check_datasets(self)
        return self

    @model_validator(mode="after")
    def _landscape_models_are_trained(self) -> StudyParams:
        for dataset, models in self.landscape.models.items():
            section = self.train.sections().get(dataset)
            if section is None:
                raise ValueError(f"landscape.models.{dataset}: no train.{dataset} section")
            untrained = sorted(set(models) - set(section.models))
            if untrained:
                raise ValueError(f"landscape.models.{dataset}: {untrained} are not in train.{dataset}.models")
        missing = [lv for lv in self.train.smoke.levels if lv not in self.smoke.levels]
        if missing:
            raise ValueError(
                f"train.smoke.levels: {missing} are not among the stored smoke.levels={self.smoke.levels}"
            )
        self._check_landscape_budget()
        return self

    @model_validator(mode="after")
    def _hparams_fit_the_smoke_data(self) -> StudyParams:
        for model in self.train.smoke.models:
            hp = {**resolve_model("smoke", model).defaults, **self.train.smoke.hparams.get(model, {})}
            key = f"train.smoke.hparams.{model}"
            # the store's windows decide the input (a model without in_frames takes what it gets)
            if "in_frames" in hp and hp["in_frames"] != self.smoke.input_frames:
                raise BadKey(f"{key}.in_frames", f"{hp['in_frames']} differs from smoke.input_frames="
                             f"{self.smoke.input_frames}, the frames each training input holds")  # fmt: skip
            if hp.get("error") and hp.get("variant") == "seed003" and hp["grid"] != self.smoke.resolution:
                raise BadKey(f"{key}.grid", f"{hp['grid']} differs from smoke.resolution="
                             f"{self.smoke.resolution} (the error vector spans the image)")  # fmt: skip
        return self

    def _check_landscape_budget(self) -> None:
        land = self.landscape
        from pipelines.datasets import dataset_spec

        seconds = 0.0
        for dataset, models in land.models.items():
            if not models:
                continue
            cells = dataset_spec(dataset, self).grid_cells(self)
            runs = len(models) * len(getattr(self.train, dataset).seeds) * len(land.checkpoints)
            passes = runs * land.passes_per_checkpoint() * land.subset_samples()
            seconds += passes * cells / LANDSCAPE_CELL_PASSES_PER_S
        kept_vectors = land.directions + land.lanczos_steps + 8  # directions, Lanczos basis, work vectors
        check_budget("landscape", kept_vectors * NOMINAL_WEIGHTS * 4, 0, seconds)


MAX_ERROR_LINES = 20


def _format_errors(err: ValidationError, source: str) -> str:
    """One line per error; the input is echoed only in short (a value may be a huge alias structure)."""
    lines = [f"invalid parameters in {source}:"]
    errors = err.errors(include_url=False, include_context=True, include_input=True)
    for e in errors[:MAX_ERROR_LINES]:
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, BadKey):
            key, msg = ".".join(filter(None, (key, cause.key))), cause.problem
        value = e.get("input")
        shown = "" if isinstance(value, dict) or "got " in msg else f" (got {short_repr(value)})"
        lines.append("  " + one_line(f"{key or '(root)'}: {msg}{shown}"))
    if len(errors) > MAX_ERROR_LINES:
        lines.append(f"  ... and {len(errors) - MAX_ERROR_LINES} more")
    lines.append("Fix these keys in params.yaml (see docs/params.md for every key and its default).")
    return "\n".join(lines)


def parse_params(raw: dict, source: str = "params") -> StudyParams:
    """Validate a params mapping; raises :class:`ParamsError` naming every bad key."""
    if not raw:  # an empty file must not silently start the full default study
        raise ParamsError(f"{source} is empty; copy params.yaml (the embedded default) and edit it")
    try:
        return StudyParams.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_errors(err, source)) from None


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None) -> StudyParams:
    """Read and validate ``params.yaml``; ``overrides`` is merged over it (nested dicts merge)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} not found; run from the repository root or pass --params")
    try:
        raw = load_yaml(path.read_text())
    except (yaml.YAMLError, ValueError) as err:  # ValueError: an int of over 4300 digits
        raise ParamsError(f"{path} is not valid YAML: {one_line(str(err), 600)}") from None
    if raw is None:
        raise ParamsError(f"{path} is empty; copy params.yaml (the embedded default) and edit it")
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return parse_params(_merge(raw, overrides or {}), str(path))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


