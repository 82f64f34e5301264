"""Results never stale (project issue 10 §1, §5): a run's key follows its data, the simulation scratch
follows the physics, store writers never leave or clash on partial copies, and DVC params keys exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loaders.storage import StoreError, publish_store, store_digest
from pipelines import run_config
from pipelines.fit import run_key, run_training
from pipelines.params import parse_params
from pipelines.smoke import stage as smoke_stage
from tests.conftest import TINY_SMOKE, TINY_TURBULENCE, build_smoke_store
from tests.smoke_support import SMALL_SMOKE, small_params

REPO = Path(__file__).resolve().parent.parent

TRAIN = {
    "models": ["cnn", "e2cnn"],
    "seeds": [0],
    "hparams": {"cnn": {"hidden": 4}, "e2cnn": {"hidden": 2}},
    "optimiser": {"max_epochs": 1, "early_epoch": 1, "batch_size": 4, "max_train_batches": 1},
}


def _train(**over: object):
    landscape = {"models": {"smoke": [], "turbulence": []}}
    return parse_params({"train": {"smoke": {**TRAIN, **over}}, "landscape": landscape})


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("staleness")
    (root / "a").mkdir(), (root / "b").mkdir()
    other = parse_params({"smoke": {**TINY_SMOKE, "buoyancy_unit": 0.008}, "turbulence": TINY_TURBULENCE})
    return build_smoke_store(root / "a"), build_smoke_store(root / "b", other)  # same layout, other physics


def test_run_key_follows_the_data_and_only_the_runs_own_settings(stores: tuple[Path, Path]) -> None:
    a, b = stores
    assert store_digest(a) != store_digest(b) and store_digest(a) == store_digest(a)

    def key(params, data: Path = a, model: str = "cnn", seed: int = 0) -> str:
        section = params.train.smoke
        hp = {**section.hparams.get(model, {})}
        return run_key("smoke", model, seed, section, hp, data)

    base = key(_train())
    assert key(_train(), data=b) != base  # rebuilt store, other content
    assert key(_train(hparams={"cnn": {"hidden": 4}, "e2cnn": {"hidden": 3}})) == base  # another model's
    assert key(_train(seeds=[0, 1, 2])) == base  # one more seed in the list
    assert key(_train(models=["cnn"])) == base
    assert key(_train(hparams={"cnn": {"hidden": 5}, "e2cnn": {"hidden": 2}})) != base  # its own
    assert key(_train(optimiser={**TRAIN["optimiser"], "lr": 2e-3})) != base
    assert key(_train(window_stride=2)) != base and key(_train(normalise="standard")) != base
    assert key(_train(residual=False)) != base  # the task's form: never resume the other form's checkpoint
    assert key(_train(), seed=1) != base and key(_train(), model="e2cnn") != base
    section = _train().train.smoke
    assert run_key("smoke", "cnn", 0, section, {}, a, "cpu") != run_key(
        "smoke", "cnn", 0, section, {}, a, "auto"
    )


def test_training_starts_over_on_new_data_and_resumes_otherwise(
    stores: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a, b = stores
    runs, metrics = tmp_path / "runs", tmp_path / "metrics"
    first = run_training("smoke", "cnn", 0, _train(), a, runs, metrics)
    capsys.readouterr()
    # another model's hparams and another seed: the same run, nothing to train
    other = _train(seeds=[0, 1], hparams={"cnn": {"hidden": 4}, "e2cnn": {"hidden": 3}})
    again = run_training("smoke", "cnn", 0, other, a, runs, metrics)
    assert "resuming" in capsys.readouterr().out and again["test_rmse"] == first["test_rmse"]
    # the store rebuilt with other content: the old model must not be resumed on it
    fresh = run_training("smoke", "cnn", 0, _train(), b, runs, metrics)
    out = capsys.readouterr().out
    assert "resuming" not in out and "starting over" in out
    assert fresh["epochs_run"] == 1 and fresh["test_rmse"] != first["test_rmse"]  # trained on the new data


def test_the_scratch_key_follows_the_physics_only() -> None:
    base = small_params(levels=[0], solver_symmetry_check=False).smoke
    key = smoke_stage.scratch_key
    layout = {"output_frames": 1, "splits": {"train": 0.34, "valid": 0.33, "test": 0.33}, "dtype": "float64"}
    for name, value in layout.items():
        assert key(small_params(levels=[0], solver_symmetry_check=False, **{name: value}).smoke) == key(base)
    for name, value in {"buoyancy_unit": 0.006, "resolution": 16, "steps": 13, "dt": 0.5}.items():
        changed = small_params(levels=[0], solver_symmetry_check=False, **{name: value}).smoke
        assert key(changed) != key(base), name


@pytest.mark.slow  # one real (tiny) PhiFlow run on a LocalCluster: ~20 s on a shared CPU
def test_a_layout_change_reuses_the_kept_simulations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = small_params(levels=[0], solver_symmetry_check=False).smoke
    scratch, compute = tmp_path / "scratch", parse_params({"compute": {"n_workers": 1}}).compute
    smoke_stage.build_smoke_dataset(base, compute, tmp_path / "a.zarr", None, scratch)
    calls: list[int] = []

    def no_simulation(p, c, batches):  # noqa: ANN001, ANN202 - stands in for the dask batches
        calls.append(len(batches))
        raise RuntimeError("simulation requested")

    monkeypatch.setattr(smoke_stage, "run_batches", no_simulation)
    relayout = small_params(levels=[0], solver_symmetry_check=False, output_frames=1).smoke
    smoke_stage.build_smoke_dataset(relayout, compute, tmp_path / "b.zarr", None, scratch)
    assert calls == []  # the new store came from the kept simulations
    physics = small_params(levels=[0], solver_symmetry_check=False, buoyancy_unit=0.006).smoke
    with pytest.raises(RuntimeError, match="simulation requested"):
        smoke_stage.build_smoke_dataset(physics, compute, tmp_path / "c.zarr", None, scratch)
    assert calls and not (tmp_path / "c.zarr").exists()


def test_partials_of_dead_writers_are_removed_and_live_ones_refused(tmp_path: Path) -> None:
    import xarray as xr

    ds = xr.Dataset({"x": ("i", [1.0, 2.0])})
    target = tmp_path / "s.zarr"
    code = "import os; print(os.getpid())"
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    stale = tmp_path / f".s.zarr.partial-{int(dead.stdout)}"
    (stale / "junk").mkdir(parents=True)
    publish_store(ds, target)
    assert not stale.exists() and store_digest(target)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".s.zarr.partial-{writer.pid}"
        live.mkdir()
        with pytest.raises(StoreError, match=f"another process \\(pid {writer.pid}"):
            publish_store(ds, target, overwrite=True)
        assert live.is_dir() and store_digest(target)  # neither the other writer's copy nor the store touched
    finally:
        writer.kill()
        writer.wait()


def test_report_without_run_metrics_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pipelines.report import main

    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    argv = ["--params", str(params), "--metrics-dir", str(tmp_path / "wrong"), "--out", str(tmp_path / "r")]
    assert main(argv) == 1
    assert "no run metrics under" in capsys.readouterr().err


def _dvc_param_keys() -> set[str]:
    """Every params key a stage declares, with list-valued matrix items (``${item.x}``) expanded (a matrix
    list may come from params.yaml, as ``${datasets}``)."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())  # DVC's vars: `${datasets}` is a list there
    keys = set()
    for stage in spec["stages"].values():
        matrix = {k: params[v[2:-1]] if isinstance(v, str) and v.startswith("${") else v
                  for k, v in stage.get("matrix", {}).items()}  # fmt: skip
        items = {k: v for k, v in matrix.items() if isinstance(v, list)}
        for key in (k for k in stage.get("params", []) if isinstance(k, str)):
            expanded = [key]
            for name, values in items.items():
                expanded = [e.replace(f"${{item.{name}}}", str(v)) for e in expanded for v in values]
            keys.update(expanded)
    return keys


@pytest.mark.parametrize("params_file", ["params.yaml", "params.study.yaml", "params.cpu.yaml"])
def test_every_dvc_params_key_exists_in_the_params_files(params_file: str) -> None:
    raw = yaml.safe_load((REPO / params_file).read_text())
    for key in _dvc_param_keys():
        node = raw
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"dvc.yaml's {key} is missing in {params_file}"
            node = node[part]


def test_train_stage_declares_its_matrix_but_no_whole_section() -> None:
    # the train stage runs the whole matrix (pipelines/matrix.py), so the lists are its params; another
    # seed or model does not retrain the rest: their stamps skip them (tests/test_cluster_matrix.py)
    keys = _dvc_param_keys()
    train = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]["params"])
    assert not {"train", "train.smoke", "train.turbulence"} & train, train
    assert {"train.smoke.seeds", "train.smoke.models", "train.turbulence.seeds"} <= train
    assert {"train.smoke.optimiser", "train.smoke.levels", "train.turbulence.optimiser"} <= keys
    assert SMALL_SMOKE["output_frames"] == 2  # the small config the scratch test relies on


def _declares(listed: list[str], key: str) -> bool:
    """Whether a stage's params list ``key`` itself or a section holding it."""
    return any(key == item or key.startswith(item + ".") for item in listed)


@pytest.mark.parametrize("stage", ["train", "landscape"])
def test_dvc_declares_every_param_and_code_path_of_a_runs_identity(stage: str) -> None:
    """One staleness truth: what pipelines/run_config.py puts into a run's identity (the stamp the matrix
    compares and the key its checkpoints record) is what makes DVC rerun the stage."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    listed = [k for k in spec["params"] if isinstance(k, str)]
    keys = {k for dataset in ("smoke", "turbulence") for k in run_config.run_params(dataset)}
    assert "compute.device" in keys
    assert [k for k in sorted(keys) if not _declares(listed, k)] == []
    code = run_config.TRAIN_CODE + (run_config.LANDSCAPE_CODE if stage == "landscape" else ())
    assert sorted(set(code) - {str(d) for d in spec["deps"]}) == []


def test_the_identity_reads_only_the_keys_it_names() -> None:
    """Changing any other train.<dataset> key leaves every run's identity as it was."""
    data = REPO / "tests"  # any folder: store_digest is replaced below

    def identity(**over: object) -> dict:
        section = _train(**over).train.smoke
        return run_config.run_identity("smoke", "cnn", 0, section, {}, data, "cpu")

    from unittest import mock

    with mock.patch.object(run_config, "store_digest", lambda _: "data"):
        base = identity()
        named = {k.split(".")[-1] for k in run_config.run_params("smoke") if k.startswith("train.smoke.")}
        # another level in the sweep (or a model trained at the others) leaves the first level's runs alone
        others = {"upsampler": "trilinear", "seeds": [0, 1], "models": ["cnn"], "levels": [0, 5],
                  "sweep_models": ["cnn"]}  # fmt: skip
        assert not named & (set(others) - {"levels"})
        for field, value in others.items():
            assert identity(**{field: value}) == base, field
        changed = {"levels": [5], "residual": False, "window_stride": 2, "valid_stride": 7,
                   "train_rollout": 1}  # fmt: skip
        for field, value in changed.items():
            assert field in named and identity(**{field: value}) != base, field
