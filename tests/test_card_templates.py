"""Dataset card templates: each template and its typed context name the same variables, a missing one
fails the render, the templates ship with the package, and a store's source description reaches the card."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jinja2
import jinja2.meta
import pytest

from loaders.storage import read_provenance
from pipelines.publish.card import _ENV, TEMPLATES, ConfigSpec, render
from pipelines.publish.kinds import CardContext
from pipelines.publish.smoke_kind import SmokeCard
from pipelines.publish.turbulence_kind import TurbulenceCard, TurbulenceKind

ROOT = Path(__file__).resolve().parent.parent
CONTEXTS = {"smoke.md.j2": SmokeCard, "turbulence.md.j2": TurbulenceCard}


@pytest.mark.parametrize("template", sorted(CONTEXTS))
def test_template_variables_are_exactly_the_context_fields(template: str) -> None:
    source = (TEMPLATES / template).read_text()
    used = jinja2.meta.find_undeclared_variables(_ENV.parse(source))
    assert used == {f.name for f in dataclasses.fields(CONTEXTS[template])}


def test_a_missing_variable_fails_the_render_and_contexts_must_be_dataclasses() -> None:
    @dataclasses.dataclass
    class Partial:
        pretty_name: str

    with pytest.raises(jinja2.UndefinedError, match="is undefined"):
        render("turbulence.md.j2", Partial("x"))
    with pytest.raises(TypeError, match="must be a dataclass instance"):
        render("turbulence.md.j2", {"pretty_name": "x"})


def test_templates_ship_as_package_data() -> None:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {p.relative_to(TEMPLATES.parent).as_posix() for p in TEMPLATES.glob("*.j2")}
    assert shipped == {"templates/smoke.md.j2", "templates/turbulence.md.j2"}
    assert all(Path(name).match(data["pipelines.publish"][0]) for name in shipped)


def _turbulence_card(store: Path, **attrs: str) -> str:
    import xarray as xr

    ds = xr.open_zarr(store)
    ds.attrs.update(attrs)
    configs = [ConfigSpec("lr2_hr8", "all", {}, True, {"train": ["f"]}, {"train": 3})]
    stats = {"lr2_hr8": {"hr": {"components": ["u_x"], "mean": [0.0], "std": [1.0], "rms": 1.0, "count": 3}}}
    ctx = CardContext(ds, read_provenance(ds), "t/turb", configs, stats, {"README.md": 10}, "cc-by-4.0")
    return TurbulenceKind().card_body(ctx)


def test_turbulence_card_quotes_the_source_description(turbulence_store: Path) -> None:
    words = "**Source: JHTDB** `isotropic1024coarse` (stand-in words), mode `box` with factor 2."
    card = _turbulence_card(turbulence_store, source="jhtdb", source_description=words)
    assert card.startswith(
        "\n# Isotropic turbulence super-resolution (3D velocity)\n\n" + words + "\n\nA sample"
    )
    assert "source_description" not in card.split("Extra metadata:")[1]  # not repeated as metadata
    # a store without the stage's description gets the card's own words for its source
    # the fixture comes from the real synthetic stage, so it carries the synthetic source's own words
    assert "**Source: synthetic -- NOT JHTDB data.**" in _turbulence_card(turbulence_store)
    assert card.endswith("## License\n\ncc-by-4.0\n")


def test_front_matter_dataset_info_reads_back_through_the_libraries(turbulence_store: Path, tmp_path: Path):
    """The 5-D turbulence features and the split sizes survive the card's YAML as `datasets` parses it."""
    import pyarrow.parquet as pq
    import xarray as xr
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard

    from pipelines.params import PublishParams
    from pipelines.publish.card import dataset_infos, front_matter

    ds = xr.open_zarr(turbulence_store)
    kind = TurbulenceKind()
    configs = kind.configs(ds, PublishParams(mini_frames=2))
    for config in configs:
        kind.write_parquet(ds, config, tmp_path, PublishParams(mini_frames=2))
    infos = dataset_infos(configs, kind.features(ds), tmp_path)
    meta = {"pretty_name": "t", "license": "cc-by-4.0", "tags": ("x",), "task_categories": ("y",)}
    text = front_matter(**meta, configs=configs, infos=infos)
    back = DatasetInfosDict.from_dataset_card_data(DatasetCard(text + "\nbody\n").data)
    assert set(back) == {"lr2_hr8", "mini"}
    assert back["lr2_hr8"].features == kind.features(ds)
    assert back["lr2_hr8"].features["lrs"].shape == (3, 3, 2, 2, 2)
    sizes = {k: v.num_examples for k, v in back["mini"].splits.items()}
    assert sizes == {"train": 2, "validation": 1, "test": 1}
    train = pq.read_table(tmp_path / configs[0].files["train"][0])
    assert back["lr2_hr8"].splits["train"].num_bytes == train.nbytes  # one file, one table
