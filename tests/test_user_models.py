"""The README's model example, taken from README.md itself: a new model is one user module plus its name
in params.yaml; it validates, trains through the real train stage, and its code is part of its runs'
identity and, under DVC, a declared dependency (issue 20, item 2)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from models.catalog import MODEL_NAMES
from pipelines.fit import train_matrix
from pipelines.landscape import landscape_matrix
from pipelines.params import ParamsError, StudyParams, parse_params
from pipelines.run_config import check_models_declared, run_identity
from tests.conftest import TINY_SMOKE, TINY_TURBULENCE
from tests.run_workspace import LANDSCAPE
from tests.smoke_support import REPO

SECTION = "## Adding a model"
OPTIMISER = {"batch_size": 4, "max_epochs": 1, "early_epoch": 1, "max_train_batches": 1}


def readme_example() -> tuple[str, list[str]]:
    """The section's ```python block and the model list its `train.smoke.models: [...]` names."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) : text.index("\n## ", text.index(SECTION) + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section shows one complete module"
    listed = re.search(r"`(train\.smoke\.models: \[.*?\])`", section)
    assert listed, "the section names the model in params"
    return blocks[0], yaml.safe_load(listed.group(1).replace("train.smoke.", ""))["models"]


@pytest.fixture
def user_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, list[str]]:
    """The README's module written where a user would (outside the repo), importable: (file, name, list)."""
    code, models = readme_example()
    name = next(m for m in models if ":" in m)
    module = name.partition(":")[0]
    folder = tmp_path / "user_code"
    folder.mkdir()
    path = folder / f"{module}.py"
    path.write_text(code)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, module, raising=False)  # no stale copy from another test
    yield path, name, models
    sys.modules.pop(module, None)


def study(models: list[str], measured: tuple[str, ...] = (), **smoke_train: object) -> StudyParams:
    train = {"models": models, "seeds": [0], "window_stride": 2, "optimiser": OPTIMISER, **smoke_train}
    landscape = {**LANDSCAPE, "models": {"smoke": list(measured), "turbulence": []}, "checkpoints": ["best"]}
    return parse_params({
        "compute": {"device": "cpu", "n_workers": 1}, "smoke": TINY_SMOKE, "turbulence": TINY_TURBULENCE,
        "train": {"smoke": train}, "landscape": landscape,
    })  # fmt: skip


def test_an_unknown_model_is_refused_naming_the_key_and_the_registered_ones(user_model) -> None:
    _, name, _ = user_model
    with pytest.raises(ParamsError) as info:
        study(["cnn", "resnet"])
    registered = str(list(MODEL_NAMES["smoke"]))
    assert f"train.smoke.models: unknown model 'resnet': not a built-in smoke model {registered}" in str(
        info.value
    )
    for bad, needle in [
        ("no_such_module_xyz:NET", "'no_such_module_xyz:NET' cannot be imported"),
        ("models.catalog:MODEL_NAMES", "'models.catalog:MODEL_NAMES' is a dict, not a models.spec.ModelSpec"),
    ]:
        with pytest.raises(ParamsError, match=re.escape(needle)):
            study([bad])
    with pytest.raises(ParamsError, match=re.escape(f"turbulence.models: {name!r} is a model for task 's")):
        parse_params({"train": {"turbulence": {"models": [name]}}})
    with pytest.raises(ParamsError, match=re.escape(f"train.smoke.hparams.{name}.hidden: must be >= 1")):
        study([name], hparams={name: {"hidden": 0}})
    with pytest.raises(ParamsError, match=re.escape(f"train.smoke.hparams.{name}.in_frames: 2 differs")):
        study([name], hparams={name: {"in_frames": 2}})


def test_the_readme_model_validates_and_trains_through_the_train_stage(
    user_model, smoke_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path, name, models = user_model
    assert name in study(models).train.smoke.models  # the README's own list validates
    params = study([name], (name,), hparams={name: {"hidden": 4}})
    runs, metrics, run = tmp_path / "runs", tmp_path / "metrics", f"smoke-{name}-seed0"

    def stage() -> dict:  # the train stage as dvc repro runs it: the matrix of every listed run
        return train_matrix(params, {"smoke": smoke_store}, runs, metrics)

    result = stage()[run]
    # 2 -> 4 -> 2 channels, 3x3 kernels with biases: the README's network at hidden 4, nothing else
    assert result["parameters"] == (2 * 4 * 9 + 4) + (4 * 2 * 9 + 2)
    assert result["test_rmse"] > 0 and (runs / "smoke" / name / "seed0" / "best.pt").is_file()
    assert stage() == {run: "skipped"}
    # ... and the landscape stage measures it (no regularizer: none is added)
    measured = landscape_matrix(params, {"smoke": smoke_store}, runs, metrics)[f"{run}-best"]
    assert measured["norm_layers"] == 0 and measured["parameterisation"] == "as trained"
    # the run is keyed by the module's code: an edit of it retrains from scratch
    section = params.train.smoke
    identity = run_identity("smoke", name, 0, section, {"hidden": 4}, smoke_store, "cpu")
    path.write_text(path.read_text() + "# edited\n")
    changed = run_identity("smoke", name, 0, section, {"hidden": 4}, smoke_store, "cpu")
    assert {k for k in identity if identity[k] != changed[k]} == {"code"}
    capsys.readouterr()
    assert stage()[run] != "skipped"
    assert "differs in: code)); starting over" in capsys.readouterr().out


def test_dvc_runs_refuse_until_the_model_module_is_a_dependency(
    user_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, name, _ = user_model
    models = {"smoke": ["cnn", name]}
    check_models_declared(models, "train.{dataset}.models")  # outside DVC: nothing to check
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text("stages:\n  train:\n    cmd: x\n    deps:\n      - models\n")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "train")
    shown = path.relative_to(tmp_path)
    needle = f"train.smoke.models lists {name!r}: its module file {shown} is not a dependency of the DVC"
    with pytest.raises(ValueError, match=re.escape(needle)):
        check_models_declared(models, "train.{dataset}.models")
    with pytest.raises(ValueError, match=re.escape(needle)):  # the stage checks before any work
        train_matrix(study([name]), {"smoke": tmp_path / "no_store"}, tmp_path / "runs", tmp_path / "metrics")
    dvc_yaml.write_text(dvc_yaml.read_text() + f"      - {shown}\n")  # the line the error asks for
    check_models_declared(models, "train.{dataset}.models")
