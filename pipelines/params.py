"""The single schema for ``params.yaml``.

Every stage loads its section through :func:`load_params`, so a bad value fails at once with the key
path in the message, before any simulation, download or training starts. Sections are strict: an unknown
key is an error (typos must not be silently ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]

# Published data equivariance error per symmetry level E_0..E_9 (study spec, section 1).
PUBLISHED_LEVEL_ERRORS = (0.0, 0.17, 0.313, 0.435, 0.541, 0.63, 0.709, 0.78, 0.84, 0.896)
N_LEVELS = len(PUBLISHED_LEVEL_ERRORS)


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

    scenario: Literal["buoyant_plume"] = "buoyant_plume"
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
        if self.keep_stop > self.steps:
            raise ValueError(f"keep_stop={self.keep_stop} is past the end of the simulation (steps={self.steps})")
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


class StudyParams(Strict):
    """Root of params.yaml. Sections not yet used by any stage are optional."""

    compute: ComputeParams = ComputeParams()
    smoke: SmokeParams = SmokeParams()


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
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
