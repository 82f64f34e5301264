"""What a model is to the pipeline: one :class:`ModelSpec`, importable without torch.

A spec says which task the model is built for, its default hyper-parameters (the one place they are
written: a params file overrides them key by key), optional bounds on them, and how to build it. The
built-in models' specs are in :mod:`models.catalog`; a model of your own is a spec in any importable module,
named in params.yaml by its import path ``package.module:NAME`` (docs/models.md, README "Adding a model").
An importable name, not a run-time registry, is what lets dask workers on other machines find the model,
as for smoke scenarios (pipelines/smoke/scenarios.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

TASKS = ("smoke", "sr")  # smoke: [B, 2*in_frames, H, W] -> [B, 2, H, W]; sr: docs/models.md "Shapes"

Bounds = tuple[float | None, float | None]  # (lowest, highest) allowed; None: unbounded on that side


@dataclass(frozen=True)
class ModelSpec:
    """One model.

    ``build(**hparams)`` gets every key of ``defaults`` (with the params file's overrides) and returns a
    ``torch.nn.Module``: a class or a function, or its import path ``package.module:NAME`` (the built-ins'
    form, so that validating params neither imports torch nor depends on the networks' code). A module
    without ``regularizer()`` gets one returning 0 (no penalty); a relaxed model returns its penalty there.

    ``ranges`` and ``choices`` bound hparams by key, on top of the shared bounds of
    pipelines/params/hparams.py (hidden 1-4096, ...), which they override; ``check(hparams)`` returns
    ``(key, problem)`` for a combination the bounds cannot express, else None.
    """

    task: str
    defaults: Mapping[str, Any]
    build: Callable[..., Any] | str
    ranges: Mapping[str, Bounds] = field(default_factory=dict)
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], tuple[str, str] | None] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"ModelSpec.task={self.task!r}; allowed: {list(TASKS)}")
        unknown = sorted((set(self.ranges) | set(self.choices)) - set(self.defaults))
        if unknown:
            raise ValueError(f"ModelSpec bounds name keys {unknown} that are not in its defaults")

    def builder(self) -> Callable[..., Any]:
        """``build`` as a callable (an import path is imported now)."""
        return import_attr(self.build) if isinstance(self.build, str) else self.build


def import_attr(path: str) -> Any:
    """The object ``package.module:name`` names (ValueError saying what to do when it cannot be imported)."""
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"{path!r} cannot be imported ({err}); the module must be importable here and on every dask "
            "worker (installed, or on PYTHONPATH)"
        ) from None


def import_spec(name: str) -> ModelSpec:
    """The spec at import path ``package.module:NAME``; ValueError naming the path if there is none."""
    spec = import_attr(name)
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"{name!r} is a {type(spec).__name__}, not a models.spec.ModelSpec")
    return spec


def code_modules(name: str, spec: ModelSpec) -> list[str]:
    """The modules a user model's code is in, in order: the one holding its spec, then those defining its
    ``build`` (for a class, it and every class it inherits from; installed libraries such as torch among
    them are the caller's to leave out)."""
    build = getattr(spec.builder(), "func", spec.builder())  # a functools.partial: its function
    owners = [k.__module__ for k in build.__mro__] if isinstance(build, type) else [build.__module__]
    names = dict.fromkeys([name.partition(":")[0], *owners])
    names.pop("builtins", None)
    return list(names)
