"""The ``turbulence`` section: synthetic solver and JHTDB sources, samples and splits."""


from __future__ import annotations

import math
from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from pipelines.params.base import (
    MAX_HOURS,
    MAX_MEMORY_GIB,
    SOLVER_POINT_STEPS_PER_S,
    SR_FACTOR,
    NonNegativeInt,
    ParamsError,
    PositiveFloat,
    PositiveInt,
    Seed,
    Strict,
    check_budget,
)
from pipelines.params.publish import NonNegativeFloat

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
    seed: Seed = 0
    subgrid: Literal["none", "spectral"] = Field(
        "none",
        description="none: direct simulation; spectral: Chollet-Lesieur eddy viscosity, a large-eddy "
        "simulation whose k^-5/3 range reaches the 2/3 cut-off at any viscosity (docs/turbulence.md)",
    )
    precision: Literal["float64", "float32"] = Field(
        "float64",
        description="solver state and FFTs; float32 halves a step's cost (stored fields: float32)",
    )

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
    seed: Seed = Field(123, description="draws the JHTDB time windows and the split assignment")
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


