"""Dataset card (``README.md``) pieces shared by every dataset kind.

The card is generated from the store's metadata only (provenance, attributes, statistics, file list), so
it cannot drift from the data it describes, and it holds no timestamp of its own: rebuilding an unchanged
dataset gives a byte-identical card. The prose of each kind's card is a Jinja2 template in ``templates/``
(shipped with the package), rendered by :func:`render` from a typed context; the tables come from the
helpers here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import jinja2
import pyarrow.parquet as pq
import yaml
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCardData

TEMPLATES = Path(__file__).parent / "templates"
# StrictUndefined: a name the context lacks fails the render instead of leaving a silent gap in the card;
# no autoescape (Markdown, not HTML) and the final newline kept, so the text is exactly the template's
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


@dataclass
class ConfigSpec:
    """One ``datasets`` config: its parquet files per Hub split name, and row counts."""

    name: str
    description: str
    selection: dict[str, Any]
    default: bool = False
    files: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    features: datasets.Features | None = None  # None: the kind's features, shared by its data configs


def arrow_bytes(root: Path, files: Sequence[str]) -> int:
    """In-memory Arrow size of parquet files, read one row group at a time: the ``num_bytes`` that
    ``datasets`` itself records for a split it prepares."""
    total = 0
    for rel in files:
        pf = pq.ParquetFile(Path(root) / rel)
        total += sum(pf.read_row_group(i).nbytes for i in range(pf.num_row_groups))
    return total


def dataset_infos(configs: Sequence[ConfigSpec], features: datasets.Features, root: Path) -> DatasetInfosDict:
    """One ``DatasetInfo`` per config (features, splits with sizes) from the parquet files under ``root``,
    so ``load_dataset_builder(repo, config).info`` is complete without downloading anything."""
    infos = DatasetInfosDict()
    for c in configs:
        splits = datasets.SplitDict()
        download = 0
        for split, files in c.files.items():
            splits.add(datasets.SplitInfo(split, arrow_bytes(root, files), c.rows[split]))
            download += sum((Path(root) / rel).stat().st_size for rel in files)
        infos[c.name] = datasets.DatasetInfo(
            features=c.features or features,
            splits=splits,
            download_size=download,
            dataset_size=sum(s.num_bytes for s in splits.values()),
            config_name=c.name,
        )
    return infos


def size_category(n: int) -> str:
    for bound, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < bound:
            return label
    return "1M<n<10M"


def front_matter(
    *,
    pretty_name: str,
    license: str,
    tags: Sequence[str],
    task_categories: Sequence[str],
    configs: Sequence[ConfigSpec],
    infos: DatasetInfosDict | None = None,
) -> str:
    """YAML metadata the Hub and ``datasets`` read: one config per entry with ``data_files`` per split, and
    (given ``infos``) ``dataset_info`` per config, written by the libraries' own card classes."""
    largest = max(sum(c.rows.values()) for c in configs)
    entries = []
    for c in configs:
        entry: dict[str, Any] = {"config_name": c.name}
        if c.default:
            entry["default"] = True
        entry["data_files"] = [{"split": s, "path": f"data/{c.name}/{s}-*.parquet"} for s in c.files]
        entries.append(entry)
    card = DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        tags=list(tags),
        task_categories=list(task_categories),
        size_categories=[size_category(largest)],
        configs=entries,
    )
    if infos:
        infos.to_dataset_card_data(card)
    return "---\n" + card.to_yaml() + "\n---\n"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(x: float) -> str:
    return f"{x:.6g}"


def stats_table(stats: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Mean / std per config, field and component, and the rms magnitude the ``scale`` mode divides by."""
    rows = []
    for config, fields in stats.items():
        for name, s in fields.items():
            comps = s["components"] or ["(scalar)"]
            for i, comp in enumerate(comps):
                rms = fmt(s["rms"]) if i == 0 else ""
                rows.append((config, name, comp, fmt(s["mean"][i]), fmt(s["std"][i]), rms, s["count"]))
    return table(
        ("config", "field", "component", "mean", "std", "rms magnitude", "values per component"), rows
    )


def arrays_table(ds: Any, names: Sequence[str]) -> str:
    rows = []
    for name in names:
        var = ds[name]
        dims = ", ".join(f"{d}={ds.sizes[d]}" for d in var.dims)
        units = var.attrs.get("units", "-")  # as the store records them; never guessed here
        rows.append((f"`{name}`", f"({dims})", str(var.dtype), units, var.attrs.get("long_name", "")))
    return table(("array", "dimensions", "dtype", "units", "meaning"), rows)


def versions_table(versions: dict[str, str], first: Sequence[str]) -> str:
    ordered = [k for k in first if k in versions] + sorted(k for k in versions if k not in first)
    return table(("package", "version"), ((k, versions[k]) for k in ordered))


def params_block(params: dict[str, Any]) -> str:
    return "```yaml\n" + yaml.safe_dump(params, sort_keys=True, width=100) + "```\n"


def files_table(sizes: dict[str, int], limit: int = 40) -> str:
    """The repo's files grouped by top folder (each zarr store, and the preview pictures, on one line)."""
    groups: dict[str, list[int]] = {}
    for path, size in sizes.items():
        parts = path.split("/")
        folded = parts[0] == "zarr" or parts[:2] == ["figures", "preview"]
        key = "/".join(parts[:2]) + "/" if folded and len(parts) > 2 else path
        groups.setdefault(key, []).append(size)
    rows = [(f"`{k}`", len(v), f"{sum(v) / 1e6:.2f} MB") for k, v in sorted(groups.items())[:limit]]
    return table(("path", "files", "size"), rows)


def render(template: str, context: Any) -> str:
    """Render ``templates/<template>`` with the fields of the dataclass ``context`` as its variables."""
    if not dataclasses.is_dataclass(context) or isinstance(context, type):
        raise TypeError(
            f"card context for {template} must be a dataclass instance, not {type(context).__name__}"
        )
    variables = {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
    return _ENV.get_template(template).render(variables)
