"""benchmarks/study_flops.py: the meta-device FLOP count is the count of the real computation, and the
script projects the preset from it beside the CPU's measured time."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from tests.conftest import tiny_params

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "study_flops.py"


def _module() -> ModuleType:
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports study_cost.py beside it
    spec = importlib.util.spec_from_file_location("study_flops", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["study_flops"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


# one model of each kind of layer: plain convolutions, e2cnn's steerable basis (relaxed: rsteer), group
# matrices, 3D regular group convolutions (computing every model's HVP too would cost ~40 s)
COMPUTED = {"smoke": ["cnn", "rsteer", "gmcnn"], "turbulence": ["cnn", "gcnn"]}


@pytest.mark.parametrize("dataset", ["smoke", "turbulence"])
def test_the_meta_count_equals_the_count_of_the_computed_calls(dataset: str) -> None:
    """Counting on meta tensors (shapes only, and the trilinear reference in place of the spectral one)
    gives exactly the FLOPs of the same step, evaluation and HVP computed on the CPU."""
    mod = _module()
    params = tiny_params()
    for name in getattr(params.train, dataset).models:
        meta = mod.count_model(params, dataset, name)
        # a step is forward + backward; an HVP differentiates the gradient again: more work each
        assert 0 < meta.eval < meta.step < meta.hvp, name
        if name in COMPUTED[dataset]:
            assert meta == mod.count_model(params, dataset, name, torch.device("cpu")), name


def test_counted_flops_become_seconds_at_a_rate_and_project_like_study_cost() -> None:
    mod = _module()
    params = tiny_params()
    counts = [mod.count_model(params, "smoke", "cnn")]
    rate = 1e9
    seconds = mod.at_rate(counts[0], rate)
    assert seconds.step == counts[0].step / rate and seconds.hvp == counts[0].hvp / rate
    stages, total = mod.project_total(params, [seconds], 1)
    jobs = mod.project_jobs(params, [seconds])
    assert stages["train_smoke"] == pytest.approx(sum(jobs["train_smoke"]) / 3600)
    assert total == pytest.approx(sum(sum(d) for d in jobs.values()) / 3600)


def test_the_script_prints_counts_cpu_times_the_projection_and_its_ratio(tmp_path: Path) -> None:
    preset = tmp_path / "params.tiny.yaml"
    preset.write_text(yaml.safe_dump(tiny_params().model_dump(mode="json")))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--params", str(preset), "--models", "cnn"]
    cmd += ["--utilisation", "1", "0.5"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert [ln.split()[:2] for ln in lines if ln.startswith(("smoke ", "turbulence "))] == [
        ["smoke", "cnn"], ["turbulence", "cnn"],
    ]  # fmt: skip
    totals = {ln[:26].strip(): float(ln.split()[-1]) for ln in lines if "TFLOP/s x" in ln or "CPU," in ln}
    assert set(totals) == {"CPU, measured", "67 TFLOP/s x 1", "67 TFLOP/s x 0.5"}
    half, full = totals["67 TFLOP/s x 0.5"], totals["67 TFLOP/s x 1"]
    assert full > 0 and half == pytest.approx(2 * full, rel=1e-3)  # printed to 4 digits
    ratio = re.fullmatch(r"ratio: ([0-9.]+)", lines[-1])
    assert ratio and float(ratio.group(1)) > 0
    bad = subprocess.run([*cmd[:2], "--utilisation", "0"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "--utilisation" in bad.stderr
