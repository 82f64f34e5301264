"""Isotropic-turbulence super-resolution as a Hub dataset repo.

Parquet layout: one config per resolution pair (``lr16_hr64``) plus ``mini``; one row per sample holding
the low-resolution window ``lrs`` (window, 3, n, n, n) and the high-resolution centre frame ``hr``
(3, N, N, N), the same pairing the published re-creation used, without its loading script.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import xarray as xr

from loaders.layouts import TURBULENCE, check
from loaders.storage import open_group
from loaders.turbulence import DEFAULT_PAIR, STORE_NAME, compute_stats, pair_config, sample_centres, window_of
from loaders.windows import HUB_SPLIT_NAMES
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
from pipelines.publish.facts import INSTALL, JHTDB_BIB, citation, cost_text, scores_text, seconds
from pipelines.publish.kinds import CardContext, DatasetKind, save_figure
from pipelines.publish.parquet import write_split


@dataclass(frozen=True)
class TurbulenceCard:
    """What templates/turbulence.md.j2 is rendered from (tables already as Markdown)."""

    pretty_name: str
    source_description: str  # empty: the store predates the stage's description, the template words it
    jhtdb: bool
    window: int
    lo: str
    hi: str
    n_lo: int
    n_hi: int
    figure_name: str
    preview: str  # the preview pictures the card shows, and where the rest are
    viscosity: str
    spacing: str
    frame_dt: str
    cost: str
    config_table: str
    arrays_table: str
    split_table: str
    stats_table: str
    scores: str
    install: str
    citation: str
    repo_id: str
    first_config: str
    store_name: str
    files_table: str
    built_from: str
    versions_table: str
    params_block: str
    extra: str
    license: str


class TurbulenceKind(DatasetKind):
    name = "turbulence"
    store_name = STORE_NAME
    pretty_name = "Isotropic turbulence super-resolution (3D velocity)"
    tags = (
        "physics",
        "fluid-dynamics",
        "turbulence",
        "super-resolution",
        "3d",
        "equivariance",
        "jhtdb",
        "zarr",
    )
    task_categories = ("image-to-image",)
    figure_name = "figures/resolutions.png"

    def card_tags(self, ds: xr.Dataset) -> tuple[str, ...]:
        # "jhtdb" only on JHTDB data: a synthetic store is tagged as what it is
        if _is_jhtdb(ds):
            return self.tags
        return tuple("synthetic" if t == "jhtdb" else t for t in self.tags)

    def validate(self, ds: xr.Dataset) -> None:
        check(ds, TURBULENCE)  # the one description of the turbulence store (loaders/layouts.py)

    def configs(self, ds: xr.Dataset, params: PublishParams) -> list[ConfigSpec]:
        centres = sample_centres(ds.attrs["splits"])
        lo, hi = DEFAULT_PAIR
        n_lo, n_hi = ds[lo].shape[-1], ds[hi].shape[-1]
        name = f"{lo}{n_lo}_{hi}{n_hi}"  # same rule as loaders.turbulence.pair_config
        return [
            ConfigSpec(
                name, f"{n_lo}^3 inputs -> {n_hi}^3 targets, all samples", {"centres": centres}, default=True
            ),
            ConfigSpec(
                "mini",
                f"first {params.mini_frames} samples of each split",
                {"centres": {s: c[: params.mini_frames] for s, c in centres.items()}},
            ),
        ]

    def features(self, ds: xr.Dataset) -> datasets.Features:
        lo, hi = DEFAULT_PAIR
        w = window_of(ds)
        return datasets.Features(
            {
                "time_index": datasets.Value("int32"),
                "time": datasets.Value("float64"),
                "lrs": datasets.Array5D((w, *ds[lo].shape[1:]), "float32"),
                "hr": datasets.Array4D(tuple(ds[hi].shape[1:]), "float32"),
            }
        )

    def write_parquet(self, ds: xr.Dataset, config: ConfigSpec, out: Path, params: PublishParams) -> None:
        lo, hi = DEFAULT_PAIR
        half = window_of(ds) // 2
        features = self.features(ds)
        times = ds["time"].values if "time" in ds.coords else np.arange(ds.sizes["time"], dtype=np.float64)
        for split, centres in config.selection["centres"].items():

            def rows(a: int, b: int, centres: list[int] = centres) -> dict[str, np.ndarray]:
                cs = centres[a:b]
                return {
                    "time_index": np.asarray(cs, dtype=np.int32),
                    "time": np.asarray(times[cs], dtype=np.float64),
                    "lrs": np.stack([ds[lo][c - half : c + half + 1].values for c in cs]).astype(np.float32),
                    "hr": np.stack([ds[hi][c].values for c in cs]).astype(np.float32),
                }

            hub_split = HUB_SPLIT_NAMES[split]
            # one sample is megabytes: small row groups keep reads and memory per group small
            config.files[hub_split] = write_split(
                out,
                f"data/{config.name}",
                hub_split,
                len(centres),
                rows,
                features,
                params.parquet_rows_per_file,
                min(params.parquet_row_group, 8),
            )
            config.rows[hub_split] = len(centres)

    def zarr_layout(self, ds: xr.Dataset) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
        # one frame per inner chunk; shards of up to ~64 MB keep the file count low at 64^3 and above
        layout = {}
        for name in DEFAULT_PAIR:
            frame_bytes = int(np.prod(ds[name].shape[1:])) * ds[name].dtype.itemsize
            layout[name] = ({"time": 1}, {"time": max(1, (64 << 20) // frame_bytes)})
        return layout

    def stats(self, store: Path) -> dict[str, Any]:
        group = open_group(str(store))
        stats = compute_stats(group, DEFAULT_PAIR)
        return {**stats, "mini": stats[pair_config(group, DEFAULT_PAIR)]}

    def figure(self, ds: xr.Dataset, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        lo, hi = DEFAULT_PAIR
        t = sample_centres(ds.attrs["splits"])["train"][0]
        hr = ds[hi][t, 0].values  # u_x
        lr = ds[lo][t, 0].values
        mid_hr, mid_lr = hr.shape[0] // 2, lr.shape[0] // 2
        vmax = float(np.abs(hr[mid_hr]).max())
        fig, axes = plt.subplots(1, 2, figsize=(7, 3.4), constrained_layout=True)
        panels = (
            (axes[0], lr[mid_lr], f"{lo}: {lr.shape[-1]}^3"),
            (axes[1], hr[mid_hr], f"{hi}: {hr.shape[-1]}^3"),
        )
        for ax, field, title in panels:
            im = ax.imshow(
                field,
                origin="lower",
                cmap="RdBu_r",
                vmin=-vmax,
                vmax=vmax,
                extent=(0, 2 * np.pi, 0, 2 * np.pi),
            )
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=axes, shrink=0.8, label="u_x")
        fig.suptitle(f"u_x on the mid z-plane, time index {t}", fontsize=10)
        save_figure(fig, path)

    def write_previews(self, ds: xr.Dataset, out: Path) -> ConfigSpec:
        """One picture per sample (row), in the Hub's split names: u_x on the mid z-plane of the sample's
        low-resolution window and of its high-resolution target, on one colour scale for all samples."""
        lo, hi = DEFAULT_PAIR
        half = window_of(ds) // 2
        centres = {HUB_SPLIT_NAMES[s]: c for s, c in sample_centres(ds.attrs["splits"]).items()}
        every = sorted({t for c in centres.values() for t in c})
        mid_lo, mid_hi = ds[lo].shape[2] // 2, ds[hi].shape[2] // 2  # (time, component, z, y, x)
        limit = preview.symmetric_limit(ds[hi][every, 0, mid_hi].values)
        shown = (f"u_x on the mid z-plane of the {lo} window (t-{half}..t+{half}, left) and the {hi} target "
                 f"(t, right), blue -{limit:.3g} to red {limit:.3g}")  # fmt: skip
        rows: dict[str, list[preview.Preview]] = {}
        for split, cs in centres.items():
            for t in cs:
                fields = [*ds[lo][t - half : t + half + 1, 0, mid_lo].values, ds[hi][t, 0, mid_hi].values]
                png = preview.grid_png([[preview.Panel(f, "RdBu_r", -limit, limit) for f in fields]])
                caption = f"{split} sample, time index {t}: {shown}"
                row = preview.Preview(f"{split}-t{t:05d}", {"time_index": t}, caption, png)
                rows.setdefault(split, []).append(row)
        about = f"one picture per sample: u_x on the mid z-plane of its {lo} window and {hi} target"
        return preview.write_preview_config(out, rows, about)

    def card_body(self, ctx: CardContext) -> str:
        return render("turbulence.md.j2", self.card_context(ctx))

    def card_context(self, ctx: CardContext) -> TurbulenceCard:
        ds, configs = ctx.ds, ctx.configs
        p = ctx.params
        params = p.get("turbulence", p)
        lo, hi = DEFAULT_PAIR
        jhtdb = _is_jhtdb(ds, params)
        centres = sample_centres(ds.attrs["splits"])
        skip = ("provenance", "splits", "dataset_card", "source_description")
        # a synthetic store's JHTDB settings (and a JHTDB store's solver settings) say nothing about its data
        other = ("synthetic",) if jhtdb else ("jhtdb", "jhtdb_mode")
        extra = json.dumps(
            {k: v for k, v in ds.attrs.items() if k not in skip + other}, sort_keys=True, default=str
        )
        shown = {k: v for k, v in params.items() if k not in other}
        shown = {**p, "turbulence": shown} if "turbulence" in p else shown
        length = float(ds.attrs.get("domain_length", 2 * np.pi))
        n_lo, n_hi = ds[lo].shape[-1], ds[hi].shape[-1]
        spacing = f"{hi} {fmt(length / n_hi)} (2 pi / {n_hi}), {lo} {fmt(length / n_lo)} (2 pi / {n_lo})"
        if "native_grid_spacing" in ds.attrs:
            spacing += f"; the source's native grid {fmt(float(ds.attrs['native_grid_spacing']))}"
        # consecutive stored steps (a sample's window); samples themselves are spaced further apart
        frame_dt = fmt(float(ds.attrs["dt"])) if "dt" in ds.attrs else "not recorded"
        split_rows = [
            (HUB_SPLIT_NAMES[s], len(c), f"{min(c)}..{max(c)}" if c else "-") for s, c in centres.items()
        ]
        config_rows = [
            (f"`{c.name}`", c.description, " / ".join(str(c.rows[s]) for s in c.rows)) for c in configs
        ]
        return TurbulenceCard(
            pretty_name=self.pretty_name,
            # the turbulence stage's description of its source; the template words older stores without one
            source_description=str(ds.attrs.get("source_description") or ""),
            jhtdb=jhtdb,
            window=window_of(ds),
            lo=lo,
            hi=hi,
            n_lo=n_lo,
            n_hi=n_hi,
            figure_name=self.figure_name,
            preview=preview.card_text(
                configs,
                "split",
                "Each sample's input window and target: u_x on the mid z-plane, on one "
                "colour scale for all samples.",
            ),
            viscosity=fmt(float(ds.attrs["viscosity"])) if "viscosity" in ds.attrs else "(not recorded)",
            spacing=spacing,
            frame_dt=frame_dt,
            cost=cost_text(
                f"{ds.sizes.get('time', '?')} stored time steps of the source at {n_hi}^3, block-averaged to "
                f"{n_lo}^3",
                self.name,
                ctx.metrics.get("build", {}),
                _cost_rows(ctx.metrics.get("build", {}), jhtdb, ctx.versions),
            ),
            config_table=table(("config", "contents", "rows train / validation / test"), config_rows),
            arrays_table=arrays_table(ds, [lo, hi]),
            split_table=table(("split", "samples", "centre positions"), split_rows),
            stats_table=stats_table(ctx.stats),
            scores=scores_text(ctx.metrics, self.name),
            install=INSTALL,
            citation=citation(ctx.repo_id, self.pretty_name, *((JHTDB_BIB,) if jhtdb else ())),
            repo_id=ctx.repo_id,
            first_config=configs[0].name,
            store_name=self.store_name,
            files_table=files_table(ctx.sizes),
            built_from=ctx.built_from,
            versions_table=versions_table(ctx.versions, ("python", "numpy", "scipy", "xarray", "zarr")),
            params_block=params_block(shown),
            extra=extra[:2000],
            license=ctx.license,
        )


def _cost_rows(build: dict[str, Any], jhtdb: bool, versions: dict[str, str]) -> list[tuple[str, str, str]]:
    """The turbulence stage's time: producing the source field (solver or download), downsampling and
    writing the store, and the whole stage."""
    rows = []
    solver = build.get("solver", {})
    if "source_seconds" in build:
        numpy = versions.get("numpy", "?")
        what = "JHTDB cutout download" if jhtdb else f"pseudo-spectral solver (numpy {numpy})"
        rate = "-"
        if solver.get("seconds_per_step"):
            steps = solver.get("solver_steps", "?")
            rate = f"{1 / solver['seconds_per_step']:.3g} solver steps/s ({steps} steps)"
        if solver.get("resumed"):
            what += "; resumed, so part of the solve is not in this time"
        rows.append((f"source field ({what})", seconds(build["source_seconds"]), rate))
    if "downsample_write_seconds" in build:
        rows.append(("block-average and write the store", seconds(build["downsample_write_seconds"]), "-"))
    if "wall_seconds" in build:
        rows.append(("whole stage (with its checks and figures)", seconds(build["wall_seconds"]), "-"))
    return rows


def _is_jhtdb(ds: xr.Dataset, params: dict[str, Any] | None = None) -> bool:
    """Whether the store's fields came from JHTDB (its ``source`` attribute, else the recorded params)."""
    return "jhtdb" in str(ds.attrs.get("source") or (params or {}).get("source", "synthetic")).lower()
