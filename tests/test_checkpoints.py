"""Checkpoints as verified data (issue 19 §1, §2, §5, §11): a checkpoint records its run and a checksum
and is refused, naming the file, when either fails; a finished run whose checkpoint is damaged, swapped,
truncated or deleted is retrained from scratch, never re-scored; stamps survive a moved workspace and
an unreadable stamps file; identical weights give identical bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from pipelines import run_config
from pipelines.landscape import run_landscape
from pipelines.matrix import _load_stamps
from tests.run_workspace import differing, run_stages, snapshot, workspace_params
from train.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from train.runs import RunId

SEED0, SEED1 = RunId("smoke", "cnn", 0), RunId("smoke", "cnn", 1)


@pytest.fixture(scope="module")
def finished(smoke_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A workspace after an uninterrupted train + landscape run, and its outputs' bytes."""
    root = tmp_path_factory.mktemp("finished")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # every test in this module reruns with the same arithmetic
    run_stages(workspace_params(), smoke_store, root)
    yield root, snapshot(root)
    torch.set_num_threads(threads)


def _copy(finished: tuple[Path, dict], tmp_path: Path) -> tuple[Path, dict]:
    root, reference = finished
    shutil.copytree(root, tmp_path / "ws")
    return tmp_path / "ws", reference


def _payload() -> dict:
    model = torch.nn.Linear(3, 2)
    return {"model": model.state_dict(), "epoch": 1, "history": {"lr": [0.1, 0.05]}, "betas": (0.9, 0.99)}


def test_identical_weights_give_identical_bytes_whatever_the_path(tmp_path: Path) -> None:
    payload, run = _payload(), {"seed": 0, "code": "abc"}
    save_checkpoint(tmp_path / "a.pt", payload, run)
    (tmp_path / "sub").mkdir()
    save_checkpoint(tmp_path / "sub" / "best.pt", payload, run)  # another name: torch would embed it
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "sub" / "best.pt").read_bytes()
    loaded = load_checkpoint(tmp_path / "a.pt", run=run)
    assert torch.equal(loaded["model"]["weight"], payload["model"]["weight"]) and loaded["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "sub"]  # no temporary left behind


def test_a_damaged_or_foreign_checkpoint_is_refused_naming_the_file(tmp_path: Path) -> None:
    run = {"seed": 0, "code": "abc", "hp": {"hidden": 4}}
    path = tmp_path / "best.pt"
    save_checkpoint(path, _payload(), run)
    good = path.read_bytes()
    weight = _payload()["model"]["weight"]  # another draw: these bytes are not in the file
    at = good.find(load_checkpoint(path)["model"]["weight"].numpy().tobytes())
    assert at > 0 and weight.numpy().tobytes() not in good
    flipped = bytearray(good)
    flipped[at + 3] ^= 0x10  # one bit of one weight
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match=f"{path}.*checksum"):
        load_checkpoint(path, run=run)
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=f"{path} is unreadable"):
        load_checkpoint(path)
    path.write_bytes(good)
    with pytest.raises(CheckpointError, match=rf"{path} was written for another run \(it differs in: seed\)"):
        load_checkpoint(path, run={**run, "seed": 1})
    with pytest.raises(CheckpointError, match=r"differs in: code, hp"):
        load_checkpoint(path, run={**run, "code": "abd", "hp": {"hidden": 5}})


def _flip_a_weight(path: Path) -> None:
    data = bytearray(path.read_bytes())
    weights = load_checkpoint(path)["model"]
    tensor = next(t for t in weights.values() if t.numel() > 8)
    at = bytes(data).find(tensor.numpy().tobytes())
    data[at + 5] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-300])


FAULTS = {
    "flipped bit in best.pt": lambda ws: _flip_a_weight(SEED0.checkpoint(ws / "runs", "best")),
    "best.pt of another seed": lambda ws: shutil.copy(
        SEED1.checkpoint(ws / "runs", "best"), SEED0.checkpoint(ws / "runs", "best")
    ),
    "truncated best.pt": lambda ws: _truncate(SEED0.checkpoint(ws / "runs", "best")),
    "truncated last.pt": lambda ws: _truncate(SEED0.run_dir(ws / "runs") / "last.pt"),
    "deleted best.pt": lambda ws: SEED0.checkpoint(ws / "runs", "best").unlink(),
    "deleted early.pt": lambda ws: SEED0.checkpoint(ws / "runs", "early").unlink(),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_finished_run_with_a_bad_checkpoint_is_retrained_from_scratch(
    fault: str, finished: tuple[Path, dict], smoke_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ws, reference = _copy(finished, tmp_path)
    FAULTS[fault](ws)
    capsys.readouterr()
    trained, measured = run_stages(workspace_params(), smoke_store, ws)
    out = capsys.readouterr().out
    assert trained["smoke-cnn-seed0"] != "skipped" and trained["smoke-cnn-seed1"] == "skipped"
    assert "smoke-cnn-seed0: outputs changed since it finished" in out and "resuming" not in out
    # retrained, not re-scored: every output as the uninterrupted run left it, the landscapes too
    assert differing(snapshot(ws), reference) == []
    assert set(measured.values()) == {"skipped"}  # the retrained checkpoints have the same bytes


def test_the_landscape_refuses_a_checkpoint_of_another_run(
    finished: tuple[Path, dict], smoke_store: Path, tmp_path: Path
) -> None:
    ws, _ = _copy(finished, tmp_path)
    best = SEED0.checkpoint(ws / "runs", "best")
    shutil.copy(SEED1.checkpoint(ws / "runs", "best"), best)
    with pytest.raises(CheckpointError, match=rf"{best} was written for another run \(it differs in: seed\)"):
        run_landscape("smoke", "cnn", 0, "best", workspace_params(), smoke_store, ws / "runs", ws / "metrics")
    _flip_a_weight(SEED0.checkpoint(ws / "runs", "early"))
    with pytest.raises(CheckpointError, match=f"{SEED0.checkpoint(ws / 'runs', 'early')}.*checksum"):
        run_landscape(
            "smoke", "cnn", 0, "early", workspace_params(), smoke_store, ws / "runs", ws / "metrics"
        )


@pytest.mark.parametrize("content", ["[]", '{"smoke-cnn-seed0": {"stamp": "x", "fi', "", '{"a": []}', "null"])
def test_an_unreadable_stamps_file_reads_as_no_stamps(content: str, tmp_path: Path) -> None:
    (tmp_path / ".matrix.json").write_text(content)
    logged: list[str] = []
    assert _load_stamps(tmp_path / ".matrix.json", logged.append) == {}
    assert logged == [] if content == '{"a": []}' else "ignored" in logged[0]  # a bad record is dropped alone


def test_with_unreadable_stamps_every_run_runs_or_verifies(
    finished: tuple[Path, dict], smoke_store: Path, tmp_path: Path
) -> None:
    ws, reference = _copy(finished, tmp_path)
    (ws / "metrics" / "train" / ".matrix.json").write_text("[]")
    landscape = ws / "metrics" / "landscape" / ".matrix.json"
    landscape.write_text(landscape.read_text()[:40])  # truncated
    trained, measured = run_stages(workspace_params(), smoke_store, ws)
    assert "skipped" not in trained.values() and "skipped" not in measured.values()
    assert differing(snapshot(ws), reference) == []  # finished runs verified and re-scored, same bytes
    again = run_stages(workspace_params(), smoke_store, ws)  # the stamps are whole again
    assert all(set(r.values()) == {"skipped"} for r in again)


def test_a_moved_workspace_reruns_nothing(
    finished: tuple[Path, dict], smoke_store: Path, tmp_path: Path
) -> None:
    ws, reference = _copy(finished, tmp_path)  # another folder, as on a cluster's other mount or a CI cache
    trained, measured = run_stages(workspace_params(), smoke_store, ws)
    assert set(trained.values()) == {"skipped"} and set(measured.values()) == {"skipped"}
    assert differing(snapshot(ws), reference) == []


def test_a_code_change_retrains_from_scratch_instead_of_resuming(
    finished: tuple[Path, dict], smoke_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    """An edit to the model code (here: of a copy of the sources the run identity digests) changes the
    run key the checkpoints are checked against: every run starts over, none resumes or is re-scored."""
    ws, reference = _copy(finished, tmp_path)
    code = tmp_path / "code"
    for rel in run_config.TRAIN_CODE + run_config.LANDSCAPE_CODE:
        src = run_config.ROOT / rel
        (code / rel).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, code / rel, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, code / rel)
    monkeypatch.setattr(run_config, "ROOT", code)
    assert set(run_stages(workspace_params(), smoke_store, ws)[0].values()) == {"skipped"}  # same sources
    nets = code / "models" / "nets.py"
    nets.write_text(nets.read_text().replace("nn.ReLU()", "nn.GELU()"))
    capsys.readouterr()
    trained, measured = run_stages(workspace_params(), smoke_store, ws)
    out = capsys.readouterr().out
    assert "skipped" not in trained.values() and "skipped" not in measured.values()
    assert "resuming" not in out and out.count("differs in: code)); starting over") == 2
    # the code that ran is the same, so a run from scratch gives the same numbers and weights; only the
    # checkpoints' recorded identity (its code digest) is new
    changed = differing(snapshot(ws), reference)
    assert changed and all(c.endswith(".pt") for c in changed), changed
    for rel in changed:
        new, old = load_checkpoint(ws / rel), load_checkpoint(finished[0] / rel)
        assert all(torch.equal(new["model"][k], old["model"][k]) for k in old["model"])


class _Worsening:
    """A real training loss; the validation metric gets worse after epoch 1, so patience runs out."""

    def __init__(self) -> None:
        self.epoch = 0

    def loss(self, model: torch.nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
        return model(batch[0]).pow(2).mean()

    def errors(self, model: torch.nn.Module, batch: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
        self.epoch += 1
        return torch.tensor(1.0 if self.epoch == 1 else 2.0, dtype=torch.float64), 1

    def reduce(self, sums: torch.Tensor, count: int) -> float:
        return float(sums) / count


class _Linear(torch.nn.Linear):
    def regularizer(self) -> torch.Tensor:
        return torch.zeros(())


def test_early_stopping_waits_for_the_early_checkpoint(tmp_path: Path) -> None:
    """early.pt is a stamped output the landscape stage reads: a run never stops before writing it."""
    from torch.utils.data import TensorDataset

    from pipelines.params import OptimiserParams
    from train.loop import train

    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    settings = OptimiserParams(max_epochs=8, early_epoch=4, batch_size=4, patience=1)
    result = train(
        _Linear(3, 1), _Worsening(), TensorDataset(x), TensorDataset(x[:2]), settings, tmp_path, 0, "k"
    )
    assert result["stopped_early"] and result["history"]["epoch"] == [1, 2, 3, 4]  # patience ran out at 3
    assert load_checkpoint(tmp_path / "early.pt", run={"config_key": "k"})["epoch"] == 4


def test_weights_of_another_architecture_start_the_run_over(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A state-dict change the run key cannot see (a library's layer, say): no resume, no traceback."""
    from torch.utils.data import TensorDataset

    from pipelines.params import OptimiserParams
    from train.loop import train

    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    data, settings = TensorDataset(x), OptimiserParams(max_epochs=2, early_epoch=1, batch_size=4)
    train(_Linear(3, 1), _Worsening(), data, data, settings, tmp_path, 0, "k")
    capsys.readouterr()
    wider = train(_Linear(3, 2), _Worsening(), data, data, settings, tmp_path, 0, "k")
    assert "holds another architecture's weights); starting over" in capsys.readouterr().out
    assert wider["history"]["epoch"] == [1, 2]
    assert load_checkpoint(tmp_path / "best.pt")["model"]["weight"].shape == (2, 3)
