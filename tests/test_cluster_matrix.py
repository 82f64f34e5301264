"""Issue 12 §2 and issue 21 §1: the train and landscape matrix gives bitwise the same results however it
runs: one after another in the stage's process (``n_workers: 1``), on the default LocalCluster of two worker
processes (no scheduler address), or on a real dask cluster (`dask scheduler` + two `dask worker --nthreads
1` processes on 127.0.0.1); every run's torch threads come from params, not from the process. GPU runs ask
the scheduler for a GPU worker resource."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from pipelines.fit import train_matrix
from pipelines.landscape import landscape_matrix
from pipelines.matrix import Job, in_process, resources_for, run_matrix
from pipelines.params import ComputeParams, StudyParams, parse_params
from tests.bitwise import outputs, same
from tests.conftest import TINY_SMOKE, TINY_TURBULENCE
from tests.dask_cluster import dask_cluster

REPO = Path(__file__).resolve().parent.parent
OPTIMISER = {"lr": 1e-3, "batch_size": 4, "max_epochs": 1, "early_epoch": 1, "max_train_batches": 2}


def _params(address: str | None = None, n_workers: int = 2) -> StudyParams:
    return parse_params({
        "compute": {"device": "cpu", "scheduler_address": address, "n_workers": n_workers,
                    "threads_per_worker": 1},
        "smoke": TINY_SMOKE,
        "turbulence": TINY_TURBULENCE,
        "train": {"smoke": {"models": ["cnn"], "seeds": [0, 1], "window_stride": 2,
                            "hparams": {"cnn": {"hidden": 4}}, "optimiser": OPTIMISER}},
        "landscape": {
            "models": {"smoke": ["cnn"], "turbulence": []}, "checkpoints": ["best"],
            "subset_fraction": 0.01, "subset_min_samples": 2, "subset_batch_size": 2, "directions": 1,
            "displacements": [0.5], "top_k": 1,
            "lanczos_steps": 2, "slq_probes": 1, "hutchinson_probes": 1,
        },
    })  # fmt: skip


def _matrix(params: StudyParams, store: Path, out: Path) -> tuple[dict, dict]:
    stores = {"smoke": store}
    return (train_matrix(params, stores, out / "runs", out / "metrics"),
            landscape_matrix(params, stores, out / "runs", out / "metrics"))  # fmt: skip


def test_the_matrix_gives_the_same_bits_on_one_worker_two_local_workers_and_a_dask_cluster(
    smoke_store: Path, tmp_path: Path
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # not the runs' thread count: params (threads_per_worker 1) must win
    try:
        trained, measured = _matrix(_params(n_workers=1), smoke_store, tmp_path / "sequential")
        assert torch.get_num_threads() == 2  # the process's own count is back
    finally:
        torch.set_num_threads(threads)
    assert set(trained) == {"smoke-cnn-seed0", "smoke-cnn-seed1"} and "placement" not in trained

    # the default: no address, a LocalCluster of n_workers processes, the two runs at the same time
    trained_l, measured_l = _matrix(_params(), smoke_store, tmp_path / "local")
    assert len(set(trained_l["placement"].values())) == 2, trained_l["placement"]
    assert len(set(measured_l["placement"].values())) == 2, measured_l["placement"]
    again, _ = _matrix(_params(), smoke_store, tmp_path / "local")  # nothing changed: nothing runs
    assert again == {"smoke-cnn-seed0": "skipped", "smoke-cnn-seed1": "skipped"}

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    (tmp_path / "dask").mkdir()
    with dask_cluster(tmp_path / "dask", workers=2, env=env) as address:
        trained_c, measured_c = _matrix(_params(address), smoke_store, tmp_path / "cluster")
        # the two runs, and their two landscapes, each ran as a task on its own worker, at the same time
        assert len(set(trained_c["placement"].values())) == 2, trained_c["placement"]
        assert len(set(measured_c["placement"].values())) == 2, measured_c["placement"]
        again, _ = _matrix(_params(address), smoke_store, tmp_path / "cluster")
        assert again == {"smoke-cnn-seed0": "skipped", "smoke-cnn-seed1": "skipped", "placement": {}}

    a = outputs(tmp_path / "sequential")
    kinds = (("train", ""), ("curves", ""), ("landscape", "-best"), ("spectra", "-best"))
    expected = {f"metrics/{kind}/smoke-cnn-seed{k}{tail}.json" for k in (0, 1) for kind, tail in kinds}
    assert expected <= set(a), sorted(a)
    for other in ("local", "cluster"):
        b = outputs(tmp_path / other)
        assert a.keys() == b.keys(), other
        same(a, b, other)
    # the measured values are real numbers, not placeholders both sides happen to share
    assert (
        a["metrics/train/smoke-cnn-seed0.json"]["test_rmse"]
        != a["metrics/train/smoke-cnn-seed1.json"]["test_rmse"]
    )
    assert trained_c["smoke-cnn-seed0"]["test_rmse"] == trained["smoke-cnn-seed0"]["test_rmse"]


def test_where_the_runs_go_without_an_address() -> None:
    cpu = ComputeParams(device="cpu", n_workers=2)
    assert not in_process(cpu, 2)  # the default: a LocalCluster
    assert in_process(cpu, 1) and in_process(cpu, 0)  # one run: no cluster to start
    assert in_process(cpu.model_copy(update={"n_workers": 1}), 5)  # sequential, for debugging
    assert in_process(cpu.model_copy(update={"device": "cuda"}), 5)  # one GPU: not shared by processes
    assert not in_process(cpu.model_copy(update={"scheduler_address": "tcp://127.0.0.1:8786"}), 1)


def _malloc_env() -> str | None:
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_matrix_workers_keep_glibcs_adaptive_malloc_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """dask's nanny would start them with MALLOC_TRIM_THRESHOLD_=65536 (a landscape then pays ~1.5x in page
    faults: benchmarks/worker_malloc.py); a value left in this process by an earlier cluster is not
    inherited either, and comes back afterwards. Other dask clusters keep dask's setting."""
    from pipelines.compute import dask_client

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as an earlier nanny leaves it
    compute = ComputeParams(device="cpu", n_workers=1)
    with dask_client(compute, one_task_per_worker=True) as client:
        assert client.submit(_malloc_env, pure=False).result() is None
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"
    with dask_client(compute) as client:
        assert client.submit(_malloc_env, pure=False).result() == "65536"


def test_a_failure_on_the_local_cluster_names_the_run_and_keeps_the_others(tmp_path: Path) -> None:
    """json.loads as the run: the workers need not import torch for this."""
    jobs = [
        Job("smoke-cnn-seed7", "json:loads", ("{",), "s"),
        Job("smoke-cnn-seed8", "json:loads", ("{}",), "s"),
    ]
    stamps = tmp_path / ".matrix.json"
    with pytest.raises(RuntimeError, match=r"1 of 2 runs failed on a local cluster of 2 workers:\n"
                       r"smoke-cnn-seed7: JSONDecodeError: Expecting"):  # fmt: skip
        run_matrix(jobs, ComputeParams(device="cpu", n_workers=2), stamps, log=lambda _: None)
    assert set(json.loads(stamps.read_text())) == {"smoke-cnn-seed8"}  # a rerun does only the failed one


def _touch(path: str, fail: bool) -> dict[str, str]:
    if fail:
        raise ValueError("boom in the run")
    Path(path).write_text("done")
    return {"ok": path}


def test_gpu_runs_request_a_gpu_worker_resource(tmp_path: Path) -> None:
    """A run on cuda goes only to the worker that advertises GPU=1 (no GPU needed: nothing touches one);
    a remote failure comes back with the run's name."""
    from distributed import Scheduler, SpecCluster, Worker

    assert resources_for("cuda:1") == {"GPU": 1} and resources_for("cuda") == {"GPU": 1}
    assert resources_for("cpu", {"w": {"resources": {"GPU": 1}}}) is None
    assert resources_for("auto", {"w": {"resources": {}}}) is None
    assert resources_for("auto", {"w": {"resources": {}}, "g": {"resources": {"GPU": 2}}}) == {"GPU": 1}

    workers = {
        "gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}, "host": "127.0.0.1"}},
        "cpu": {"cls": Worker, "options": {"nthreads": 1, "host": "127.0.0.1"}},
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None, "host": "127.0.0.1"}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster:
        gpu_address = cluster.workers["gpu"].address
        compute = ComputeParams(scheduler_address=cluster.scheduler_address, device="cuda")
        jobs = [Job(f"run{i}", "tests.test_cluster_matrix:_touch", (str(tmp_path / f"{i}.txt"), False),
                    "s", (tmp_path / f"{i}.txt",)) for i in range(4)]  # fmt: skip
        done = run_matrix(jobs, compute, tmp_path / ".matrix.json", log=lambda _: None)
        assert set(done["placement"]) == {"run0", "run1", "run2", "run3"}
        assert set(done["placement"].values()) == {gpu_address}

        bad = [Job("smoke-cnn-seed7", "tests.test_cluster_matrix:_touch", (str(tmp_path / "x"), True), "s")]
        with pytest.raises(RuntimeError, match=r"smoke-cnn-seed7: ValueError: boom in the run"):
            run_matrix(
                bad, compute.model_copy(update={"device": "cpu"}), tmp_path / ".m2.json", log=lambda _: None
            )


def test_local_failure_names_the_run(tmp_path: Path) -> None:
    bad = [Job("turbulence-cnn-seed3", "tests.test_cluster_matrix:_touch", (str(tmp_path / "x"), True), "s")]
    with pytest.raises(ValueError, match=r"run turbulence-cnn-seed3: boom in the run"):
        run_matrix(bad, ComputeParams(), tmp_path / ".m.json", log=lambda _: None)


def test_a_runs_stamp_ignores_the_other_runs_and_sees_its_own_inputs(tmp_path: Path) -> None:
    """What lets one stage hold the whole matrix: adding a seed or changing another model's hparams leaves
    a run's stamp as it was; its own hparams, the data or the device change it."""
    from loaders.storage import COMPLETE_MARKER
    from pipelines.fit import training_jobs

    store = tmp_path / "smoke.zarr"
    store.mkdir()
    (store / COMPLETE_MARKER).write_text(json.dumps({"files": {"a": "1"}}))

    def stamps(device: str = "cpu", **train: Any) -> dict[str, str]:
        section = {"models": ["cnn", "e2cnn"], "seeds": [0], "hparams": {"cnn": {"hidden": 4}}, **train}
        landscape = {"models": {"smoke": ["e2cnn"], "turbulence": []}}
        raw = {"train": {"smoke": section}, "landscape": landscape, "compute": {"device": device}}
        params = parse_params(raw)
        return {j.name: j.stamp for j in training_jobs(params, {"smoke": store}, tmp_path, tmp_path)}

    base = stamps()
    assert set(base) == {"smoke-cnn-seed0", "smoke-e2cnn-seed0"}
    more = stamps(seeds=[0, 1], hparams={"cnn": {"hidden": 4}, "e2cnn": {"hidden": 3}})
    assert more["smoke-cnn-seed0"] == base["smoke-cnn-seed0"]
    assert more["smoke-e2cnn-seed0"] != base["smoke-e2cnn-seed0"]  # its own hparams
    assert stamps(hparams={"cnn": {"hidden": 5}})["smoke-cnn-seed0"] != base["smoke-cnn-seed0"]
    assert stamps(device="auto")["smoke-cnn-seed0"] != base["smoke-cnn-seed0"]
    (store / COMPLETE_MARKER).write_text(json.dumps({"files": {"a": "2"}}))  # other data
    assert stamps()["smoke-cnn-seed0"] != base["smoke-cnn-seed0"]
