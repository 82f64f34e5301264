"""Dask client for stages: a LocalCluster on this machine, or an existing scheduler from params."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster

from pipelines.params import ComputeParams


@contextlib.contextmanager
def dask_client(params: ComputeParams, one_task_per_worker: bool = False) -> Iterator[Client]:
    """Yield a connected client; a LocalCluster is started (and stopped) only when no address is set.

    ``one_task_per_worker`` (the train and landscape matrices): each local worker runs one task at a time
    (``threads_per_worker`` is then the torch threads of that task, set by the task itself) and dask's
    memory manager does not restart it: a run's size is set by params, and one outgrowing the memory fails
    as it would in the stage's own process."""
    if params.scheduler_address:
        try:
            client = Client(params.scheduler_address, timeout="20s")
        except OSError as err:
            raise ConnectionError(
                f"cannot reach the dask scheduler at {params.scheduler_address} ({err}); start it with "
                "`dask scheduler` or set compute.scheduler_address: null to run locally"
            ) from None
        with client:
            yield client
        return
    with (
        _glibc_thresholds() if one_task_per_worker else contextlib.nullcontext(),
        LocalCluster(
            n_workers=params.n_workers,
            threads_per_worker=1 if one_task_per_worker else params.threads_per_worker,
            memory_limit=0 if one_task_per_worker else "auto",
            processes=True,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@contextlib.contextmanager
def _glibc_thresholds() -> Iterator[None]:
    """Workers spawned within start with glibc's own, adaptive malloc thresholds.

    dask's nanny spawns each worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (and leaves it in this process's
    environment, so a later cluster inherits it). Any fixed threshold turns off glibc's adaptive mmap
    threshold: every large tensor is then mapped and unmapped anew, and a landscape measurement, which frees
    and reallocates its large tensors on every Hessian-vector product, spends a third of its time in page
    faults (benchmarks/worker_malloc.py). The matrices' workers have no memory limit for the trimming to
    defend."""
    key = "MALLOC_TRIM_THRESHOLD_"
    inherited = os.environ.pop(key, None)
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{key}": None}):  # None: not set
            yield
    finally:
        if inherited is not None:
            os.environ[key] = inherited
