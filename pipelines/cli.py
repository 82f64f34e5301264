"""The one way a stage's command-line entry point reports success or failure."""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

from loaders.storage import to_json

# Failures a user can act on: bad params, a missing or corrupt input, a failing server or solver.
# Anything else is a bug and keeps its traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)


# --- secrets never reach a message -----------------------------------------------------------------------

REDACTED = "<redacted>"
_SECRET_VARIABLE = re.compile(r"(?i)(token|secret|passw|api_?key|credential)(?!.*_(path|file|dir)$)")
_registered: set[str] = set()
_PATTERNS = (  # secrets recognisable by their shape, whatever their value
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@"), rf"\1{REDACTED}@"),  # scheme://user:pass@host
    (re.compile(r"(?i)\b(token|access_token|api_?key|password|secret)=[^&\s\"'<>]+"), rf"\1={REDACTED}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),  # auth headers
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), REDACTED),  # a Hugging Face token
)


def register_secret(value: str) -> None:
    """Have :func:`scrub_secrets` remove ``value`` (and its encodings) from every message of this process,
    e.g. a token read from a variable whose name does not say it is one."""
    if len(value) >= 4:
        _registered.add(value)


def _secret_values() -> set[str]:
    """Registered secrets, values of variables named like one (HF_TOKEN, JHTDB_TOKEN, ...) and the
    passwords of URLs held in any variable (HF_ENDPOINT=https://user:password@host). Values shorter than 8
    characters are left to the patterns: a flag like ``true`` is no secret, and redacting it everywhere
    would garble every message."""
    found = set(_registered)
    for name, value in os.environ.items():
        if _SECRET_VARIABLE.search(name) and len(value) >= 8:
            found.add(value)
        if "@" in value and "://" in value:
            try:
                password = urlsplit(value.strip()).password
            except ValueError:
                continue
            if password and len(password) >= 8:
                found.add(password)
    return found


def _encodings(secret: str) -> Iterable[str]:
    """``secret`` as it may appear in a message: raw, URL-encoded (both forms), JSON-escaped, base64."""
    yield from (secret, quote(secret, safe=""), quote(secret), quote_plus(secret), json.dumps(secret)[1:-1])
    yield secret.replace("+", " ")  # a query decoded with '+' as a space
    raw = secret.encode()
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        yield encoded.decode()
        yield encoded.decode().rstrip("=")


def scrub_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret (``secrets``, registered ones, the environment's tokens and URL
    credentials) replaced in any of its encodings, and anything shaped like a credential redacted."""
    text = str(text)
    variants = {v for s in {*secrets, *_secret_values()} if len(s) >= 4 for v in _encodings(s) if len(v) >= 4}
    for variant in sorted(variants, key=len, reverse=True):  # longest first: a prefix must not split one
        text = re.sub(re.escape(variant), REDACTED, text, flags=re.IGNORECASE if "%" in variant else 0)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def run_stage(
    name: str, body: Callable[[], Any], summary: Callable[[Any], Any] = lambda result: result
) -> int:
    """Run ``body``; print ``summary(result)`` as JSON and return 0, or one clear line and return 1."""
    try:
        result = body()
    except EXPECTED_ERRORS as err:
        print(f"{name} stage failed: {scrub_secrets(str(err))}", file=sys.stderr)
        return 1
    print(to_json(summary(result)))
    return 0


def dataset_stage_parser(description: str, out: str, metrics: str) -> argparse.ArgumentParser:
    """Arguments every dataset-building stage takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=out, type=Path)
    parser.add_argument("--metrics", default=metrics, type=Path)
    parser.add_argument("--scratch", default="data/.scratch", type=Path, help="resumable pieces of this run")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store")
    return parser


def run_stage_parser(description: str, matrix: bool = False) -> argparse.ArgumentParser:
    """Arguments of the stages that work on one trained run (dataset, model, seed); with ``matrix`` the
    three may be left out, and the stage runs every run params.yaml lists (pipelines/matrix.py). The
    dataset is checked against params.yaml's ``datasets`` once the params are read."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", required=not matrix, help="one of params.yaml's datasets")
    parser.add_argument("--model", required=not matrix)
    parser.add_argument("--seed", type=int, required=not matrix)
    parser.add_argument("--level", type=int, help="smoke: the symmetry level (default: the first listed)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, help="the dataset store (default: the dataset stage's output)")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    return parser
