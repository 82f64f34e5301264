"""Preview images: one small PNG per series or sample, so a Hub reader sees the flow before loading it.

Each picture is written twice from the same bytes: as ``figures/preview/<name>.png`` (the card shows some of
them) and as a row of the ``preview`` config, whose ``image`` column is ``datasets``' ``Image`` feature in
parquet, which the Hub's dataset viewer renders. The bytes are reproducible (fields colour-mapped and tiled
by numpy, written by Pillow with no time or software stamp), so an unchanged store gives the same files,
checksums and receipt entries.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from pipelines.publish.card import ConfigSpec
from pipelines.publish.parquet import write_split

CONFIG = "preview"
FOLDER = "figures/preview"


TILE = 128  # pixels a panel's longer side is scaled up to (nearest neighbour: grid cells stay visible)
GAP = 4  # white pixels between panels


@dataclass(frozen=True)
class Panel:
    """One image of a preview: a 2-D field and its colour scale."""

    field: np.ndarray  # (rows, columns), drawn with row 0 at the bottom
    cmap: str
    vmin: float
    vmax: float

    def rgb(self) -> np.ndarray:
        import matplotlib

        x = np.clip((np.asarray(self.field, dtype=np.float64) - self.vmin) / (self.vmax - self.vmin), 0, 1)
        image = (matplotlib.colormaps[self.cmap](x[::-1])[..., :3] * 255).round().astype(np.uint8)
        k = max(1, TILE // max(image.shape[:2]))
        return image.repeat(k, axis=0).repeat(k, axis=1)


@dataclass(frozen=True)
class Preview:
    """One preview row: its file name (no suffix), key columns (ints), caption and PNG bytes."""

    name: str
    keys: dict[str, int]
    caption: str
    png: bytes

    @property
    def path(self) -> str:
        return f"{FOLDER}/{self.name}.png"


def grid_png(panels: list[list[Panel]]) -> bytes:
    """Rows of panels tiled into one PNG, colour-mapped directly (no axes or text: the caption says what
    is shown). Pillow writes no time or software stamp, so the same fields give the same bytes; this is
    ~10x faster than a matplotlib figure, which matters at one picture per series."""
    from PIL import Image

    tiles = [[p.rgb() for p in row] for row in panels]
    height = max(t.shape[0] for row in tiles for t in row)
    width = max(t.shape[1] for row in tiles for t in row)
    n_cols = max(len(row) for row in tiles)
    canvas = np.full((GAP + len(tiles) * (height + GAP), GAP + n_cols * (width + GAP), 3), 255, np.uint8)
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            y, x = GAP + i * (height + GAP), GAP + j * (width + GAP)
            canvas[y : y + t.shape[0], x : x + t.shape[1]] = t
    buffer = io.BytesIO()
    Image.fromarray(canvas, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def vorticity(u: np.ndarray, v: np.ndarray, dx: float) -> np.ndarray:
    """dv/dx - du/dy of a cell-centred 2-D velocity (arrays indexed (y, x)), central differences inside."""
    return np.gradient(v, dx, axis=-1) - np.gradient(u, dx, axis=-2)


def symmetric_limit(*fields: np.ndarray) -> float:
    """One colour limit for fields shown on a scale centred at zero (1 if they are all zero)."""
    return max(float(np.max(np.abs(f))) for f in fields) or 1.0


def write_preview_config(out: Path, previews: dict[str, list[Preview]], description: str) -> ConfigSpec:
    """Write every preview as a PNG file and as a row of the ``preview`` config (one parquet split per key
    of ``previews``, Hub split names); returns the config, its images listed in ``selection["images"]``."""
    first = next(p for rows in previews.values() for p in rows)
    features = datasets.Features(
        {**{k: datasets.Value("int32") for k in first.keys}, "caption": datasets.Value("string"),
         "image": datasets.Image()}
    )  # fmt: skip
    config = ConfigSpec(CONFIG, description, {"images": []}, features=features)
    for split, rows in previews.items():
        for p in rows:
            path = out / p.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(p.png)
            config.selection["images"].append((split, p))

        def columns(a: int, b: int, rows: list[Preview] = rows) -> dict[str, Any]:
            part = rows[a:b]
            keys = {k: np.asarray([p.keys[k] for p in part], dtype=np.int32) for k in first.keys}
            images = [{"bytes": p.png, "path": p.path} for p in part]
            return {**keys, "caption": [p.caption for p in part], "image": images}

        config.files[split] = write_split(out, f"data/{CONFIG}", split, len(rows), columns, features,
                                          len(rows), len(rows))  # fmt: skip
        config.rows[split] = len(rows)
    return config


def card_text(configs: list[ConfigSpec], group: str, what: str) -> str:
    """The card's "Preview" section: the first picture of each ``group`` (a key column, or ``split``), and
    where the rest are."""
    config = next((c for c in configs if c.name == CONFIG), None)
    if config is None:
        return "No preview pictures in this build.\n"
    shown: dict[Any, Preview] = {}
    for split, p in config.selection["images"]:
        shown.setdefault(split if group == "split" else p.keys[group], p)
    # the picture's keys as its alt text, the whole caption (what is drawn, the colour scales) below it
    lines = [
        f"![{p.caption.split(':')[0]}]({p.path})\n\n{p.caption[:1].upper()}{p.caption[1:]}."
        for p in shown.values()
    ]
    n = len(config.selection["images"])
    return (
        f"{what} Below: the first of each {group}; all {n} are in `{FOLDER}/` and, as images, in the "
        f"`{CONFIG}` config, which the Hub's dataset viewer shows.\n\n" + "\n\n".join(lines) + "\n"
    )
