"""Decoded, normalised data a dataset keeps in memory after its first read.

Without it every window re-reads the chunks it touches: a shuffled epoch decodes (and checks the crc32c of)
about one chunk per sample, and zarr's per-read overhead dominates. With it a smoke dataset decodes and
checks each chunk it touches once per process (a turbulence dataset each sample's frames once) and serves
every later read from memory; the data is what the chunked path returns, bit for bit. The default stores
are small (a split of one level is a few MB to a few hundred MB), so a dataset keeps its data whenever it
fits :data:`RESIDENT_BYTES`; a larger one reads through the chunk cache as before.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import torch

RESIDENT_BYTES = 1 << 30  # per dataset: larger splits stream through the chunk cache instead

T = TypeVar("T")


def keep_resident(nbytes: int, requested: bool | None) -> bool:
    """Whether a dataset of ``nbytes`` decoded bytes keeps them: ``requested`` if given, else if they fit."""
    return nbytes <= RESIDENT_BYTES if requested is None else bool(requested)


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.nbytes
    return sum(_nbytes(v) for v in value) if isinstance(value, (tuple, list)) else 0


class Resident(Generic[T]):
    """Blocks by key, each read once by the caller's ``read`` and kept (when ``enabled``) for the life of
    the dataset in this process. Dropped when pickled: a DataLoader worker started by spawn reads its own
    (a forked one shares the parent's)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._blocks: dict[Hashable, T] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "_blocks": {}}

    def get(self, key: Hashable, read: Callable[[], T]) -> T:
        block = self._blocks.get(key)
        if block is None:
            block = read()
            if self.enabled:
                self._blocks[key] = block
        return block

    @property
    def nbytes(self) -> int:
        """Bytes held now (tensors only)."""
        return sum(_nbytes(v) for v in self._blocks.values())
