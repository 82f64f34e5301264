"""Smoke plumes (2D, C4 symmetry levels) as a Hub dataset repo.

Parquet layout: one config per symmetry level (``E0``, ``E5``, ...) plus ``mini``; one row per frame of one
direction, ordered by (direction, time). Windows of input / output frames are assembled by the loader (or by
the card's one ``datasets`` ``map``), which keeps the files free of the overlapping copies a row-per-window
layout would store (input + output times every frame).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import xarray as xr

from loaders.layouts import SMOKE, check
from loaders.smoke import STORE_NAME, compute_stats, config_name
from loaders.storage import open_group, open_store, read_provenance
from loaders.windows import HUB_SPLIT_NAMES, WindowIndex, split_ranges
from pipelines.params import PublishParams
from pipelines.publish import preview
from pipelines.publish.card import (
    ConfigSpec,
    arrays_table,
    files_table,
    fmt,
    params_block,
    render,
    stats_table,
    table,
    versions_table,
)
from pipelines.publish.facts import INSTALL, PHIFLOW_BIB, citation, cost_text, scores_text, sim_cost_rows
from pipelines.publish.kinds import CardContext, DatasetKind, save_figure
from pipelines.publish.parquet import write_split

BUILTIN = "buoyant_plume"  # the study's scenario: its repo name and published values are the study's
PREVIEW_TEXT = (
    "Smoke density (top row) and vorticity (bottom row) of each series at three frames of the train split, "
    "on colour scales shared by all pictures."
)


@dataclass(frozen=True)
class SmokeCard:
    """What templates/smoke.md.j2 is rendered from (tables already as Markdown)."""

    pretty_name: str
    simulator: str  # name and version
    phiml_version: str
    n: int
    input_frames: int
    output_frames: int
    figure_name: str
    preview: str  # the preview pictures the card shows, and where the rest are
    config_table: str
    arrays_table: str
    timing: str
    pressure_solver: str  # JSON
    scenario: str
    builtin_physics: bool  # the built-in buoyant plume, whose equations the template states
    cost: str
    split_table: str
    stats_table: str
    symmetry_table: str  # orbit distance, published-definition error (and the published value) per level
    symmetry_statement: str  # what was measured about E_0, never a bare claim
    published_values: bool  # the original study's values apply (the built-in scenario only)
    scores: str  # trivial baselines and the study's models, or where to find them
    install: str
    citation: str
    repo_id: str
    first_config: str
    height: int
    width: int
    store_name: str
    held_out: tuple[str, ...]  # the Domain test's stores under zarr/ (none: not published)
    level0: int
    files_table: str
    built_from: str
    versions_table: str
    params_block: str
    license: str


class SmokeKind(DatasetKind):
    name = "smoke"
    store_name = STORE_NAME
    pretty_name = "Buoyant smoke plumes with controlled C4 symmetry"
    tags = ("physics", "fluid-dynamics", "smoke", "simulation", "equivariance", "symmetry", "phiflow", "zarr")
    task_categories = ("time-series-forecasting",)
    figure_name = "figures/directions.png"

    def repo_id(self, configured: str, store: Path) -> str:
        """The configured repo, unless it is the default one (the built-in buoyant plume's) and the store
        holds another scenario: then ``<namespace>/smoke-<scenario class, kebab-case>-c4``, so a user
        scenario is never published under the study's name."""
        prov = read_provenance(open_store(store, verify=False))  # attrs only: the build verifies the files
        scenario = str(prov.get("params", {}).get("scenario", BUILTIN))
        if scenario == BUILTIN or configured != PublishParams.model_fields["repos"].default["smoke"]:
            return configured
        words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", scenario.rpartition(":")[2]).lower()
        return f"{configured.split('/')[0]}/smoke-{re.sub(r'[^a-z0-9]+', '-', words).strip('-')}-c4"

    def validate(self, ds: xr.Dataset) -> None:
        check(ds, SMOKE)  # the one description of the smoke store (loaders/layouts.py)

    # --- configs and parquet ------------------------------------------------------------------------------
    def configs(self, ds: xr.Dataset, params: PublishParams) -> list[ConfigSpec]:
        ranges = split_ranges(ds.attrs["splits"])
        levels = [int(v) for v in ds.level.values]
        out = [
            ConfigSpec(
                config_name(lv),
                f"symmetry level E_{lv}: all frames of the 4 directions",
                {"level": lv, "ranges": ranges},
                default=(i == 0),
            )
            for i, lv in enumerate(levels)
        ]
        mini = {s: (a, min(b, a + params.mini_frames)) for s, (a, b) in ranges.items()}
        out.append(
            ConfigSpec(
                "mini",
                f"level E_{levels[0]}, first {params.mini_frames} frames of each split (for quick tests)",
                {"level": levels[0], "ranges": mini},
            )
        )
        return out

    def features(self, ds: xr.Dataset) -> datasets.Features:
        h, w = ds.sizes["y"], ds.sizes["x"]
        return datasets.Features(
            {
                "level": datasets.Value("int32"),
                "direction": datasets.Value("int32"),
                "time_index": datasets.Value("int32"),
                "frame": datasets.Value("int32"),
                "time": datasets.Value("float64"),
                "buoyancy": datasets.List(datasets.Value("float64"), length=2),
                "velocity": datasets.Array3D((2, h, w), "float32"),
                "smoke": datasets.Array2D((h, w), "float32"),
            }
        )

    def write_parquet(self, ds: xr.Dataset, config: ConfigSpec, out: Path, params: PublishParams) -> None:
        level = config.selection["level"]
        li = [int(v) for v in ds.level.values].index(level)
        directions = [int(v) for v in ds.direction.values]
        features = self.features(ds)
        for split, (start, stop) in config.selection["ranges"].items():
            n_t = stop - start

            def rows(a: int, b: int, start: int = start, n_t: int = n_t) -> dict[str, np.ndarray]:
                r = np.arange(a, b)
                d_idx, t_idx = r // n_t, start + r % n_t
                vel, smo = [], []
                for d in np.unique(d_idx):  # one contiguous time slice per direction
                    ts = t_idx[d_idx == d]
                    vel.append(ds.velocity[li, d, ts[0] : ts[-1] + 1].values)
                    smo.append(ds.smoke[li, d, ts[0] : ts[-1] + 1].values)
                return {
                    "level": np.full(len(r), level, dtype=np.int32),
                    "direction": np.asarray(directions, dtype=np.int32)[d_idx],
                    "time_index": t_idx.astype(np.int32),
                    "frame": ds.frame.values[t_idx].astype(np.int32),
                    "time": ds.time.values[t_idx].astype(np.float64),
                    "buoyancy": ds.buoyancy.values[li, d_idx].astype(np.float64),
                    "velocity": np.concatenate(vel).astype(np.float32, copy=False),
                    "smoke": np.concatenate(smo).astype(np.float32, copy=False),
                }

            hub_split = HUB_SPLIT_NAMES[split]
            n_rows = len(directions) * n_t
            config.files[hub_split] = write_split(
                out,
                f"data/{config.name}",
                hub_split,
                n_rows,
                rows,
                features,
                params.parquet_rows_per_file,
                params.parquet_row_group,
            )
            config.rows[hub_split] = n_rows

    def zarr_layout(self, ds: xr.Dataset) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
        # one shard per (level, direction) series; one frame per inner chunk (what a window read needs)
        series = {"level": 1, "direction": 1}
        return {name: ({**series, "time": 1}, series) for name in ("velocity", "smoke")}

    def stats(self, store: Path) -> dict[str, Any]:
        stats = compute_stats(open_group(str(store)))
        first = next(iter(stats))
        return {**stats, "mini": stats[first]}

    # --- figure and card ----------------------------------------------------------------------------------
    def figure(self, ds: xr.Dataset, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        levels, directions = ds.level.values, ds.direction.values
        t = split_ranges(ds.attrs["splits"])["train"][1] - 1  # last training frame: a developed plume
        fig, axes = plt.subplots(
            len(levels),
            len(directions),
            figsize=(2.6 * len(directions), 2.6 * len(levels)),
            squeeze=False,
            constrained_layout=True,
        )
        speed_max = float(np.sqrt((ds.velocity[:, :, t] ** 2).sum("component")).max()) or 1.0
        smoke_max = float(ds.smoke[:, :, t].max()) or 1.0  # one colour scale for every panel
        step = max(ds.sizes["x"] // 12, 1)
        yy, xx = np.meshgrid(np.arange(ds.sizes["y"]), np.arange(ds.sizes["x"]), indexing="ij")
        image = quiver = None
        for i, lv in enumerate(levels):
            for j, d in enumerate(directions):
                ax = axes[i, j]
                u, v = ds.velocity[i, j, t].values
                image = ax.imshow(ds.smoke[i, j, t].values, origin="lower", cmap="cividis", vmin=0,
                                  vmax=smoke_max)  # fmt: skip
                quiver = ax.quiver(
                    xx[::step, ::step],
                    yy[::step, ::step],
                    u[::step, ::step],
                    v[::step, ::step],
                    color="white",
                    scale=speed_max * 14,
                    width=0.006,
                )
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"E_{int(lv)}, {int(d)} deg", fontsize=9)
        # the arrow scale: an arrow of the largest speed, in box length units per simulation time unit
        # (drawn in black above the panels: a key inside a panel would hide the flow)
        key = f"arrow: |u| = {speed_max:.2g} box units / time"
        axes[0, -1].quiverkey(quiver, 0.9, 0.975, speed_max, key, labelpos="W", coordinates="figure",
                              color="k", fontproperties={"size": 8})  # fmt: skip
        fig.colorbar(image, ax=axes, shrink=0.8, label="smoke density (marker concentration)")
        fig.suptitle(f"smoke density and velocity at frame {int(ds.frame.values[t])}", fontsize=10)
        save_figure(fig, path)

    def write_previews(self, ds: xr.Dataset, out: Path) -> ConfigSpec:
        """One picture per series (level and direction, or whatever non-field dimensions the store has): smoke
        density and vorticity at three train frames, on colour scales shared by all, so series compare."""
        a, b = split_ranges(ds.attrs["splits"])["train"]
        picks = sorted({a, (a + b - 1) // 2, b - 1})
        series = [d for d in ds.velocity.dims if d not in ("time", "component", "y", "x")]
        vel = ds.velocity.isel(time=picks).transpose(*series, "time", "component", "y", "x").values
        smoke = ds.smoke.isel(time=picks).transpose(*series, "time", "y", "x").values
        curl = preview.vorticity(vel[..., 0, :, :], vel[..., 1, :, :], float(ds.attrs.get("grid_spacing", 1)))
        dense, swirl = float(smoke.max()) or 1.0, preview.symmetric_limit(curl)
        frames = ", ".join(str(int(ds.frame.values[t])) for t in picks)
        shown = (f"smoke density (top row, cividis, 0 to {dense:.3g}) and vorticity (bottom row, blue "
                 f"-{swirl:.3g} to red {swirl:.3g} per time unit) at frames {frames}")  # fmt: skip
        rows = []
        for idx in np.ndindex(*vel.shape[: len(series)]):
            keys = {d: int(ds[d].values[i]) for d, i in zip(series, idx, strict=True)}
            panels = [[preview.Panel(f, "cividis", 0.0, dense) for f in smoke[idx]],
                      [preview.Panel(f, "RdBu_r", -swirl, swirl) for f in curl[idx]]]  # fmt: skip
            png = preview.grid_png(panels)
            caption = ", ".join(f"{d} {v}" for d, v in keys.items()) + f": {shown}"
            rows.append(preview.Preview("-".join(f"{d}{v}" for d, v in keys.items()), keys, caption, png))
        about = f"one picture per series ({' x '.join(series)}): smoke density and vorticity, train frames"
        return preview.write_preview_config(out, {"train": rows}, f"{about} {frames}")

    def card_body(self, ctx: CardContext) -> str:
        return render("smoke.md.j2", self.card_context(ctx))

    def card_context(self, ctx: CardContext) -> SmokeCard:
        ds, configs = ctx.ds, ctx.configs
        p = ctx.params
        versions = ctx.versions
        windows = json.loads(ds.attrs["windows"])
        ranges = split_ranges(ds.attrs["splits"])
        solver = json.loads(ds.attrs.get("pressure_solver", "{}"))
        frames = ds.frame.values
        length = windows["input_frames"] + windows["output_frames"]
        n_dirs = ds.sizes["direction"]
        split_rows = [
            (
                HUB_SPLIT_NAMES[s],
                f"{int(frames[a])}..{int(frames[b - 1])}",
                b - a,
                n_dirs * (b - a),
                len(WindowIndex(n_dirs, a, b, length)),
            )
            for s, (a, b) in ranges.items()
        ]
        prov_metrics = ctx.provenance.get("metrics", {})
        # stores built before the rename call the orbit distance level_equivariance_error
        orbit = prov_metrics.get("orbit_distance") or prov_metrics.get("level_equivariance_error", {})
        recomputed = prov_metrics.get("published_definition_level_error", {})
        published = prov_metrics.get("published_level_equivariance_error", {})
        scenario = str(p.get("scenario", BUILTIN))
        # the study published values for its own scenario only; stores before the rule carry them for any
        show_published = scenario == BUILTIN and bool(published)
        sym_rows = [
            (f"E_{k[1:]}", fmt(orbit[k]), _num(recomputed.get(k)))
            + ((_num(published.get(k)),) if show_published else ())
            for k in orbit
        ]
        config_rows = [
            (f"`{c.name}`", c.description, " / ".join(str(c.rows[s]) for s in c.rows)) for c in configs
        ]
        phiflow = versions.get("phiflow", "(version not recorded)")
        build = ctx.metrics.get("build", {})  # the smoke stage's record of this store's build
        return SmokeCard(
            pretty_name=self.pretty_name,
            simulator=f"{ds.attrs.get('simulator', 'PhiFlow')} {phiflow}",
            phiml_version=versions.get("phiml", "?"),
            n=p.get("resolution", ds.sizes["x"]),
            input_frames=windows["input_frames"],
            output_frames=windows["output_frames"],
            figure_name=self.figure_name,
            preview=preview.card_text(configs, "level", PREVIEW_TEXT),
            config_table=table(("config", "contents", "rows train / validation / test"), config_rows),
            arrays_table=arrays_table(ds, ["velocity", "smoke", "buoyancy", "frame", "split"]),
            timing=(
                f"Grid spacing {ds.attrs.get('grid_spacing')}, time step {ds.attrs.get('dt')}, "
                f"frames {int(frames[0])}..{int(frames[-1])} of {p.get('steps', '?')} simulated steps."
            ),
            pressure_solver=json.dumps(solver),
            scenario=scenario,
            builtin_physics=scenario == BUILTIN,
            cost=cost_text(
                f"PhiFlow simulations of {p.get('steps', '?')} steps on a {p.get('resolution', '?')}^2 grid "
                f"in float64 for {ds.sizes['level']} symmetry levels x {ds.sizes['direction']} directions",
                self.name,
                build,
                sim_cost_rows(build, p.get("steps"), f"{ds.attrs.get('simulator', 'PhiFlow')} {phiflow}"),
            ),
            split_table=table(
                (
                    "split",
                    "frames",
                    "frames per series",
                    "rows per config",
                    f"windows of {length} per config",
                ),
                split_rows,
            ),
            stats_table=stats_table(ctx.stats),
            symmetry_table=table(
                (
                    "level",
                    "orbit distance to the nearest exactly C4-symmetric set",
                    "published-definition level error (this data)",
                )
                + (("published value (original study)",) if show_published else ()),
                sym_rows,
            )
            if sym_rows
            else "Not recorded in this store's provenance.\n",
            symmetry_statement=symmetry_statement(p, orbit),
            published_values=show_published,
            scores=scores_text(ctx.metrics, self.name),
            install=INSTALL,
            citation=citation(ctx.repo_id, self.pretty_name, PHIFLOW_BIB),
            repo_id=ctx.repo_id,
            first_config=configs[0].name,
            height=ds.sizes["y"],
            width=ds.sizes["x"],
            store_name=self.store_name,
            held_out=ctx.held_out,
            level0=int(ds.level.values[0]),
            files_table=files_table(ctx.sizes),
            built_from=ctx.built_from,
            versions_table=versions_table(
                versions, ("python", "phiflow", "phiml", "numpy", "scipy", "xarray", "zarr")
            ),
            params_block=params_block(p),
            license=ctx.license,
        )


def symmetry_statement(params: dict[str, Any], orbit: dict[str, float]) -> str:
    """What the store's provenance says was measured about the level declared exactly symmetric."""
    if "E0" not in orbit:
        return "No level of this store is declared exactly C4-symmetric (E_0 is not among its levels)."
    measured = f"measured orbit distance to the nearest exactly C4-symmetric set: {fmt(orbit['E0'])}"
    if params.get("symmetrisation", "rotate") == "simulate":
        return (f"E_0's four directions are separate simulations of the turned setup; {measured} (the smoke "
                "stage refuses a store whose E_0 is farther from C4 than round-off).")  # fmt: skip
    return (
        f"E_0's four directions are one simulation turned by 0, 90, 180 and 270 degrees; {measured}. "
        "Whether the scenario's turned setups simulate to the turned flow is checked when the store is built "
        "with `solver_symmetry_check: true` (the stage refuses more than round-off), not recorded here."
    )


def _num(x: float | None) -> str:
    return "not recorded" if x is None else fmt(x)
