"""Turbulence stage: solver physics, block means and their symmetry, the task, the synthetic stage."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from loaders.storage import open_store, read_provenance
from models.groups import octahedral, rotate_vector
from pipelines.params import ComputeParams, ParamsError, TurbulenceParams, load_params, parse_params
from pipelines.turbulence.cutouts import JHTDBSource
from pipelines.turbulence.downsample import block_mean, block_mean_dask, stride_sample
from pipelines.turbulence.solver import SolverConfig, SpectralSolver, initial_condition
from pipelines.turbulence.sources import SOURCES, source_for
from pipelines.turbulence.spectra import field_spectrum, relative_divergence, to_fourier
from pipelines.turbulence.stage import build_turbulence_dataset
from pipelines.turbulence.synthetic import SyntheticSource
from pipelines.turbulence.task import check_plan, plan_samples

ROOT = Path(__file__).resolve().parent.parent
O = octahedral()


def tiny_params(**over: object) -> TurbulenceParams:
    base = {
        "hr_resolution": 16,
        "lr_factor": 4,
        "splits": {"train": 4, "valid": 1, "test": 1},
        "spectrum_fit_range": [2.0, 5.0],
        "synthetic": {"resolution": 32, "spinup_time": 0.3, "dt": 0.03},
    }
    return parse_params({"turbulence": {**base, **over}}).turbulence


# --- downsampling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_block_mean_is_the_mean_of_each_block(factor: int) -> None:
    a = np.random.default_rng(0).standard_normal((2, 3, 8, 8, 8)).astype(np.float32)
    m = 8 // factor
    expected = a.reshape(2, 3, m, factor, m, factor, m, factor).mean(axis=(3, 5, 7))
    np.testing.assert_allclose(block_mean(a, factor), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="does not divide"):
        block_mean(a[..., :7], 2)


def test_dask_path_matches_numpy_with_unaligned_chunks() -> None:
    a = np.random.default_rng(1).standard_normal((2, 3, 16, 16, 16)).astype(np.float32)
    lazy = da.from_array(a, chunks=(1, 3, 6, 16, 10))  # chunks that are not multiples of the factor
    out = block_mean_dask(lazy, 4)
    assert out.chunks[0] == (1, 1)
    np.testing.assert_allclose(out.compute(), block_mean(a, 4), rtol=1e-6, atol=1e-6)


def test_downsampling_commutes_with_the_24_cube_rotations() -> None:
    # integer values: every sum is exact in float32 whatever the order, so equality is bitwise
    a = np.random.default_rng(2).integers(-64, 64, (3, 16, 16, 16)).astype(np.float32)
    for factor in (2, 4):
        for R in O.matrices:
            rotated_then_filtered = block_mean(rotate_vector(a, R, component_axis=0), factor)
            filtered_then_rotated = rotate_vector(block_mean(a, factor), R, component_axis=0)
            np.testing.assert_array_equal(rotated_then_filtered, filtered_then_rotated)
    # and to round-off for a real-valued field, through the dask path
    b = np.random.default_rng(3).standard_normal((3, 16, 16, 16)).astype(np.float32)
    for R in O.matrices[::5]:
        lhs = block_mean_dask(da.from_array(rotate_vector(b, R, 0), chunks=(3, 8, 16, 16)), 4).compute()
        np.testing.assert_allclose(lhs, rotate_vector(block_mean(b, 4), R, 0), rtol=1e-5, atol=1e-6)


def test_stride_sampling_aliases_and_box_filter_does_not() -> None:
    # a single mode above the coarse Nyquist: stride sampling folds it onto a resolved wavenumber
    n, factor = 32, 4
    x = np.arange(n) * 2 * np.pi / n
    u = np.zeros((3, n, n, n))
    u[1] = np.sin(7 * x)[None, None, :]  # k = 7 > coarse Nyquist 4
    _, e_stride = field_spectrum(stride_sample(u, factor))
    _, e_box = field_spectrum(block_mean(u, factor, np.float64))
    assert np.isclose(e_stride[1], 0.25)  # all the energy, <sin^2> / 2, reappears at k = 8 - 7 = 1
    assert e_box[1] < 0.05 * e_stride[1]  # the box filter damps the folded mode by its transfer function


# --- solver -------------------------------------------------------------------------------------------


def _solver(uh: np.ndarray, n: int = 16) -> SpectralSolver:
    return SpectralSolver(SolverConfig(n, 0.02, 0.02, 0.1, 2.0), uh)


def test_solver_stays_divergence_free_and_balances_energy() -> None:
    s = _solver(initial_condition(16, 0.02, 0.1, 0.5, seed=4))
    e0 = s.energy()
    budget = 0.0
    for _ in range(20):
        before = s.dissipation()
        s.step()
        budget += 0.5 * (before + s.dissipation())
    assert relative_divergence(s.uh, s.shape) < 1e-14
    assert relative_divergence(to_fourier(s.velocity().astype(np.float32)), s.shape) < 1e-6
    # dE/dt = P - epsilon: the nonlinear term only moves energy between scales
    de = s.energy() - e0
    expected = 20 * 0.02 * 0.1 - 0.02 * budget
    assert abs(de - expected) < 0.02 * abs(expected) + 1e-4, (de, expected)


def test_solver_commutes_with_cube_rotations() -> None:
    u0 = _solver(initial_condition(16, 0.02, 0.1, 0.5, seed=5)).velocity()
    reference = _solver(to_fourier(u0))
    for _ in range(3):
        reference.step()
    for R in O.matrices[[1, 7, 13, 22]]:
        s = _solver(to_fourier(rotate_vector(u0, R, component_axis=0)))
        for _ in range(3):
            s.step()
        np.testing.assert_allclose(s.velocity(), rotate_vector(reference.velocity(), R, 0), atol=1e-11)


# --- task and params ----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["random", "time_blocks"])
def test_sample_plan_splits_share_no_time_step(strategy: str) -> None:
    counts = {"train": 40, "valid": 5, "test": 5}
    plan = plan_samples(1, 1024, counts, 3, seed=123, strategy=strategy)
    check_plan(plan)
    splits = plan.splits()
    assert {k: len(v) for k, v in splits.items()} == counts
    steps = {
        name: {int(plan.time_index[p]) for c in cs for p in plan.window_positions(c)}
        for name, cs in splits.items()
    }
    assert not (
        steps["train"] & steps["valid"] or steps["train"] & steps["test"] or steps["valid"] & steps["test"]
    )
    assert plan.time_index.min() >= 1 and plan.time_index.max() <= 1024
    again = plan_samples(1, 1024, counts, 3, seed=123, strategy=strategy)
    assert again.splits() == splits and np.array_equal(again.time_index, plan.time_index)
    if strategy == "time_blocks":
        assert max(splits["train"]) < min(splits["valid"]) <= max(splits["valid"]) < min(splits["test"])
    with pytest.raises(ValueError, match="disjoint windows"):
        plan_samples(1, 100, counts, 3, seed=0)


def test_repository_params_and_bad_values() -> None:
    p = load_params(ROOT / "params.yaml").turbulence
    assert p.source == "synthetic" and p.synthetic.resolution % p.hr_resolution == 0
    bad = {
        "lr_factor=3 does not divide": {"lr_factor": 3},
        "does not divide synthetic.resolution": {"hr_resolution": 48},
        "must be odd": {"window": 2},
        "lies outside the domain": {"source": "jhtdb", "jhtdb": {"origin": [1, 1025, 1]}},
        "larger than the domain": {"source": "jhtdb", "hr_resolution": 128},
        "too few": {"source": "jhtdb", "jhtdb": {"time_range": [10, 40]}},
        "set factor: 1": {"source": "jhtdb", "jhtdb": {"mode": "subcube"}},
        "exceeds": {"source": "jhtdb", "hr_resolution": 16, "jhtdb": {"mode": "box", "factor": 32}},
    }
    for message, section in bad.items():
        with pytest.raises(ParamsError, match=message) as err:
            parse_params({"turbulence": section})
        assert "turbulence" in str(err.value)
    with pytest.raises(ParamsError, match=r"turbulence\.jhtdb\.bogus"):
        parse_params({"turbulence": {"jhtdb": {"bogus": 1}}})


# --- sources ------------------------------------------------------------------------------------------


def test_source_for_picks_the_named_source_and_refuses_unknown_names() -> None:
    assert isinstance(source_for(tiny_params()), SyntheticSource)
    assert isinstance(source_for(tiny_params(source="jhtdb", hr_resolution=16)), JHTDBSource)
    assert set(SOURCES) == {"synthetic", "jhtdb"}  # the params' Literal and the registry agree
    bad = tiny_params().model_copy(update={"source": "lidar"})  # past validation, as a future key might be
    with pytest.raises(ValueError, match="turbulence.source: unknown source 'lidar'"):
        source_for(bad)


def test_jhtdb_source_geometry_and_words_need_no_network() -> None:
    p = tiny_params(source="jhtdb", jhtdb={"mode": "stride", "factor": 16, "time_range": [1, 60]})
    src = source_for(p)
    plan = src.plan()
    times, dt = src.physical_times(plan)
    np.testing.assert_allclose(times, (plan.time_index - 1) * p.jhtdb.dt)  # JHTDB index 1 is t = 0
    assert dt == p.jhtdb.dt and plan.time_index.min() >= 1 and plan.time_index.max() <= 60
    assert src.hr_filter(1) == {
        "kind": "stride_sample", "factor": 16, "of": "JHTDB native 1024^3 grid", "jhtdb_mode": "stride"
    }  # fmt: skip
    assert src.mode == "stride" and src.viscosity == p.jhtdb.viscosity
    assert src.extent() == pytest.approx(16 * 16 * 2 * np.pi / 1024)  # 16 points every 16th of 1024
    words = src.description()
    assert words.startswith("**Source: JHTDB**") and "mode `stride` with factor 16" in words
    assert "\n\n" not in words  # one paragraph, as the cards and the report quote it
    synthetic = source_for(tiny_params())
    assert synthetic.mode == "n/a" and synthetic.extent() == 2 * np.pi
    assert "NOT JHTDB" in synthetic.description() and "at 32^3" in synthetic.description()


# --- the synthetic stage end to end -------------------------------------------------------------------


def test_synthetic_stage_builds_a_complete_store(tmp_path: Path) -> None:
    p = tiny_params()
    out = tmp_path / "turbulence.zarr"
    result = build_turbulence_dataset(
        p, ComputeParams(), out, tmp_path / "m.json", tmp_path / "spec.png", tmp_path / "modes.png",
        scratch_root=tmp_path / "scratch", progress=False,
    )  # fmt: skip
    ds = open_store(out, verify=True)
    assert ds.hr.dims == ("time", "component", "z", "y", "x") and ds.hr.shape == (18, 3, 16, 16, 16)
    assert ds.lr.dims == ("time", "component", "z_lr", "y_lr", "x_lr") and ds.lr.shape == (18, 3, 4, 4, 4)
    assert ds.hr.encoding["chunks"] == (1, 3, 16, 16, 16)
    assert list(ds.component.values) == ["u_x", "u_y", "u_z"]
    np.testing.assert_allclose(ds.x.values, (np.arange(16) * 2 + 0.5) * 2 * np.pi / 32)
    np.testing.assert_allclose(ds.lr.values, block_mean(ds.hr.values, 4), rtol=1e-6, atol=1e-6)
    assert ds.attrs["source"] == "synthetic" and "NOT JHTDB" in ds.attrs["dataset_card"]
    # one description of the source: the stored attr is the source's text, and the stored card quotes it
    description = source_for(p).description()
    assert ds.attrs["source_description"] == description and description in ds.attrs["dataset_card"]
    assert json.loads(ds.attrs["filter"])["hr"] == {"kind": "block_mean", "factor": 2, "of": "source field"}
    splits = json.loads(ds.attrs["splits"])
    assert sorted(c for v in splits.values() for c in v) == [1, 4, 7, 10, 13, 16]
    times = ds.time.values.reshape(-1, 3)  # one row per sample window
    assert ds.attrs["window"] == 3 and np.allclose(np.diff(times, axis=1), 0.03)
    assert np.all(times[1:, 0] - times[:-1, -1] >= 0.25 * 2.35 - 1e-9)  # windows spaced by 0.25 T_L
    prov = read_provenance(ds)
    assert prov["params"]["synthetic"]["resolution"] == 32 and "xarray" in prov["versions"]
    assert result["divergence_relative_max_float64"] < 1e-13
    assert -3.0 < result["spectrum_slope"] < -1.0
    assert result["isotropy"]["longitudinal_gradient_max_rel_dev"] < 0.3
    modes = result["mode_band_energy_ratio"]
    assert modes["stride (every k-th point)"] > 1.0 > modes["box (block mean)"]  # aliasing vs filtering
    assert json.loads((tmp_path / "m.json").read_text())["n_samples"] == 6
    assert (tmp_path / "spec.png").stat().st_size > 10_000 and (tmp_path / "modes.png").is_file()
    assert not any((tmp_path / "scratch").rglob("*.done"))  # scratch cleared after success
    with pytest.raises(Exception, match="already exists"):
        build_turbulence_dataset(p, ComputeParams(), out, scratch_root=tmp_path / "scratch")


@pytest.mark.slow
def test_default_params_stage(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml")
    result = build_turbulence_dataset(
        params.turbulence, params.compute, tmp_path / "t.zarr", scratch_root=tmp_path / "s", progress=False
    )
    ds = xr.open_zarr(tmp_path / "t.zarr")
    p = params.turbulence
    assert ds.hr.shape[-1] == p.hr_resolution and ds.lr.shape[-1] == p.hr_resolution // p.lr_factor
    assert result["physics_window_mean"]["k_max_eta"] > 0.9


@pytest.mark.parametrize("strategy", ["random", "time_blocks"])
def test_spaced_plan_keeps_every_evaluation_window_the_stated_time_from_training(strategy: str) -> None:
    from pipelines.turbulence.task import min_time_gap, spacing_gap, synthetic_span

    step_dt, turnover, fraction = 0.015, 2.35, 0.25
    gap = spacing_gap(fraction, turnover, step_dt)
    assert gap == 39 and (gap + 1) * step_dt >= fraction * turnover > gap * step_dt  # the smallest such gap
    counts = {"train": 8, "valid": 2, "test": 2}
    plan = plan_samples(0, synthetic_span(12, 3, gap) - 1, counts, 3, 123, strategy, draw=False, gap=gap)
    check_plan(plan)  # consecutive windows, no step shared between splits
    steps = {name: set() for name in ("train", "valid", "test")}
    for c, name in zip(plan.centre, plan.split, strict=True):
        steps[name] |= set(plan.time_index[plan.window_positions(int(c))].tolist())
    for name in ("valid", "test"):
        assert not steps[name] & steps["train"]
        assert min_time_gap(plan, "train", name) * step_dt >= fraction * turnover
        closest = min(abs(a - b) for a in steps[name] for b in steps["train"])
        assert closest == min_time_gap(plan, "train", name)
    if strategy == "time_blocks":
        assert max(steps["train"]) < min(steps["valid"]) and max(steps["valid"]) < min(steps["test"])


def test_unspaced_consecutive_windows_are_one_step_apart() -> None:
    from pipelines.turbulence.task import min_time_gap

    plan = plan_samples(0, 35, {"train": 8, "valid": 2, "test": 2}, 3, 123, "random", draw=False)
    assert min(min_time_gap(plan, "train", s) for s in ("valid", "test")) == 1  # the leak the gap removes


def test_nearest_train_distance_is_the_relative_l2_to_the_closest_training_target() -> None:
    from pipelines.turbulence.task import nearest_train_distance

    plan = plan_samples(0, 11, {"train": 2, "valid": 1, "test": 1}, 3, 0, "time_blocks", draw=False)
    base = np.ones((3, 2, 2, 2))
    targets = {1: base * 2.0, 4: base * 3.0, 7: base * 4.0, 10: base * 10.0}  # centre position -> hr
    out = nearest_train_distance(plan, lambda c: targets[c])
    assert out["valid"] == {"min": 0.25, "median": 0.25, "count": 1}  # |4 - 3| / 4
    assert out["test"]["min"] == pytest.approx(0.7)  # |10 - 3| / 10
