"""Per-model optimiser overrides (``train.<dataset>.optimiser_overrides``): validated, applied to that model's
runs only, and part of that model's run key only (issue 11: GM-CNN trains at a lower learning rate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from loaders.storage import COMPLETE_MARKER
from pipelines.fit import run_key
from pipelines.params import ParamsError, parse_params
from pipelines.run_config import optimiser_config

REPO = Path(__file__).resolve().parent.parent
OPT = {"lr": 3e-3, "max_epochs": 4, "early_epoch": 2, "batch_size": 4, "max_train_batches": 1}


def _section(**overrides: dict):
    landscape = {"models": {"smoke": [], "turbulence": []}}
    train = {"models": ["cnn", "gmcnn"], "seeds": [0], "optimiser": OPT, "optimiser_overrides": overrides}
    return parse_params({"train": {"smoke": train}, "landscape": landscape}).train.smoke


def test_overrides_apply_to_their_model_only() -> None:
    section = _section(gmcnn={"lr": 1e-3, "max_epochs": 8})
    gm, cnn = optimiser_config(section, "gmcnn"), optimiser_config(section, "cnn")
    assert (gm.lr, gm.max_epochs, gm.batch_size, gm.early_epoch) == (1e-3, 8, 4, 2)
    assert (cnn.lr, cnn.max_epochs) == (3e-3, 4) and optimiser_config(section) == cnn


@pytest.mark.parametrize("overrides,message", [
    ({"unet": {"lr": 1e-3}}, "optimiser_overrides.unet: unknown model"),
    ({"gmcnn": {"learning_rate": 1e-3}}, "unknown keys ['learning_rate']"),
    ({"gmcnn": {"lr": -1.0}}, "optimiser_overrides.gmcnn"),
    ({"gmcnn": {"max_epochs": 1}}, "early_epoch=2 is after max_epochs=1"),  # checked merged
])
def test_bad_overrides_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ParamsError, match="optimiser_overrides") as err:
        _section(**overrides)
    assert message in str(err.value)


def test_run_key_changes_for_the_overridden_model_only(tmp_path: Path) -> None:
    data = tmp_path / "smoke.zarr"  # the run key reads only the completed store's manifest
    data.mkdir()
    (data / COMPLETE_MARKER).write_text(json.dumps({"files": {"a": "0" * 64}}))
    plain, over = _section(), _section(gmcnn={"lr": 1e-3})
    assert run_key("smoke", "cnn", 0, plain, {}, data) == run_key("smoke", "cnn", 0, over, {}, data)
    assert run_key("smoke", "gmcnn", 0, plain, {}, data) != run_key("smoke", "gmcnn", 0, over, {}, data)
    # an override equal to the section's value is no change: the run still resumes
    same = _section(gmcnn={"lr": 3e-3})
    assert run_key("smoke", "gmcnn", 0, plain, {}, data) == run_key("smoke", "gmcnn", 0, same, {}, data)


def test_dvc_train_stage_lists_the_overrides() -> None:
    train = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    assert "train.smoke.optimiser_overrides" in train["params"]
    assert "optimiser_overrides" in yaml.safe_load((REPO / "params.yaml").read_text())["train"]["smoke"]


def test_embedded_default_trains_gmcnn_slower_than_the_rest() -> None:
    # issue 11: GM-CNN (residual blocks without normalisation) stalls above persistence at the section's
    # lr 3e-3; at lr 1e-3 with up to 20 epochs it beats persistence (docs/study.md)
    from pipelines.params import load_params

    section = load_params(REPO / "params.yaml").train.smoke
    gm, rest = optimiser_config(section, "gmcnn"), optimiser_config(section, "e2cnn")
    assert gm.lr == pytest.approx(rest.lr / 3) and gm.max_epochs == 2 * rest.max_epochs
    assert (gm.batch_size, gm.weight_decay, gm.max_train_batches) == (4, rest.weight_decay, 12)


def test_an_override_of_an_unlisted_model_is_kept_but_unused() -> None:
    # `dvc exp run -S train.smoke.models=[cnn]` must not make params.yaml's gmcnn entry an error
    section = _section(rsteer={"lr": 1e-3})
    assert optimiser_config(section, "rsteer").lr == 1e-3 and optimiser_config(section, "cnn").lr == 3e-3
