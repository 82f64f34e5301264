"""The smoke simulation on PhiFlow's JAX backend (the default) against the numpy fallback."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pipelines.params import PressureSolverParams, SmokeParams
from pipelines.smoke.pressure import PressureSolveError, neumann_laplacian
from pipelines.smoke.scenarios import BuoyantPlume, Domain
from pipelines.smoke.simulate import simulate
from tests.smoke_support import SMALL_SMOKE

DOMAIN = Domain(resolution=16, size=16.0)
PLUMES = [BuoyantPlume(inflow_center=(8.0, 3.0), inflow_radius=2.0, buoyancy=(0.0, b)) for b in (0.03, 0.06)]
# both backends solve the same DCT system exactly; what is left is round-off in a different operation
# order, amplified over the steps: measured 5e-15 relative here, 5e-13 relative at 64 x 64 after 61 steps
AGREEMENT = 1e-9  # allowed max |jax - numpy|, relative to max |u|


def run(backend: str, **kwargs: object) -> dict[str, np.ndarray]:
    args = dict(domain=DOMAIN, steps=8, dt=1.0, keep=(0, 9), solver=PressureSolverParams(), backend=backend)
    return simulate(PLUMES, **{**args, **kwargs})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def both() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return run("jax"), run("numpy")


def test_jax_backend_matches_the_numpy_fallback(both: tuple[dict, dict]) -> None:
    jax, numpy = both
    for name in ("velocity", "smoke"):
        assert jax[name].shape == numpy[name].shape == (2, 9, *numpy[name].shape[2:])
        assert jax[name].dtype == np.float64
        scale = float(np.max(np.abs(numpy[name])))
        assert scale > 1e-3  # the plumes moved: the comparison is not of zeros
        assert float(np.max(np.abs(jax[name] - numpy[name]))) <= AGREEMENT * scale, name
    assert not np.array_equal(jax["velocity"][0], jax["velocity"][1])  # two plumes, not one copied


def test_jax_backend_is_deterministic(both: tuple[dict, dict]) -> None:
    again = run("jax")
    for name in ("velocity", "smoke"):
        assert np.array_equal(again[name], both[0][name])


def test_jax_stencil_is_the_sparse_neumann_laplacian() -> None:
    """The residual check under jit applies the same operator as the numpy path's sparse matrix."""
    from pipelines.smoke.jax_step import neumann_stencil

    p = np.random.default_rng(1).normal(size=(3, 7, 7))
    want = (neumann_laplacian(7, 0.5) @ p.reshape(3, -1).T).T.reshape(3, 7, 7)
    assert np.allclose(np.asarray(neumann_stencil(p, 0.5)), want, rtol=0, atol=1e-12)


def test_every_jitted_pressure_solve_is_checked() -> None:
    """A tolerance no solve can meet fails the run, on the first step, from inside the compiled step."""
    strict = PressureSolverParams(rel_tol=1e-300, abs_tol=1e-300)
    with pytest.raises(PressureSolveError, match="missed its tolerance"):
        run("jax", steps=1, keep=(0, 2), solver=strict)


def test_jax_backend_takes_the_dct_solver_only() -> None:
    with pytest.raises(ValueError, match="smoke.backend: numpy"):
        run("jax", solver=PressureSolverParams(method="scipy-direct"))
    with pytest.raises(ValidationError, match="backend=jax runs the dct pressure solver only"):
        SmokeParams(**SMALL_SMOKE, solver={"method": "CG"})
    assert SmokeParams(**SMALL_SMOKE, solver={"method": "CG"}, backend="numpy").backend == "numpy"
    assert SmokeParams(**SMALL_SMOKE).backend == "jax"
