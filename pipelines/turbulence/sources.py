"""The turbulence sources by the name ``turbulence.source`` gives them, and the one place that picks."""

from __future__ import annotations

from pipelines.params import TurbulenceParams
from pipelines.turbulence.base import TurbulenceSource
from pipelines.turbulence.cutouts import JHTDBSource
from pipelines.turbulence.synthetic import SyntheticSource

SOURCES: dict[str, type[TurbulenceSource]] = {cls.name: cls for cls in (SyntheticSource, JHTDBSource)}


def source_for(p: TurbulenceParams) -> TurbulenceSource:
    """The source the params name; an unknown name fails here, before any work."""
    if p.source not in SOURCES:
        raise ValueError(f"turbulence.source: unknown source {p.source!r}; known: {sorted(SOURCES)}")
    return SOURCES[p.source](p)
