"""What a published dataset card gives a Hub reader by itself: the build's cost and hardware, input / target
windows from its `datasets` snippet equal to this project's torch loaders', and preview images.

The repo folders are built once by the real publish stage from the tiny stores of tests/conftest.py, with
the data stages' own records (``<store>.json``) as the metrics the cards quote.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from loaders.provenance import hardware
from loaders.storage import open_store, read_provenance
from pipelines.params import PublishParams
from pipelines.publish.facts import build_record
from pipelines.publish.stage import publish

REPOS = {"smoke": "tester/smoke-plume", "turbulence": "tester/turbulence-sr"}


@pytest.fixture(scope="module")
def published(smoke_store: Path, turbulence_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<out>`` holding both repo folders, built with the data stages' records as metrics."""
    root = tmp_path_factory.mktemp("hub_card")
    metrics = root / "metrics"
    metrics.mkdir()
    stores = {"smoke": smoke_store, "turbulence": turbulence_store}
    for name, store in stores.items():  # the stage writes its record beside the store in the fixtures
        shutil.copy(store.parent / f"{name}.json", metrics / f"{name}.json")
    publish(PublishParams(repos=REPOS, mini_frames=2), stores, root / "hub", root / "receipt.json", metrics)
    return root / "hub"


def _card(published: Path, name: str) -> str:
    return (published / REPOS[name].split("/")[1] / "README.md").read_text()


def _section(card: str, heading: str) -> str:
    return card.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_card_states_the_cost_and_hardware_of_the_build_that_made_its_store(published: Path) -> None:
    machine = hardware()
    for name, rate in (("smoke", "sim-steps/s"), ("turbulence", "solver steps/s")):
        cost = _section(_card(published, name), "Generation cost")
        record = json.loads((published.parent / "metrics" / f"{name}.json").read_text())
        assert rate in cost and f"Built {record['run']['created_utc'][:10]} from commit" in cost, cost
        assert f"{machine['cpu']}, {machine['usable_cores']} usable of {machine['logical_cores']}" in cost
        assert f"{record['wall_seconds']:.3g} s" in cost and "metrics/" not in cost, cost


def test_a_record_of_another_build_is_not_quoted(smoke_store: Path) -> None:
    provenance = read_provenance(open_store(smoke_store, verify=False))
    record = json.loads((smoke_store.parent / "smoke.json").read_text())
    quoted = build_record(record, provenance)
    assert quoted["run"]["hardware"] == hardware() and "host" not in quoted["run"]  # a card names no host
    other: dict[str, Any] = json.loads(json.dumps(record))
    level = next(iter(other["orbit_distance"]))
    other["orbit_distance"][level] += 1e-9  # another store's numbers: its timings are not this store's
    assert build_record(other, provenance) == {} and build_record(None, provenance) == {}
