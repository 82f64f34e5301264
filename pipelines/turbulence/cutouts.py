"""The ``jhtdb`` source: cutouts of the Johns Hopkins Turbulence Database, downloaded block by block.

The download (:mod:`.jhtdb`) saves one piece per (time step, block) to a scratch folder keyed by the
params, so an interrupted run resumes from the pieces it has; :func:`jhtdb_source` then assembles the
pieces lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from loaders.scratch import ResumableBatches, params_key
from loaders.storage import open_store
from pipelines.params import TurbulenceParams
from pipelines.turbulence import jhtdb
from pipelines.turbulence.base import TurbulenceSource
from pipelines.turbulence.task import SamplePlan, plan_samples

# how each JHTDB mode makes the hr field from the native grid (attrs["filter"]["hr"]["kind"])
MODE_FILTER = {"stride": "stride_sample", "box": "block_mean", "subcube": "none"}


def jhtdb_scratch(p: TurbulenceParams, root: Path, times: list[int]) -> ResumableBatches:
    """Scratch keyed by everything that decides a piece's content (a new server never mixes with an old)."""
    j = p.jhtdb
    key = params_key(
        {
            "source": p.source, "base_url": j.base_url, "dataset": j.dataset, "mode": j.mode,
            "factor": j.factor, "origin": list(j.origin), "n": p.hr_resolution,
            "max_points": j.max_points_per_request, "max_mb": j.max_request_mb, "times": times,
        }
    )  # fmt: skip
    return ResumableBatches(root, "turbulence-jhtdb-" + key)


def jhtdb_source(
    p: TurbulenceParams, plan: SamplePlan, scratch: ResumableBatches, progress: bool | None = None
) -> tuple[da.Array, dict[str, Any]]:
    """Download every missing block, then assemble the pieces lazily into (time, component, z, y, x)."""
    n = p.hr_resolution
    times = [int(t) for t in plan.time_index]
    blocks = jhtdb.plan_blocks(p.jhtdb, n, times)
    token = jhtdb.read_token(p.jhtdb)  # before any request: a missing token fails at once
    with jhtdb.CutoutClient(
        p.jhtdb.base_url, token, p.jhtdb.dataset, p.jhtdb.timeout_s, p.jhtdb.retries,
        p.jhtdb.backoff_s, p.jhtdb.backoff_max_s, allow_insecure_http=p.jhtdb.allow_insecure_http,
    ) as client:  # fmt: skip
        counters = jhtdb.download_blocks(p.jhtdb, blocks, scratch, client, progress)
    per_time: dict[int, list[jhtdb.Block]] = {}
    for b in blocks:
        per_time.setdefault(b.time_index, []).append(b)
    steps = []
    for t in times:
        grid = {b.lo: scratch.open(b.name)["velocity"].data for b in per_time[t]}
        zs, ys, xs = (sorted({lo[a] for lo in grid}) for a in range(3))
        steps.append(da.block([[[grid[(z, y, x)] for x in xs] for y in ys] for z in zs]))
    return da.stack(steps), {"download": counters, "blocks_per_time_step": len(per_time[times[0]])}


class JHTDBSource(TurbulenceSource):
    """Velocity of JHTDB's forced isotropic turbulence (1024^3 DNS) through the REST cutout service."""

    name = "jhtdb"

    def __init__(self, p: TurbulenceParams):
        super().__init__(p)
        self.info: dict[str, Any] = {}

    def plan(self) -> SamplePlan:
        # the time range is much longer than needed: draw the slots with the seed, as the published data did
        p = self.p
        first, last = p.jhtdb.time_range
        return plan_samples(first, last, p.splits.model_dump(), p.window, p.seed, p.split_strategy, draw=True)

    def fields(self, plan: SamplePlan, scratch_root: Path, progress: bool | None) -> da.Array:
        self.scratch = jhtdb_scratch(self.p, scratch_root, [int(t) for t in plan.time_index])
        source, self.info = jhtdb_source(self.p, plan, self.scratch, progress)
        return source

    def metrics(self) -> dict[str, Any]:
        return dict(self.info)

    def hr_coordinates(self) -> dict[str, np.ndarray]:
        return jhtdb.stored_coordinates(self.p.jhtdb, self.p.hr_resolution)

    def physical_times(self, plan: SamplePlan) -> tuple[np.ndarray, float]:
        return (plan.time_index - 1) * self.p.jhtdb.dt, self.p.jhtdb.dt  # JHTDB time index 1 is t = 0

    @property
    def viscosity(self) -> float:
        return self.p.jhtdb.viscosity

    @property
    def native_grid_points(self) -> int:
        return self.p.jhtdb.grid_points

    def hr_filter(self, hr_factor: int) -> dict[str, Any]:
        # the server (stride, subcube) or the download (box) already made the hr field: hr_factor is 1
        return {
            "kind": MODE_FILTER[self.p.jhtdb.mode],
            "factor": jhtdb.native_factor(self.p.jhtdb),
            "of": "JHTDB native 1024^3 grid",
            "jhtdb_mode": self.p.jhtdb.mode,
        }

    @property
    def mode(self) -> str:
        return self.p.jhtdb.mode

    def extent(self) -> float:
        j = self.p.jhtdb
        return self.p.hr_resolution * jhtdb.native_factor(j) * j.domain_length / j.grid_points

    def description(self) -> str:
        j = self.p.jhtdb
        return (
            f"**Source: JHTDB** `{j.dataset}` (Johns Hopkins Turbulence Database, forced isotropic "
            f"turbulence, 1024^3 DNS), downloaded through the REST cutout service, mode `{j.mode}` "
            f"with factor {j.factor}."
        )

    def mode_field(self, plan: SamplePlan, store: Path) -> tuple[np.ndarray, int, str]:
        # the native field is never kept whole: compare the modes on the last stored hr step
        return open_store(store).hr[-1].values, self.p.lr_factor, f"JHTDB hr ({self.p.jhtdb.mode})"
