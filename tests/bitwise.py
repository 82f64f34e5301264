"""Bitwise comparison of what a stage wrote: checkpoints as tensors, JSON as values, wall clock left out."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch

TIMINGS = {"train_seconds", "seconds"}  # wall-clock: the only values allowed to differ


def outputs(out: Path) -> dict[str, Any]:
    """Every file under ``out``, as comparable values: JSON without timings, checkpoints as tensors
    (torch.save names its zip folder after the temporary file, so the bytes carry a pid)."""
    found: dict[str, Any] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(out).as_posix()
        if path.suffix == ".pt":  # last.pt keeps the run's train_seconds for a resume
            data = torch.load(path, map_location="cpu", weights_only=False)
        else:
            data = json.loads(path.read_text())
        found[rel] = {k: v for k, v in data.items() if k not in TIMINGS} if isinstance(data, dict) else data
    return found


def same(a: Any, b: Any, where: str) -> None:
    """Assert ``a`` and ``b`` are equal bit for bit (tensors, floats, NaNs included), naming the place."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):  # bitwise: the same arithmetic (a NaN, e.g. one probe's stderr, included)
        assert isinstance(b, float) and struct.pack("<d", a) == struct.pack("<d", b), (
            f"{where}: {a!r} != {b!r}"
        )
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
