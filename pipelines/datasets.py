"""A dataset kind as one object: everything the stages need to know about it, found by the dataset's name.

A :class:`DatasetSpec` gathers what used to be spread over the stages: the store (folder name, loader;
loaders/kinds.py), the training side (splits, model task, metric, task, trivial baselines;
train/kinds.py), the publish kind, the report's comparison and units, the ``train.<name>`` fields that
shape a run, the landscape budget's grid size and the dataset's own checks. The stages look these up
by name; the lower layers get only their own part (a ``StoreKind``, a ``TrainKind``), registered in
their layer when a spec is resolved.

The study's datasets are ``datasets`` in params.yaml. ``smoke`` and ``turbulence`` are built in; another
is named by ``dataset_specs.<name>: package.module:NAME``, a :class:`DatasetSpec` in any importable module
(an importable name, not a run-time registry, is what lets dask workers find it), like a smoke scenario
(pipelines/smoke/scenarios.py). docs/extending.md walks through adding one.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loaders.kinds import SMOKE as SMOKE_STORE
from loaders.kinds import TURBULENCE as TURBULENCE_STORE
from loaders.kinds import StoreKind, register_store
from train.kinds import SMOKE as SMOKE_TRAIN
from train.kinds import TURBULENCE as TURBULENCE_TRAIN
from train.kinds import TrainKind, load_ref, register

DATA_DIR = Path("data")  # where the dataset stages write their stores (data/<store_name>)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset kind. ``params`` arguments below are the whole validated params.yaml (StudyParams)."""

    name: str  # the name in params.yaml (train.<name>, datasets) and in every file of its runs
    store: StoreKind
    train: TrainKind
    # the (relaxed, other) model pairs the report tests, relaxed first; the other is the strictly
    # equivariant counterpart or a plain baseline model
    comparisons: tuple[tuple[str, str], ...]
    units: str  # physical units of the metric, for axis labels
    symmetry: str  # the group its data is symmetric under (its model task's group), for the docs and cards
    # the fields of train.<name> that shape the task a run trains on (part of the run's identity)
    run_fields: tuple[str, ...] = ("normalise", "residual")
    # "package.module:Class" of its publish kind (pipelines/publish/kinds.py); None: not publishable
    publish: str | None = None
    # (short label, full description) of how the store was made, from its attributes (report captions)
    describe: Callable[[Mapping[str, Any]], tuple[str, str]] = lambda attrs: (
        str(attrs.get("title", "simulation")), str(attrs.get("title", "simulation"))
    )
    grid_cells: Callable[[Any], int] = lambda params: 0  # cells per sample (landscape time budget)
    check_trainable: Callable[[Any], None] = lambda params: None  # raise ValueError if it cannot be trained
    # folder of held-out stores beside the training store (smoke: the Domain test, data/smoke_domain/), each
    # scored by every run through its train kind's ``held_out``; None: no held-out test
    held_out_dir: str | None = None

    @property
    def has_levels(self) -> bool:
        """Whether its runs are trained per symmetry level (``train.<name>.levels``, as smoke's are)."""
        return "levels" in self.run_fields

    def __post_init__(self) -> None:
        if not (self.store.name == self.train.name == self.name):
            raise ValueError(
                f"dataset spec {self.name!r}: its store ({self.store.name!r}) and train "
                f"({self.train.name!r}) parts must carry the same name"
            )

    @property
    def metric(self) -> str:
        return self.train.metric

    def held_out_stores(self, store: Path) -> list[Path]:
        """The held-out stores beside training store ``store`` (none when the folder is absent)."""
        if self.held_out_dir is None:
            return []
        folder = Path(store).parent / self.held_out_dir
        return sorted(folder.glob("*.zarr")) if folder.is_dir() else []

    @property
    def store_path(self) -> Path:
        """Where its dataset stage writes the store, and where the run stages read it by default."""
        return DATA_DIR / self.store.store_name


# --- the built-in kinds -------------------------------------------------------------------------------

SHORT_SOURCE = {"synthetic": "synthetic Navier-Stokes, NOT JHTDB", "jhtdb": "JHTDB isotropic1024coarse"}


def _describe_smoke(attrs: Mapping[str, Any]) -> tuple[str, str]:
    return "PhiFlow simulation", f"PhiFlow smoke plumes ({attrs.get('title', 'smoke plume')})"


def _describe_turbulence(attrs: Mapping[str, Any]) -> tuple[str, str]:
    kind = str(attrs.get("source", "unknown"))
    return SHORT_SOURCE.get(kind, kind), str(attrs.get("source_description") or kind)


SMOKE = DatasetSpec(
    name="smoke",
    store=SMOKE_STORE,
    train=SMOKE_TRAIN,
    comparisons=(("rsteer", "e2cnn"), ("rgcnn", "gcnn")),  # Wang et al. 2022's two pairs
    units="smoke density / velocity units",
    symmetry="C4 (quarter turns of the plane)",
    run_fields=("levels", "normalise", "train_rollout", "window_stride", "valid_stride", "residual"),
    publish="pipelines.publish.smoke_kind:SmokeKind",
    describe=_describe_smoke,
    grid_cells=lambda params: params.smoke.resolution**2,
    held_out_dir="smoke_domain",
)
TURBULENCE = DatasetSpec(
    name="turbulence",
    store=TURBULENCE_STORE,
    train=TURBULENCE_TRAIN,
    comparisons=(("rgcnn", "gcnn"), ("rgcnn", "cnn")),
    units="velocity units",
    symmetry="O (the 24 rotations of the cube)",
    run_fields=("normalise", "residual", "upsampler"),
    publish="pipelines.publish.turbulence_kind:TurbulenceKind",
    describe=_describe_turbulence,
    grid_cells=lambda params: params.turbulence.hr_resolution**3,
    check_trainable=lambda params: params.turbulence.check_trainable(),
)
BUILTIN: dict[str, DatasetSpec] = {spec.name: spec for spec in (SMOKE, TURBULENCE)}
_RESOLVED: dict[str, DatasetSpec] = dict(BUILTIN)  # the registry of specs: built-ins and those resolved
_MODULES: dict[str, str] = {}  # the module each resolved spec of your own came from


def resolve_dataset(name: str, ref: str | None = None) -> DatasetSpec:
    """The spec of dataset ``name``: a built-in or one resolved before, or the :class:`DatasetSpec` that
    ``ref`` (``package.module:NAME``, params ``dataset_specs.<name>``) names, registered with its store and
    train parts in their layers so that lookups by name find them in this process."""
    if ref is None:
        if name not in _RESOLVED:
            raise ValueError(_not_builtin(name))
        return _RESOLVED[name]
    if name in BUILTIN:
        raise ValueError(f"dataset_specs.{name}: {name!r} is a built-in dataset; choose another name")
    spec = load_ref(ref, f"dataset_specs.{name}")
    if not isinstance(spec, DatasetSpec):
        raise ValueError(f"dataset_specs.{name}={ref!r} is a {type(spec).__name__}, not a DatasetSpec")
    if spec.name != name:
        raise ValueError(f"dataset_specs.{name}={ref!r} is the spec of dataset {spec.name!r}, not {name!r}")
    known = _RESOLVED.setdefault(name, spec)
    if known is not spec:
        raise ValueError(f"dataset {name!r} is already resolved to another spec in this process")
    register_store(spec.store)
    register(spec.train)
    _MODULES[name] = ref.partition(":")[0]
    return spec


def listed_spec(name: str, params: Any) -> DatasetSpec:
    """The spec of ``name``, which must be one of params.yaml's ``datasets`` (a stage's ``--dataset``)."""
    if name not in params.datasets:
        raise ValueError(f"dataset {name!r} is not one of params.yaml's datasets {params.datasets}")
    return dataset_spec(name, params)


def dataset_spec(name: str, params: Any = None) -> DatasetSpec:
    """The spec of ``name``, resolved through ``params.dataset_specs`` when params are given (a dask
    worker, which has not validated the params itself, resolves it here)."""
    if params is None:
        return resolve_dataset(name)
    if name not in BUILTIN and name not in params.dataset_specs:  # not one resolved for other params
        raise ValueError(_not_builtin(name))
    return resolve_dataset(name, params.dataset_specs.get(name))


def _not_builtin(name: str) -> str:
    return (f"dataset {name!r} is not built in ({sorted(BUILTIN)}); name its spec in params.yaml: "
            f"dataset_specs.{name}: package.module:NAME (docs/extending.md)")  # fmt: skip


def code_of(spec: DatasetSpec) -> str | None:
    """sha256 of the source files that define a dataset of your own (its spec's and its train kind's
    modules), part of its runs' identity; None for a built-in, whose code the identity covers already."""
    if spec.name in BUILTIN:
        return None
    parts = (spec.train.splits, spec.train.task, spec.train.baselines)
    names = {p.partition(":")[0] if isinstance(p, str) else getattr(p, "__module__", None) for p in parts}
    names.add(_MODULES.get(spec.name))
    digest = hashlib.sha256()
    for name in sorted(n for n in names if n):
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            digest.update(name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return digest.hexdigest()
