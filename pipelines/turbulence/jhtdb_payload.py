"""Safety helpers of the JHTDB client: token redaction, the reply (deadline, size cap, payload,
``Retry-After``) and resume pieces.

Everything a server sends is untrusted: :func:`parse_cutout` raises ``ValueError`` (never anything else)
for any reply that is not exactly the documented layout with a regular array of JSON numbers, so the
client can treat every malformed payload as a retryable fault of the block. :func:`piece_record` and
:func:`piece_problem` let a resumed download reuse a finished piece only if it still holds exactly the
values that were validated when it arrived.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import time
import zlib
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import requests
import xarray as xr

from loaders.scratch import ResumableBatches
from loaders.storage import write_json_atomic
from pipelines.cli import scrub_secrets

PLACEHOLDER = -999.9
COMPONENTS = ("ux", "uy", "uz")
DIMS = ["zcoor", "ycoor", "xcoor", "values"]
_NUMBER_TYPES = {int, float}  # JSON numbers as the json module decodes them; bool is its own type
log = logging.getLogger("pipelines.turbulence.jhtdb")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
READ_CHUNK = 1 << 16
# Size cap of a reply: a float32 written as JSON text takes at most 26 characters with its separator; 12x
# its 4 bytes (48 per value) leaves room for indentation. Coordinates and the envelope fit in the slack.
JSON_OVERHEAD = 12
REPLY_SLACK = 1 << 20
ACCEPTED_ENCODINGS = "gzip, deflate"  # decoded here, chunk by chunk, under the cap


def parse_cutout(body: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """Decode and validate one reply into float32 ``[component, z, y, x]``; ``ValueError`` otherwise."""
    try:
        obj = json.loads(body)
    except RecursionError:
        raise ValueError(f"JSON nested too deeply ({len(body)} bytes)") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"not JSON ({type(err).__name__}, {len(body)} bytes)") from None
    try:
        return _velocity(obj, (*shape, 3))
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001 - any other surprise in an untrusted reply is malformed too
        raise ValueError(f"unexpected structure ({type(err).__name__})") from None


def _velocity(obj: Any, expected: tuple[int, ...]) -> np.ndarray:
    if not isinstance(obj, dict) or not isinstance(obj.get("data_vars"), dict):
        raise ValueError("no data_vars mapping")
    if len(obj["data_vars"]) != 1:
        raise ValueError(f"expected one variable (one time step), got {len(obj['data_vars'])}")
    var = next(iter(obj["data_vars"].values()))
    if not isinstance(var, dict) or var.get("dims") != DIMS:
        raise ValueError(f"expected dims {DIMS}")
    coords = obj.get("coords", {})
    values = coords.get("values", {}) if isinstance(coords, dict) else None
    if not isinstance(values, dict):
        raise ValueError("coords is not a mapping of mappings")
    if values.get("data") is not None and values["data"] != list(COMPONENTS):
        raise ValueError(f"expected components {list(COMPONENTS)}")
    arr = numeric_array(var.get("data"), expected)
    placeholders = int(np.sum(arr == np.float32(PLACEHOLDER)))
    if placeholders:
        raise ValueError(f"{placeholders} values hold the missing-value placeholder")
    return np.ascontiguousarray(arr.transpose(3, 0, 1, 2))


def numeric_array(data: Any, expected: tuple[int, ...]) -> np.ndarray:
    """``data`` as float32 if it is a regular nested list of JSON numbers of shape ``expected``.

    No coercion: ``true``, ``"1.5"`` and ``null`` are refused (``numpy.asarray`` would turn the first two
    into numbers), as are NaN / Infinity (which Python's json accepts) and values outside float32.
    """
    if not isinstance(data, list):
        raise ValueError("data is not an array")
    try:
        obj = np.array(data, dtype=object)
    except (ValueError, TypeError, RecursionError):
        raise ValueError("data is not a regular array") from None
    if obj.shape != expected:
        raise ValueError(f"shape {obj.shape}, expected {expected}")
    kinds = set(map(type, obj.flat)) - _NUMBER_TYPES
    if kinds:
        raise ValueError(f"data holds non-numbers ({', '.join(sorted(k.__name__ for k in kinds))})")
    try:
        wide = obj.astype(np.float64)
    except (OverflowError, ValueError, TypeError):
        raise ValueError("a number is out of range") from None
    if not np.all(np.isfinite(wide)):
        raise ValueError("non-finite values")
    if np.any(np.abs(wide) > _FLOAT32_MAX):
        raise ValueError("values outside the float32 range")
    return wide.astype(np.float32)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RedactToken(logging.Filter):
    """Scrub the token, in any encoding, from log records (urllib3 logs request lines, query string
    included and URL-encoded, at DEBUG)."""

    def __init__(self, token: str):
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub_secrets(str(record.msg), [self._token])
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(scrub_secrets(a, [self._token]) if isinstance(a, str) else a for a in args)
        return True


# --- reading the reply ------------------------------------------------------------------------------


class DeadlinePassed(Exception):
    """The reply did not arrive completely within the request's deadline."""


class ReplyTooLarge(Exception):
    """The reply is larger (as sent, or decompressed) than any well-formed reply to the request can be."""


def reply_limit(values: int) -> int:
    """Most bytes a well-formed reply holding ``values`` JSON numbers may take, compressed or not."""
    return values * 4 * JSON_OVERHEAD + REPLY_SLACK


def _decoder(encoding: str) -> Any:
    """A streaming decompressor for ``Content-Encoding`` (None: identity); ``ReplyTooLarge`` if unknown."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(wbits=32 + zlib.MAX_WBITS)  # gzip or zlib header, detected
    raise ReplyTooLarge(f"Content-Encoding {encoding[:40]!r} was not asked for ({ACCEPTED_ENCODINGS})")


def read_body(response: requests.Response, deadline: float, limit: int) -> bytes:
    """The whole body, read as it arrives; ``DeadlinePassed`` once ``deadline`` (monotonic) is reached,
    ``ReplyTooLarge`` as soon as more than ``limit`` bytes arrived or were decompressed.

    Each read returns whatever has arrived (``read1``) and the socket's timeout is cut to the time left,
    so a body dripped byte by byte, or a connection that stalls, is abandoned at the deadline. The body is
    decompressed here, one read at a time and never past the limit, so a gzip bomb costs at most ``limit``
    bytes of memory (urllib3 would inflate a whole read at once).
    """
    declared = response.headers.get("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        raise ReplyTooLarge(f"declares {int(declared)} bytes, more than the {limit} a reply can take")
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    raw = response.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    parts, received, decoded = [], 0, 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlinePassed
        if sock is not None:
            sock.settimeout(left)
        data = raw.read1(READ_CHUNK, decode_content=False)
        if not data:
            if decoder is not None:
                parts.append(decoder.flush())
            return b"".join(parts)
        received += len(data)
        if received > limit:
            raise ReplyTooLarge(f"sent more than {limit} bytes, the most a reply can take")
        if decoder is not None:
            data = decoder.decompress(data, limit - decoded + 1)  # stops one byte past the cap
        decoded += len(data)
        if decoded > limit:
            raise ReplyTooLarge(f"decompresses to more than {limit} bytes, the most a reply can take")
        parts.append(data)


# --- resume pieces ------------------------------------------------------------------------------------


def piece_record(values: np.ndarray) -> dict[str, Any]:
    """What a finished piece must still hold when it is reused: shape, dtype and sha256 of its values."""
    values = np.ascontiguousarray(values)
    return {
        "shape": list(values.shape),
        "dtype": str(values.dtype),
        "sha256": hashlib.sha256(values.tobytes()).hexdigest(),
    }


def piece_problem(values: np.ndarray, record: Any, shape: tuple[int, ...]) -> str | None:
    """Why ``values`` read back from a piece cannot be reused (None if it matches ``record``)."""
    if not isinstance(record, dict):
        return "no integrity record"
    if tuple(values.shape) != tuple(shape) or record.get("shape") != list(shape):
        return f"shape {tuple(values.shape)}, expected {tuple(shape)}"
    if str(values.dtype) != record.get("dtype"):
        return f"dtype {values.dtype}, recorded {record.get('dtype')}"
    if not np.all(np.isfinite(values)):
        return "non-finite values"
    if piece_record(values)["sha256"] != record.get("sha256"):
        return "sha256 differs from the record written when it was downloaded"
    return None


def _record_path(scratch: ResumableBatches, name: str) -> Path:
    return scratch.dir / f"{name}.integrity.json"


def save_piece(scratch: ResumableBatches, name: str, piece: xr.Dataset) -> None:
    """Save a validated piece, then its integrity record (shape, dtype, sha256 of its values)."""
    _record_path(scratch, name).unlink(missing_ok=True)  # no stale record while the piece is rewritten
    scratch.save(name, piece)
    write_json_atomic(_record_path(scratch, name), piece_record(piece["velocity"].values))


def reusable(scratch: ResumableBatches, name: str, shape: tuple[int, ...]) -> bool:
    """Whether a finished piece still holds exactly the values that were validated when it arrived.

    Pieces are stored uncompressed, so a flipped byte, a deleted chunk (read back as the fill value) or a
    piece half-rewritten by an interrupted run would otherwise pass unnoticed. A piece that fails is
    logged (a warning naming it) and must be downloaded again.
    """
    if not scratch.done(name):
        return False
    try:
        record = json.loads(_record_path(scratch, name).read_text())
        problem = piece_problem(scratch.load(name)["velocity"].values, record, shape)
    except Exception as err:  # noqa: BLE001 - an unreadable piece or record is simply downloaded again
        problem = f"unreadable ({type(err).__name__})"
    if problem:
        log.warning("JHTDB scratch piece %s is not reusable (%s); downloading it again", name, problem)
    return problem is None
