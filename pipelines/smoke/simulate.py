"""Batched PhiFlow runner: advance many scenarios of one class together along a ``sim`` batch dim."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np
from phi import math

from pipelines.params import PressureSolverParams
from pipelines.smoke.pressure import make_projection
from pipelines.smoke.scenarios import Domain, Scenario, State

Backend = Literal["jax", "numpy"]
BACKENDS = ("jax", "numpy")


@contextmanager
def phiflow_float64(backend: Backend = "jax") -> Iterator[None]:
    """float64 on PhiFlow's ``backend`` (``jax`` or ``numpy``), for the enclosed block only.

    In float32 (phiml's default) a closed box with horizontal buoyancy makes the pressure solve diverge
    within a few steps; float64 is the configuration that converges. phiml's ``with`` blocks push onto its
    settings stacks and pop on exit, so the caller's global precision and default backend are left as they
    were (no process-wide side effect for other code, e.g. a torch model in the same worker). The one
    global effect is JAX's own x64 flag, which phiml's JAX backend sets when it is imported
    (see :mod:`pipelines.smoke.jax_step`).
    """
    if backend == "jax":
        _one_xla_thread()
        from phiml.backend.jax import JAX as phiml_backend  # imported only when used: numpy needs no jax
    elif backend == "numpy":
        phiml_backend = math.NUMPY
    else:
        raise ValueError(f"smoke.backend={backend!r} is not one of {BACKENDS}")
    with phiml_backend, math.precision(64):
        yield


def _one_xla_thread() -> None:
    """One compute thread per XLA process, unless ``XLA_FLAGS`` is set already: the stage's parallelism is
    its dask workers (one per core), and XLA's default per-core thread pool in each of them oversubscribes
    the cores (measured: the step's CPU time is the same single-threaded, its wall time halves on 2 busy
    cores). XLA reads the variable when its backend starts, i.e. once per process, so this only takes
    effect in a process that has not run JAX yet (a fresh dask worker)."""
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")


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
    backend: Backend = "jax",
) -> dict[str, np.ndarray]:
    """Run ``steps`` steps for every scenario at once; return frames ``keep[0] <= t < keep[1]``.

    Frame ``t`` is the state after ``t`` steps (frame 0 is the initial state). Arrays come back as
    float64 numpy ``[sim, time, ...]``. ``backend="jax"`` jit-compiles the step (DCT solver only);
    ``"numpy"`` is the fallback and the only backend of the reference solvers.
    """
    if backend == "jax" and solver.method != "dct":
        raise ValueError(
            f"smoke.backend=jax runs the dct pressure solver only, not solver.method={solver.method!r}; "
            "set smoke.backend: numpy for the reference solvers"
        )
    with phiflow_float64(backend):
        return _simulate(scenarios, domain, steps, dt, keep, solver, on_step, backend)


def _simulate(
    scenarios: Sequence[Scenario],
    domain: Domain,
    steps: int,
    dt: float,
    keep: tuple[int, int],
    solver: PressureSolverParams,
    on_step: Callable[[int], None] | None,
    backend: Backend = "numpy",
) -> dict[str, np.ndarray]:
    kind = type(scenarios[0])
    # the set-up runs once, on numpy: eagerly on JAX every operation would compile a kernel of its own
    with math.NUMPY:
        sources = stack_sources(scenarios, domain)
        state = kind.initial_state(domain, len(scenarios))
    if backend == "jax":
        from pipelines.smoke.jax_step import JaxRunner

        runner = JaxRunner(kind, domain, dt, solver.rel_tol, solver.abs_tol)
        step, observe = runner.step, runner.observe
    else:
        project = make_projection(solver, domain)
        observe = kind.observe

        def step(state: State, sources: dict) -> State:
            return kind.step(state, sources, dt, project)

    frames: dict[str, list[np.ndarray]] = {}
    for t in range(steps + 1):
        if t > 0:
            state = step(state, sources)
            if on_step is not None:
                on_step(t)
        if keep[0] <= t < keep[1]:
            for name, arr in observe(state).items():
                if not np.all(np.isfinite(arr)):
                    raise FloatingPointError(f"non-finite {name} at step {t}: the simulation diverged")
                frames.setdefault(name, []).append(arr)
    return {name: np.stack(seq, axis=1) for name, seq in frames.items()}
