"""The run matrix of the train and landscape stages: skip what is up to date, run the rest in-process or as
tasks on a dask cluster (``compute.scheduler_address``), in parallel, on GPU workers when a GPU is asked for.

DVC runs one stage at a time, so parallelism has to come from inside a stage: each of these stages takes
every (dataset, model, seed[, checkpoint]) of params.yaml and fans it out. A run is skipped when its
*stamp* (what its outputs depend on: for a trained run its identity, pipelines/run_config.py, which its
checkpoints record too) and its output files are as they were when it last finished, so a params change
that concerns one run re-runs that run only, although DVC re-runs the whole stage. A finished run whose
stamp is unchanged but whose outputs are not as it left them (a damaged, swapped or deleted checkpoint or
metrics file) has its outputs removed and runs from scratch: it is never re-scored from what is left.
Stamps live in one hidden file per stage (``.matrix.json`` in the stage's first metrics folder), written
by the client after each finished run; they name outputs relative to that folder, so a moved or copied
workspace keeps them. An unreadable stamps file counts as none: every run runs (a finished one verifies
its checkpoints and is re-scored from them).

On a cluster every task writes its own files (checkpoints, metrics) at absolute paths: the workers must
share this filesystem (one machine, or NFS/Lustre mounted at the same path). Shipping the bytes back
instead would not do for checkpoints, which an interrupted run resumes from wherever it runs next.
Without an address the runs go to a LocalCluster of ``compute.n_workers`` processes, each running one run
at a time with ``compute.threads_per_worker`` torch threads: every core busy, and every run's arithmetic
fixed by params rather than by the machine or by which worker took it (a run's float reductions depend on
its thread count only), so the results are bitwise those of ``n_workers: 1``, which runs them one after
another in this process with the same threads (for debugging: breakpoints, tracebacks, profilers). A single
run to do, or a GPU (one device, which the runs would only share), also runs in this process.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loaders.scratch import params_key
from loaders.storage import write_json_atomic
from pipelines.params import ComputeParams

STAMPS = ".matrix.json"


@dataclass(frozen=True)
class Job:
    """One run of the matrix: ``target`` ("module:function", importable on every worker) called with
    ``args``; ``stamp`` says what its ``outputs`` depend on."""

    name: str
    target: str
    args: tuple[Any, ...]
    stamp: str
    outputs: tuple[Path, ...] = field(default_factory=tuple)


def stamp_of(**parts: Any) -> str:
    return params_key(parts)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_stamps(path: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The stamps file's records, or none when it is missing or unreadable (truncated, not a mapping);
    a malformed record is dropped alone."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log(f"{path}: unreadable ({type(err).__name__}), ignored: every run runs or verifies")
        return {}
    if not isinstance(raw, dict):
        log(f"{path}: not a mapping of runs, ignored: every run runs or verifies")
        return {}
    return {
        name: record
        for name, record in raw.items()
        if isinstance(record, dict) and isinstance(record.get("stamp"), str)
        and isinstance(record.get("files"), dict)
    }  # fmt: skip


def _output_key(path: Path, stamps_file: Path) -> str:
    """An output's name in the stamps: relative to the stamps file's folder (the workspace moves with it)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(stamps_file).resolve().parent)).as_posix()


def output_hashes(job: Job, stamps_file: Path) -> dict[str, str]:
    return {_output_key(p, stamps_file): _sha(p) for p in job.outputs}


def state_of(job: Job, stamps: dict[str, Any], stamps_file: Path) -> str:
    """``current`` (stamp and outputs as it finished: skip), ``damaged`` (stamp unchanged, outputs not:
    run from scratch) or ``stale`` (no record, or another stamp: run; a trained run resumes only from
    checkpoints of its own identity)."""
    record = stamps.get(job.name)
    if not record or record["stamp"] != job.stamp:
        return "stale"
    files = record["files"]
    for p in job.outputs:
        if not p.is_file() or files.get(_output_key(p, stamps_file)) != _sha(p):
            return "damaged"
    return "current"


def _select(
    jobs: list[Job], stamps: dict[str, Any], stamps_file: Path, log: Callable[[str], None]
) -> tuple[dict[str, Any], list[Job]]:
    """Skipped runs' results and the jobs to run; a damaged run's outputs are removed first."""
    results: dict[str, Any] = {}
    todo = []
    for job in jobs:
        state = state_of(job, stamps, stamps_file)
        if state == "current":
            results[job.name] = "skipped"
            log(f"{job.name}: unchanged, skipped")
            continue
        if state == "damaged":
            log(f"{job.name}: outputs changed since it finished; removing them, running from scratch")
            for p in job.outputs:
                p.unlink(missing_ok=True)
            del stamps[job.name]
        todo.append(job)
    return results, todo


def needs_gpu(device: str, workers: dict[str, Any] | None = None) -> bool:
    """Whether a run asks for a GPU: ``cuda``/``cuda:N``, or ``auto`` when some worker advertises a GPU
    resource (then ``auto`` means "on a GPU" and the task must land on such a worker)."""
    if device.startswith("cuda"):
        return True
    if device == "auto" and workers:
        return any(w.get("resources", {}).get("GPU", 0) > 0 for w in workers.values())
    return False


def resources_for(device: str, workers: dict[str, Any] | None = None) -> dict[str, float] | None:
    """The dask worker resources a task needs: one GPU (``dask worker ... --resources GPU=1``) or none."""
    return {"GPU": 1} if needs_gpu(device, workers) else None


def call(target: str, args: tuple[Any, ...], threads: int | None) -> dict[str, Any]:
    """Run one job where this is called (the client, or a dask worker): torch's thread count fixed first,
    so a run's arithmetic does not depend on the worker's cores; the process's own count comes back after."""
    module, func = target.split(":")
    if threads is None:
        return getattr(importlib.import_module(module), func)(*args)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return getattr(importlib.import_module(module), func)(*args)
    finally:
        torch.set_num_threads(before)


def in_process(compute: ComputeParams, runs: int) -> bool:
    """Whether runs to do go one after another in this process rather than to a cluster: only without a
    scheduler address, and then with ``n_workers: 1``, at most one run, or a GPU device (``cuda``, or
    ``auto`` with a GPU visible)."""
    if compute.scheduler_address is not None:
        return False
    if compute.n_workers == 1 or runs <= 1 or compute.device.startswith("cuda"):
        return True
    if compute.device == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def _remote(target: str, args: tuple[Any, ...], threads: int) -> tuple[dict[str, Any], str]:
    from distributed import get_worker

    return call(target, args, threads), get_worker().address


def prune(folders: Iterable[Path], keep: Iterable[Path], pattern: str = "*.json") -> list[Path]:
    """Delete per-run files in a stage's own folders that no run of the matrix writes any more (a model
    or seed taken out of params.yaml), so the folders hold exactly the matrix's outputs."""
    wanted = {Path(p).resolve() for p in keep}
    found = (p for d in folders for p in sorted(Path(d).glob(pattern)) if not p.name.startswith("."))
    gone = [p for p in found if p.resolve() not in wanted]  # the stamps file (.matrix.json) stays
    for p in gone:
        p.unlink()
    return gone


def run_matrix(
    jobs: list[Job], compute: ComputeParams, stamps_file: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run every job that is not up to date; returns {name: result or "skipped"} and, with a cluster,
    ``placement`` {name: worker address}. Failed runs are reported together, each by its name, after the
    others have finished (their stamps are kept, so a re-run does only the failed ones)."""
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(
            f"duplicate runs in the matrix: {sorted(n for n in set(names) if names.count(n) > 1)}"
        )
    stamps = _load_stamps(stamps_file, log)
    results, todo = _select(jobs, stamps, stamps_file, log)

    def done(job: Job) -> None:
        missing = [str(p) for p in job.outputs if not p.is_file()]
        if missing:
            raise RuntimeError(
                f"run {job.name} finished but {missing} are not visible here: the dask workers must share "
                "this filesystem at the same path (docs/scaling-out.md)"
            )
        stamps[job.name] = {"stamp": job.stamp, "files": output_hashes(job, stamps_file)}
        write_json_atomic(stamps_file, stamps)

    failures: list[str] = []
    if in_process(compute, len(todo)):
        for job in todo:
            log(f"{job.name}: running")
            try:
                results[job.name] = call(job.target, job.args, compute.threads_per_worker)
            except Exception as err:
                named = _named(err, job.name)
                if named is err:
                    raise
                raise named from err
            done(job)
        return results
    from distributed import as_completed

    from pipelines.compute import dask_client

    placement: dict[str, str] = {}
    where = compute.scheduler_address
    if where is None:  # a LocalCluster: no more workers than runs, one run at a time on each
        compute = compute.model_copy(update={"n_workers": min(compute.n_workers, len(todo))})
        where = f"a local cluster of {compute.n_workers} workers"
    with dask_client(compute, one_task_per_worker=True) as client:
        resources = resources_for(compute.device, client.scheduler_info().get("workers"))
        futures = {
            client.submit(
                _remote, job.target, job.args, compute.threads_per_worker,
                key=f"run-{job.name}-{uuid.uuid4().hex[:8]}", pure=False, resources=resources, retries=0,
            ): job
            for job in todo
        }  # fmt: skip
        for job in todo:
            log(f"{job.name}: submitted to {where}" + (f" ({resources})" if resources else ""))
        for future in as_completed(futures):
            job = futures[future]
            try:
                results[job.name], placement[job.name] = future.result()
                done(job)
                log(f"{job.name}: done on {placement[job.name]}")
            except Exception as err:  # a remote error: collected, named, raised after the rest
                failures.append(f"{job.name}: {type(err).__name__}: {err}")
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(todo)} runs failed on {where}:\n" + "\n".join(failures))
    results["placement"] = placement
    return results


def _named(err: Exception, name: str) -> Exception:
    """The error with the run's name in its message (the stage prints only the message of the errors it
    expects, pipelines/cli.py); other errors are bugs: they keep their type and traceback, with a note."""
    if type(err) in (ValueError, RuntimeError, FileNotFoundError, OSError, KeyError):
        return type(err)(f"run {name}: {err}")
    err.add_note(f"in run {name}")
    return err
