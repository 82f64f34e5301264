"""Smoke plumes (2D, C4 symmetry levels) as a Hub dataset repo.

Parquet layout: one config per symmetry level (``E0``, ``E5``, ...) plus ``mini``; one row per frame of one
direction, ordered by (direction, time). Windows of input / output frames are assembled by the loader (or
by the user), which keeps the files free of the overlapping copies a row-per-window layout would store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import xarray as xr

from loaders.layouts import SMOKE, check
from loaders.smoke import STORE_NAME, compute_stats, config_name
from loaders.storage import open_group
from loaders.windows import HUB_SPLIT_NAMES, WindowIndex, split_ranges
from pipelines.params import PublishParams
from pipelines.publish.card import (
    ConfigSpec,
    arrays_table,
    files_table,
    params_block,
    stats_table,
    table,
    versions_table,
)
from pipelines.publish.kinds import CardContext, DatasetKind, save_figure
from pipelines.publish.parquet import write_split


class SmokeKind(DatasetKind):
    name = "smoke"
    store_name = STORE_NAME
    pretty_name = "Buoyant smoke plumes with controlled C4 symmetry"
    tags = ("physics", "fluid-dynamics", "smoke", "simulation", "equivariance", "symmetry", "phiflow", "zarr")
    task_categories = ("time-series-forecasting",)
    figure_name = "figures/directions.png"

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

    @staticmethod
    def features(ds: xr.Dataset) -> datasets.Features:
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
        speed_max = float(np.sqrt((ds.velocity[:, :, t] ** 2).sum("component")).max())
        step = max(ds.sizes["x"] // 12, 1)
        yy, xx = np.meshgrid(np.arange(ds.sizes["y"]), np.arange(ds.sizes["x"]), indexing="ij")
        for i, lv in enumerate(levels):
            for j, d in enumerate(directions):
                ax = axes[i, j]
                u, v = ds.velocity[i, j, t].values
                ax.imshow(ds.smoke[i, j, t].values, origin="lower", cmap="cividis", vmin=0)
                ax.quiver(
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
        fig.suptitle(f"smoke density and velocity at frame {int(ds.frame.values[t])}", fontsize=10)
        save_figure(fig, path)

    def card_body(self, ctx: CardContext) -> str:
        ds, repo_id, configs = ctx.ds, ctx.repo_id, ctx.configs
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
        level_err = ctx.provenance.get("metrics", {}).get("level_equivariance_error", {})
        published = ctx.provenance.get("metrics", {}).get("published_level_equivariance_error", {})
        config_rows = [
            (f"`{c.name}`", c.description, " / ".join(str(c.rows[s]) for s in c.rows)) for c in configs
        ]
        first = configs[0].name
        level0 = int(ds.level.values[0])
        simulator = (
            f"{ds.attrs.get('simulator', 'PhiFlow')} {versions.get('phiflow', '(version not recorded)')}"
        )
        n = p.get("resolution", ds.sizes["x"])
        timing = (
            f"Grid spacing {ds.attrs.get('grid_spacing')}, time step {ds.attrs.get('dt')}, "
            f"frames {int(frames[0])}..{int(frames[-1])} of {p.get('steps', '?')} simulated steps."
        )
        split_table = table(
            ("split", "frames", "frames per series", "rows per config", f"windows of {length} per config"),
            split_rows,
        )
        errors = ", ".join(
            f"{k}: {level_err[k]:.3f} ({published.get(k, float('nan')):.3f})" for k in level_err
        )
        return f"""
# {self.pretty_name}

**Source: synthetic.** Every frame was simulated for this dataset with {simulator}
(phiml {versions.get("phiml", "?")}); no measured or third-party data is included. It re-creates,
with fixes, the smoke-plume "symmetry level" data of the relaxed-equivariance training-dynamics study.

Two-dimensional buoyant smoke plumes in a closed {n} x {n} box. A symmetry level E_i stacks four
simulations whose buoyancy grows with i and rotates the 2nd, 3rd and 4th by 90, 180 and 270 degrees
(grid and vector components), so E_0 is exactly C4-symmetric and larger i breaks the symmetry more.
The task is next-frame prediction: {windows["input_frames"]} input frame(s) ->
{windows["output_frames"]} output frame(s).

![one frame per C4 direction]({self.figure_name})

## Configurations

Each config is one symmetry level; a row is one frame of one direction (parquet, fixed-shape arrays).

{table(("config", "contents", "rows train / validation / test"), config_rows)}
## Arrays

Velocity is stored at cell centres (`y` pointing up, `x` to the right), components `(u, v)` along `(x, y)`.

{arrays_table(ds, ["velocity", "smoke", "buoyancy", "frame", "split"])}
{timing} Pressure solve: `{json.dumps(solver)}`.

## Splits

Splits are contiguous, disjoint time ranges of every simulation (train first, then validation, then test).
Windows never cross a split boundary.

{split_table}
## Statistics (train split only)

Per-component mean / std, and the root-mean-square vector magnitude that the loaders' rotation-safe `scale`
normalisation divides by. The same numbers are in `stats.json`.

{stats_table(ctx.stats)}
## Symmetry

Relative C4 equivariance error of each level's velocity (published values of the original study in brackets):
{errors or "not recorded"}.

## Usage

```python
from datasets import load_dataset
ds = load_dataset("{repo_id}", "{first}", split="train").with_format("numpy")
ds[0]["velocity"].shape   # (2, {ds.sizes["y"]}, {ds.sizes["x"]})

import xarray as xr       # the whole store, lazily, through huggingface_hub's HfFileSystem
store = xr.open_zarr("hf://datasets/{repo_id}/zarr/{self.store_name}")

from loaders import smoke_plume   # windows as a torch Dataset (this project's loader)
train = smoke_plume("{repo_id}", level={level0}, split="train", normalise="scale")
x, y = train[0]            # ({windows["input_frames"]}, 2, H, W), ({windows["output_frames"]}, 2, H, W)
```

## Files

{files_table(ctx.sizes)}
`checksums.sha256` lists the sha256 of every other file (`sha256sum -c checksums.sha256`).
The zarr store uses zarr v3 sharding: one shard per (level, direction) series, one frame per inner chunk.

## Provenance

{ctx.built_from}

{versions_table(versions, ("python", "phiflow", "phiml", "numpy", "scipy", "xarray", "zarr"))}
Simulation parameters:

{params_block(p)}
## Changes from the original study's data

- Velocity is sampled at cell centres; the original cropped the staggered grid, which alone broke C4 by ~12%.
- The test split is a held-out time range; the original "test" set was its validation set.
- Data ship as parquet and zarr with named dimensions instead of zips of pickled `.pt` files.
- The simulator and solver versions are pinned and recorded, here and in every store's metadata.

## License

{ctx.license}
"""
