"""Checkpoints as verified data: each file records the run it belongs to and a checksum of its payload.

A checkpoint is a torch zip archive holding ``{"format", "run", "checksum", "payload"}``: ``run`` is the
run's identity (a JSON-like mapping: data digest, model, hparams, optimiser, seed, task layout, code
digest, device), ``checksum`` a sha256 over every value of ``payload`` (tensors by dtype, shape and
bytes). :func:`load_checkpoint` recomputes both and refuses a mismatch, naming the file and what differs.

The bytes are a function of the contents only: the archive is written to memory under a fixed name (torch
names its zip folder after the file it writes to, so a temporary name with a PID would end up inside),
nothing in it is wall-clock, and the payload is rebuilt canonically first (pickle shares a string or
container by object identity, which differs between a resumed run and an uninterrupted one; every
tensor gets its own compact storage), so identical weights give identical files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from loaders.storage import to_json, writer_gone

FORMAT = "symflow-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, damaged, or written for another run."""


def payload_checksum(payload: Any) -> str:
    """sha256 over a payload's structure and values, independent of how the archive stores them."""
    digest = hashlib.sha256()
    _feed(digest, payload)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():  # in order: a state dict's order is part of it
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):  # one kind: the archive may hand either back
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, float):
        digest.update(b"f" + struct.pack("<d", value))
    elif value is None or isinstance(value, (bool, int, str)):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"checkpoint payloads hold tensors and plain values, not {type(value).__name__}")


def _plain(run: Mapping[str, Any]) -> dict[str, Any]:
    """The run identity as JSON would give it back (tuples as lists), so stored and expected compare."""
    return json.loads(to_json(dict(run)))


def canonical(value: Any) -> Any:
    """A fresh copy with no shared objects but interned strings, every tensor a compact CPU copy: what
    pickle writes then depends on the values alone."""
    if isinstance(value, torch.Tensor):
        return torch.clone(value.detach().cpu(), memory_format=torch.contiguous_format)
    if isinstance(value, Mapping):
        return {canonical(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, tuple):
        return tuple(canonical(v) for v in value)
    if isinstance(value, str):
        return sys.intern(str(value))
    return value


def checkpoint_bytes(payload: Mapping[str, Any], run: Mapping[str, Any]) -> bytes:
    """The file's bytes: the same payload and run give the same bytes, whatever the path or process.
    Every tensor is saved from the CPU, so a checkpoint written on a GPU loads on any machine."""
    record = {"format": FORMAT, "run": _plain(run), "checksum": payload_checksum(payload), "payload": payload}
    buffer = io.BytesIO()
    torch.save(canonical(record), buffer)  # a buffer: torch names the archive "archive", not after a file
    return buffer.getvalue()


def save_checkpoint(path: Path, payload: Mapping[str, Any], run: Mapping[str, Any]) -> None:
    """Write atomically (temporary file, then rename): :func:`checkpoint_bytes`."""
    path = Path(path)
    data = checkpoint_bytes(payload, run)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def differences(stored: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """The identity fields that differ (names only: values can be long)."""
    return sorted(k for k in {*stored, *expected} if stored.get(k) != expected.get(k))


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", *, run: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The payload of a verified checkpoint, its tensors on ``map_location``. With ``run``, the file must
    have been written for exactly that run. Raises :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, flipped, not a torch archive: torch raises many kinds
        reason = type(err).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable ({reason}): damaged or truncated") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file (written by an older version?)")
    payload = record.get("payload")
    try:
        intact = record.get("checksum") == payload_checksum(payload)
    except TypeError:
        intact = False
    if not intact:
        raise CheckpointError(f"checkpoint {path} fails its checksum: the file is damaged")
    if run is not None and record.get("run") != _plain(run):
        stored = record.get("run") if isinstance(record.get("run"), dict) else {}
        fields = ", ".join(differences(stored, _plain(run)))
        raise CheckpointError(f"checkpoint {path} was written for another run (it differs in: {fields})")
    return payload if str(map_location) == "cpu" else _to(payload, torch.device(map_location))


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


def remove_dead_temporaries(folder: Path) -> None:
    """Delete ``.<name>.<pid>.tmp`` files of writers that were killed (their process is gone)."""
    for tmp in Path(folder).glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and writer_gone(int(pid)):
            tmp.unlink(missing_ok=True)
