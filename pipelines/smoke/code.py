"""The code a smoke simulation runs, as digests: what keys the scratch besides the params, and what DVC
must see as a dependency of the smoke stage.

A simulation's frames are decided by its params and by the source of the modules that run it: the
scenario class and every class it inherits from, the batched runner, the pressure solvers, the stage code
that builds each job's scenario, and the rotation utility. The scratch of finished batches is keyed by
both (:func:`pipelines.smoke.stage.scratch_key`), so an edited scenario or solver never resumes batches an
older version simulated, and the digests are recorded in the stage's metrics.

DVC reruns the stage when one of its declared dependencies changes. A scenario module outside the folders
dvc.yaml lists (a user's ``my_plumes.py``) is no dependency unless it is declared, so when DVC runs the
stage, :func:`check_dvc_dependencies` refuses to start until the module's file is listed under the
stage's ``deps`` (pipelines/user_code.py): from then on ``dvc status`` reports an edit of it.
"""

from __future__ import annotations

from loaders.digest import sha256_file
from pipelines.user_code import check_declared, module_file

# modules besides the scenario's own that decide what a simulation produces
SIMULATION_MODULES = (
    "pipelines.smoke.simulate",
    "pipelines.smoke.pressure",
    "pipelines.smoke.jax_step",
    "pipelines.smoke.stage",
    "models.groups",
)


def scenario_modules(cls: type) -> list[str]:
    """The modules defining ``cls`` and every class it inherits from (not builtins), in MRO order."""
    names = [k.__module__ for k in cls.__mro__ if k.__module__ != "builtins"]
    return list(dict.fromkeys(names))


def simulation_code(cls: type) -> dict[str, str]:
    """sha256 of the source of every module that decides what a simulation of scenario ``cls`` produces,
    by module name (not path: a moved checkout keeps its digests)."""
    names = dict.fromkeys([*scenario_modules(cls), *SIMULATION_MODULES])
    return {name: sha256_file(module_file(name)) for name in names}


def check_dvc_dependencies(scenario: str, cls: type) -> None:
    """Under ``dvc repro``, refuse to simulate scenario ``cls`` unless every module file it is defined by
    is a dependency of the running stage in dvc.yaml, so that an edit of it reruns the stage."""
    files = [module_file(name) for name in scenario_modules(cls)]
    check_declared(f"smoke.scenario={scenario!r}", files, "pipelines/smoke/scenarios.py")
