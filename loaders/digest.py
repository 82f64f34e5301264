"""File digests: the sha256 the storage manifests, the repo checksums, the Hub cache and the download CLI
all check against, and the one reader of a ``checksums.sha256`` file."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHECKSUMS = "checksums.sha256"  # one `<sha256>  <path>` line per file of a dataset repo


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def parse_checksums(text: str) -> dict[str, str]:
    """``{path: sha256}`` from the text of a ``checksums.sha256`` file."""
    pairs = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
    return {rel.strip(): digest for digest, rel in pairs}
