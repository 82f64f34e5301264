"""The single schema for ``params.yaml``.

Every stage loads its section through :func:`load_params`, so a bad value fails at once with the key
path in the message, before any simulation, download or training starts. Sections are strict: an unknown
key is an error (typos must not be silently ignored). One schema, one module per section:
:mod:`.base` (strict base model, limits, budget check, compute), :mod:`.smoke`, :mod:`.turbulence`,
:mod:`.publish`, :mod:`.study` (train, landscape, the whole file and how it is read) and :mod:`.reference`
(``docs/params.md``).
"""

from __future__ import annotations

from pipelines.params.base import (
    MAX_DISK_GIB,
    MAX_EPOCHS,
    MAX_HOURS,
    MAX_MEMORY_GIB,
    MAX_STEPS,
    N_LEVELS,
    PUBLISHED_LEVEL_ERRORS,
    SCENARIO_NAME,
    SCHEDULER_ADDRESS,
    SMOKE_CELL_STEPS_PER_S,
    SOLVER_POINT_STEPS_PER_S,
    SR_FACTOR,
    ComputeParams,
    NonNegativeInt,
    ParamsError,
    PositiveFloat,
    PositiveInt,
    Strict,
    _gib,
    check_budget,
)
from pipelines.params.datasets import _check_hparam
from pipelines.params.publish import HubRepoId, NonNegativeFloat, PublishParams, check_repo_id
from pipelines.params.reference import _BOUND_SYMBOLS, _constraints, _type_label, params_reference
from pipelines.params.smoke import PressureSolverParams, SmokeParams, SplitFractions
from pipelines.params.study import (
    LandscapeParams,
    OptimiserParams,
    StudyParams,
    TaskTrainParams,
    TrainParams,
    _format_errors,
    _merge,
    load_params,
    parse_params,
)
from pipelines.params.turbulence import (
    JHTDB_CUTOUT_URL,
    JHTDB_DT,
    JHTDB_GRID_POINTS,
    JHTDB_TIME_STEPS,
    JHTDB_VISCOSITY,
    JHTDBParams,
    TurbulenceParams,
    TurbulenceSolverParams,
    TurbulenceSplitCounts,
)

__all__ = [
    'ComputeParams',
    'HubRepoId',
    'JHTDBParams',
    'JHTDB_CUTOUT_URL',
    'JHTDB_DT',
    'JHTDB_GRID_POINTS',
    'JHTDB_TIME_STEPS',
    'JHTDB_VISCOSITY',
    'LandscapeParams',
    'MAX_DISK_GIB',
    'MAX_EPOCHS',
    'MAX_HOURS',
    'MAX_MEMORY_GIB',
    'MAX_STEPS',
    'N_LEVELS',
    'NonNegativeFloat',
    'NonNegativeInt',
    'OptimiserParams',
    'PUBLISHED_LEVEL_ERRORS',
    'ParamsError',
    'PositiveFloat',
    'PositiveInt',
    'PressureSolverParams',
    'PublishParams',
    'SCENARIO_NAME',
    'SCHEDULER_ADDRESS',
    'SMOKE_CELL_STEPS_PER_S',
    'SOLVER_POINT_STEPS_PER_S',
    'SR_FACTOR',
    'SmokeParams',
    'SplitFractions',
    'Strict',
    'StudyParams',
    'TaskTrainParams',
    'TrainParams',
    'TurbulenceParams',
    'TurbulenceSolverParams',
    'TurbulenceSplitCounts',
    '_BOUND_SYMBOLS',
    '_check_hparam',
    '_constraints',
    '_format_errors',
    '_gib',
    '_merge',
    '_type_label',
    'check_budget',
    'check_repo_id',
    'load_params',
    'params_reference',
    'parse_params',
]
