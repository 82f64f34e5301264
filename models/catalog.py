"""The built-in models as specs (:class:`models.spec.ModelSpec`), and finding a model by name.

Importable without torch, and without depending on the networks' code: params validation (run by every
stage, the data stages included) uses the defaults and bounds here, and each ``build`` is the import path
of a builder in :mod:`models.registry`, imported only when a model is built. A model is named by a
built-in name (``BUILTIN_MODELS``) or by the import path ``package.module:NAME`` of a spec in a module of
your own (docs/models.md).
"""

from __future__ import annotations

from typing import Any

from models.spec import TASKS, ModelSpec, import_spec


def _two_layers(model: str) -> Any:
    """A stack whose first and last layers are the lift and the projection needs two layers at least."""

    def check(hp: dict[str, Any]) -> tuple[str, str] | None:
        if hp["layers"] < 2 and (model != "gmcnn" or hp["variant"] == "circular"):
            return "layers", f"{model} needs at least 2 (lift and projection), got {hp['layers']}"
        return None

    return check


_SMOKE = {"layers": 5, "kernel_size": 3, "in_frames": 1, "batch_norm": True}
_SR = {"enc_layers": 6, "up_layers": (1, 0), "scalar_channels": False, "batch_norm": False}
# periodic box ("zeros": the old default); a residual model starts at its upsampling (zero_head)
_SR_END = {"padding": "circular", "zero_head": True}
_SR_CHOICES = {"padding": ("circular", "zeros")}

# Defaults sit near the study's budgets: smoke models (except GM-CNN) ~0.6M parameters within 10% of each
# other, SR models 125-135k. docs/models.md lists the measured counts and the formulas.
BUILTIN_MODELS: dict[str, dict[str, ModelSpec]] = {
    "smoke": {
        "cnn": ModelSpec(
            "smoke", {"hidden": 148, **_SMOKE}, "models.registry:smoke_cnn", check=_two_layers("cnn")
        ),
        "gcnn": ModelSpec(
            "smoke", {"hidden": 74, **_SMOKE}, "models.registry:smoke_gcnn", check=_two_layers("gcnn")
        ),
        "rgcnn": ModelSpec(
            "smoke", {"hidden": 43, **_SMOKE, "banks": 3, "alpha": 0.0}, "models.registry:smoke_rgcnn",
            check=_two_layers("rgcnn"),
        ),
        "e2cnn": ModelSpec(
            "smoke", {"hidden": 91, **_SMOKE}, "models.registry:smoke_e2cnn", check=_two_layers("e2cnn")
        ),
        # one direct weight per (basis element, kernel point): 9x E2CNN's weights. relax_scale None: seed
        # 000's form; a number: the split form c + s * d (models/steerable.py), s the relaxed part's step
        # size relative to the equivariant part's
        "rsteer": ModelSpec(
            "smoke", {"hidden": 30, **_SMOKE, "alpha": 0.0, "relax_scale": None},
            "models.registry:smoke_rsteer", check=_two_layers("rsteer"),
        ),
        # seed 003's form and layout; the project's first form is variant "circular" (with hidden 16,
        # layers 5 it is the old default, 22,528 parameters). grid: image size, used by the error vector
        "gmcnn": ModelSpec(
            "smoke",
            {"hidden": 15, "layers": 4, "in_frames": 1, "error": False, "alpha": 0.0, "variant": "seed003",
             "radius": 1, "grid": 64},
            "models.gmcnn:GMCNN", choices={"variant": ("seed003", "circular")}, check=_two_layers("gmcnn"),
        ),
    },
    "sr": {
        "cnn": ModelSpec(
            "sr", {"hidden": 24, **_SR, **_SR_END}, "models.registry:sr_cnn", choices=_SR_CHOICES
        ),
        "gcnn": ModelSpec(
            "sr", {"hidden": 5, **_SR, "reflections": False, **_SR_END}, "models.registry:sr_gcnn",
            choices=_SR_CHOICES,
        ),
        "rgcnn": ModelSpec(
            "sr", {"hidden": 3, **_SR, "reflections": False, "banks": 3, "alpha": 0.0, **_SR_END},
            "models.registry:sr_rgcnn", choices=_SR_CHOICES,
        ),
    },
}  # fmt: skip
MODEL_NAMES: dict[str, tuple[str, ...]] = {task: tuple(specs) for task, specs in BUILTIN_MODELS.items()}


def resolve_model(task: str, name: str) -> ModelSpec:
    """The spec of model ``name`` for ``task``: a built-in name or ``package.module:NAME``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {list(TASKS)}")
    if ":" in name:
        spec = import_spec(name)
        if spec.task != task:
            raise ValueError(f"{name!r} is a model for task {spec.task!r}, not {task!r}")
        return spec
    if name not in BUILTIN_MODELS[task]:
        raise ValueError(
            f"unknown model {name!r}: not a built-in {task} model {list(BUILTIN_MODELS[task])} "
            "and not an importable `package.module:NAME`"
        )
    return BUILTIN_MODELS[task][name]


def check_model(task: str, name: str) -> None:
    """ValueError unless ``name`` is a model of ``task``."""
    resolve_model(task, name)


def default_hparams(task: str, name: str) -> dict[str, Any]:
    """The default hyper-parameters of a model (a fresh dict; a params file may override any key)."""
    return dict(resolve_model(task, name).defaults)
