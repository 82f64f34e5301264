"""Every recovery automatic (issue 19): the train and landscape stages SIGKILLed at several points, then
rerun, give byte for byte the outputs of an uninterrupted run (wall-clock values aside: the train metrics'
``train_seconds``, the landscapes' ``seconds`` and ``train_seconds.json``, tests/run_workspace.py).

Each kill happens in a forked copy of this process (no re-import of torch), which runs both stages with
one function wrapped to SIGKILL itself at that point: before or after its n-th call, or in the middle of
writing a stamps file. The rerun is this process running both stages again, as ``dvc repro`` would."""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import pipelines.fit
import pipelines.landscape
import pipelines.matrix
import train.loop
from loaders.storage import to_json
from tests.run_workspace import differing, run_stages, snapshot, workspace_params

PARAMS = workspace_params(seeds=(0,))
# the child only runs torch on this thread and exits by SIGKILL; JAX's threads (the smoke store's
# simulation imported it) are never touched there
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _at_call(owner: Any, name: str, n: int, after: bool) -> Callable[[pytest.MonkeyPatch], None]:
    def install(mp: pytest.MonkeyPatch) -> None:
        real, calls = getattr(owner, name), [0]

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == n and not after:
                _die()
            result = real(*args, **kwargs)
            if calls[0] == n:
                _die()
            return result

        mp.setattr(owner, name, wrapper)

    return install


def before(owner: Any, name: str, n: int = 1) -> Callable[[pytest.MonkeyPatch], None]:
    return _at_call(owner, name, n, after=False)


def after(owner: Any, name: str, n: int = 1) -> Callable[[pytest.MonkeyPatch], None]:
    return _at_call(owner, name, n, after=True)


def mid_stamp_write(n: int) -> Callable[[pytest.MonkeyPatch], None]:
    """The n-th stamps write dies with half its text in the temporary file."""

    def install(mp: pytest.MonkeyPatch) -> None:
        real, calls = pipelines.matrix.write_json_atomic, [0]

        def wrapper(path: Path, obj: Any) -> None:
            calls[0] += 1
            if calls[0] == n:
                text = to_json(obj)
                path.with_name(f".{path.name}.{os.getpid()}.tmp").write_text(text[: len(text) // 2])
                _die()
            real(path, obj)

        mp.setattr(pipelines.matrix, "write_json_atomic", wrapper)

    return install


# one run: epochs 1 and 2 of 2 optimiser steps; checkpoint writes early, best, last (epoch 1), then best
# when epoch 2 improves, and last; stamps: the run's, then one per landscape (early, best)
KILLS = {
    "train, mid-epoch 1": before(torch.optim.Adam, "step", 2),
    "train, mid-epoch 2": before(torch.optim.Adam, "step", 3),
    "train, right after early.pt": after(train.loop, "save_checkpoint", 1),
    "train, after best.pt, before last.pt": after(train.loop, "save_checkpoint", 2),
    "train, right after last.pt": after(train.loop, "save_checkpoint", 3),
    "train, last.pt written, not yet renamed": before(os, "replace", 3),  # its temporary file stays
    "train, between curves and metrics": after(pipelines.fit, "write_json_atomic", 1),
    "train, before stamping": before(pipelines.matrix, "write_json_atomic", 1),
    "train, while stamping": mid_stamp_write(1),
    "landscape, mid-measurement": before(pipelines.landscape, "measure", 2),
    "landscape, between metrics and spectrum": after(pipelines.landscape, "write_json_atomic", 1),
    "landscape, while stamping": mid_stamp_write(2),
}


@pytest.fixture(scope="module")
def reference(smoke_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic in the forked runs and the reruns
    root = tmp_path_factory.mktemp("uninterrupted")
    run_stages(PARAMS, smoke_store, root)
    yield snapshot(root)
    torch.set_num_threads(threads)


def _run_and_kill(install: Callable[[pytest.MonkeyPatch], None], store: Path, root: Path) -> None:
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            install(pytest.MonkeyPatch())
            run_stages(PARAMS, store, root)
        except BaseException:
            traceback.print_exc()
            code = 4
        os._exit(code)  # reached only when the kill point was never hit
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"status {status}"


@pytest.mark.parametrize("point", KILLS)
def test_a_killed_stage_reruns_to_the_uninterrupted_bytes(
    point: str, reference: dict[str, Any], smoke_store: Path, tmp_path: Path
) -> None:
    _run_and_kill(KILLS[point], smoke_store, tmp_path)
    killed = snapshot(tmp_path)
    assert killed != reference  # the kill left work undone
    run_stages(PARAMS, smoke_store, tmp_path)
    assert differing(snapshot(tmp_path), reference) == []
    assert not list((tmp_path / "runs").rglob(".*.tmp"))  # a killed writer's temporary file is removed
    assert all(set(r.values()) == {"skipped"} for r in run_stages(PARAMS, smoke_store, tmp_path))
