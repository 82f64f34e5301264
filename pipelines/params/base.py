"""Shared pieces of the params schema: the strict base model, limits, the budget check, compute."""


from __future__ import annotations

import os
import re
import reprlib
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

# Every model below is strict (no bool or float read as an int, no "1" read as a number) and refuses inf
# and NaN (``allow_inf_nan=False`` in :class:`Strict`), so a float alias needs no extra marker to be finite.
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
# numpy's legacy RandomState and many samplers take a 32-bit seed; larger ones fail late and unnamed
Seed = Annotated[int, Field(ge=0, lt=2**32)]

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
DEVICE = r"^(auto|cpu|cuda(:\d+)?)$"  # train/device.py resolves it (and checks the GPU) at stage start

# Equivariance error per symmetry level E_0..E_9 reported for the original study's published smoke data
# (docs/pipeline.md, "Smoke symmetry levels", compares ours with these).
PUBLISHED_LEVEL_ERRORS = (0.0, 0.17, 0.313, 0.435, 0.541, 0.63, 0.709, 0.78, 0.84, 0.896)
N_LEVELS = len(PUBLISHED_LEVEL_ERRORS)


# A built-in scenario name, or `package.module:ClassName` (importable by every dask worker). The class
# itself is imported and its options checked by the smoke stage before any simulation, so reading params
# never needs PhiFlow.
SCENARIO_NAME = r"^([a-z][a-z0-9_]*|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$"


class _ShortRepr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:  # a huge int: repr() itself would raise
        return super().repr_int(x, level) if x.bit_length() < 200 else f"<int of {x.bit_length()} bits>"


_SHORT = _ShortRepr()  # Python 3.11: limits are attributes, not constructor arguments
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 60, 60, 60
_SHORT.maxdict = _SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = _SHORT.maxfrozenset = 4


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr`` of at most one line and ``limit`` characters; bounded work even for a structure of
    nested YAML aliases whose full repr would take gigabytes."""
    text = " ".join(_SHORT.repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str, limit: int = 400) -> str:
    """A message cut to one line of at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or has an invalid value."""


class BadKey(ValueError):
    """A validator's error about ``key``, a path below the model that raises it; the error report
    joins it to the model's own path (``train`` + ``smoke.hparams.cnn.hidden``)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


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
                f"(pipelines/params MAX_{'HOURS' if what == 'time' else what.upper() + '_GIB'}); "
                "reduce the resolution, steps or counts"
            )


class ComputeParams(Strict):
    """Where parallel work runs: a LocalCluster by default, or an existing dask scheduler."""

    scheduler_address: str | None = Field(
        None,
        description="tcp://host:port of a running dask scheduler: the data stages' work and every training"
        " and landscape run go to its workers; null starts a LocalCluster (n_workers processes)",
    )
    n_workers: PositiveInt = Field(
        2,
        description="LocalCluster workers; workers x threads <= 4 x CPU count; 1: training and landscape runs"
        " one after another in the stage's process (same results)",
    )
    threads_per_worker: PositiveInt = Field(
        1, description="threads per LocalCluster worker; torch threads of every training and landscape run"
    )
    device: str = Field(
        "auto",
        description="torch device of training and landscape stages: auto (a GPU when torch sees one), cpu,"
        " cuda or cuda:N; a GPU that is not visible is an error at stage start",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(DEVICE, value):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N (N a GPU index), got {value!r}")
        return value

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


