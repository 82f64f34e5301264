"""Model names and default sizes, importable without torch (params validation uses it)."""

from __future__ import annotations

from typing import Any

MODEL_NAMES: dict[str, tuple[str, ...]] = {
    "smoke": ("cnn", "gcnn", "rgcnn", "e2cnn", "rsteer", "gmcnn"),
    "sr": ("cnn", "gcnn", "rgcnn"),
}

# Defaults sit near the study's budgets: smoke models (except GM-CNN) ~0.6M parameters within 10% of each
# other, SR models 125-135k. docs/models.md lists the measured counts and the formulas.
_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "cnn": {"hidden": 148, "layers": 5, "kernel_size": 3, "in_frames": 1, "batch_norm": True},
        "gcnn": {"hidden": 74, "layers": 5, "kernel_size": 3, "in_frames": 1, "batch_norm": True},
        "rgcnn": {
            "hidden": 43,
            "layers": 5,
            "kernel_size": 3,
            "in_frames": 1,
            "batch_norm": True,
            "banks": 3,
            "alpha": 0.0,
        },
        "e2cnn": {"hidden": 91, "layers": 5, "kernel_size": 3, "in_frames": 1, "batch_norm": True},
        "rsteer": {
            "hidden": 30,  # one direct weight per (basis element, kernel point): 9x E2CNN's weights
            "layers": 5,
            "kernel_size": 3,
            "in_frames": 1,
            "batch_norm": True,
            "alpha": 0.0,
            # None: seed 000's one weight per (basis element, point); a number: the split form c + s * d
            # (models/steerable.py), s the relaxed part's step size relative to the equivariant part's
            "relax_scale": None,
        },
        # seed 003's form and layout; the project's first form is variant "circular" (with hidden 16,
        # layers 5 it is the old default, 22,528 parameters). grid: image size, used by the error vector
        "gmcnn": {
            "hidden": 15,
            "layers": 4,
            "in_frames": 1,
            "error": False,
            "alpha": 0.0,
            "variant": "seed003",
            "radius": 1,
            "grid": 64,
        },
    },
    "sr": {
        "cnn": {
            "hidden": 24,
            "enc_layers": 6,
            "up_layers": (1, 0),
            "scalar_channels": False,
            "batch_norm": False,
            "padding": "circular",  # periodic box; "zeros": the old default
            "zero_head": True,  # a residual model starts at its upsampling
        },
        "gcnn": {
            "hidden": 5,
            "enc_layers": 6,
            "up_layers": (1, 0),
            "scalar_channels": False,
            "batch_norm": False,
            "reflections": False,
            "padding": "circular",
            "zero_head": True,
        },
        "rgcnn": {
            "hidden": 3,
            "enc_layers": 6,
            "up_layers": (1, 0),
            "scalar_channels": False,
            "batch_norm": False,
            "reflections": False,
            "banks": 3,
            "alpha": 0.0,
            "padding": "circular",
            "zero_head": True,
        },
    },
}


def check_model(task: str, name: str) -> None:
    if task not in MODEL_NAMES:
        raise ValueError(f"unknown task {task!r}; allowed: {sorted(MODEL_NAMES)}")
    if name not in MODEL_NAMES[task]:
        raise ValueError(f"unknown model {name!r} for task {task!r}; allowed: {list(MODEL_NAMES[task])}")


def default_hparams(task: str, name: str) -> dict[str, Any]:
    """The default hyper-parameters of a model (a fresh dict; a params file may override any key)."""
    check_model(task, name)
    return dict(_DEFAULTS[task][name])
