"""Modules of the user's own that decide a stage's results (a smoke scenario, a model): their source
files, and DVC's view of them.

Code inside the folders dvc.yaml lists is a declared dependency already. A module elsewhere (a user's
``my_plumes.py`` or ``my_models.py``) is digested into the scratch key or the run identity, so an edit of it
is never mistaken for the old code's results; but ``dvc status`` sees an edit only of a declared
dependency. So when DVC runs a stage, :func:`check_declared` refuses to start until every such file is
listed under the stage's ``deps``. Installed libraries (torch, ...) are pinned by version, not digested.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

import yaml


def module_file(name: str) -> Path:
    """The source file of module ``name`` (an imported one's own file, else where it would be found)."""
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) if module else None
    if origin is None:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec else None
    if origin is None or not origin.endswith(".py"):
        raise ValueError(f"module {name!r} has no Python source file; user code must live in a .py module")
    return Path(origin).resolve()


def installed(path: Path) -> bool:
    """Whether ``path`` belongs to the interpreter's library or an installed package."""
    paths = sysconfig.get_paths()
    roots = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return any(root in path.parents for root in roots)


def _declared_deps(root: Path, stage: str) -> list[Path]:
    # DVC_STAGE is `name` for the root dvc.yaml, `path/dvc.yaml:name` for another one
    file, _, name = stage.rpartition(":")
    dvc_yaml = root / (file or "dvc.yaml")
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}) if dvc_yaml.is_file() else {}
    deps = (stages.get(name) or {}).get("deps", []) or []
    paths = [next(iter(d)) if isinstance(d, dict) else str(d) for d in deps]
    return [(dvc_yaml.parent / d).resolve() for d in paths if "${" not in d]


def check_declared(what: str, files: Iterable[Path], docs: str) -> None:
    """Under ``dvc repro`` (DVC sets ``DVC_STAGE`` and ``DVC_ROOT``), raise ValueError naming the first of
    ``files`` (the code of ``what``, e.g. ``smoke.scenario='my_plumes:TwinPlume'``) that is not a
    dependency of the running stage in dvc.yaml, and the line to add; outside DVC there is nothing to check.
    ``docs``: where the user reads more."""
    stage, root = os.environ.get("DVC_STAGE"), os.environ.get("DVC_ROOT")
    if not stage or not root:
        return
    deps = _declared_deps(Path(root), stage)
    for path in files:
        if not any(path == d or d in path.parents for d in deps):
            shown = path.relative_to(Path(root).resolve()) if Path(root).resolve() in path.parents else path
            raise ValueError(
                f"{what}: its module file {shown} is not a dependency of the DVC stage {stage!r}, so "
                f"`dvc status` would not see an edit of it; add `- {shown}` to that stage's deps in dvc.yaml "
                f"({docs})"
            )
