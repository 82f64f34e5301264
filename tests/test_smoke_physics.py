"""Rotation utility laws on fields, the pressure solver, and scenario rotation (no dask, no storage)."""

import numpy as np
import pytest

from models.groups import c4, c4_rotation, rotate_scalar, rotate_vector
from pipelines.params import PressureSolverParams
from pipelines.smoke.levels import equivariance_errors, staggered_divergence_from_centres, undo_directions
from pipelines.smoke.pressure import SpectralProjection, neumann_laplacian
from pipelines.smoke.scenarios import BuoyantPlume, Domain
from pipelines.smoke.simulate import simulate
from tests.smoke_support import ccw_quarter_turn

RNG = np.random.default_rng(0)


def test_four_quarter_turns_are_the_identity_on_vector_fields() -> None:
    field = RNG.normal(size=(3, 2, 9, 9))
    out = field
    for _ in range(4):
        out = rotate_vector(out, c4_rotation(1), component_axis=1)
    assert np.array_equal(out, field)
    once = rotate_vector(field, c4_rotation(1), component_axis=1)
    assert not np.array_equal(once, field)


def test_rotation_utility_matches_a_quarter_turn_written_out_by_index() -> None:
    """models.groups (which builds E_0) against explicit index arithmetic, not against itself."""
    corner = np.zeros((2, 5, 5))
    corner[0, 0, 4] = 1.0  # an x-pointing vector in the bottom-right cell (row 0 is y = 0, the floor)
    turned = ccw_quarter_turn(corner, vector=True)
    assert turned[1, 4, 4] == 1.0 and np.count_nonzero(turned) == 1  # top-right cell, pointing along +y
    v = RNG.normal(size=(3, 2, 7, 7))
    s = RNG.normal(size=(3, 7, 7))
    want_v, want_s = v, s
    for k in range(1, 4):
        want_v, want_s = ccw_quarter_turn(want_v, vector=True), ccw_quarter_turn(want_s, vector=False)
        assert np.array_equal(rotate_vector(v, c4_rotation(k), component_axis=1), want_v), k
        assert np.array_equal(rotate_scalar(s, c4_rotation(k)), want_s), k


def test_vector_rotation_matches_grid_rotation_of_a_gradient() -> None:
    """grad(g . f) == g . grad(f): the component map (u, v) -> (-v, u) is the one the grid turn implies."""
    f = RNG.normal(size=(16, 16))

    def grad(s: np.ndarray) -> np.ndarray:  # centred differences on interior points, [component(x,y), y, x]
        gx = (s[1:-1, 2:] - s[1:-1, :-2]) / 2
        gy = (s[2:, 1:-1] - s[:-2, 1:-1]) / 2
        return np.stack([gx, gy])

    for k in range(4):
        r = c4_rotation(k)
        assert np.allclose(grad(rotate_scalar(f, r)), rotate_vector(grad(f), r, 0), atol=1e-12)


def test_c4_cayley_table_is_addition_mod_4() -> None:
    group = c4()
    assert np.array_equal(group.cayley, (np.arange(4)[:, None] + np.arange(4)[None, :]) % 4)


def test_dct_pressure_solve_satisfies_the_explicit_matrix() -> None:
    domain = Domain(resolution=24, size=24.0)
    proj = SpectralProjection(domain, 1e-10, 1e-10)
    rhs = RNG.normal(size=(5, 24 * 24))
    rhs -= rhs.mean(axis=1, keepdims=True)
    p = proj.solve(rhs)
    residual = neumann_laplacian(24, 1.0) @ p.T - rhs.T
    assert np.max(np.abs(residual)) < 1e-10
    assert np.allclose(p.mean(axis=1), 0, atol=1e-12)


def test_fast_path_matches_phiflow_make_incompressible() -> None:
    domain = Domain(resolution=24, size=24.0)
    scenario = BuoyantPlume(inflow_center=(12.0, 3.0), inflow_radius=2.0, buoyancy=(0.0, 0.05))
    kwargs = dict(domain=domain, steps=6, dt=1.0, keep=(6, 7))
    ours = simulate([scenario], solver=PressureSolverParams(method="dct"), backend="numpy", **kwargs)
    ref = simulate([scenario], solver=PressureSolverParams(method="scipy-direct"), backend="numpy", **kwargs)
    scale = np.max(np.abs(ref["velocity"]))
    assert scale > 1e-3
    assert np.max(np.abs(ours["velocity"] - ref["velocity"])) < 1e-8 * scale
    div, wall = staggered_divergence_from_centres(ours["velocity"][0], domain.dx)
    assert np.max(np.abs(div)) < 1e-10 and wall < 1e-10


def test_rotated_scenario_simulates_the_rotated_flow() -> None:
    """Simulating the turned setup equals turning the simulation (to solver round-off)."""
    domain = Domain(resolution=24, size=24.0)
    base = BuoyantPlume(inflow_center=(12.0, 3.0), inflow_radius=2.0, buoyancy=(0.0, 0.05))
    assert base.rotated(1, domain).inflow_center == (21.0, 12.0)
    assert base.rotated(1, domain).buoyancy == (-0.05, 0.0)
    runs = simulate(
        [base.rotated(k, domain) for k in range(4)], domain, 5, 1.0, (1, 6), PressureSolverParams()
    )
    v = runs["velocity"]  # [direction, time, component, y, x]
    assert equivariance_errors(v)["relative"] < 1e-12
    assert np.max(np.abs(undo_directions(v) - v[0][None])) < 1e-12


def test_equivariance_error_measures_asymmetry() -> None:
    v0 = RNG.normal(size=(2, 2, 8, 8))
    exact = np.stack([rotate_vector(v0, c4_rotation(k), -3) for k in range(4)])
    assert equivariance_errors(exact) == {"relative": 0.0, "symmetric": 0.0, "orbit": 0.0}
    broken = exact.copy()
    broken[2] *= 1.5
    errs = equivariance_errors(broken)
    assert errs["relative"] == pytest.approx(0.5 / 3)
    assert 0 < errs["orbit"] < 1


def test_simulation_leaves_phiml_global_settings_as_they_were() -> None:
    """float64/numpy is scoped to the run: a process (say a dask worker) keeps its own phiml settings."""
    from phiml import backend as phiml
    from phiml.backend import _backend as stacks  # the settings stacks phiml's ``with`` blocks push onto

    domain = Domain(resolution=8, size=8.0)
    scenario = BuoyantPlume(inflow_center=(4.0, 1.0), inflow_radius=1.0, buoyancy=(0.0, 0.05))
    previous = phiml.get_precision()
    phiml.set_global_precision(32)  # phiml's default; a leaked set_global_precision(64) would show
    try:
        default, backends = phiml.default_backend(), list(stacks._DEFAULT)
        out = simulate([scenario], domain, 2, 1.0, (2, 3), PressureSolverParams())
        assert out["velocity"].dtype == np.float64 and np.abs(out["velocity"]).max() > 0  # ran in float64
        assert phiml.get_precision() == 32 and stacks._PRECISION == [32]  # ... the process did not change
        assert phiml.default_backend() is default and stacks._DEFAULT == backends
        # an error mid-run unwinds the scoped settings too
        with pytest.raises(ValueError, match="one scenario class"):
            simulate([scenario, object()], domain, 1, 1.0, (0, 1), PressureSolverParams())  # type: ignore[list-item]
        assert stacks._PRECISION == [32] and stacks._DEFAULT == backends
    finally:
        phiml.set_global_precision(previous)
