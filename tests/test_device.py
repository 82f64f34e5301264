"""compute.device: validation, resolution, deterministic CUDA switches, device-agnostic checkpoints, the
device in run metrics, a CPU run unchanged by the setting, and the GPU install command of docs/gpu.md beside
the README's."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from pipelines.fit import run_training
from pipelines.params import ParamsError, parse_params
from tests.conftest import TINY_SMOKE
from train import device as D
from train.curvature import FlatLoss
from train.kinds import task_for
from train.loop import load_checkpoint, save_checkpoint
from train.runs import RunId

README = Path(__file__).resolve().parents[1] / "README.md"
GPU_DOC = README.parent / "docs" / "gpu.md"
NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "cuda:3"])
def test_device_values_that_validate(value: str) -> None:
    assert parse_params({"compute": {"device": value}}).compute.device == value


@pytest.mark.parametrize("value", ["gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cpu\n", "mps", 0, None])
def test_malformed_devices_are_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ParamsError, match=r"compute\.device"):
        parse_params({"compute": {"device": value}})


def test_default_device_is_auto_and_auto_follows_cuda_availability() -> None:
    assert parse_params({"compute": {}}).compute.device == "auto"
    assert D.resolve_device("auto").type == ("cpu" if NO_GPU else "cuda")
    assert D.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="compute.device"):
        D.resolve_device("gpu")


@pytest.mark.skipif(not NO_GPU, reason="needs a machine where torch sees no GPU")
@pytest.mark.parametrize("value", ["cuda", "cuda:0"])
def test_a_missing_gpu_is_a_clear_error(value: str) -> None:
    with pytest.raises(RuntimeError, match=r"compute\.device is 'cuda.*torch sees no GPU"):
        D.resolve_device(value)


@pytest.mark.skipif(not NO_GPU, reason="needs a machine where torch sees no GPU")
def test_the_train_stage_fails_on_a_missing_gpu_before_reading_data(tmp_path: Path) -> None:
    params = parse_params({"compute": {"device": "cuda"}})
    with pytest.raises(RuntimeError, match="torch sees no GPU"):  # not the missing store's error
        run_training("smoke", "cnn", 0, params, tmp_path / "absent.zarr", tmp_path / "runs", tmp_path / "m")
    assert not (tmp_path / "runs").exists()


def test_make_deterministic_sets_the_documented_switches_and_restore_undoes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.backends.cudnn.benchmark = True
    before = D.make_deterministic()
    try:
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.benchmark is False
        assert torch.backends.cudnn.deterministic is True
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        # torch's default lets cuDNN convolutions run in TF32; the stages ask for IEEE float32
        assert before["conv_fp32_precision"] == "tf32"
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert D.device_info(torch.device("cpu"))["fp32_precision"] == {"conv": "ieee", "matmul": "ieee"}
    finally:
        D.restore(before)
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    assert torch.backends.cuda.matmul.fp32_precision == before["matmul_fp32_precision"]
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark is True
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    torch.backends.cudnn.benchmark = False


def test_prepare_on_cpu_leaves_the_global_switches_alone() -> None:
    assert D.prepare("cpu") == torch.device("cpu")
    assert not torch.are_deterministic_algorithms_enabled()


def test_loader_options_pin_memory_only_for_a_gpu() -> None:
    assert D.loader_options(torch.device("cpu"), 3) == {"num_workers": 3, "pin_memory": False}
    assert D.loader_options(None, 0) == {"num_workers": 0, "pin_memory": False}
    assert D.loader_options(torch.device("cuda", 1), 2) == {"num_workers": 2, "pin_memory": True}


def test_batches_tasks_and_curvature_follow_the_requested_device() -> None:
    """The 'meta' device stands in for a GPU: tensors really move there, without any data."""
    meta = torch.device("meta")
    x, y = D.to_device((torch.ones(2, 3), torch.zeros(2)), meta)
    assert x.device == meta and y.device == meta and x.shape == (2, 3)
    hr = torch.randn(4, 3, 8, 8, 8)
    lr = hr.reshape(4, 3, 2, 4, 2, 4, 2, 4).mean(dim=(3, 5, 7))
    train_set = TensorDataset(torch.stack([lr, lr, lr], dim=1), hr)
    task = task_for("turbulence", residual=True, train_set=train_set)
    moved = D.task_on(task, meta)
    assert {b.device for b in moved.reference.buffers()} == {meta}
    assert {b.device for b in task.reference.buffers()} == {torch.device("cpu")}  # the original is kept
    assert D.task_on(task_for("smoke"), meta) == task_for("smoke")  # nothing to move
    model = torch.nn.Linear(3, 1).to(meta)
    batch = (torch.ones(2, 3), torch.zeros(2, 1))
    flat = FlatLoss(model, [batch], lambda m, b: (m(b[0]) - b[1]).pow(2).mean())
    assert all(t.device == meta for t in flat.batches[0]) and flat.w0.device == meta


def test_checkpoints_are_saved_from_the_cpu_and_load_to_the_requested_device(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    payload = {"model": model.state_dict(), "optimiser": opt.state_dict(), "nested": [torch.ones(2), (3,)]}
    save_checkpoint(tmp_path / "c.pt", payload, run={"test": "device"})
    locations: list[str] = []

    def record(storage: object, location: str) -> object:
        locations.append(location)
        return storage

    torch.load(tmp_path / "c.pt", map_location=record, weights_only=True)
    assert locations and set(locations) == {"cpu"}
    on_cpu = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(on_cpu["model"]["weight"], model.weight.detach())
    assert on_cpu["nested"][1] == (3,)
    on_meta = load_checkpoint(tmp_path / "c.pt", map_location=torch.device("meta"))
    assert on_meta["model"]["weight"].device == torch.device("meta")
    assert on_meta["optimiser"]["state"][0]["exp_avg"].device == torch.device("meta")
    # and what leaves for the file is a CPU copy of whatever device the tensors were on
    state = D.cpu_state({"a": [torch.ones(1, device="cpu")], "b": 1})
    assert state["a"][0].device == torch.device("cpu") and state["b"] == 1


def test_device_info_names_the_device_and_library_versions() -> None:
    info = D.device_info(torch.device("cpu"))
    assert info["device"] == "cpu"
    assert info["versions"]["torch"] == torch.__version__
    assert info["versions"]["e2cnn"] == "0.2.3"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and "model name" in cpuinfo.read_text():
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M).group(1).strip()
        assert info["device_name"] == model
    assert info["device_name"]


@pytest.mark.slow
def test_device_cpu_gives_bitwise_the_same_run_as_the_default(smoke_store: Path, tmp_path: Path) -> None:
    """``compute.device: cpu`` vs the default (auto -> the CPU here): same metrics, same checkpoints."""
    if not NO_GPU:
        pytest.skip("auto picks the GPU here")
    train_cfg = {"smoke": {"models": ["cnn"], "seeds": [0], "hparams": {"cnn": {"hidden": 4}},
                           "optimiser": {"max_epochs": 2, "early_epoch": 1, "batch_size": 4}}}  # fmt: skip
    runs = {}
    for device in ("auto", "cpu"):
        params = parse_params(
            {
                "smoke": TINY_SMOKE,
                "train": train_cfg,
                "compute": {"device": device},
                "landscape": {"models": {"smoke": ["cnn"], "turbulence": []}},
            }
        )
        out = tmp_path / device
        metrics = run_training("smoke", "cnn", 0, params, smoke_store, out / "runs", out / "metrics")
        assert metrics["device"] == "cpu"
        stored = json.loads(RunId("smoke", "cnn", 0).train_metrics(out / "metrics").read_text())
        runs[device] = (out, {k: v for k, v in stored.items() if k != "train_seconds"})
    (a, ma), (b, mb) = runs["auto"], runs["cpu"]
    assert ma == mb
    for which in ("early", "best", "last"):
        ca = load_checkpoint(RunId("smoke", "cnn", 0).checkpoint(a / "runs", which))
        cb = load_checkpoint(RunId("smoke", "cnn", 0).checkpoint(b / "runs", which))
        assert ca["model"].keys() == cb["model"].keys()
        assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])


def _readme_pip_commands() -> dict[str, list[str]]:
    """Each ``pip install ... torch==...`` command in README.md and docs/gpu.md, split as a shell would: the
    CPU one (the quick start's) and the GPU one (the only one with ``--index-url``)."""
    found: dict[str, list[str]] = {}
    text = README.read_text() + GPU_DOC.read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)
    for line in "\n".join(blocks).splitlines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True) if "pip install" in part else []
            if words[:2] == ["pip", "install"] and any(w.startswith("torch==") for w in words):
                found["gpu" if "--index-url" in words else "cpu"] = words
    return found


def test_readme_gpu_install_command_pins_the_same_torch_with_valid_pip_syntax() -> None:
    from pip._internal.commands import create_command  # pip's own parser: no network, real syntax

    commands = _readme_pip_commands()
    assert set(commands) == {"cpu", "gpu"}, commands
    versions = {}
    for kind, words in commands.items():
        options, args = create_command("install").parse_args(words[2:])
        pins = [a for a in args if a.startswith("torch==")]
        assert len(pins) == 1, words
        versions[kind] = pins[0]
        if kind == "gpu":
            url = options.index_url
            assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d{3}", url), url
    assert versions["gpu"] == versions["cpu"] == "torch==2.13.0"


def test_study_cost_projection_counts_the_preset_jobs() -> None:
    """benchmarks/study_cost.py's arithmetic on the real preset, with unit costs per step/eval/HVP."""
    import importlib.util

    from pipelines.params import load_params

    path = README.parent / "benchmarks" / "study_cost.py"
    spec = importlib.util.spec_from_file_location("study_cost", path)
    cost = importlib.util.module_from_spec(spec)
    sys.modules["study_cost"] = cost  # dataclasses look their module up there
    spec.loader.exec_module(cost)  # type: ignore[union-attr]
    params = load_params(README.parent / "params.study.yaml")
    # smoke: 4 rotated series; frames 35 / 8 / 7 of 50, windows of 1 + 6 frames
    assert cost.split_sizes(params, "smoke") == {"train": 116, "valid": 8, "test": 4}
    assert cost.split_sizes(params, "turbulence") == {"train": 40, "valid": 5, "test": 5}
    unit = [
        cost.Timing("smoke", "e2cnn", 1, 1.0, 1.0, 1.0, 1.0),
        cost.Timing("turbulence", "cnn", 1, 1.0, 2.0, 1.0, 1.0),
    ]
    jobs = cost.project_jobs(params, unit)
    assert jobs["train_smoke"] == [50 * (14 + 1) + 1.0] * 5  # 116 // 8 steps, 1 valid and 1 test batch
    assert jobs["train_turbulence"] == [50 * (10 + 2 * 2) + 2 * 2.0] * 6  # 40 / 4 steps; 2 valid, 2 test
    # 20% of 116 = 24 samples, 3 batches of 8, each: 3 x 30 Lanczos + 16 Hutchinson HVPs, the adaptive
    # Hessian's 30 + 16, and 3 x (1 + 5 x 4) sharpness losses (unit, filter-normalised, adaptive)
    assert jobs["landscape_smoke"] == [3 * (106 + 46 + 63)] * 10
    assert len(jobs["landscape_turbulence"]) == 12
    # a gradient graph is built once per batch and measurement: the training loss's, and SR's MSE's too
    graphs = cost.project_jobs(params, [replace(t, graph=10.0) for t in unit])
    assert graphs["landscape_smoke"] == [3 * (106 + 46 + 63 + 10)] * 10
    # 20% of 40 = 8 samples, one batch of 8; two graphs (L1 and MSE)
    assert graphs["landscape_turbulence"][0] == jobs["landscape_turbulence"][0] + 2 * 10.0
    assert cost.makespan([2, 3, 4, 3], 2) == 6  # longest first: 4 + 2 | 3 + 3
    assert cost.makespan([2, 3, 4, 3], 1) == 12 and cost.makespan([5, 1, 1, 1], 8) == 5
