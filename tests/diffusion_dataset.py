"""A third dataset kind in one module, as a user would write it (docs/extending.md): a 2D velocity field
diffusing on a periodic grid, whose dynamics commute with quarter turns (C4 acting on the grid and on the
vector components), so the smoke task's models (2D vector fields, C4) learn its next frame.

params.yaml names it with ``datasets: [..., diffusion]``, ``dataset_specs: {diffusion:
tests.diffusion_dataset:DIFFUSION}`` and a ``train.diffusion`` section; :func:`build_store` writes its store.
Everything the stages need is in :data:`DIFFUSION`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from loaders.kinds import StoreKind
from loaders.storage import open_store, publish_store
from pipelines.datasets import DatasetSpec
from pipelines.params import PublishParams
from pipelines.publish.card import ConfigSpec
from pipelines.publish.kinds import CardContext, DatasetKind, save_figure
from pipelines.publish.parquet import write_split
from train.kinds import RMSE, SPLITS, SplitSpec, TrainKind
from train.tasks import smoke_task

NAME = "diffusion"
STORE_NAME = "diffusion.zarr"
SPLIT_SIMS = {"train": [0, 1, 2], "valid": [3], "test": [4]}


def simulate(sims: int = 5, frames: int = 6, n: int = 8, nu: float = 0.2, seed: int = 0) -> np.ndarray:
    """[sim, time, component, y, x]: random smooth velocities, each step u += nu * Laplacian(u) (periodic
    five-point stencil, the same on both components: it commutes with the grid's quarter turns)."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((sims, 2, n, n))
    out = []
    for _ in range(frames):
        out.append(u)
        lap = sum(np.roll(u, s, axis=a) for a in (-1, -2) for s in (1, -1)) - 4 * u
        u = u + nu * lap
    return np.stack(out, axis=1).astype(np.float32)


def build_store(out: Path, **options: Any) -> Path:
    """The dataset's store at ``out``, written through loaders/storage.py like every store."""
    field = simulate(**options)
    ds = xr.Dataset(
        {"velocity": (("sim", "time", "component", "y", "x"), field)},
        coords={"component": ["u", "v"], "sim": np.arange(field.shape[0])},
        attrs={"title": "periodic 2D diffusion (tests)", "splits": json.dumps(SPLIT_SIMS),
               "provenance": json.dumps({"params": {"diffusion": options}})},
    )  # fmt: skip
    publish_store(ds, out)
    return out


class DiffusionWindows(Dataset):
    """(x [1, 2, n, n], y [1, 2, n, n]): a frame and the next, for the simulations of one split."""

    def __init__(self, data: Path, split: str) -> None:
        ds = open_store(data, dask=False)
        sims = json.loads(ds.attrs["splits"])[split]
        self.frames = torch.from_numpy(ds["velocity"].values[sims])

    def __len__(self) -> int:
        return self.frames.shape[0] * (self.frames.shape[1] - 1)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        sim, t = divmod(i, self.frames.shape[1] - 1)
        return self.frames[sim, t : t + 1], self.frames[sim, t + 1 : t + 2]


def load_splits(data: Path, spec: SplitSpec) -> dict[str, Dataset]:
    return {split: DiffusionWindows(data, split) for split in SPLITS}  # unnormalised: units stay physical


def trivial_predictors(splits: dict[str, Dataset]) -> dict[str, torch.nn.Module]:
    from train.baselines import smoke_baselines

    return smoke_baselines()  # persistence and zero, as for smoke


class DiffusionKind(DatasetKind):
    """The Hub repo: one parquet config of single frames, the sharded store, stats and a figure."""

    name = NAME
    store_name = STORE_NAME
    pretty_name = "Periodic 2D diffusion (test dataset)"
    tags = ("physics", "simulation", "equivariance")
    task_categories = ("time-series-forecasting",)
    figure_name = "figures/diffusion.png"

    def validate(self, ds: xr.Dataset) -> None:
        if "velocity" not in ds:
            raise ValueError("not a diffusion store: no 'velocity' variable")

    def configs(self, ds: xr.Dataset, params: PublishParams) -> list[ConfigSpec]:
        return [ConfigSpec("default", "every frame", {}, default=True)]

    def features(self, ds: xr.Dataset) -> datasets.Features:
        n = ds.sizes["x"]
        return datasets.Features({"sim": datasets.Value("int32"), "time": datasets.Value("int32"),
                                  "velocity": datasets.Array3D((2, n, n), "float32")})  # fmt: skip

    def write_parquet(self, ds: xr.Dataset, config: ConfigSpec, out: Path, params: PublishParams) -> None:
        frames = ds.sizes["time"]
        for split, sims in json.loads(ds.attrs["splits"]).items():
            n_rows = len(sims) * frames

            def rows(a: int, b: int, sims: list[int] = sims) -> dict[str, Any]:
                index = [divmod(i, frames) for i in range(a, b)]
                frames_ = [ds["velocity"][sims[s], t].values for s, t in index]
                return {"sim": np.array([sims[s] for s, _ in index], dtype=np.int32),
                        "time": np.array([t for _, t in index], dtype=np.int32),
                        "velocity": np.stack(frames_)}  # fmt: skip

            hub = {"valid": "validation"}.get(split, split)
            sizes = (params.parquet_rows_per_file, params.parquet_row_group)
            where = (out, f"data/{config.name}", hub)
            config.files[hub] = write_split(*where, n_rows, rows, self.features(ds), *sizes)
            config.rows[hub] = n_rows

    def zarr_layout(self, ds: xr.Dataset) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
        return {"velocity": ({"sim": 1}, {"sim": ds.sizes["sim"]})}

    def stats(self, store: Path) -> dict[str, Any]:
        ds = open_store(store, dask=False)
        train = ds["velocity"].values[SPLIT_SIMS["train"]]
        return {"default": {"velocity": {"mean": float(train.mean()), "std": float(train.std())}}}

    def figure(self, ds: xr.Dataset, path: Path) -> None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3, 3))
        ax.imshow(ds["velocity"][0, 0, 0].values, cmap="RdBu_r")
        save_figure(fig, path)

    def card_body(self, ctx: CardContext) -> str:
        return f"\n# {self.pretty_name}\n\nRepo `{ctx.repo_id}`: {ctx.ds.sizes['sim']} simulations.\n"


DIFFUSION = DatasetSpec(
    name=NAME,
    store=StoreKind(NAME, STORE_NAME, "tests.diffusion_dataset:DiffusionWindows"),
    train=TrainKind(NAME, "smoke", RMSE, load_splits, smoke_task, trivial_predictors),
    comparisons=(("rgcnn", "gcnn"), ("rgcnn", "cnn")),
    units="velocity units",
    symmetry="C4 (quarter turns of the periodic grid)",
    run_fields=("normalise", "train_rollout", "residual"),
    publish="tests.diffusion_dataset:DiffusionKind",
    describe=lambda attrs: ("diffusion simulation", str(attrs["title"])),
    grid_cells=lambda params: 64,
)
