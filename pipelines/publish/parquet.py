"""Parquet files that ``datasets.load_dataset`` reads natively, with fixed-shape array features.

Each file carries the ``datasets`` feature description in its schema metadata, so arrays come back as
``Array3D`` / ``Array4D`` / ... of the right shape and dtype, with no loading script and no remote code.
Files follow the Hub naming convention ``data/<config>/<split>-00000-of-00002.parquet``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RowsFn = Callable[[int, int], dict[str, np.ndarray]]


def arrow_table(columns: dict[str, np.ndarray], features: datasets.Features) -> pa.Table:
    """A table typed by ``features`` (keeps the feature metadata ``datasets`` reads back)."""
    return datasets.Dataset.from_dict({k: columns[k] for k in features}, features=features).data.table


def write_split(
    out_dir: Path,
    rel_dir: str,
    split: str,
    n_rows: int,
    rows: RowsFn,
    features: datasets.Features,
    rows_per_file: int,
    row_group: int,
) -> list[str]:
    """Write rows ``[0, n_rows)`` of one split as sharded parquet; returns the repo-relative file paths.

    ``rows(a, b)`` returns the columns of rows ``a..b-1``; it is called one row group at a time, so memory
    holds one row group, not the split.
    """
    if n_rows <= 0:
        raise ValueError(f"split {split!r} of {rel_dir} has no rows")
    n_files = -(-n_rows // rows_per_file)
    paths = []
    for i in range(n_files):
        rel = f"{rel_dir}/{split}-{i:05d}-of-{n_files:05d}.parquet"
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = None
        try:
            for a in range(i * rows_per_file, min((i + 1) * rows_per_file, n_rows), row_group):
                b = min(a + row_group, (i + 1) * rows_per_file, n_rows)
                table = arrow_table(rows(a, b), features)
                if writer is None:
                    # zstd: floats compress better than with snappy, and datasets / pyarrow read it natively
                    writer = pq.ParquetWriter(path, table.schema, compression="zstd")
                writer.write_table(table, row_group_size=row_group)
        finally:
            if writer is not None:
                writer.close()
        paths.append(rel)
    return paths
