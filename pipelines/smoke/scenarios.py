"""Simulation scenarios: one small dataclass per experiment.

A scenario's fields are its physical parameters. It says how to build its sources on a domain, how to
advance a (batched) state by one step, and how it looks after a quarter turn. The batched runner in
:mod:`pipelines.smoke.simulate` stacks many scenarios of one class along a PhiFlow batch dimension, and
the symmetry code rotates their outputs with :mod:`models.groups`; neither needs to know the physics.

To add an experiment, subclass :class:`Scenario` (or an existing scenario) in any importable module and
select it with ``smoke.scenario: package.module:ClassName`` (extra fields in ``smoke.scenario_options``).
An importable name, not a run-time registry, is what lets dask workers on other machines find the class.
README.md has a worked example, which ``tests/test_scenarios.py`` runs on a real dask cluster.

Edits are never ignored: finished simulations are kept in a scratch folder keyed by the params AND the
source of the scenario's modules (its class and every base class) and of the solver
(:mod:`pipelines.smoke.code`), so an edited scenario re-simulates instead of resuming. DVC sees an edit
only of a declared dependency: ``pipelines/smoke`` is one, but a module of your own must be added to the
smoke stage's ``deps`` in dvc.yaml (``- /path/to/my_plumes.py``). Under ``dvc repro`` the stage refuses to
run until it is, naming the line to add; from then on ``dvc status`` reports the stage changed after an
edit of the module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
from phi import math
from phi.flow import (
    Box,
    CenteredGrid,
    Sphere,
    StaggeredGrid,
    advect,
    extrapolation,
    resample,
    vec,
)

from models.groups import c4_rotation, rotate_point, rotate_vector_value


@dataclass(frozen=True)
class Domain:
    """A square box of side ``size`` sampled on ``resolution`` x ``resolution`` cells."""

    resolution: int = 64
    size: float = 64.0

    @property
    def bounds(self) -> Box:
        return Box(x=self.size, y=self.size)

    @property
    def dx(self) -> float:
        return self.size / self.resolution

    def centered(self, value: Any, boundary: Any) -> CenteredGrid:
        return CenteredGrid(value, boundary, x=self.resolution, y=self.resolution, bounds=self.bounds)

    def staggered(self, value: Any, boundary: Any) -> StaggeredGrid:
        return StaggeredGrid(value, boundary, x=self.resolution, y=self.resolution, bounds=self.bounds)


State = dict[str, Any]  # named PhiFlow fields, batched along the "sim" dimension


@dataclass(frozen=True)
class Scenario:
    """Base class. Subclasses are frozen dataclasses of physical parameters."""

    name: ClassVar[str] = "scenario"

    def sources(self, domain: Domain) -> dict[str, Any]:
        """Per-simulation constant inputs (fields or phiml tensors); stacked along ``sim`` by the runner."""
        raise NotImplementedError

    def rotated(self, quarter_turns: int, domain: Domain) -> Scenario:
        """The same experiment turned counter-clockwise by ``quarter_turns`` about the box centre."""
        raise NotImplementedError

    @staticmethod
    def initial_state(domain: Domain, n_sims: int) -> State:
        raise NotImplementedError

    @staticmethod
    def step(state: State, sources: dict[str, Any], dt: float, project: Any) -> State:
        """Advance a batched state by ``dt``; ``project`` makes a staggered velocity divergence-free."""
        raise NotImplementedError

    @staticmethod
    def observe(state: State) -> dict[str, np.ndarray]:
        """Arrays to save, as numpy ``[sim, (component,) y, x]``; vectors keep components (x, y)."""
        raise NotImplementedError

    # Optional, for the jitted JAX step: ``observables`` computes what ``observe`` returns as phiml
    # tensors (so it runs inside the compiled function), ``observed_dims`` the dims order of each array.
    observed_dims: ClassVar[dict[str, str] | None] = None

    @staticmethod
    def observables(state: State) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class BuoyantPlume(Scenario):
    """Smoke from a spherical inflow rising under a constant buoyancy force in a closed box.

    The physics of the study: MacCormack smoke advection, semi-Lagrangian velocity self-advection,
    buoyancy proportional to the smoke density, and a pressure projection every step.
    """

    name: ClassVar[str] = "buoyant_plume"
    inflow_center: tuple[float, float] = (32.0, 5.0)
    inflow_radius: float = 5.0
    buoyancy: tuple[float, float] = (0.0, 0.01)

    def sources(self, domain: Domain) -> dict[str, Any]:
        inflow = domain.centered(
            Sphere(center=vec(x=self.inflow_center[0], y=self.inflow_center[1]), radius=self.inflow_radius),
            extrapolation.BOUNDARY,
        )
        return {"inflow": inflow, "buoyancy": vec(x=self.buoyancy[0], y=self.buoyancy[1])}

    def rotated(self, quarter_turns: int, domain: Domain) -> BuoyantPlume:
        r = c4_rotation(quarter_turns)
        return replace(
            self,
            inflow_center=rotate_point(self.inflow_center, r, domain.size),  # type: ignore[arg-type]
            buoyancy=rotate_vector_value(self.buoyancy, r),  # type: ignore[arg-type]
        )

    @staticmethod
    def initial_state(domain: Domain, n_sims: int) -> State:
        ones = math.ones(math.batch(sim=n_sims))
        return {
            "smoke": domain.centered(0, extrapolation.BOUNDARY) * ones,
            "velocity": domain.staggered(0, extrapolation.ZERO) * ones,
        }

    @staticmethod
    def step(state: State, sources: dict[str, Any], dt: float, project: Any) -> State:
        smoke = advect.mac_cormack(state["smoke"], state["velocity"], dt=dt) + sources["inflow"]
        buoyancy_force = resample(smoke * sources["buoyancy"], to=state["velocity"])
        velocity = advect.semi_lagrangian(state["velocity"], state["velocity"], dt=0.5 * dt) + buoyancy_force
        return {"smoke": smoke, "velocity": project(velocity)}

    observed_dims: ClassVar[dict[str, str] | None] = {"velocity": "sim,vector,y,x", "smoke": "sim,y,x"}

    @staticmethod
    def observables(state: State) -> dict[str, Any]:
        return {"velocity": state["velocity"].at_centers().values, "smoke": state["smoke"].values}

    @classmethod
    def observe(cls, state: State) -> dict[str, np.ndarray]:
        return {k: v.numpy(cls.observed_dims[k]) for k, v in cls.observables(state).items()}


BUILTIN_SCENARIOS: dict[str, type[Scenario]] = {BuoyantPlume.name: BuoyantPlume}


def resolve_scenario(name: str, options: dict[str, Any] | None = None) -> type[Scenario]:
    """The scenario class named by a built-in name or ``package.module:ClassName``.

    ``options`` (``smoke.scenario_options``) are checked against the class's own fields here, so a typo
    fails before any simulation instead of in a worker.
    """
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(
                f"smoke.scenario={name!r} cannot be imported ({err}); the module must be importable on every "
                "dask worker (installed, or on PYTHONPATH)"
            ) from None
    elif name in BUILTIN_SCENARIOS:
        cls = BUILTIN_SCENARIOS[name]
    else:
        raise ValueError(
            f"smoke.scenario={name!r} is not a built-in scenario {sorted(BUILTIN_SCENARIOS)} "
            "and not an importable `package.module:ClassName`"
        )
    if not (isinstance(cls, type) and issubclass(cls, Scenario)):
        raise ValueError(f"smoke.scenario={name!r} is not a Scenario subclass")
    own = {f.name for f in fields(cls)} - {"inflow_center", "inflow_radius", "buoyancy"}
    unknown = sorted(set(options or {}) - own)
    if unknown:
        raise ValueError(
            f"smoke.scenario_options has unknown keys {unknown} for {cls.__name__}; its fields: {sorted(own)}"
        )
    return cls
