"""The smoke step on PhiFlow's JAX backend, jit-compiled, with every pressure solve still checked.

The physics is the scenario's own ``step`` (the same PhiFlow calls as on numpy); only the pressure
projection is swapped for :class:`JaxSpectralProjection`, the same DCT Poisson solve written with
``jax.scipy.fft``. A check cannot raise inside a compiled function, so each traced solve records its
residual norm (a five-point Neumann stencil, the same operator as the sparse matrix the numpy path
multiplies by) and the right-hand side's norm; the compiled step returns them and
:func:`check_residuals` tests every one of them on the host after every step, with the numpy path's rule.

x64: importing phiml's JAX backend sets ``jax_enable_x64`` itself (``phiml/backend/jax/_jax_backend.py``
calls ``jax.config.update`` at import), a process-global flag this module cannot scope. It changes only
JAX's default dtypes; every array here is created under ``math.precision(64)`` anyway, and numpy / torch
code in the same process is unaffected.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.fft as jfft
import numpy as np
from phi import field, math
from phi.field import Field
from phi.flow import StaggeredGrid, extrapolation

from pipelines.smoke.pressure import check_residuals, neumann_eigenvalues
from pipelines.smoke.scenarios import Domain, Scenario, State


def neumann_stencil(p: Any, dx: float) -> Any:
    """``neumann_laplacian @ p`` for ``p[sim, x, y]``: edge padding is the zero-gradient wall."""
    q = jnp.pad(p, ((0, 0), (1, 1), (1, 1)), mode="edge")
    return (q[:, 2:, 1:-1] + q[:, :-2, 1:-1] + q[:, 1:-1, 2:] + q[:, 1:-1, :-2] - 4 * p) / dx**2


class JaxSpectralProjection:
    """The batched DCT pressure projection, traceable by ``jax.jit``; records each solve's residual."""

    def __init__(self, domain: Domain):
        self.domain = domain
        eig = neumann_eigenvalues(domain.resolution, domain.dx)
        eig[0, 0] = np.inf  # null space (constant pressure): the zero-mean solution
        self._inverse_eigenvalues = 1.0 / eig
        self.solves: list[Any] = []  # [sim, 2] (|residual|, |rhs|) per solve of the step being traced

    def __call__(self, velocity: StaggeredGrid) -> StaggeredGrid:
        sims = velocity.shape.batch
        if not sims:
            raise ValueError("the JAX projection expects a batched (sim) velocity")
        rhs = field.divergence(velocity).values.native([sims, "x", "y"])
        rhs = rhs - jnp.mean(rhs, axis=(1, 2), keepdims=True)  # closed box: only the mean-free part
        spectrum = jfft.dctn(rhs, type=2, axes=(1, 2), norm="ortho")
        pressure = jfft.idctn(spectrum * self._inverse_eigenvalues, type=2, axes=(1, 2), norm="ortho")
        residual = neumann_stencil(pressure, self.domain.dx) - rhs
        norms = [jnp.sqrt(jnp.sum(a * a, axis=(1, 2))) for a in (residual, rhs)]
        self.solves.append(jnp.stack(norms, axis=-1))
        values = math.tensor(pressure, sims, math.spatial("x,y"))
        p = self.domain.centered(values, extrapolation.ZERO_GRADIENT)
        grad = field.spatial_gradient(p, velocity.extrapolation, at="face", order=2, scheme="green-gauss")
        return (velocity - grad).with_extrapolation(velocity.extrapolation)


def _flatten(value: Any, natives: list) -> Any:
    """A phiml tensor -> a static, hashable spec, appending its natives (dims in a canonical order:
    batch first, then by name) to ``natives``. Non-uniform tensors (a staggered grid's components) are
    split along their stacking dim. Anything else is static and goes into the spec whole."""
    if not isinstance(value, math.Tensor):
        return ("static", value)
    if value.shape.is_non_uniform:
        dim = value.shape.non_uniform_shape
        return ("stack", dim, tuple(_flatten(part, natives) for part in math.unstack(value, dim)))
    order = sorted(value.shape.names, key=lambda n: (n not in value.shape.batch, n))
    natives.append(value.native(order))
    return ("dense", value.shape.only(order, reorder=True))


def _unflatten(spec: Any, natives: Iterator[Any]) -> Any:
    if spec[0] == "static":
        return spec[1]
    if spec[0] == "stack":
        return math.stack([_unflatten(part, natives) for part in spec[2]], spec[1])
    return math.tensor(next(natives), spec[1])


def _fields(values: dict[str, Any], templates: dict[str, Field], fresh: bool) -> dict[str, Any]:
    """Value tensors back into fields.

    Inside the trace (``fresh``) each field gets a deep copy of its geometry: PhiFlow caches derived grid
    data (cell centres) on the geometry object, and a cache filled while tracing would leak a tracer into
    the next call. Outside it, the template is copied and only its values swapped: ``Field()`` would
    redo a shape check (the trace did it already) that costs more than the compiled step itself.
    """
    out = {}
    for k, v in values.items():
        if k not in templates:
            out[k] = v
        elif fresh:
            out[k] = Field(copy.deepcopy(templates[k].geometry), v, templates[k].boundary)
        else:
            out[k] = copy.copy(templates[k])
            object.__setattr__(out[k], "values", v)  # Field is a frozen dataclass
    return out


def _values(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: v.values if isinstance(v, Field) else v for k, v in tree.items()}


class _CompiledStep:
    """One ``jax.jit``-compiled step of a scenario class on a domain.

    Fields go in and out as native arrays in a canonical layout (:func:`_flatten`), so the state a step
    returns hits the same compiled function as the initial state (phiml's own ``jit_compile`` keys on the
    dims order, which PhiFlow's operations change, and retraced after the first step). The step also
    returns the new state's observables (``Scenario.observables``), so kept frames need no eager JAX
    operations (each of which would compile a kernel of its own).
    """

    def __init__(self, kind: type[Scenario], domain: Domain, dt: float):
        self.project = JaxSpectralProjection(domain)
        self.templates: dict[str, Field] = {}
        self.kind, self.dt = kind, dt
        self.observable = kind.observed_dims is not None
        self._out_specs: dict[Any, Any] = {}  # input spec -> output spec, recorded while tracing
        self._step = jax.jit(self._native_step, static_argnums=0)
        self._observe = jax.jit(self._native_observe, static_argnums=0)

    def _native_step(self, spec: Any, *natives: Any) -> list:
        state, sources = _unflatten_tree(spec, iter(natives))
        fields = _fields(state, self.templates, fresh=True)
        self.project.solves.clear()
        new = self.kind.step(fields, _fields(sources, self.templates, fresh=True), self.dt, self.project)
        solves = jnp.stack(self.project.solves)  # [solve, sim, (|residual|, |rhs|)]
        self.project.solves.clear()
        observed = self.kind.observables(new) if self.observable else {}
        out: list = []
        self._out_specs[("step", spec)] = _flatten_tree((_values(new), observed), out)
        return [solves, *out]

    def _native_observe(self, spec: Any, *natives: Any) -> list:
        state = _fields(_unflatten_tree(spec, iter(natives)), self.templates, fresh=True)
        out: list = []
        self._out_specs[("observe", spec)] = _flatten_tree(self.kind.observables(state), out)
        return out

    def step(self, state: State, sources: dict[str, Any]) -> tuple[State, np.ndarray, dict[str, Any]]:
        """(new state, per-solve norms ``[solve, sim, 2]`` as numpy, the new state's observables)."""
        self.templates.update({k: v for k, v in (state | sources).items() if isinstance(v, Field)})
        natives: list = []
        spec = _flatten_tree((_values(state), _values(sources)), natives)
        solves, *out = self._step(spec, *natives)
        values, observed = _unflatten_tree(self._out_specs[("step", spec)], iter(out))
        templates = {k: v for k, v in state.items() if isinstance(v, Field)}
        return _fields(values, templates, fresh=False), np.asarray(solves), observed

    def observe(self, state: State) -> dict[str, Any]:
        self.templates.update({k: v for k, v in state.items() if isinstance(v, Field)})
        natives: list = []
        spec = _flatten_tree(_values(state), natives)
        out = self._observe(spec, *natives)
        return _unflatten_tree(self._out_specs[("observe", spec)], iter(out))


def _flatten_tree(tree: Any, natives: list) -> Any:
    """:func:`_flatten` over nested dicts and tuples."""
    if isinstance(tree, dict):
        return ("dict", tuple((k, _flatten_tree(v, natives)) for k, v in tree.items()))
    if isinstance(tree, tuple):
        return ("tuple", tuple(_flatten_tree(v, natives) for v in tree))
    return _flatten(tree, natives)


def _unflatten_tree(spec: Any, natives: Iterator[Any]) -> Any:
    if spec[0] == "dict":
        return {k: _unflatten_tree(v, natives) for k, v in spec[1]}
    if spec[0] == "tuple":
        return tuple(_unflatten_tree(v, natives) for v in spec[1])
    return _unflatten(spec, natives)


@functools.lru_cache(maxsize=8)
def compiled_step(kind: type[Scenario], domain: Domain, dt: float) -> _CompiledStep:
    """Cached per process: a dask worker compiles once per (scenario class, domain, dt) and batch size,
    and reuses the compiled step for every later batch."""
    return _CompiledStep(kind, domain, dt)


class JaxRunner:
    """``step(state, sources) -> state`` on the compiled step, checking every pressure solve it ran on
    the host (:func:`check_residuals`, the numpy path's rule), and ``observe(state)`` like
    ``Scenario.observe``."""

    def __init__(self, kind: type[Scenario], domain: Domain, dt: float, rel_tol: float, abs_tol: float):
        self.kind, self.rel_tol, self.abs_tol = kind, rel_tol, abs_tol
        self.compiled = compiled_step(kind, domain, dt)
        self._last: tuple[State, dict[str, Any]] | None = None  # the last state and its observables

    def step(self, state: State, sources: dict[str, Any]) -> State:
        new, norms, observed = self.compiled.step(state, sources)
        for residual, scale in zip(norms[..., 0], norms[..., 1], strict=True):
            check_residuals(residual, scale, self.rel_tol, self.abs_tol)
        self._last = (new, observed)
        return new

    def observe(self, state: State) -> dict[str, np.ndarray]:
        dims = self.kind.observed_dims
        if dims is None:
            return self.kind.observe(state)
        if self._last is not None and self._last[0] is state:
            observed = self._last[1]
        else:
            observed = self.compiled.observe(state)
        return {k: v.numpy(dims[k]) for k, v in observed.items()}
