"""Each dataset's store layout, written once, and :func:`check`, which validates a store against it.

    from loaders.layouts import SMOKE, TURBULENCE, check
    check(ds, SMOKE)                 # an xarray Dataset (e.g. before writing, or open_store(...))
    check("data/smoke.zarr", SMOKE)  # a path or hf:// URL: opened lazily through loaders.storage

A layout names the data variables (dims, allowed dtypes, chunking rule), the coordinates (dims, dtype kind,
fixed values where the study fixes them), the required attributes and the splits. :func:`check` collects
every problem and raises one :class:`LayoutError` (a ``ValueError``) listing them, so a drifted store is
described in full, not one key at a time. The smoke and turbulence stages, the publish kinds and the
loaders all check against these objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from loaders.storage import open_store

SPLITS = ("train", "valid", "test")


class LayoutError(ValueError):
    """A store does not match its dataset's layout; the message lists every problem."""


@dataclass(frozen=True)
class Variable:
    """An array of the store. ``dtypes``: allowed dtype names, or one-letter numpy kinds (``"f"``, ``"i"``,
    ``"U"`` for strings); ``chunk_one``: dims chunked by 1; ``chunk_whole``: dims held whole by every chunk
    (what the loaders' one-chunk-per-read relies on)."""

    dims: tuple[str, ...]
    dtypes: tuple[str, ...]
    chunk_one: tuple[str, ...] = ()
    chunk_whole: tuple[str, ...] = ()
    values: tuple[Any, ...] | None = None  # fixed values (coordinates the study fixes)


@dataclass(frozen=True)
class Layout:
    name: str
    variables: dict[str, Variable]
    coords: dict[str, Variable]
    attrs: tuple[str, ...]
    split_kind: str  # "ranges": {split: {"time_index": [start, stop)}}; "centres": {split: [positions]}
    splits: tuple[str, ...] = SPLITS
    notes: dict[str, str] = field(default_factory=dict)


_FRAME = ("component", "y", "x")
SMOKE = Layout(
    name="smoke",
    variables={
        "velocity": Variable(
            ("level", "direction", "time", "component", "y", "x"),
            ("float32", "float64"),
            chunk_one=("level", "direction"),
            chunk_whole=_FRAME,
        ),
        "smoke": Variable(
            ("level", "direction", "time", "y", "x"),
            ("float32", "float64"),
            chunk_one=("level", "direction"),
            chunk_whole=("y", "x"),
        ),
    },  # fmt: skip
    coords={
        "level": Variable(("level",), ("i",)),
        "direction": Variable(("direction",), ("i",), values=(0, 90, 180, 270)),
        "time": Variable(("time",), ("f",)),
        "frame": Variable(("time",), ("i",)),
        "split": Variable(("time",), ("U",)),
        "component": Variable(("component",), ("U",), values=("u", "v")),
        "y": Variable(("y",), ("f",)),
        "x": Variable(("x",), ("f",)),
        "buoyancy": Variable(("level", "direction", "axis"), ("f",)),
        "axis": Variable(("axis",), ("U",), values=("x", "y")),
    },
    attrs=("title", "grid_spacing", "dt", "simulator", "pressure_solver", "splits", "windows", "provenance"),
    split_kind="ranges",
    notes={"chunks": "one (level, direction) series per chunk, whole frames, several time steps"},
)

_SPACE = ("z", "y", "x")
_SPACE_LR = ("z_lr", "y_lr", "x_lr")
TURBULENCE = Layout(
    name="turbulence",
    variables={
        "hr": Variable(
            ("time", "component", *_SPACE),
            ("float32",),
            chunk_one=("time",),
            chunk_whole=("component", *_SPACE),
        ),
        "lr": Variable(
            ("time", "component", *_SPACE_LR),
            ("float32",),
            chunk_one=("time",),
            chunk_whole=("component", *_SPACE_LR),
        ),
    },  # fmt: skip
    coords={
        "time": Variable(("time",), ("f",)),
        "time_index": Variable(("time",), ("i",)),
        "component": Variable(("component",), ("U",), values=("u_x", "u_y", "u_z")),
        **{a: Variable((a,), ("f",)) for a in _SPACE + _SPACE_LR},
        "sample_centre": Variable(("sample",), ("i",)),
        "sample_split": Variable(("sample",), ("U",)),
    },
    attrs=(
        "title",
        "source",
        "source_description",
        "dataset_card",
        "dt",
        "viscosity",
        "domain_length",
        "native_grid_spacing",
        "filter",
        "jhtdb_mode",
        "window",
        "lr_factor",
        "splits",
        "conventions",
        "provenance",
    ),  # fmt: skip
    split_kind="centres",
    notes={"chunks": "one time step per chunk, the whole field"},
)

LAYOUTS = {layout.name: layout for layout in (SMOKE, TURBULENCE)}


def _kind_ok(dtype: np.dtype, allowed: tuple[str, ...]) -> bool:
    for want in allowed:
        if len(want) == 1:
            kinds = "iu" if want == "i" else "UOT" if want == "U" else want  # str, object or StringDType
            if dtype.kind in kinds:
                return True
        elif dtype == np.dtype(want):
            return True
    return False


def _array_problems(kind: str, name: str, var: xr.DataArray, spec: Variable) -> list[str]:
    if tuple(var.dims) != spec.dims:
        return [f"{kind} {name!r} has dims {tuple(var.dims)}, the layout says {spec.dims}"]
    problems = []
    if not _kind_ok(var.dtype, spec.dtypes):
        problems.append(f"{kind} {name!r} has dtype {var.dtype}, the layout allows {spec.dtypes}")
    chunks = var.encoding.get("chunks")  # on-disk (inner) chunks; absent before the store is written
    if chunks is not None:
        for dim, size, total in zip(var.dims, chunks, var.shape, strict=True):
            if dim in spec.chunk_one and size != 1 and total > 1:
                problems.append(f"{kind} {name!r} is chunked by {size} along {dim!r}; the layout says 1")
            if dim in spec.chunk_whole and size < total:
                problems.append(
                    f"{kind} {name!r} is chunked by {size} along {dim!r} of {total}; the layout says whole"
                )
    if spec.values is not None and tuple(np.asarray(var.values).tolist()) != spec.values:
        problems.append(
            f"{kind} {name!r} holds {np.asarray(var.values).tolist()}, the layout says {spec.values}"
        )
    return problems


def _split_problems(ds: xr.Dataset, layout: Layout) -> list[str]:
    try:
        raw = json.loads(ds.attrs["splits"])
    except (TypeError, ValueError) as err:
        return [f"attribute 'splits' is not JSON ({err})"]
    if not isinstance(raw, dict) or sorted(raw) != sorted(layout.splits):
        return [f"attribute 'splits' names {sorted(raw) if isinstance(raw, dict) else raw}, "
                f"the layout says {list(layout.splits)}"]  # fmt: skip
    n_time = ds.sizes.get("time", 0)
    problems = []
    if layout.split_kind == "ranges":
        seen = np.zeros(n_time, dtype=int)
        for name, value in raw.items():
            rng = value.get("time_index") if isinstance(value, dict) else None
            if not (isinstance(rng, list) and len(rng) == 2 and 0 <= rng[0] < rng[1] <= n_time):
                problems.append(f"split {name!r} range {rng} is not [start, stop) inside 0..{n_time}")
                continue
            seen[rng[0] : rng[1]] += 1
        if not problems and seen.max() > 1:
            problems.append("splits overlap in time")
    else:
        half = int(ds.attrs.get("window", 1)) // 2
        used: set[int] = set()
        for name, value in raw.items():
            centres = value if isinstance(value, list) else []
            outside = [c for c in centres if not half <= int(c) < n_time - half]
            if not centres or outside:
                problems.append(f"split {name!r} centres {centres} must be within [{half}, {n_time - half})")
            if used & set(centres):
                problems.append(f"split {name!r} shares centres with another split")
            used |= set(centres)
    return problems


def problems(ds: xr.Dataset, layout: Layout) -> list[str]:
    """Every way ``ds`` differs from ``layout`` (empty when it matches)."""
    found = []
    for kind, specs, present in (
        ("variable", layout.variables, ds.data_vars),
        ("coordinate", layout.coords, ds.coords),
    ):
        for name, spec in specs.items():
            if name not in present:
                found.append(f"{kind} {name!r}{spec.dims} is missing")
            else:
                found += _array_problems(kind, name, ds[name], spec)
    found += [f"attribute {a!r} is missing" for a in layout.attrs if a not in ds.attrs]
    if "splits" in ds.attrs:
        found += _split_problems(ds, layout)
    return found


def check(ds_or_path: xr.Dataset | str | Path, layout: Layout, where: str | None = None) -> None:
    """Raise :class:`LayoutError` listing every way the store differs from ``layout``.

    A path or URL is opened lazily through :func:`loaders.storage.open_store` (which also refuses an
    incomplete store); only metadata and coordinates are read. ``where`` names the store in the message.
    """
    if isinstance(ds_or_path, xr.Dataset):
        ds = ds_or_path
    else:
        ds, where = open_store(ds_or_path, dask=False), where or str(ds_or_path)
    found = problems(ds, layout)
    if found:
        raise LayoutError(
            f"{where or 'the dataset'} does not match the {layout.name} layout (loaders/layouts.py):\n  - "
            + "\n  - ".join(found)
        )
