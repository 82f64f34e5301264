"""What a turbulence source supplies to the stage: :class:`TurbulenceSource`.

A source knows how to produce the velocity field (simulate it, download it), where its points sit in
space and time, its viscosity, how its native grid relates to the stored hr field, one plain-language
description of itself (the store attrs, the stage's dataset card and the report all use that one text),
and its own metrics. The stage picks a source once (:func:`pipelines.turbulence.sources.source_for`) and
then only calls these methods, so adding a source means adding a subclass, not another ``if``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import dask.array as da
import numpy as np

from loaders.scratch import ResumableBatches
from pipelines.params import TurbulenceParams
from pipelines.turbulence.task import SamplePlan

COMPONENTS = ("u_x", "u_y", "u_z")
DOMAIN = 2 * np.pi


class TurbulenceSource(ABC):
    """One way of getting isotropic-turbulence velocity fields; built from the validated params."""

    name: ClassVar[str]  # the value of ``turbulence.source`` this class serves

    def __init__(self, p: TurbulenceParams):
        self.p = p
        self.scratch: ResumableBatches | None = None  # set by :meth:`fields`

    # --- the field ------------------------------------------------------------------------------------
    @abstractmethod
    def plan(self) -> SamplePlan:
        """Which source time steps are stored and which samples and splits they form."""

    @abstractmethod
    def fields(self, plan: SamplePlan, scratch_root: Path, progress: bool | None) -> da.Array:
        """Produce the planned steps (resuming from scratch pieces) as a lazy (time, component, z, y, x)
        array at the source's resolution, chunked like the pieces."""

    @abstractmethod
    def metrics(self) -> dict[str, Any]:
        """The source's own figures for the metrics JSON (after :meth:`fields`)."""

    # --- where and when -------------------------------------------------------------------------------
    @abstractmethod
    def hr_coordinates(self) -> dict[str, np.ndarray]:
        """Physical (x, y, z) positions of the hr points: the mean position of what each averages."""

    @abstractmethod
    def physical_times(self, plan: SamplePlan) -> tuple[np.ndarray, float]:
        """Time of each stored step and the spacing of consecutive steps inside a window."""

    @property
    @abstractmethod
    def viscosity(self) -> float: ...

    @property
    @abstractmethod
    def native_grid_points(self) -> int:
        """Points per side of the source's native grid over the whole 2 pi box."""

    @abstractmethod
    def hr_filter(self, hr_factor: int) -> dict[str, Any]:
        """How the hr field is made from the native grid (stored in ``attrs["filter"]``)."""

    @property
    def mode(self) -> str:
        """The JHTDB downsampling mode, ``"n/a"`` where the source has none."""
        return "n/a"

    def extent(self) -> float:
        """Side of the region the stored fields cover (a part of the box for a JHTDB subregion)."""
        return DOMAIN

    # --- words ----------------------------------------------------------------------------------------
    @abstractmethod
    def description(self) -> str:
        """One paragraph saying what the data are and where they come from (Markdown)."""

    # --- diagnostics ----------------------------------------------------------------------------------
    def reference_spectrum(self) -> tuple[str, np.ndarray, np.ndarray] | None:
        """A native-resolution spectrum (label, k, E) to plot beside the stored ones, if there is one."""
        return None

    def dissipation(self, result: dict[str, Any]) -> float | None:
        """The mean dissipation rate, if known (it scales the compensated spectrum)."""
        return None

    @abstractmethod
    def mode_field(self, plan: SamplePlan, store: Path) -> tuple[np.ndarray, int, str]:
        """A field to compare the three downsampling modes on: (field, factor, figure label)."""

    def clear(self) -> None:
        """Drop the scratch pieces once the store is written."""
        if self.scratch is not None:
            self.scratch.clear()
