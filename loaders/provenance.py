"""Provenance of the storage layer's stores (re-exported by :mod:`loaders.storage`): the content-only
metadata block every store carries, and the run facts that go to a stage's metrics instead."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = (
    "numpy", "scipy", "xarray", "zarr", "dask", "phiflow", "phiml", "torch", "e2cnn",
    "huggingface_hub", "datasets",
)  # fmt: skip


def library_versions(packages: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_revision(repo: Path | None = None) -> str:
    """The current commit (with ``-dirty`` if the tree has changes), or ``unknown`` outside git."""
    cwd = repo or Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The one metadata block every dataset carries: content only (no time, host or commit).

    ``extra`` must be a function of the data too (e.g. equivariance errors of the stored levels); run
    facts such as timings belong in the stage's metrics, next to :func:`run_info`.
    """
    return {"params": params, "versions": library_versions(), **extra}


def cpu_model() -> str:
    """The processor's marketing name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware() -> dict[str, Any]:
    """The machine a run used: CPU model, logical cores (all, and those this process may run on), OS."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def run_info() -> dict[str, Any]:
    """Facts about this run that are not content: for the stage's metrics JSON, never for the store
    (a dataset card quotes them as the build's cost and hardware)."""
    return {
        "git_revision": git_revision(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "hardware": hardware(),
    }
