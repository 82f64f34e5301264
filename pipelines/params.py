"""The single schema for ``params.yaml``.

Every stage loads its section through :func:`load_params`, so a bad value fails at once with the key
path in the message, before any simulation, download or training starts. Sections are strict: an unknown
key is an error (typos must not be silently ignored).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# Every model below is strict (no bool or float read as an int, no "1" read as a number) and refuses inf
# and NaN (``allow_inf_nan=False`` in :class:`Strict`), so a float alias needs no extra marker to be finite.
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]

# Upper bounds checked before any work (documented in the field descriptions and docs/params.md). The
# throughputs are deliberately optimistic, so a run refused here would take longer than the limit.
MAX_MEMORY_GIB = 64.0  # estimated peak memory of one stage
MAX_DISK_GIB = 512.0  # estimated size of a stage's store plus its scratch
MAX_HOURS = 72.0  # estimated wall time of one stage
SMOKE_CELL_STEPS_PER_S = 2e6  # PhiFlow cell updates per second, one worker
SOLVER_POINT_STEPS_PER_S = 2e7  # pseudo-spectral 3D solver point updates per second
MAX_STEPS = 1_000_000
MAX_EPOCHS = 100_000
SR_FACTOR = 4  # models/nets.py SRGroupNet: two x2 up-blocks, so lr is hr / 4 per axis
SCHEDULER_ADDRESS = r"^(tcp|tls)://[A-Za-z0-9.\-\[\]:]+:(\d{1,5})$"

# Equivariance error per symmetry level E_0..E_9 reported for the original study's published smoke data
# (README, "Results of the embedded default", compares ours with these).
PUBLISHED_LEVEL_ERRORS = (0.0, 0.17, 0.313, 0.435, 0.541, 0.63, 0.709, 0.78, 0.84, 0.896)
N_LEVELS = len(PUBLISHED_LEVEL_ERRORS)


# A built-in scenario name, or `package.module:ClassName` (importable by every dask worker). The class
# itself is imported and its options checked by the smoke stage before any simulation, so reading params
# never needs PhiFlow.
SCENARIO_NAME = r"^([a-z][a-z0-9_]*|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$"


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or has an invalid value."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _gib(n_bytes: float) -> float:
    return n_bytes / 2**30


def check_budget(section: str, memory_bytes: float, disk_bytes: float, seconds: float) -> None:
    """Refuse a configuration whose estimated memory, disk or time exceeds the documented limits."""
    for what, value, limit, unit in (
        ("memory", _gib(memory_bytes), MAX_MEMORY_GIB, "GiB"),
        ("disk", _gib(disk_bytes), MAX_DISK_GIB, "GiB"),
        ("time", seconds / 3600, MAX_HOURS, "h"),
    ):
        if not value <= limit:  # also catches a NaN estimate
            raise ValueError(
                f"{section}: estimated {what} {value:.3g} {unit} exceeds the limit of {limit:g} {unit} "
                f"(pipelines/params.py MAX_{'HOURS' if what == 'time' else what.upper() + '_GIB'}); "
                "reduce the resolution, steps or counts"
            )


class ComputeParams(Strict):
    """Where parallel work runs: a LocalCluster by default, or an existing dask scheduler."""

    scheduler_address: str | None = Field(
        None, description="tcp://host:port of a running dask scheduler; null starts a LocalCluster"
    )
    n_workers: PositiveInt = Field(2, description="LocalCluster workers; workers x threads <= 4 x CPU count")
    threads_per_worker: PositiveInt = 1

    @field_validator("scheduler_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        match = re.match(SCHEDULER_ADDRESS, value) if value is not None else None
        if value is not None and (match is None or not 0 < int(match.group(2)) < 65536):
            raise ValueError(f"must be tcp://host:port (or tls://host:port), got {value!r}")
        return value

    @model_validator(mode="after")
    def _fits_machine(self) -> ComputeParams:
        limit = 4 * (os.cpu_count() or 1)  # a LocalCluster beyond this only thrashes
        if self.scheduler_address is None and self.n_workers * self.threads_per_worker > limit:
            raise ValueError(
                f"n_workers x threads_per_worker = {self.n_workers * self.threads_per_worker} exceeds "
                f"4 x CPU count = {limit} (use scheduler_address for a cluster)"
            )
        return self


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
    """2D buoyant smoke plumes with exact C4 symmetry levels (README, "Smoke plumes (2D, exact C4)")."""

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
        jobs = len(self.buoyancy_indices) * (4 if self.symmetrisation == "simulate" else 1) + 3
        cells = self.resolution**2
        scratch = jobs * self.n_frames * 3 * cells * 8  # float64 velocity (2) + smoke (1) per kept frame
        store = len(self.levels) * 4 * self.n_frames * 3 * cells * (4 if self.dtype == "float32" else 8)
        solver = self.batch_size * 3 * cells * 8 * 20  # working fields of one batch (generous)
        seconds = jobs * self.steps * cells / SMOKE_CELL_STEPS_PER_S
        check_budget("smoke", scratch + store + solver, scratch + store, seconds)

    def physics(self) -> dict[str, Any]:
        """The keys that decide which simulations run and what they produce (the scratch key): not the
        store's layout (dtype, windows, splits), which is applied afterwards and never re-simulates."""
        return self.model_dump(mode="json", exclude={"dtype", "input_frames", "output_frames", "splits"})

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


def check_repo_id(repo_id: str) -> str:
    """The Hub's repo id rules: ``namespace/name``, each part of [A-Za-z0-9-_.], not starting or ending
    with ``-`` or ``.``, no ``--`` or ``..``, at most 96 characters. Path-like values (``..``, ``.``,
    ``a/../b``, absolute paths) fail here, before any folder named after the id is written or synced."""
    parts = repo_id.split("/")
    if len(repo_id) > 96:
        raise ValueError(f"repo id {repo_id!r} is longer than 96 characters")
    if len(parts) != 2:
        raise ValueError(f"repo id {repo_id!r} must be namespace/name (exactly one '/')")
    for part in parts:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", part):
            raise ValueError(f"repo id {repo_id!r}: {part!r} may only use letters, digits, '-', '_' and '.'")
        if part[0] in "-." or part[-1] in "-." or "--" in part or ".." in part:
            raise ValueError(
                f"repo id {repo_id!r}: {part!r} must not start or end with '-' or '.', nor hold '--' or '..'"
            )
    return repo_id


HubRepoId = str  # checked by check_repo_id in PublishParams


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

    @field_validator("repos")
    @classmethod
    def _valid_repo_ids(cls, repos: dict[str, str]) -> dict[str, str]:
        for repo_id in repos.values():
            check_repo_id(repo_id)
        return repos

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
        # one repo per dataset: a second dataset's commit would delete the first one's files
        # and one local folder per repo: the folder is named after the repo's name part
        seen: dict[str, str] = {}
        for name, repo_id in self.repos.items():
            folder = repo_id.split("/")[-1].lower()
            if folder in seen:
                first = seen[folder]
                raise ValueError(
                    f"repos.{name} ({repo_id!r}) and repos.{first} ({self.repos[first]!r}) share the repo "
                    f"name {folder!r}: one would overwrite the other"
                )
            seen[folder] = name
        return self


# --- isotropic turbulence super-resolution (docs/turbulence.md) ---------------------------------------

NonNegativeFloat = Annotated[float, Field(ge=0)]
JHTDB_GRID_POINTS = 1024  # isotropic1024coarse: 1024^3 points on the periodic box [0, 2 pi)^3
JHTDB_TIME_STEPS = 5024  # time indices 1..5024
JHTDB_DT = 0.002
JHTDB_VISCOSITY = 0.000185
JHTDB_CUTOUT_URL = "https://web.idies.jhu.edu/turbulence-svc/cutout/api/local"


class TurbulenceSolverParams(Strict):
    """``synthetic`` source: forced incompressible Navier-Stokes, pseudo-spectral, on [0, 2 pi)^3."""

    resolution: PositiveInt = Field(
        64,
        description="solver points per axis; a multiple of hr_resolution. Memory ~ 320 B x resolution^3 and "
        f"time are checked against {MAX_MEMORY_GIB:g} GiB and {MAX_HOURS:g} h before any work",
    )
    viscosity: PositiveFloat = 8e-3
    dt: PositiveFloat = Field(0.015, description="solver time step")
    save_every: PositiveInt = Field(1, description="solver steps between consecutive stored time steps")
    spinup_time: NonNegativeFloat = Field(
        4.0, description="simulated time before the first stored step (the run must fit the time limit)"
    )
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

    base_url: str = Field(
        JHTDB_CUTOUT_URL,
        pattern=r"^https?://",
        description="REST cutout endpoint; https:// unless allow_insecure_http (the token is in the query)",
    )
    allow_insecure_http: bool = Field(
        False, description="accept an http:// base_url: only for a local test server (token sent in clear)"
    )
    dataset: Literal["isotropic1024coarse"] = "isotropic1024coarse"
    token_env: str = Field(
        "JHTDB_TOKEN",
        pattern=r"^JHTDB_[A-Z0-9_]+$",
        description="env var with the token; must be named JHTDB_* so no other secret can be sent",
    )
    mode: Literal["stride", "box", "subcube"] = Field(
        "stride",
        description="stride: the server samples every factor-th point; box: block means of full-resolution "
        "blocks; subcube: a contiguous native-resolution region (factor 1)",
    )
    factor: PositiveInt = Field(16, description="native points per stored point per axis (stride or box)")
    origin: tuple[int, int, int] = Field(
        (1, 1, 1), strict=False, description="1-based (x, y, z) index of the first point"
    )
    time_range: tuple[int, int] = Field(
        (1, 1024), strict=False, description="time indices the sample windows come from"
    )
    max_points_per_request: PositiveInt = Field(4096, description="points x times per request (4096 testing)")
    max_request_mb: PositiveFloat = Field(3072.0, description="unstrided box x times x 12 B per request, MiB")
    timeout_s: PositiveFloat = Field(
        60.0, description="deadline of one request: connect, headers and the whole body (a retryable fault)"
    )
    retries: NonNegativeInt = Field(5, description="retries per block after the first attempt")
    backoff_s: NonNegativeFloat = Field(1.0, description="first retry delay; doubles per retry")
    backoff_max_s: NonNegativeFloat = Field(
        60.0, description="longest retry delay; a longer Retry-After (HTTP 429 / 503) stops the download"
    )

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
        if self.base_url.startswith("http://") and not self.allow_insecure_http:
            raise ValueError(
                "jhtdb.base_url must start with https:// (the token is sent in the query string); "
                "set jhtdb.allow_insecure_http: true only for a local test server"
            )
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
    lr_factor: PositiveInt = Field(
        4, description=f"block-mean factor from hr to the lr input; training needs {SR_FACTOR} (SR models)"
    )
    window: PositiveInt = Field(3, description="consecutive steps per sample (t-1, t, t+1); odd")
    splits: TurbulenceSplitCounts = TurbulenceSplitCounts()
    split_strategy: Literal["random", "time_blocks"] = Field(
        "time_blocks", description="time_blocks: train earliest, then valid, then test; random: as published"
    )
    sample_spacing_turnover: NonNegativeFloat = Field(
        0.25, description="synthetic: time between consecutive sample windows, in large-eddy turnover times"
    )
    turnover_time: PositiveFloat = Field(
        2.35, description="T_L = L / u' used for the spacing (the synthetic default solver's L / u'; the "
        "stage reports the measured one as physics_window_mean.large_eddy_turnover_time)"
    )
    seed: NonNegativeInt = Field(123, description="draws the JHTDB time windows and the split assignment")
    spectrum_fit_range: tuple[PositiveFloat, PositiveFloat] = Field(
        (2.0, 6.0), strict=False, description="wavenumbers of the spectral-slope fit (inertial range)"
    )
    synthetic: TurbulenceSolverParams = TurbulenceSolverParams()
    jhtdb: JHTDBParams = JHTDBParams()

    @property
    def n_samples(self) -> int:
        return self.splits.train + self.splits.valid + self.splits.test

    def check_trainable(self) -> None:
        """The training stages' check (the dataset itself may use any dividing factor): the SR models
        upsample by exactly SR_FACTOR."""
        if self.lr_factor != SR_FACTOR:
            raise ParamsError(
                f"turbulence.lr_factor={self.lr_factor}: the super-resolution models upsample x{SR_FACTOR} "
                "(two x2 up-blocks, models/nets.py); set turbulence.lr_factor: 4 to train on this data"
            )

    def _check_budget(self) -> None:
        stored = self.n_samples * self.window  # windows share no step
        hr_bytes = stored * 3 * self.hr_resolution**3 * 4 * (1 + 1 / self.lr_factor**3)  # float32 hr + lr
        memory, seconds = hr_bytes, 0.0
        if self.source == "synthetic":
            s = self.synthetic
            points = s.resolution**3
            steps = s.spinup_time / s.dt + stored * s.save_every
            memory += 40 * 8 * points  # ~20 float64 / complex working arrays of the solver
            seconds = steps * points * math.log2(s.resolution) / SOLVER_POINT_STEPS_PER_S
        check_budget("turbulence", memory, hr_bytes, seconds)

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
        self._check_budget()
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

    lr: Annotated[float, Field(gt=0, le=10)] = Field(1e-3, description="Adam learning rate (0, 10]")
    weight_decay: Annotated[float, Field(ge=0)] = 4e-4
    batch_size: PositiveInt = 8
    max_epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)] = Field(6, description=f"at most {MAX_EPOCHS}")
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
    residual: bool = Field(
        True,
        description="the network predicts a correction to the trivial prediction: the last input frame"
        " (smoke) or the upsampled middle low-res frame (turbulence); false: it predicts the target itself",
    )
    upsampler: Literal["trilinear", "spectral"] = Field(
        "spectral", description="turbulence only: the upsampling a residual network corrects"
    )

    @field_validator("models", "seeds")
    @classmethod
    def _non_empty_unique(cls, values: list) -> list:
        if not values or len(set(values)) != len(values):
            raise ValueError(f"must be a non-empty list without repeats, got {values}")
        return values


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
        raise ValueError(f"{key}: expected a value like the default {default!r}, got {value!r}")


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
                defaults = default_hparams(task, model)
                extra = set(overrides) - set(defaults)
                if extra:
                    raise ValueError(f"{dataset}.hparams.{model}: unknown keys {sorted(extra)}")
                for key, value in overrides.items():
                    _check_hparam(f"{dataset}.hparams.{model}.{key}", value, defaults[key])
        return self


class LandscapeParams(Strict):
    """Sharpness and Hessian measurements at each checkpoint (definitions: README, "Models, training, loss
    landscapes", and train/curvature.py)."""

    models: dict[Literal["smoke", "turbulence"], list[str]] = Field(
        default_factory=lambda: {"smoke": ["e2cnn", "rsteer"], "turbulence": ["cnn", "gcnn", "rgcnn"]},
        description="models measured per dataset (each must also be trained)",
    )
    checkpoints: list[Literal["early", "best"]] = ["early", "best"]
    subset_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        0.2, description="share of the training set the loss and Hessian are measured on (study: 20%)"
    )
    subset_min_samples: PositiveInt = Field(8, description="at least this many samples (or all of them)")
    subset_batches: PositiveInt | None = Field(
        None, description="if set: exactly subset_batches x subset_batch_size samples, ignoring the fraction"
    )
    subset_batch_size: PositiveInt = Field(
        8, description="samples per batch; curvature is accumulated batch by batch (memory of one batch)"
    )
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
        if self.train.smoke.level not in self.smoke.levels:
            raise ValueError(
                f"train.smoke.level={self.train.smoke.level} is not among smoke.levels={self.smoke.levels}"
            )
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
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from None
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


_BOUND_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _constraints(metadata: list[Any]) -> list[str]:
    """Readable constraints from pydantic / annotated-types metadata (``Gt(gt=0)`` -> ``> 0``)."""
    out: list[str] = []
    for item in metadata:
        if hasattr(item, "metadata") and not hasattr(item, "gt"):  # a FieldInfo inside Annotated[...]
            out += _constraints(list(item.metadata))
            continue
        found = False
        for attr, symbol in _BOUND_SYMBOLS.items():
            if getattr(item, attr, None) is not None:
                out.append(f"{symbol} {getattr(item, attr)}")
                found = True
        for attr, words in (("min_length", "length >="), ("max_length", "length <=")):
            if getattr(item, attr, None) is not None:
                out.append(f"{words} {getattr(item, attr)}")
                found = True
        if getattr(item, "pattern", None):
            out.append(f"matching `{item.pattern}`")
        elif not found:
            out.append(repr(item))
    return out


def _type_label(ann: Any) -> str:
    """A short type name for the docs: ``list[int (>= 0)]``, ``int (> 0) | None``, ``'dct' | 'cg'``."""
    import types
    import typing

    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Annotated:
        bounds = _constraints(list(args[1:]))
        return _type_label(args[0]) + (f" ({', '.join(bounds)})" if bounds else "")
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_label(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        shown = ", ".join("..." if a is Ellipsis else _type_label(a) for a in args)
        return f"{name}[{shown}]" if args else name
    if ann is type(None):
        return "None"
    return ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")


def params_reference() -> str:
    """Markdown reference of every params.yaml key, generated from this schema (docs/params.md).

    Defaults are read from the default *instance* of each section, so a nested section shows what its
    parent sets (``train.turbulence.optimiser.batch_size`` is 4, not the class default 8).
    """
    lines = [
        "# params.yaml reference",
        "",
        "Generated from `pipelines/params.py` by `python -m pipelines.params > docs/params.md`;",
        "a test keeps it current. Every key is optional: a missing one takes the default shown.",
        "",
    ]

    def walk(model: type[BaseModel], prefix: str, defaults: BaseModel | None) -> None:
        lines.extend([f"## `{prefix}`", ""])
        doc = (model.__doc__ or "").strip().replace("\n    ", " ")
        lines.extend([doc, ""] if doc else [])
        rows, nested = [], []
        for name, info in model.model_fields.items():
            ann = info.annotation
            if defaults is not None:
                default: Any = getattr(defaults, name)
            elif info.is_required():
                default = None
            else:
                default = info.get_default(call_default_factory=True)
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                nested.append((ann, f"{prefix}.{name}", default))
                continue
            shown = "required" if defaults is None and info.is_required() else f"`{default}`"
            kind = _type_label(ann)
            bounds = _constraints(list(info.metadata))  # constraints given in Field(...)
            kind += f" ({', '.join(bounds)})" if bounds else ""
            kind = kind.replace("|", "\\|")  # a literal pipe inside a table cell
            rows.append(f"| `{name}` | {kind} | {shown} | {info.description or ''} |")
        if rows:
            lines.extend(["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""])
        for sub, sub_prefix, sub_default in nested:
            walk(sub, sub_prefix, sub_default)

    root = StudyParams.model_construct()  # defaults only: no validation needed to read them
    for name, info in StudyParams.model_fields.items():
        walk(info.annotation, name, getattr(root, name, None))  # type: ignore[arg-type]
    return "\n".join(lines)


if __name__ == "__main__":
    print(params_reference())
