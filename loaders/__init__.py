"""Loaders: the published datasets as torch ``Dataset`` objects, read lazily from a local zarr store, a local
Hub-layout repo folder, or a Hugging Face Hub repo id (``hf://`` through ``HfFileSystem``).

* :func:`smoke_plume` -- smoke-plume windows (level, directions, input/output lengths, split);
* :func:`turbulence_sr` -- turbulence super-resolution samples (split, resolution pair).

Both take ``normalise=None | "standard" | "scale"``, using the published train-split statistics.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loaders.smoke import SmokePlumeWindows, smoke_plume
    from loaders.turbulence import TurbulenceSR, turbulence_sr

# imported on first use: `import loaders.cli` (the symflow-data command) must not pay for torch and xarray
_LAZY = {
    "SmokePlumeWindows": "loaders.smoke",
    "smoke_plume": "loaders.smoke",
    "TurbulenceSR": "loaders.turbulence",
    "turbulence_sr": "loaders.turbulence",
}
__all__ = ["SmokePlumeWindows", "TurbulenceSR", "smoke_plume", "turbulence_sr"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'loaders' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
