"""Issue 19, item 4: a kill at any point of a data stage never breaks it. Each stage is SIGKILLed at the
moments where a half-done write would show (``$SYMFLOW_CRASH_AT``, loaders.storage.crash_point), each run
resuming what the one before left; after each, the outputs are removed as `dvc repro` removes them, and the
store and metrics a resumed or repaired run writes equal the uninterrupted build's byte for byte (the
session fixtures: the same function, tiny params), run facts (timings, commit, host) aside."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from loaders.storage import CRASH_AT, file_manifest
from tests.conftest import build_smoke_store, build_turbulence_store
from tests.smoke_support import REPO

RUN_FACTS = {
    "seconds", "seconds_per_step", "source_seconds", "resumed", "downsample_write_seconds", "wall_seconds",
    "sim_steps_per_second", "reused_simulations", "run",
}  # fmt: skip


def _content(metrics: Path) -> dict[str, Any]:
    def strip(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in RUN_FACTS}
        return obj

    return strip(json.loads(metrics.read_text()))


def _killed_at(point: str, builder: str, root: Path) -> None:
    """Run the stage (the fixtures' builder, in its own process) until it kills itself at ``point``."""
    code = f"import sys, pathlib, tests.conftest as c; c.{builder}(pathlib.Path(sys.argv[1]))"
    env = {**os.environ, CRASH_AT: point, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", code, str(root)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == -signal.SIGKILL, f"{point}: rc {run.returncode}\n{run.stderr[-3000:]}"


def _as_dvc_repro_would(store: Path, metrics: Path) -> None:
    """`dvc repro` deletes a stage's outputs before running it again (nothing else)."""
    shutil.rmtree(store, ignore_errors=True)
    metrics.unlink(missing_ok=True)


def _assert_same_build(store: Path, reference: Path, name: str) -> None:
    assert file_manifest(store, skip=()) == file_manifest(reference, skip=())  # every file, marker included
    assert _content(store.parent / f"{name}.json") == _content(reference.parent / f"{name}.json")


def _assert_no_leftovers(root: Path, name: str) -> None:
    assert not list(root.glob(f".{name}.zarr.*")), list(root.iterdir())  # no partial or replaced copy
    assert not list((root / "scratch").glob(".*")), list((root / "scratch").iterdir())  # no half-cleared


def test_turbulence_stage_survives_kills_and_resumes_byte_identically(
    turbulence_store: Path, tmp_path: Path
) -> None:
    store, metrics = tmp_path / "turbulence.zarr", tmp_path / "turbulence.json"
    _killed_at("scratch-piece", "build_turbulence_store", tmp_path)  # a piece written, its marker not
    _killed_at("store-written", "build_turbulence_store", tmp_path)  # every piece done, the store half
    assert not store.exists()
    # the third run resumes from finished pieces only (no solver), writes store and metrics, and is
    # killed while clearing its scratch (today: `.done` markers beside half-deleted pieces)
    _killed_at("scratch-clear", "build_turbulence_store", tmp_path)
    _assert_same_build(store, turbulence_store, "turbulence")  # resumed: max_cfl, energy_trace kept
    assert json.loads(metrics.read_text())["solver"]["resumed"] is True
    _as_dvc_repro_would(store, metrics)
    build_turbulence_store(tmp_path)  # repairs itself: no manual deletion
    _assert_same_build(store, turbulence_store, "turbulence")
    _assert_no_leftovers(tmp_path, "turbulence")


def test_smoke_stage_survives_kills_and_resumes_byte_identically(smoke_store: Path, tmp_path: Path) -> None:
    store, metrics = tmp_path / "smoke.zarr", tmp_path / "smoke.json"
    stale = tmp_path / "scratch" / "smoke-0123456789abcdef"  # another physics' batches, cleared at the end
    (stale / "batch0000.zarr").mkdir(parents=True)
    (stale / "batch0000.done").write_text("{}")
    _killed_at("store-written", "build_smoke_store", tmp_path)  # batches done, the store half
    assert not store.exists()
    _killed_at("scratch-clear", "build_smoke_store", tmp_path)  # resumed; killed clearing the stale scratch
    _assert_same_build(store, smoke_store, "smoke")
    resumed = json.loads(metrics.read_text())  # every simulation came from the scratch: no rate to claim
    assert resumed["reused_simulations"] == resumed["simulations"] and "sim_steps_per_second" not in resumed
    _as_dvc_repro_would(store, metrics)
    build_smoke_store(tmp_path)
    _assert_same_build(store, smoke_store, "smoke")
    _assert_no_leftovers(tmp_path, "smoke")
    assert not stale.exists()
