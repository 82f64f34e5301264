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
stage's ``deps``: from then on ``dvc status`` reports an edit of it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import yaml

from loaders.digest import sha256_file

# modules besides the scenario's own that decide what a simulation produces
SIMULATION_MODULES = (
    "pipelines.smoke.simulate",
    "pipelines.smoke.pressure",
    "pipelines.smoke.jax_step",
    "pipelines.smoke.stage",
    "models.groups",
)


def module_file(name: str) -> Path:
    """The source file of module ``name`` (an imported one's own file, else where it would be found)."""
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) if module else None
    if origin is None:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec else None
    if origin is None or not origin.endswith(".py"):
        raise ValueError(f"module {name!r} has no Python source file; a scenario must live in a .py module")
    return Path(origin).resolve()


def scenario_modules(cls: type) -> list[str]:
    """The modules defining ``cls`` and every class it inherits from (not builtins), in MRO order."""
    names = [k.__module__ for k in cls.__mro__ if k.__module__ != "builtins"]
    return list(dict.fromkeys(names))


def simulation_code(cls: type) -> dict[str, str]:
    """sha256 of the source of every module that decides what a simulation of scenario ``cls`` produces,
    by module name (not path: a moved checkout keeps its digests)."""
    names = dict.fromkeys([*scenario_modules(cls), *SIMULATION_MODULES])
    return {name: sha256_file(module_file(name)) for name in names}


def _declared_deps(root: Path, stage: str) -> list[Path]:
    # DVC_STAGE is `name` for the root dvc.yaml, `path/dvc.yaml:name` for another one
    file, _, name = stage.rpartition(":")
    dvc_yaml = root / (file or "dvc.yaml")
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}) if dvc_yaml.is_file() else {}
    deps = (stages.get(name) or {}).get("deps", []) or []
    paths = [next(iter(d)) if isinstance(d, dict) else str(d) for d in deps]
    return [(dvc_yaml.parent / d).resolve() for d in paths if "${" not in d]


def check_dvc_dependencies(scenario: str, cls: type) -> None:
    """Under ``dvc repro`` (DVC sets ``DVC_STAGE`` and ``DVC_ROOT``), refuse to simulate scenario ``cls``
    unless every module file it is defined by is a dependency of the running stage in dvc.yaml, so that an
    edit of it reruns the stage; outside DVC there is nothing to check."""
    stage, root = os.environ.get("DVC_STAGE"), os.environ.get("DVC_ROOT")
    if not stage or not root:
        return
    deps = _declared_deps(Path(root), stage)
    for name in scenario_modules(cls):
        path = module_file(name)
        if not any(path == d or d in path.parents for d in deps):
            shown = path.relative_to(Path(root).resolve()) if Path(root).resolve() in path.parents else path
            raise ValueError(
                f"smoke.scenario={scenario!r}: its module file {shown} is not a dependency of the DVC stage "
                f"{stage!r}, so `dvc status` would not see an edit of it; add `- {shown}` to that stage's "
                "deps in dvc.yaml (pipelines/smoke/scenarios.py)"
            )
