"""Dataset cards as `datasets` and The Well users expect: ``dataset_info`` in the front matter (features and
split sizes per config, read back by the real ``load_dataset_builder`` from the loopback Hub stand-in), and
the card's physics, units, scores and citations taken from the data and the stage metrics, never invented.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pipelines.publish.stage import publish
from tests.test_publish import REPOS, _hub_env, _params, _publish_cmd, _run, _write_params

BUILDER_CHECKS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import xarray as xr
    from datasets import load_dataset, load_dataset_builder

    store, repo, config, level = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    local = xr.open_zarr(store)
    builder = load_dataset_builder(repo, config)
    info = builder.info
    out = {"features": info.features.to_dict() if info.features is not None else None,
           "splits": None if info.splits is None else
               {k: [v.num_examples, v.num_bytes] for k, v in info.splits.items()},
           "download_size": info.download_size, "dataset_size": info.dataset_size}
    splits = load_dataset(repo, config)
    li = [int(v) for v in local.level.values].index(level)
    for split, (a, b) in {"train": (0, 6), "validation": (6, 9), "test": (9, 12)}.items():
        rows = splits[split].with_format("numpy")
        want = local.velocity.values[li, :, a:b].reshape(-1, *local.velocity.shape[3:])
        assert np.array_equal(np.stack(rows["velocity"]), want), split  # bitwise the store's values
        want = local.smoke.values[li, :, a:b].reshape(-1, *local.smoke.shape[3:])
        assert np.array_equal(np.stack(rows["smoke"]), want), split
        recorded = splits[split].info.splits[split]  # what `datasets` measured while preparing the split
        out.setdefault("loaded", {})[split] = [len(rows), recorded.num_bytes]
    print(json.dumps(out))
    """
)


def test_builder_info_has_features_and_split_sizes_from_the_hub(hub, smoke_store: Path, tmp_path: Path):
    env = _hub_env(hub.url, tmp_path)
    params = _write_params(tmp_path, datasets=["smoke"])
    result = _run(_publish_cmd(params, {"smoke": smoke_store}, tmp_path / "hub", tmp_path / "r.json"), env)
    assert result.returncode == 0, result.stderr[-3000:]
    script = tmp_path / "builder_checks.py"
    script.write_text(BUILDER_CHECKS)
    checks = _run([sys.executable, str(script), str(smoke_store), REPOS["smoke"], "E3", "3"], env)
    assert checks.returncode == 0, checks.stderr[-4000:]
    got = json.loads(checks.stdout.strip().splitlines()[-1])

    feats = got["features"]
    assert feats["velocity"] == {"shape": [2, 16, 16], "dtype": "float32", "_type": "Array3D"}
    assert feats["smoke"] == {"shape": [16, 16], "dtype": "float32", "_type": "Array2D"}
    assert feats["buoyancy"]["length"] == 2 and feats["level"] == {"dtype": "int32", "_type": "Value"}
    # 4 directions x (6, 3, 3) frames; num_bytes is the Arrow size `datasets` records when it prepares a split
    assert {k: v[0] for k, v in got["splits"].items()} == {"train": 24, "validation": 12, "test": 12}
    assert got["splits"] == got["loaded"]
    assert got["dataset_size"] == sum(v[1] for v in got["splits"].values())
    folder = tmp_path / "hub" / "smoke-plume"
    assert got["download_size"] == sum(p.stat().st_size for p in (folder / "data" / "E3").glob("*.parquet"))


def _front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


def _metrics_dir(tmp_path: Path, store: Path, dataset: str) -> Path:
    """The stage's own metrics (written beside the fixture store) plus baseline and training scores."""
    root = tmp_path / "metrics"
    (root / "baselines").mkdir(parents=True)
    (root / "train").mkdir()
    shutil.copy(store.parent / f"{dataset}.json", root / f"{dataset}.json")
    metric = "rmse" if dataset == "smoke" else "mae"
    scores = {"persistence": {metric: 0.25, "se": 0.01, "n": 12}, "zero": {metric: 0.5, "se": 0.02, "n": 12}}
    base = {"dataset": dataset, "metric": metric, "splits": {"valid": scores, "test": scores}}
    (root / "baselines" / f"{dataset}.json").write_text(json.dumps(base))
    for seed, value in ((0, 0.125), (1, 0.375)):
        run = {f"test_{metric}": value, f"test_{metric}_se": 0.01, "test_samples": 12}
        (root / "train" / f"{dataset}-cnn-seed{seed}.json").write_text(json.dumps(run))
    return root


def test_smoke_card_physics_symmetry_scores_and_citations(smoke_store: Path, tmp_path: Path):
    metrics = _metrics_dir(tmp_path, smoke_store, "smoke")
    stage = json.loads((metrics / "smoke.json").read_text())
    publish(_params(datasets=["smoke"]), {"smoke": smoke_store}, tmp_path / "hub", None, metrics)
    card = (tmp_path / "hub" / "smoke-plume" / "README.md").read_text()
    meta = _front_matter(card)
    infos = {i["config_name"]: i for i in meta["dataset_info"]}
    assert set(infos) == {"E0", "E3", "mini", "preview"}
    assert [(s["name"], s["num_examples"]) for s in infos["mini"]["splits"]] == [
        ("train", 8), ("validation", 8), ("test", 8)
    ]  # fmt: skip
    for text in (
        "incompressible Navier-Stokes with Boussinesq buoyancy",
        "zero-velocity walls",
        "smoke: boundary extrapolation",
        "Grid spacing 1.0, time step 1.0",
        "| (level=2, direction=4, time=12, component=2, y=16, x=16) | float32 | length unit / time unit |",
        "Computed: PhiFlow simulations of 12 steps on a 16^2 grid in float64 for 2 symmetry levels",
        "| `persistence` | 0.25 | 0.01 | 12 |",
        "| `cnn` | rmse | 0.25 | 0.125 | 0.375 | 2 |",  # mean, min, max over the two seeds
        "@misc{canez2024equivariance",
        "@inproceedings{holl2020phiflow",
        "pip install .",
    ):
        assert text in card, text
    assert "relative C4 equivariance error" not in card.lower() and "jhtdb" not in card.lower()
    # the orbit distance, the published definition recomputed on this data, the published value: one row
    orbit = stage["orbit_distance"]["E3"]
    recomputed = stage["published_definition_level_error"]["E3"]
    assert f"| E_3 | {orbit:.6g} | {recomputed:.6g} | 0.435 |" in card
    assert "orbit distance to the nearest exactly C4-symmetric set" in card
    assert f"{stage['sim_steps_per_second']:.3g} sim-steps/s" in card  # this build's, from its record

    # without metrics the card says where the numbers will be instead of inventing them
    publish(_params(datasets=["smoke"]), {"smoke": smoke_store}, tmp_path / "bare", None, None)
    bare = (tmp_path / "bare" / "smoke-plume" / "README.md").read_text()
    assert "`metrics/baselines/smoke.json`" in bare and "`metrics/train/smoke-<model>-seed<n>.json`" in bare
    assert "Computed: PhiFlow simulations of 12 steps" in bare  # the work, from the store itself
    assert "No timings are stated" in bare and "sim-steps/s" not in bare
    assert _front_matter(bare)["dataset_info"] == meta["dataset_info"]


@pytest.mark.parametrize("source", ["synthetic", "jhtdb"])
def test_turbulence_tags_and_text_follow_the_stores_source(turbulence_store: Path, tmp_path: Path, source):
    import xarray as xr

    from pipelines.publish.card import ConfigSpec
    from pipelines.publish.kinds import CardContext
    from pipelines.publish.turbulence_kind import TurbulenceKind

    ds = xr.open_zarr(turbulence_store)
    ds.attrs.update(source=source, source_description="(words)")
    kind = TurbulenceKind()
    stats = {"c": {"hr": {"components": ["u_x"], "mean": [0.0], "std": [1.0], "rms": 1.0, "count": 3}}}
    configs = [ConfigSpec("c", "all", {}, True, {"train": ["f"]}, {"train": 3})]
    prov = json.loads(ds.attrs["provenance"])
    card = kind.card_body(CardContext(ds, prov, "t/turb", configs, stats, {}, "cc-by-4.0"))
    tags = kind.card_tags(ds)
    extra = card.split("Extra metadata:")[1]
    params = card.split("Parameters:")[1].split("Extra metadata:")[0]
    assert "periodic in x, y and z" in card and "nu = 0.008" in card
    assert "hr 0.785398 (2 pi / 8), lr 3.14159 (2 pi / 2)" in card
    if source == "jhtdb":
        assert "jhtdb" in tags and "@article{li2008jhtdb" in card
        assert "@inproceedings{perlman2007jhtdb" in card
        assert "JHTDB's simulation units" in card and "jhtdb_mode" in extra and "jhtdb:" in params
    else:
        assert "jhtdb" not in tags and "synthetic" in tags
        assert "li2008jhtdb" not in card and "JHTDB's simulation units" not in card
        assert "jhtdb_mode" not in extra and "jhtdb:" not in params and "synthetic:" in params
        assert "they are not JHTDB data" in card
