"""Bounds on model hyper-parameters (``train.<dataset>.hparams.<model>.<key>``), checked with the params
so a size that cannot build (``hidden: -4``, ``kernel_size: 0``) fails before the data stages run.

Shared bounds by key name hold for every model that takes the key; a model's spec (models/spec.py: its
defaults, and optional ``ranges``, ``choices`` and ``check``) adds its own and overrides shared ones.
"""

from __future__ import annotations

import math
from typing import Any

from models.spec import Bounds, ModelSpec
from pipelines.params.base import BadKey, short_repr

MAX_WIDTH = 4096  # channels per layer (hidden); far above any model in the study
MAX_DEPTH = 256  # layers of one kind

# key -> (lowest, highest) for ints and floats (None: unbounded on that side); a float key may be null
# where its default is (rsteer's relax_scale)
_RANGES: dict[str, Bounds] = {
    "hidden": (1, MAX_WIDTH),
    "layers": (1, MAX_DEPTH),
    "enc_layers": (0, MAX_DEPTH),
    "kernel_size": (1, 31),
    "in_frames": (1, 64),
    "banks": (1, 64),
    "radius": (1, 8),
    "grid": (1, 65536),
    "alpha": (0, None),
    "relax_scale": (0, None),  # exclusive: a step size, so > 0
}
_EXCLUSIVE_LOW = {"relax_scale"}


def _range_error(key: str, value: Any, bounds: Bounds) -> str | None:
    low, high = bounds
    if value is None:  # only where the default is null: other types were checked against the default
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"must be a finite number, got {short_repr(value)}"
    if low is not None and key in _EXCLUSIVE_LOW and not value > low:
        return f"must be > {low:g} (or null), got {short_repr(value)}"
    if low is not None and not value >= low:
        return f"must be >= {low:g}, got {short_repr(value)}"
    if high is not None and not value <= high:
        return f"must be <= {high:g}, got {short_repr(value)}"
    return None


def check_hparams(prefix: str, spec: ModelSpec, hparams: dict[str, Any]) -> None:
    """Raise :class:`BadKey` naming ``prefix.<key>`` for the first hparam out of bounds; ``hparams`` is
    the model's defaults with the params file's overrides applied (types already checked)."""
    ranges, choices = {**_RANGES, **spec.ranges}, dict(spec.choices)
    for key, value in hparams.items():
        problem = None
        if key in choices:
            if value not in choices[key]:
                problem = f"must be one of {list(choices[key])}, got {short_repr(value)}"
        elif key in ranges:
            problem = _range_error(key, value, ranges[key])
        elif key == "up_layers" and not all(0 <= k <= MAX_DEPTH for k in value):
            problem = f"each entry must be in [0, {MAX_DEPTH}], got {short_repr(value)}"
        if problem:
            raise BadKey(f"{prefix}.{key}", problem)
    kernel = hparams.get("kernel_size")
    if kernel is not None and kernel % 2 == 0:  # an equivariant 'same' convolution needs a centre
        raise BadKey(f"{prefix}.kernel_size", f"must be odd, got {kernel}")
    found = spec.check(dict(hparams)) if spec.check else None
    if found:
        raise BadKey(f"{prefix}.{found[0]}", found[1])
