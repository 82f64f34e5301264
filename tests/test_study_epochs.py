"""benchmarks/study_epochs.py on the CPU at a tiny preset (sizes from params.yaml, shrunk): the JSON's
structure and its arithmetic, the budget, the bitwise rerun check; benchmarks/gpu_check.sh's syntax."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from pipelines.params import load_params

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "study_epochs.py"


@pytest.fixture
def tiny_preset(tmp_path: Path) -> Path:
    """params.yaml with a 16 x 16 smoke box, 8^3 turbulence and one model per dataset."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["smoke"].update({
        "resolution": 16, "box_size": 16.0, "inflow_center": [8.0, 3.0], "inflow_radius": 2.0,
        "steps": 12, "keep_start": 1, "keep_stop": 13, "output_frames": 2,
        "splits": {"train": 0.5, "valid": 0.25, "test": 0.25},
    })  # fmt: skip
    raw["turbulence"].update({"hr_resolution": 8, "splits": {"train": 3, "valid": 1, "test": 1}})
    raw["train"]["smoke"]["models"] = ["cnn"]
    raw["train"]["turbulence"]["models"] = ["cnn"]
    raw["landscape"]["models"] = {"smoke": ["cnn"], "turbulence": ["cnn"]}
    path = tmp_path / "params.tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("study_epochs", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_one_epoch_per_model_gives_positive_times_and_a_consistent_projection(
    tiny_preset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "epochs.json"
    proc = _run("--params", tiny_preset, "--epochs", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"]["device"] == "cpu" and report["skipped"] == []
    assert report["data"]["smoke"].startswith("random")
    mod = _module()
    params = load_params(tiny_preset)
    rows = {(r["dataset"], r["model"]): r for r in report["models"]}
    assert list(rows) == [("smoke", "cnn"), ("turbulence", "cnn")]
    timings = []
    for (dataset, _), row in rows.items():
        assert len(row["epoch_seconds_sampled"]) == 1 and row["epoch_seconds_sampled"][0] > 0
        for key in ("step_seconds", "eval_seconds", "hvp_seconds", "loss_seconds", "epoch_seconds",
                    "cpu_projected_epoch_seconds", "cpu_step_seconds", "cpu_hvp_seconds"):  # fmt: skip
            assert row[key] > 0, key
        # the preset's batch counts. smoke: 6 / 3 train / valid frames x 4 directions, windows of 1 + 2
        # frames at stride 2 / 1: 8 / 4 samples in batches of 4. turbulence: 3 / 1 samples, batches of 2
        steps, valid = mod.epoch_batches(params, dataset)
        assert row["train_steps_preset"] == steps == row["train_steps_timed"]
        assert (dataset, steps, valid) in {("smoke", 2, 1), ("turbulence", 1, 1)}
        t = mod.Timing(dataset, "cnn", row["parameters"], row["step_seconds"], row["eval_seconds"],
                       row["hvp_seconds"], row["loss_seconds"])  # fmt: skip
        assert row["epoch_seconds"] == pytest.approx(steps * t.step + valid * t.eval, rel=1e-12)
        timings.append(t)
    s = report["summary"]
    jobs = mod.project_jobs(params, timings)
    assert s["study_seconds_this_device"] == pytest.approx(sum(sum(d) for d in jobs.values()), rel=1e-12)
    cpu_total = sum(r["cpu_projected_epoch_seconds"] for r in rows.values())
    assert s["ratio"] == pytest.approx(cpu_total / sum(r["epoch_seconds"] for r in rows.values()), rel=1e-12)
    assert proc.stdout.strip().splitlines()[-1] == f"ratio: {s['ratio']:.2f}"


def _main(monkeypatch: pytest.MonkeyPatch, *args: str | Path) -> None:
    """The script's main() in this process (no interpreter start-up), on the CPU."""
    mod = _module()
    monkeypatch.setattr(sys, "argv", ["study_epochs.py", "--device", "cpu", *map(str, args)])
    mod.main()


def test_a_spent_budget_skips_every_model_and_says_so(
    tiny_preset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "epochs.json"
    _main(monkeypatch, "--params", tiny_preset, "--budget-seconds", "0", "--out", out)
    report = json.loads(out.read_text())
    assert report["models"] == [] and report["summary"]["ratio"] is None
    assert [(k["phase"], k["dataset"], k["model"]) for k in report["skipped"]] == [
        ("measurement", "smoke", "cnn"), ("measurement", "turbulence", "cnn"),
    ]  # fmt: skip
    printed = capsys.readouterr().out
    assert "skipped measurement of smoke cnn" in printed and "ratio:" not in printed


def test_unknown_models_and_missing_stores_fail_before_any_work(
    tiny_preset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "x.json"
    with pytest.raises(SystemExit, match=r"--models \['nosuch'\] matches no model"):
        _main(monkeypatch, "--params", tiny_preset, "--models", "nosuch", "--out", out)
    with pytest.raises(SystemExit, match="absent.zarr: no such store"):
        _main(monkeypatch, "--params", tiny_preset, "--smoke", tmp_path / "absent.zarr", "--out", out)
    assert not out.exists()


def test_the_rerun_check_passes_equal_reruns_and_names_a_differing_tensor(
    tiny_preset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = _module()
    params = load_params(tiny_preset)
    cpu = torch.device("cpu")
    [same] = mod.check_determinism(params, [("smoke", "cnn")], cpu, 1)
    assert same["bitwise_equal"] is True and same["differing_tensors"] == [] and same["steps"] == 1
    real, calls = mod.build, []

    def build_perturbed_on_rerun(*args: object, **kwargs: object) -> torch.nn.Module:
        model = real(*args, **kwargs)
        calls.append(model)
        if len(calls) == 2:  # the rerun starts from weights one ulp-scale step away
            name, p = next(iter(model.named_parameters()))
            with torch.no_grad():
                p.view(-1)[0] = torch.nextafter(p.view(-1)[0], torch.tensor(float("inf")))
        return model

    monkeypatch.setattr(mod, "build", build_perturbed_on_rerun)
    [diff] = mod.check_determinism(params, [("smoke", "cnn")], cpu, 1)
    first = next(iter(calls[0].state_dict()))
    assert diff["bitwise_equal"] is False and first in diff["differing_tensors"]


def test_gpu_check_script_parses_and_runs_the_documented_steps() -> None:
    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    steps = ("--check-determinism", "benchmarks/study_epochs.py --device cuda --budget-seconds 400 \\",
             "benchmarks/study_cost.py --device cuda", "download.pytorch.org/whl/cu", "timeout")  # fmt: skip
    for step in steps:
        assert step in text, step


def test_a_real_store_is_trained_on_with_its_own_splits(
    tiny_preset: Path, tmp_path: Path, turbulence_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(tiny_preset.read_text())
    raw["turbulence"]["splits"] = {"train": 4, "valid": 2, "test": 1}  # the store has 3 / 1 / 1
    tiny_preset.write_text(yaml.safe_dump(raw))
    out = tmp_path / "epochs.json"
    _main(monkeypatch, "--params", tiny_preset, "--turbulence", turbulence_store, "--epochs", "1",
          "--no-cpu-projection", "--out", out)  # fmt: skip
    report = json.loads(out.read_text())
    assert report["data"]["turbulence"] == str(turbulence_store)
    assert report["data"]["smoke"].startswith("random")
    row = next(r for r in report["models"] if r["dataset"] == "turbulence")
    # timed on the store's splits (3 / 1 samples, batch 2); the epoch figure is for the preset's 2 steps
    assert (row["valid_samples"], row["train_steps_timed"], row["train_steps_preset"]) == (1, 1, 2)
    assert row["epoch_seconds"] > 0 and "cpu_projected_epoch_seconds" not in row
    assert report["summary"]["ratio"] is None and report["summary"]["models_cpu_projected"] == 0
