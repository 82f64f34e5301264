"""Issue 19, items 6 and 12: every stage that reads a store checks its sha256 manifest (once per process
and store), so two swapped chunks fail the read naming the store; a truncated or empty completion marker
is an error naming the file and what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import loaders.storage as storage
from loaders.storage import COMPLETE_MARKER, StoreError, check_complete, open_store, store_digest
from pipelines import baselines
from tests.conftest import tiny_params


def _copy(store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / store.name
    shutil.copytree(store, copy)
    return copy


def test_baselines_stage_refuses_a_store_with_two_chunks_swapped(
    turbulence_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = _copy(turbulence_store, tmp_path)
    first, second = store / "hr/c/0/0/0/0/0", store / "hr/c/1/0/0/0/0"  # two valid chunks: crc32c passes
    a, b = first.read_bytes(), second.read_bytes()
    assert a != b
    first.write_bytes(b)
    second.write_bytes(a)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params().model_dump(mode="json")))
    argv = ["--dataset", "turbulence", "--params", str(params), "--data", str(store)]
    assert baselines.main([*argv, "--metrics-dir", str(tmp_path / "metrics")]) == 1
    err = capsys.readouterr().err
    assert f"{store} is corrupt" in err and "hr/c/0/0/0/0/0" in err and "hr/c/1/0/0/0/0" in err, err
    assert not (tmp_path / "metrics").exists()  # nothing scored on the swapped data


def test_sha256_pass_runs_once_per_process_and_store(
    smoke_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _copy(smoke_store, tmp_path)
    passes = []
    real = storage.file_manifest
    monkeypatch.setattr(storage, "file_manifest", lambda root, *a: passes.append(root) or real(root, *a))
    for _ in range(3):  # e.g. one open per split and per batch: one pass
        open_store(store)
        check_complete(store)
    assert len(passes) == 1
    open_store(store, verify=True)  # asked for explicitly: read again
    assert len(passes) == 2
    marker = store / COMPLETE_MARKER
    marker.write_text(marker.read_text() + " ")  # a rebuilt store has a new marker: read again
    open_store(store)
    assert len(passes) == 3


@pytest.mark.parametrize("text, kind", [("", "is empty"), ('{"files": {"velocity/c/0', "is unreadable")])
def test_truncated_or_empty_marker_names_the_file_and_what_to_do(
    smoke_store: Path, tmp_path: Path, text: str, kind: str
) -> None:
    store = _copy(smoke_store, tmp_path)
    (store / COMPLETE_MARKER).write_text(text)
    for read in (open_store, store_digest):  # the readers and the run key of training / landscapes
        with pytest.raises(StoreError, match=f"{store / COMPLETE_MARKER} {kind}.*`dvc repro`"):
            read(store)
