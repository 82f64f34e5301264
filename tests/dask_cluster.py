"""A real dask cluster for tests: `dask scheduler` and `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: int = 2, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start a scheduler and ``workers`` single-thread workers (own process groups); yield the address once
    every worker has joined; stop them all on exit."""
    dask = Path(sys.executable).parent / "dask"
    if not dask.is_file():
        pytest.fail("the `dask` command is missing from the environment")
    sched_file = folder / "scheduler.json"
    quiet = dict(cwd=folder, env=env or dict(os.environ), start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    procs = [
        subprocess.Popen(
            [str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(sched_file)],
            **quiet,
        )
    ]  # fmt: skip
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not sched_file.exists():
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [str(dask), "worker", address, "--nthreads", "1", "--no-dashboard",
                     "--host", "127.0.0.1"],
                    **quiet,
                )  # fmt: skip
            )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
