"""Loaders: the published datasets as torch ``Dataset`` objects, read lazily from a local zarr store, a local
Hub-layout repo folder, or a Hugging Face Hub repo id (``hf://`` through ``HfFileSystem``).

* :func:`smoke_plume` -- smoke-plume windows (level, directions, input/output lengths, split);
* :func:`turbulence_sr` -- turbulence super-resolution samples (split, resolution pair).

Both take ``normalise=None | "standard" | "scale"``, using the published train-split statistics.
"""

from loaders.smoke import SmokePlumeWindows, smoke_plume
from loaders.turbulence import TurbulenceSR, turbulence_sr

__all__ = ["SmokePlumeWindows", "TurbulenceSR", "smoke_plume", "turbulence_sr"]
