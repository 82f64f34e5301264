"""Batched PhiFlow runner: advance many scenarios of one class together along a ``sim`` batch dim."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from phi import math

from pipelines.params import PressureSolverParams
from pipelines.smoke.pressure import make_projection
from pipelines.smoke.scenarios import Domain, Scenario


@contextmanager
def phiflow_float64() -> Iterator[None]:
    """float64 on the numpy backend, for the enclosed block only.

    In float32 (phiml's default) a closed box with horizontal buoyancy makes the pressure solve diverge
    within a few steps; float64 on numpy is the configuration that converges. phiml's ``with`` blocks push
    onto its settings stacks and pop on exit, so the caller's global precision and default backend are left
    as they were (no process-wide side effect for other code, e.g. a torch model in the same worker).
    """
    with math.NUMPY, math.precision(64):
        yield


def stack_sources(scenarios: Sequence[Scenario], domain: Domain) -> dict:
    kinds = {type(s) for s in scenarios}
    if len(kinds) != 1:
        raise ValueError(f"a batch must hold one scenario class, got {sorted(k.__name__ for k in kinds)}")
    per_sim = [s.sources(domain) for s in scenarios]
    return {key: math.stack([src[key] for src in per_sim], math.batch("sim")) for key in per_sim[0]}


def simulate(
    scenarios: Sequence[Scenario],
    domain: Domain,
    steps: int,
    dt: float,
    keep: tuple[int, int],
    solver: PressureSolverParams,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``steps`` steps for every scenario at once; return frames ``keep[0] <= t < keep[1]``.

    Frame ``t`` is the state after ``t`` steps (frame 0 is the initial state). Arrays come back as
    float64 numpy ``[sim, time, ...]``.
    """
    with phiflow_float64():
        return _simulate(scenarios, domain, steps, dt, keep, solver, on_step)


def _simulate(
    scenarios: Sequence[Scenario],
    domain: Domain,
    steps: int,
    dt: float,
    keep: tuple[int, int],
    solver: PressureSolverParams,
    on_step: Callable[[int], None] | None,
) -> dict[str, np.ndarray]:
    kind = type(scenarios[0])
    sources = stack_sources(scenarios, domain)
    project = make_projection(solver, domain)
    state = kind.initial_state(domain, len(scenarios))
    frames: dict[str, list[np.ndarray]] = {}
    for t in range(steps + 1):
        if t > 0:
            state = kind.step(state, sources, dt, project)
            if on_step is not None:
                on_step(t)
        if keep[0] <= t < keep[1]:
            for name, arr in kind.observe(state).items():
                if not np.all(np.isfinite(arr)):
                    raise FloatingPointError(f"non-finite {name} at step {t}: the simulation diverged")
                frames.setdefault(name, []).append(arr)
    return {name: np.stack(seq, axis=1) for name, seq in frames.items()}
