"""Pressure projection for a closed box, with a convergence check on every solve.

``SpectralProjection`` exploits that the pressure matrix of a closed, obstacle-free box never changes
and is diagonalised exactly by the type-II discrete cosine transform: one batched DCT, a division by the
known eigenvalues (the zero mode, the matrix's null space, is set to zero mean) and one inverse DCT solve
every simulation of a batch at once. It is a direct solver, exact up to round-off. The divergence and
gradient operators are PhiFlow's own, so the result matches ``fluid.make_incompressible`` to solver
round-off (benchmarks/smoke_throughput.py checks this on every run), and every solve's residual is
checked against the explicit sparse matrix.

``PhiFlowProjection`` is the reference path through ``fluid.make_incompressible`` with an explicit
``Solve``; PhiFlow raises on non-convergence itself.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.sparse as sp
from phi import field, math
from phi.flow import Solve, StaggeredGrid, extrapolation, fluid

from pipelines.params import PressureSolverParams
from pipelines.smoke.scenarios import Domain


class PressureSolveError(RuntimeError):
    """A pressure solve missed its tolerance: the simulation is not trustworthy."""


def neumann_laplacian(n: int, dx: float) -> sp.csr_matrix:
    """Five-point Laplacian on an n x n cell grid with zero-gradient (closed-wall) boundaries."""
    diag = np.full(n, -2.0)
    diag[0] = diag[-1] = -1.0
    d1 = sp.diags([np.ones(n - 1), diag, np.ones(n - 1)], [-1, 0, 1])
    eye = sp.identity(n)
    return ((sp.kron(eye, d1) + sp.kron(d1, eye)) / dx**2).tocsr()


def neumann_eigenvalues(n: int, dx: float) -> np.ndarray:
    """Eigenvalues of :func:`neumann_laplacian` in the DCT-II basis, shape (n, n)."""
    lam = -4.0 * np.sin(np.pi * np.arange(n) / (2 * n)) ** 2 / dx**2
    return lam[:, None] + lam[None, :]


class SpectralProjection:
    """Batched pressure projection by a DCT Poisson solve (closed, obstacle-free box)."""

    def __init__(self, domain: Domain, rel_tol: float, abs_tol: float):
        n = domain.resolution
        self.domain = domain
        self.rel_tol, self.abs_tol = rel_tol, abs_tol
        self.laplacian = neumann_laplacian(n, domain.dx)
        eig = neumann_eigenvalues(n, domain.dx)
        eig[0, 0] = np.inf  # null space (constant pressure): pick the zero-mean solution
        self._inverse_eigenvalues = 1.0 / eig
        self.max_relative_residual = 0.0

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """Solve ``laplacian @ p = rhs`` for a batch of mean-free right-hand sides ``[sim, n*n]``."""
        n = self.domain.resolution
        spectrum = scipy.fft.dctn(rhs.reshape(-1, n, n), type=2, axes=(1, 2), norm="ortho")
        p = scipy.fft.idctn(spectrum * self._inverse_eigenvalues, type=2, axes=(1, 2), norm="ortho")
        return p.reshape(rhs.shape)

    def __call__(self, velocity: StaggeredGrid) -> StaggeredGrid:
        div = field.divergence(velocity)
        sims = velocity.shape.batch
        rhs = div.values.numpy([sims, "x,y"]) if sims else div.values.numpy("x,y").reshape(1, -1)
        rhs = rhs - rhs.mean(axis=1, keepdims=True)  # closed box: only the mean-free part is solvable
        pressure = self.solve(rhs)
        self._check(pressure, rhs)
        n = self.domain.resolution
        values = math.tensor(pressure.reshape(-1, n, n), sims or math.batch(sim=1), math.spatial("x,y"))
        if not sims:
            values = values.sim[0]
        p = self.domain.centered(values, extrapolation.ZERO_GRADIENT)
        grad = field.spatial_gradient(p, velocity.extrapolation, at="face", order=2, scheme="green-gauss")
        return (velocity - grad).with_extrapolation(velocity.extrapolation)

    def _check(self, pressure: np.ndarray, rhs: np.ndarray) -> None:
        residual = np.linalg.norm(self.laplacian @ pressure.T - rhs.T, axis=0)
        scale = np.linalg.norm(rhs, axis=1)
        relative = check_residuals(residual, scale, self.rel_tol, self.abs_tol)
        self.max_relative_residual = max(self.max_relative_residual, relative)


def check_residuals(residual: np.ndarray, scale: np.ndarray, rel_tol: float, abs_tol: float) -> float:
    """Raise unless every solve of a batch met ``|residual| <= max(abs_tol, rel_tol * |rhs|)``; both
    backends use this rule. Returns the largest relative residual."""
    allowed = np.maximum(abs_tol, rel_tol * scale)
    if not np.all(np.isfinite(residual)) or np.any(residual > allowed):
        worst = int(np.argmax(np.where(np.isfinite(residual), residual / allowed, np.inf)))
        raise PressureSolveError(
            f"pressure solve missed its tolerance in simulation {worst}: "
            f"|residual|={residual[worst]:.3e} > {allowed[worst]:.3e}; "
            "the flow may have blown up (check buoyancy and dt)"
        )
    return float(np.max(residual / np.maximum(scale, 1e-300)))


class PhiFlowProjection:
    """``fluid.make_incompressible`` with an explicit solver (the reference path)."""

    def __init__(self, method: str, rel_tol: float, abs_tol: float):
        self.solve = Solve(f"scipy-{method}" if method == "direct" else method, rel_tol, abs_tol)

    def __call__(self, velocity: StaggeredGrid) -> StaggeredGrid:
        projected, _ = fluid.make_incompressible(velocity, (), self.solve)
        return projected


def make_projection(params: PressureSolverParams, domain: Domain) -> SpectralProjection | PhiFlowProjection:
    if params.method == "dct":
        return SpectralProjection(domain, params.rel_tol, params.abs_tol)
    method = "direct" if params.method == "scipy-direct" else params.method
    return PhiFlowProjection(method, params.rel_tol, params.abs_tol)
