"""The single schema for ``params.yaml``.

Every stage loads its section through :func:`load_params`, so a bad value fails at once with the key
path in the message, before any simulation, download or training starts. Sections are strict: an unknown
key is an error (typos must not be silently ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]

# Published data equivariance error per symmetry level E_0..E_9 (study spec, section 1).
PUBLISHED_LEVEL_ERRORS = (0.0, 0.17, 0.313, 0.435, 0.541, 0.63, 0.709, 0.78, 0.84, 0.896)
N_LEVELS = len(PUBLISHED_LEVEL_ERRORS)


# A built-in scenario name, or `package.module:ClassName` (importable by every dask worker). The class
# itself is imported and its options checked by the smoke stage before any simulation, so reading params
# never needs PhiFlow.
SCENARIO_NAME = r"^([a-z][a-z0-9_]*|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$"


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or has an invalid value."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComputeParams(Strict):
    """Where parallel work runs: a LocalCluster by default, or an existing dask scheduler."""

    scheduler_address: str | None = Field(
        None, description="tcp://host:port of a running dask scheduler; null starts a LocalCluster"
    )
    n_workers: PositiveInt = 2
    threads_per_worker: PositiveInt = 1


class SplitFractions(Strict):
    """Fractions of the kept frames, in time order, given to train / valid / test (disjoint)."""

    train: PositiveFloat = 0.7
    valid: PositiveFloat = 0.15
    test: PositiveFloat = 0.15

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + valid + test must sum to 1, got {total:g}")
        return self


class PressureSolverParams(Strict):
    """Pressure projection. ``dct`` solves the (constant) closed-box Poisson matrix exactly with a batched
    cosine transform; ``scipy-direct`` and ``CG`` go through PhiFlow's own ``make_incompressible``
    (the reference path)."""

    method: Literal["dct", "scipy-direct", "CG"] = "dct"
    rel_tol: PositiveFloat = 1e-8
    abs_tol: PositiveFloat = 1e-8


class SmokeParams(Strict):
    """2D buoyant smoke plumes with exact C4 symmetry levels (study spec, section 1)."""

    scenario: str = Field(
        "buoyant_plume",
        pattern=SCENARIO_NAME,
        description="a built-in scenario name (buoyant_plume) or an importable `package.module:ClassName`",
    )
    scenario_options: dict[str, Any] = Field(
        default_factory=dict, description="extra fields of the scenario class (e.g. a TwinPlume offset)"
    )
    resolution: PositiveInt = 64
    box_size: PositiveFloat = 64.0
    inflow_center: tuple[float, float] = (32.0, 5.0)
    inflow_radius: PositiveFloat = 5.0
    buoyancy_unit: PositiveFloat = Field(0.005, description="simulation i has buoyancy (0, unit * (i + 1))")
    n_simulations: PositiveInt = Field(50, description="size of the buoyancy ladder the levels index into")
    steps: PositiveInt = 61
    dt: PositiveFloat = 1.0
    keep_start: NonNegativeInt = 10
    keep_stop: PositiveInt = 60
    levels: list[Annotated[int, Field(ge=0, lt=N_LEVELS)]] = [0, 5, 9]
    symmetrisation: Literal["rotate", "simulate"] = Field(
        "rotate", description="rotate one simulation (exact C4) or simulate all four directions (Wang 2022)"
    )
    solver_symmetry_check: bool = Field(
        True, description="also simulate E_0's four directions separately and report their C4 error"
    )
    solver: PressureSolverParams = PressureSolverParams()
    batch_size: PositiveInt = Field(8, description="simulations advanced together along a PhiFlow batch dim")
    dtype: Literal["float32", "float64"] = "float32"
    input_frames: PositiveInt = 1
    output_frames: PositiveInt = 6
    splits: SplitFractions = SplitFractions()
    seed: NonNegativeInt = 0

    @field_validator("levels")
    @classmethod
    def _unique_levels(cls, levels: list[int]) -> list[int]:
        if not levels:
            raise ValueError("at least one symmetry level is required")
        if len(set(levels)) != len(levels):
            raise ValueError(f"levels must be unique, got {levels}")
        return levels

    @model_validator(mode="after")
    def _consistent(self) -> SmokeParams:
        if self.keep_stop > self.steps + 1:  # frame t is the state after t steps, t = 0..steps
            raise ValueError(
                f"keep_stop={self.keep_stop} is past the end of the simulation (frames 0..{self.steps})"
            )
        if self.keep_start >= self.keep_stop:
            raise ValueError(f"keep_start={self.keep_start} must be < keep_stop={self.keep_stop}")
        for name, value in zip(("x", "y"), self.inflow_center, strict=True):
            if not 0 <= value <= self.box_size:
                raise ValueError(f"inflow_center.{name}={value} lies outside the box [0, {self.box_size}]")
        top = max(self.buoyancy_indices)
        if top >= self.n_simulations:
            raise ValueError(
                f"levels {self.levels} need buoyancy index {top} but n_simulations={self.n_simulations}"
            )
        window = self.input_frames + self.output_frames
        for split, count in self.split_frame_counts().items():
            if count < window:
                raise ValueError(
                    f"splits.{split} gets {count} frames, fewer than one window "
                    f"(input_frames + output_frames = {window}); keep more frames or change the fractions"
                )
        return self

    @property
    def n_frames(self) -> int:
        return self.keep_stop - self.keep_start

    def level_indices(self, level: int) -> tuple[int, int, int, int]:
        """Buoyancy indices of the four directions of level E_i: (1, 1+i, 1+2i, 1+3i)."""
        return tuple(1 + k * level for k in range(4))  # type: ignore[return-value]

    @property
    def buoyancy_indices(self) -> list[int]:
        return sorted({i for level in self.levels for i in self.level_indices(level)})

    def split_frame_counts(self) -> dict[str, int]:
        bounds = self.split_bounds()
        return {name: stop - start for name, (start, stop) in bounds.items()}

    def split_bounds(self) -> dict[str, tuple[int, int]]:
        """Frame ranges [start, stop) of the kept frames, in time order: train, then valid, then test."""
        n = self.n_frames
        n_train = int(round(self.splits.train * n))
        n_valid = int(round(self.splits.valid * n))
        return {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, n)}


HubRepoId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")]


class PublishParams(Strict):
    """Hub dataset repos built by the publish stage (docs/hub.md). ``target: local`` writes the repo layout
    under ``--out`` only (offline, the embedded default); ``target: hub`` also uploads each repo to the
    endpoint in ``HF_ENDPOINT`` with the token in ``HF_TOKEN``."""

    target: Literal["local", "hub"] = "local"
    datasets: list[Literal["smoke", "turbulence"]] = ["smoke", "turbulence"]
    repos: dict[Literal["smoke", "turbulence"], HubRepoId] = {
        "smoke": "symflow/smoke-plume-c4",
        "turbulence": "symflow/isotropic-turbulence-sr",
    }
    revision: str = Field("main", min_length=1, description="branch to commit to (created if missing)")
    private: bool = False
    license: str = "cc-by-4.0"
    parquet_rows_per_file: PositiveInt = Field(2048, description="rows per parquet file (shards a split)")
    parquet_row_group: PositiveInt = Field(64, description="rows per parquet row group (read granularity)")
    mini_frames: PositiveInt = Field(
        8, description="frames (smoke) or samples (turbulence) per split in 'mini'"
    )
    timeout_seconds: PositiveFloat = Field(60.0, description="per-request timeout when talking to the Hub")

    @field_validator("datasets")
    @classmethod
    def _unique_datasets(cls, datasets: list[str]) -> list[str]:
        if not datasets or len(set(datasets)) != len(datasets):
            raise ValueError(f"datasets must be a non-empty list without repeats, got {datasets}")
        return datasets

    @model_validator(mode="after")
    def _repo_for_each(self) -> PublishParams:
        missing = [name for name in self.datasets if name not in self.repos]
        if missing:
            raise ValueError(f"no repos.<name> entry for dataset(s) {missing}")
        return self


# --- isotropic turbulence super-resolution (study spec, section 2; docs/turbulence.md) -----------------

NonNegativeFloat = Annotated[float, Field(ge=0)]
JHTDB_GRID_POINTS = 1024  # isotropic1024coarse: 1024^3 points on the periodic box [0, 2 pi)^3
JHTDB_TIME_STEPS = 5024  # time indices 1..5024
JHTDB_DT = 0.002
JHTDB_VISCOSITY = 0.000185
JHTDB_CUTOUT_URL = "https://web.idies.jhu.edu/turbulence-svc/cutout/api/local"


class TurbulenceSolverParams(Strict):
    """``synthetic`` source: forced incompressible Navier-Stokes, pseudo-spectral, on [0, 2 pi)^3."""

    resolution: PositiveInt = Field(64, description="solver points per axis; a multiple of hr_resolution")
    viscosity: PositiveFloat = 8e-3
    dt: PositiveFloat = Field(0.015, description="solver time step")
    save_every: PositiveInt = Field(1, description="solver steps between consecutive stored time steps")
    spinup_time: NonNegativeFloat = Field(4.0, description="simulated time before the first stored step")
    forcing_power: PositiveFloat = Field(0.0928, description="energy input per unit time (JHTDB dissipation)")
    forcing_wavenumber: PositiveFloat = Field(2.0, description="the shells 0 < |k| <= this are forced")
    initial_energy: PositiveFloat = Field(0.55, description="kinetic energy of the random initial field")
    max_cfl: PositiveFloat = Field(1.0, description="fail if dt * max(|u_x|+|u_y|+|u_z|) / dx exceeds this")
    fft_workers: PositiveInt = 2
    seed: NonNegativeInt = 0

    @model_validator(mode="after")
    def _resolved(self) -> TurbulenceSolverParams:
        if self.resolution < 8:
            raise ValueError(f"synthetic.resolution={self.resolution} is too coarse (at least 8)")
        if self.forcing_wavenumber >= self.resolution / 3:
            raise ValueError(
                f"synthetic.forcing_wavenumber={self.forcing_wavenumber} is not below the dealiasing cut-off "
                f"resolution/3={self.resolution / 3:g}"
            )
        return self


class JHTDBParams(Strict):
    """``jhtdb`` source: cutouts of isotropic1024coarse from the JHTDB REST service (token from the env)."""

    base_url: str = Field(JHTDB_CUTOUT_URL, pattern=r"^https?://", description="REST cutout endpoint")
    dataset: Literal["isotropic1024coarse"] = "isotropic1024coarse"
    token_env: str = Field("JHTDB_TOKEN", pattern=r"^[A-Za-z_]\w*$", description="env var with the token")
    mode: Literal["stride", "box", "subcube"] = Field(
        "stride",
        description="stride: the server samples every factor-th point; box: block means of full-resolution "
        "blocks; subcube: a contiguous native-resolution region (factor 1)",
    )
    factor: PositiveInt = Field(16, description="native points per stored point per axis (stride or box)")
    origin: tuple[int, int, int] = Field((1, 1, 1), description="1-based (x, y, z) index of the first point")
    time_range: tuple[int, int] = Field((1, 1024), description="time indices the sample windows come from")
    max_points_per_request: PositiveInt = Field(4096, description="points x times per request (4096 testing)")
    max_request_mb: PositiveFloat = Field(3072.0, description="unstrided box x times x 12 B per request, MiB")
    timeout_s: PositiveFloat = 60.0
    retries: NonNegativeInt = Field(5, description="retries per block after the first attempt")
    backoff_s: NonNegativeFloat = Field(1.0, description="first retry delay; doubles per retry")
    backoff_max_s: NonNegativeFloat = 60.0

    @property
    def grid_points(self) -> int:
        return JHTDB_GRID_POINTS

    @property
    def domain_length(self) -> float:
        return 2 * 3.141592653589793

    @property
    def dt(self) -> float:
        return JHTDB_DT

    @property
    def viscosity(self) -> float:
        return JHTDB_VISCOSITY

    @model_validator(mode="after")
    def _inside(self) -> JHTDBParams:
        for name, value in zip("xyz", self.origin, strict=True):
            if not 1 <= value <= JHTDB_GRID_POINTS:
                raise ValueError(
                    f"jhtdb.origin.{name}={value} lies outside the domain (1..{JHTDB_GRID_POINTS})"
                )
        first, last = self.time_range
        if not 1 <= first < last <= JHTDB_TIME_STEPS:
            raise ValueError(
                f"jhtdb.time_range={list(self.time_range)} needs 1 <= first < last <= {JHTDB_TIME_STEPS}"
            )
        if self.mode == "subcube" and self.factor != 1:
            raise ValueError(f"jhtdb.factor={self.factor}: a subcube is native resolution, set factor: 1")
        return self


class TurbulenceSplitCounts(Strict):
    """Samples per split (published large_50: 40 / 5 / 5)."""

    train: PositiveInt = 8
    valid: PositiveInt = 2
    test: PositiveInt = 2


class TurbulenceParams(Strict):
    """3D velocity super-resolution: lr = ``window`` steps at hr / lr_factor, hr = the centre step."""

    source: Literal["synthetic", "jhtdb"] = "synthetic"
    hr_resolution: PositiveInt = Field(64, description="points per axis of the high-resolution target")
    lr_factor: PositiveInt = Field(4, description="block-mean factor from hr to the low-resolution input")
    window: PositiveInt = Field(3, description="consecutive steps per sample (t-1, t, t+1); odd")
    splits: TurbulenceSplitCounts = TurbulenceSplitCounts()
    split_strategy: Literal["random", "time_blocks"] = "random"
    seed: NonNegativeInt = Field(123, description="draws the JHTDB time windows and the split assignment")
    spectrum_fit_range: tuple[PositiveFloat, PositiveFloat] = Field(
        (2.0, 6.0), description="wavenumbers of the spectral-slope fit (inertial range)"
    )
    synthetic: TurbulenceSolverParams = TurbulenceSolverParams()
    jhtdb: JHTDBParams = JHTDBParams()

    @property
    def n_samples(self) -> int:
        return self.splits.train + self.splits.valid + self.splits.test

    @property
    def lr_resolution(self) -> int:
        return self.hr_resolution // self.lr_factor

    @model_validator(mode="after")
    def _consistent(self) -> TurbulenceParams:
        if self.window % 2 == 0:
            raise ValueError(f"window={self.window} must be odd (a centre step with context on both sides)")
        if self.hr_resolution % self.lr_factor:
            raise ValueError(f"lr_factor={self.lr_factor} does not divide hr_resolution={self.hr_resolution}")
        lo, hi = self.spectrum_fit_range
        if lo >= hi:
            raise ValueError(f"spectrum_fit_range={list(self.spectrum_fit_range)} must be increasing")
        if self.source == "synthetic" and self.synthetic.resolution % self.hr_resolution:
            raise ValueError(
                f"hr_resolution={self.hr_resolution} does not divide synthetic.resolution="
                f"{self.synthetic.resolution} (the hr field is a block mean of the solver field)"
            )
        if self.source == "jhtdb":
            j = self.jhtdb
            extent = self.hr_resolution * (1 if j.mode == "subcube" else j.factor)
            if extent > JHTDB_GRID_POINTS:
                raise ValueError(
                    f"the box (hr_resolution {self.hr_resolution} x factor {j.factor} = {extent} points per "
                    f"axis) is larger than the domain ({JHTDB_GRID_POINTS} points)"
                )
            if j.mode == "box" and j.factor**3 > j.max_points_per_request:
                raise ValueError(
                    f"jhtdb.factor={j.factor}: one box cell ({j.factor}^3 points) exceeds "
                    f"jhtdb.max_points_per_request={j.max_points_per_request}"
                )
            first, last = j.time_range
            if (last - first + 1) // self.window < self.n_samples:
                raise ValueError(
                    f"jhtdb.time_range={list(j.time_range)} has {last - first + 1} steps: too few for "
                    f"{self.n_samples} samples of window {self.window} that share no step"
                )
        return self


class OptimiserParams(Strict):
    """Adam + StepLR + early stopping on the validation metric (the study's recipe)."""

    lr: PositiveFloat = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 4e-4
    batch_size: PositiveInt = 8
    max_epochs: PositiveInt = 6
    lr_step_epochs: PositiveInt = 1
    lr_gamma: Annotated[float, Field(gt=0, le=1)] = 0.9
    patience: PositiveInt = Field(5, description="epochs without validation improvement before stopping")
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

    models: list[str]
    seeds: list[NonNegativeInt] = [0, 1]
    hparams: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-model overrides")
    optimiser: OptimiserParams = OptimiserParams()
    normalise: Literal["standard", "scale"] | None = "scale"
    level: NonNegativeInt = Field(0, description="smoke only: the symmetry level trained on")
    train_rollout: PositiveInt | None = Field(
        None,
        description="smoke only: autoregressive steps in the training loss (None: the data's output_frames);"
        " validation and test always roll out over all output frames",
    )
    window_stride: PositiveInt = Field(1, description="smoke only: spacing of training windows")

    @field_validator("models", "seeds")
    @classmethod
    def _non_empty_unique(cls, values: list) -> list:
        if not values or len(set(values)) != len(values):
            raise ValueError(f"must be a non-empty list without repeats, got {values}")
        return values


class TrainParams(Strict):
    smoke: TaskTrainParams = TaskTrainParams(models=["cnn", "gcnn", "rgcnn", "e2cnn", "rsteer", "gmcnn"])
    turbulence: TaskTrainParams = TaskTrainParams(
        models=["cnn", "gcnn", "rgcnn"], optimiser=OptimiserParams(batch_size=4)
    )

    @model_validator(mode="after")
    def _known_models(self) -> TrainParams:
        from models.catalog import MODEL_NAMES, default_hparams  # no torch: validation stays fast

        for dataset, task in (("smoke", "smoke"), ("turbulence", "sr")):
            section: TaskTrainParams = getattr(self, dataset)
            unknown = [m for m in section.models if m not in MODEL_NAMES[task]]
            if unknown:
                raise ValueError(
                    f"{dataset}.models: unknown {unknown}; choose from {list(MODEL_NAMES[task])}"
                )
            for model, overrides in section.hparams.items():
                if model not in MODEL_NAMES[task]:
                    raise ValueError(f"{dataset}.hparams.{model}: unknown model")
                extra = set(overrides) - set(default_hparams(task, model))
                if extra:
                    raise ValueError(f"{dataset}.hparams.{model}: unknown keys {sorted(extra)}")
        return self


class LandscapeParams(Strict):
    """Sharpness and Hessian measurements at each checkpoint (seed 000's definitions)."""

    models: dict[Literal["smoke", "turbulence"], list[str]] = Field(
        default_factory=lambda: {"smoke": ["e2cnn", "rsteer"], "turbulence": ["cnn", "gcnn", "rgcnn"]},
        description="models measured per dataset (each must also be trained)",
    )
    checkpoints: list[Literal["early", "best"]] = ["early", "best"]
    subset_batches: PositiveInt = Field(2, description="fixed training batches the loss is measured on")
    subset_batch_size: PositiveInt = 8
    directions: PositiveInt = 5
    displacements: list[PositiveFloat] = [0.1, 0.4, 0.7, 1.0]
    direction_seed: NonNegativeInt = 0
    filter_normalised: bool = Field(
        True, description="also report Li et al. 2018 filter-normalised sharpness"
    )
    top_k: PositiveInt = 5
    lanczos_steps: PositiveInt = Field(
        20, description="Lanczos steps per run (the top-k come from the first run)"
    )
    slq_probes: PositiveInt = Field(2, description="Lanczos runs from random start vectors for the density")
    hutchinson_probes: PositiveInt = 8


class StudyParams(Strict):
    """Root of params.yaml. Sections not yet used by any stage are optional."""

    compute: ComputeParams = ComputeParams()
    smoke: SmokeParams = SmokeParams()
    publish: PublishParams = PublishParams()
    turbulence: TurbulenceParams = TurbulenceParams()
    train: TrainParams = Field(default_factory=TrainParams)
    landscape: LandscapeParams = LandscapeParams()

    @model_validator(mode="after")
    def _landscape_models_are_trained(self) -> StudyParams:
        for dataset, models in self.landscape.models.items():
            untrained = sorted(set(models) - set(getattr(self.train, dataset).models))
            if untrained:
                raise ValueError(f"landscape.models.{dataset}: {untrained} are not in train.{dataset}.models")
        return self


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid parameters in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {key}: {msg}{shown}")
    lines.append("Fix these keys in params.yaml (see docs/params.md for every key and its default).")
    return "\n".join(lines)


def parse_params(raw: dict, source: str = "params") -> StudyParams:
    """Validate a params mapping; raises :class:`ParamsError` naming every bad key."""
    try:
        return StudyParams.model_validate(raw or {})
    except ValidationError as err:
        raise ParamsError(_format_errors(err, source)) from None


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None) -> StudyParams:
    """Read and validate ``params.yaml``; ``overrides`` is merged over it (nested dicts merge)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} not found; run from the repository root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from None
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


def params_reference() -> str:
    """Markdown reference of every params.yaml key, generated from this schema (docs/params.md)."""
    lines = [
        "# params.yaml reference",
        "",
        "Generated from `pipelines/params.py` by `python -m pipelines.params > docs/params.md`;",
        "a test keeps it current. Every key is optional: a missing one takes the default shown.",
        "",
    ]

    def walk(model: type[BaseModel], prefix: str) -> None:
        lines.extend([f"## `{prefix}`", "", (model.__doc__ or "").strip().replace("\n    ", " "), ""])
        lines.extend(["| key | type | default | meaning |", "|---|---|---|---|"])
        nested = []
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                nested.append((ann, f"{prefix}.{name}"))
                continue
            default = info.get_default(call_default_factory=True)
            shown = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
            kind = (
                (ann.__name__ if isinstance(ann, type) else str(ann))
                .replace("typing.", "")
                .replace("|", "\\|")
            )
            bounds = ", ".join(str(m) for m in info.metadata)  # e.g. Gt(gt=0)
            kind += f" ({bounds})" if bounds else ""
            lines.append(f"| `{name}` | {kind} | `{shown}` | {info.description or ''} |")
        lines.append("")
        for sub, sub_prefix in nested:
            walk(sub, sub_prefix)

    for name, info in StudyParams.model_fields.items():
        walk(info.annotation, name)  # type: ignore[arg-type]
    return "\n".join(lines)


if __name__ == "__main__":
    print(params_reference())
