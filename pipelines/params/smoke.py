"""The ``smoke`` section: PhiFlow plume physics, symmetry levels, layout and splits."""


from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from pipelines.params.base import (
    MAX_DISK_GIB,
    MAX_HOURS,
    MAX_MEMORY_GIB,
    MAX_STEPS,
    N_LEVELS,
    SCENARIO_NAME,
    SMOKE_CELL_STEPS_PER_S,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Seed,
    Strict,
    check_budget,
)


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


class SmokeDomainParams(Strict):
    """The *Domain* test protocol (Wang et al. 2022): held-out buoyancy ladders, simulated like the training
    ladder and never trained on. Each start ``b`` gives a full set of levels with directions (b, b+i, b+2i,
    b+3i) (E_0 stays exactly C4), written as its own store under ``data/smoke_domain/``."""

    ladder_starts: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list,
        description="first buoyancy index of each held-out ladder (the training ladder starts at 1); empty: "
        "no Domain protocol. Their indices must be disjoint from the training ladder's",
    )

    @field_validator("ladder_starts")
    @classmethod
    def _unique_starts(cls, starts: list[int]) -> list[int]:
        if len(set(starts)) != len(starts):
            raise ValueError(f"domain.ladder_starts must be unique, got {starts}")
        return starts


TRAINING_LADDER_START = 1  # the published ladder: direction k of E_i is simulation 1 + k * i


class SmokeParams(Strict):
    """2D buoyant smoke plumes with exact C4 symmetry levels (docs/pipeline.md, "Smoke plumes")."""

    scenario: str = Field(
        "buoyant_plume",
        pattern=SCENARIO_NAME,
        description="a built-in scenario name (buoyant_plume) or an importable `package.module:ClassName`",
    )
    scenario_options: dict[str, Any] = Field(
        default_factory=dict, description="extra fields of the scenario class (e.g. a TwinPlume offset)"
    )
    resolution: PositiveInt = Field(
        64,
        description=f"cells per axis; the estimated memory (<= {MAX_MEMORY_GIB:g} GiB), disk (<= "
        f"{MAX_DISK_GIB:g} GiB) and time (<= {MAX_HOURS:g} h) of the run are checked before any work",
    )
    box_size: PositiveFloat = 64.0
    inflow_center: tuple[float, float] = Field((32.0, 5.0), strict=False)  # strict=False: a YAML list
    inflow_radius: PositiveFloat = 5.0
    buoyancy_unit: PositiveFloat = Field(0.005, description="simulation i has buoyancy (0, unit * (i + 1))")
    n_simulations: PositiveInt = Field(50, description="size of the buoyancy ladder the levels index into")
    steps: Annotated[int, Field(gt=0, le=MAX_STEPS)] = Field(
        61, description=f"at most {MAX_STEPS}; the whole run must also fit the memory/disk/time limits"
    )
    dt: PositiveFloat = 1.0
    keep_start: NonNegativeInt = Field(
        11, description="first kept frame (frame t = the state after t steps); 11 as published (data_gen)"
    )
    keep_stop: PositiveInt = Field(61, description="one past the last kept frame (published: frames 11..60)")
    levels: list[Annotated[int, Field(ge=0, lt=N_LEVELS)]] = [0, 5, 9]
    symmetrisation: Literal["rotate", "simulate"] = Field(
        "rotate", description="rotate one simulation (exact C4) or simulate all four directions (Wang 2022)"
    )
    solver_symmetry_check: bool = Field(
        True, description="also simulate E_0's four directions separately and report their C4 error"
    )
    solver: PressureSolverParams = PressureSolverParams()
    backend: Literal["jax", "numpy"] = Field(
        "jax",
        description="PhiFlow backend of the simulation: jax (jit-compiled step, dct solver only) or numpy "
        "(the fallback; also runs the reference solvers scipy-direct and CG)",
    )
    batch_size: PositiveInt = Field(8, description="simulations advanced together along a PhiFlow batch dim")
    dtype: Literal["float32", "float64"] = "float32"
    input_frames: PositiveInt = 1
    output_frames: PositiveInt = 6
    splits: SplitFractions = SplitFractions()
    seed: Seed = 0
    domain: SmokeDomainParams = SmokeDomainParams()
    # the ladder this store is built from: the training one, or a held-out one (``ladder``); not a params
    # key, so the training store's bytes and scratch are what they were before the Domain protocol
    _ladder_start: int = PrivateAttr(TRAINING_LADDER_START)

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
        if self.backend == "jax" and self.solver.method != "dct":
            raise ValueError(
                f"backend=jax runs the dct pressure solver only, not solver.method={self.solver.method!r}; "
                "set smoke.backend: numpy for the reference solvers"
            )
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
        trained = set(self.buoyancy_indices)
        for start in self.domain.ladder_starts:
            held_out = set(self.ladder(start).buoyancy_indices)
            if max(held_out) >= self.n_simulations:
                raise ValueError(
                    f"domain.ladder_starts: {start} needs buoyancy index {max(held_out)} but "
                    f"n_simulations={self.n_simulations}"
                )
            if held_out & trained:
                raise ValueError(
                    f"domain.ladder_starts: ladder {start} shares buoyancy indices "
                    f"{sorted(held_out & trained)} with the training ladder (the Domain test must be unseen)"
                )
        for level in self.levels:  # a simulation in two ladders of one level would be counted twice
            sets = [set(self.ladder(b).level_indices(level)) for b in self.domain.ladder_starts]
            if sum(map(len, sets)) != len(set().union(*sets)):
                raise ValueError(
                    f"domain.ladder_starts {self.domain.ladder_starts} share a simulation at level E_{level}"
                )
        self._check_budget()
        window = self.input_frames + self.output_frames
        for split, count in self.split_frame_counts().items():
            if count < window:
                raise ValueError(
                    f"splits.{split} gets {count} frames, fewer than one window "
                    f"(input_frames + output_frames = {window}); keep more frames or change the fractions"
                )
        return self

    def _check_budget(self) -> None:
        # jobs: the buoyancy rungs (x4 directions when simulated) plus the symmetry check's three turns
        rungs = len(self.buoyancy_indices) * (1 + len(self.domain.ladder_starts))
        jobs = rungs * (4 if self.symmetrisation == "simulate" else 1) + 3
        cells = self.resolution**2
        scratch = jobs * self.n_frames * 3 * cells * 8  # float64 velocity (2) + smoke (1) per kept frame
        store = len(self.levels) * 4 * self.n_frames * 3 * cells * (4 if self.dtype == "float32" else 8)
        solver = self.batch_size * 3 * cells * 8 * 20  # working fields of one batch (generous)
        seconds = jobs * self.steps * cells / SMOKE_CELL_STEPS_PER_S
        check_budget("smoke", scratch + store + solver, scratch + store, seconds)

    def physics(self) -> dict[str, Any]:
        """The keys that decide which simulations run and what they produce (the scratch key): not the
        store's layout (dtype, windows, splits), which is applied afterwards and never re-simulates."""
        physics = self.model_dump(
            mode="json", exclude={"dtype", "input_frames", "output_frames", "splits", "domain"}
        )
        if self._ladder_start != TRAINING_LADDER_START:
            physics["ladder_start"] = self._ladder_start
        return physics

    @property
    def ladder_start(self) -> int:
        return self._ladder_start

    def ladder(self, start: int) -> SmokeParams:
        """These params on the buoyancy ladder starting at ``start`` (a held-out Domain ladder)."""
        copy = self.model_copy()
        copy._ladder_start = start
        return copy

    @property
    def n_frames(self) -> int:
        return self.keep_stop - self.keep_start

    def level_indices(self, level: int) -> tuple[int, int, int, int]:
        """Buoyancy indices of the four directions of level E_i: (b, b+i, b+2i, b+3i), b the ladder's start
        (1 for the training ladder, as published)."""
        return tuple(self._ladder_start + k * level for k in range(4))  # type: ignore[return-value]

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


