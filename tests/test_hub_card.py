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


WINDOWS_HEADING = "### Input / target windows with `datasets` alone\n"


def _windows_snippet(card: str) -> str:
    """The card's own ``datasets`` snippet for input / target windows, as a Hub reader copies it."""
    return card.split(WINDOWS_HEADING, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize(
    ("name", "config", "split"),
    [("smoke", None, "train"), ("smoke", "E3", "test"), ("turbulence", None, "train")],
)
def test_the_cards_datasets_snippet_gives_the_torch_loaders_windows(
    published: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, config: str | None,
    split: str,
) -> None:  # fmt: skip
    import datasets
    import numpy as np

    from loaders import smoke_plume, turbulence_sr

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # a local folder: nothing to fetch
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = published / REPOS[name].split("/")[1]
    card = _card(published, name)
    snippet = _windows_snippet(card).replace(f'"{REPOS[name]}"', repr(str(folder)))
    first = card.split("config_name: ", 1)[1].split("\n", 1)[0]  # the card's first (default) config
    if config:  # the same lines for another config and split
        snippet = snippet.replace(f'"{first}", split="train"', f'"{config}", split="{split}"')
    namespace: dict[str, Any] = {}
    exec(compile(snippet, f"{name} card snippet", "exec"), namespace)  # noqa: S102 - the card's own text
    pairs, x, y = namespace["pairs"], namespace["x"], namespace["y"]
    if name == "smoke":
        loader = smoke_plume(folder, level=config or first, split=split)
    else:
        loader = turbulence_sr(folder, split=split)
    assert len(pairs) == len(loader) > 0
    assert np.array_equal(x, loader[0][0].numpy()) and np.array_equal(y, loader[0][1].numpy())
    columns = ("input", "target") if name == "smoke" else ("lrs", "hr")
    for i in range(len(loader)):  # window for window, bitwise
        want = loader[i]
        for column, tensor in zip(columns, want, strict=True):
            got = pairs[i][column]
            assert got.dtype == np.float32 and np.array_equal(got, tensor.numpy()), (i, column)


@pytest.mark.parametrize("name", ["smoke", "turbulence"])
def test_previews_are_reproducible_shown_and_published_like_every_file(
    published: Path, smoke_store: Path, turbulence_store: Path, tmp_path: Path, name: str
) -> None:
    import re

    import numpy as np
    import pyarrow.parquet as pq

    from loaders.storage import file_manifest
    from pipelines.publish.registry import get_kind
    from pipelines.publish.repo import read_checksums, verify_folder

    folder = published / REPOS[name].split("/")[1]
    store = {"smoke": smoke_store, "turbulence": turbulence_store}[name]
    ds = open_store(store, dask=False)
    get_kind(name).write_previews(ds, tmp_path)  # drawn again: the same bytes as the published build's
    again = file_manifest(tmp_path, skip=())
    pictures = sorted(p for p in again if p.endswith(".png"))
    if name == "smoke":  # one per series: every level and direction the store holds
        assert len(pictures) == int(np.prod([ds.sizes[d] for d in ds.velocity.dims[:-4]]))
    else:  # one per sample (row) of every split
        assert len(pictures) == sum(len(c) for c in json.loads(ds.attrs["splits"]).values())
    published_files = file_manifest(folder, skip=())
    assert {p: published_files.get(p) for p in again} == again

    # like every other file: in the checksums and the receipt, verified, and the card's pictures exist
    receipt = json.loads((published.parent / "receipt.json").read_text())["repos"][name]["files"]
    assert set(again) <= set(read_checksums(folder)) and set(again) <= set(receipt)
    assert verify_folder(folder) == []
    shown = re.findall(r"!\[[^]]*\]\((figures/preview/[^)]+)\)", _card(published, name))
    assert shown and set(shown) <= set(pictures)

    # the viewer's rows: datasets' Image feature holding the same PNG bytes
    files = sorted(p for p in again if p.startswith("data/preview/"))
    rows = [r for f in files for r in pq.read_table(folder / f).to_pylist()]
    assert b'"_type": "Image"' in pq.read_schema(folder / files[0]).metadata[b"huggingface"]
    assert sorted((r["image"]["path"], r["image"]["bytes"]) for r in rows) == sorted(
        (p, (folder / p).read_bytes()) for p in pictures
    )
