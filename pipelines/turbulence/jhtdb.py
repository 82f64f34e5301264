"""JHTDB cutout client and the block-wise, resumable download of the ``jhtdb`` source.

One HTTP GET per block to ``base_url`` through ``requests``, with the query parameters token,
function=velocity, dataset, xs..xe, ys..ye, zs..ze, ts..te (1-based, inclusive; periodic axes wrap),
stridex/y/z/t and filter_width=1; the reply is JSON in xarray's ``to_dict`` layout, one float32 array
(nz, ny, nx, 3) per time step. That is the request givernylocal builds; the library is not used because
it hard-codes the host and fetches its metadata from GitHub, so it cannot be pointed at a stand-in.

The token comes from an environment variable and goes only to ``base_url`` (https unless
``allow_insecure_http`` for loopback tests; a redirect stops the download unfollowed); error messages
carry status codes and block coordinates only, exceptions never chain ``requests``' (whose text holds the
URL), and a logging filter redacts urllib3's request lines. A request must complete within ``timeout_s``;
``Retry-After`` on 429 / 503 is honoured up to ``backoff_max_s``. Payload and resume checks:
:mod:`.jhtdb_payload`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import requests
import urllib3
import xarray as xr
from tqdm import tqdm

from loaders.scratch import ResumableBatches
from pipelines.cli import REDACTED, register_secret, scrub_secrets
from pipelines.params import JHTDBParams
from pipelines.turbulence.downsample import block_mean
from pipelines.turbulence.jhtdb_payload import (
    ACCEPTED_ENCODINGS,
    DeadlinePassed,
    RedactToken,
    ReplyTooLarge,
    parse_cutout,
    read_body,
    retry_after_seconds,
    reusable,
    save_piece,
)
from pipelines.turbulence.jhtdb_plan import (  # the planning names are this module's API too
    BYTES_PER_POINT,
    Block,
    Cutout,
    block_edge,
    cutout_for,
    native_factor,
    plan_blocks,
    stored_coordinates,
)

__all__ = [
    "BYTES_PER_POINT", "Block", "ClientStats", "Cutout", "CutoutClient", "JHTDBError", "block_edge",
    "cutout_for", "download_blocks", "native_factor", "plan_blocks", "read_token", "stored_coordinates",
]  # fmt: skip
log = logging.getLogger(__name__)


class JHTDBError(RuntimeError):
    """A cutout could not be obtained. The message never contains the token."""


class _Retryable(Exception):
    """Internal: this attempt failed in a way worth retrying (timeout, 5xx, broken payload)."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait  # seconds the server asked for (Retry-After), if it did


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    failures: dict[str, int] | None = None

    def count_failure(self, kind: str) -> None:
        self.failures = self.failures or {}
        self.failures[kind] = self.failures.get(kind, 0) + 1


class CutoutClient:
    """Fetch and validate cutouts, retrying timeouts, 5xx / 429 and malformed payloads with backoff."""

    def __init__(
        self,
        base_url: str,
        token: str,
        dataset: str = "isotropic1024coarse",
        timeout_s: float = 60.0,
        retries: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        allow_insecure_http: bool = False,
    ):
        if not token:
            raise JHTDBError("empty JHTDB token")
        if not (base_url.startswith("https://") or (allow_insecure_http and base_url.startswith("http://"))):
            raise JHTDBError(
                "turbulence.jhtdb.base_url must be an https:// URL (the token travels in the query string); "
                "http:// needs turbulence.jhtdb.allow_insecure_http: true (local test servers only)"
            )
        self.base_url = base_url
        self.dataset = dataset
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.stats = ClientStats()
        self._token = token
        self._sleep = sleep
        self._session = requests.Session()
        self._filter = RedactToken(token)
        self._loggers = [
            logging.getLogger(name) for name in ("urllib3.connectionpool", "urllib3", "requests")
        ]
        for logger in self._loggers:
            logger.addFilter(self._filter)

    def __repr__(self) -> str:
        return f"CutoutClient(base_url={self.base_url!r}, dataset={self.dataset!r}, token={REDACTED})"

    def close(self) -> None:
        self._session.close()
        for logger in self._loggers:
            logger.removeFilter(self._filter)

    def __enter__(self) -> CutoutClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _redact(self, text: str) -> str:
        return scrub_secrets(text, [self._token])  # also URL-encoded, as a server echoing its request has it

    def fetch(self, cutout: Cutout) -> np.ndarray:
        """Velocity of one cutout as float32 ``[component, z, y, x]`` (components x, y, z)."""
        reason, asked = "", None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                backoff = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
                self._sleep(max(backoff, asked or 0.0))
            try:
                return self._fetch_once(cutout)
            except _Retryable as err:
                reason, asked = str(err), err.wait
            if attempt == self.retries:
                break
            if asked is not None and asked > self.backoff_max_s:
                raise JHTDBError(
                    f"JHTDB asked to wait {asked:g} s before retrying cutout {cutout.describe()} "
                    f"({reason}), longer than turbulence.jhtdb.backoff_max_s={self.backoff_max_s:g}. "
                    "Finished blocks are kept: rerun later, or raise backoff_max_s."
                )
            log.warning(
                "JHTDB cutout %s: attempt %d failed (%s); retrying", cutout.describe(), attempt + 1, reason
            )
        raise JHTDBError(
            f"JHTDB cutout {cutout.describe()} failed after {self.retries + 1} attempts (last: {reason}). "
            "Finished blocks are kept: rerun to resume, or raise turbulence.jhtdb.retries / timeout_s."
        )

    def _fault(self, kind: str, reason: str | None = None, wait: float | None = None) -> _Retryable:
        """Count a retryable failure of ``kind``; ``reason`` (default ``kind``) goes into the messages."""
        self.stats.count_failure(kind)
        reason = reason or kind
        return _Retryable(reason if wait is None else f"{reason}, Retry-After {wait:.3g} s", wait)

    def _fetch_once(self, cutout: Cutout) -> np.ndarray:
        params = {"token": self._token, **cutout.query(self.dataset)}
        self.stats.requests += 1
        deadline = time.monotonic() + self.timeout_s
        late = f"reply not complete within the {self.timeout_s:g} s deadline"
        try:
            response = self._session.get(
                self.base_url, params=params, timeout=self.timeout_s, stream=True, allow_redirects=False,
                headers={"Accept-Encoding": ACCEPTED_ENCODINGS},
            )  # fmt: skip
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ):
            raise JHTDBError(
                f"invalid JHTDB base_url (turbulence.jhtdb.base_url {self.base_url!r})"
            ) from None
        except requests.exceptions.RequestException as err:  # never str(err): it holds the URL and token
            kind = type(err).__name__
            raise self._fault(kind, late if "Timeout" in kind else None) from None
        with response:
            status = response.status_code
            if 300 <= status < 400:  # its Location may carry the token on to another host: never follow
                raise JHTDBError(
                    f"JHTDB answered cutout {cutout.describe()} with a redirect (HTTP {status}), which is "
                    "not followed so that the token never reaches another host; set "
                    "turbulence.jhtdb.base_url to the final https:// endpoint."
                )
            try:
                body = read_body(response, deadline, cutout.max_reply_bytes)  # whole, in time, capped
            except DeadlinePassed:
                raise self._fault("deadline", late) from None
            except (ReplyTooLarge, zlib.error) as err:  # not worth retrying: a broken or hostile server
                raise JHTDBError(
                    f"JHTDB reply to cutout {cutout.describe()} refused (HTTP {status}): it "
                    f"{self._redact(str(err))[:200]}. Check turbulence.jhtdb.base_url."
                ) from None
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
                if time.monotonic() >= deadline:  # the socket timed out at the deadline
                    raise self._fault("deadline", late) from None
                raise self._fault(type(err).__name__) from None
        self.stats.bytes += len(body)
        if status >= 500 or status == 429:
            asked = retry_after_seconds(response.headers.get("Retry-After")) if status in (429, 503) else None
            raise self._fault(f"HTTP {status}", wait=asked)
        if status != 200:
            raise JHTDBError(
                f"JHTDB refused cutout {cutout.describe()}: HTTP {status}{self._server_message(body)}. "
                "Check the token (environment variable), the dataset name and the request limits."
            )
        try:
            return parse_cutout(body, cutout.shape)
        except Exception as err:  # noqa: BLE001 - whatever a broken reply raises, the block is retried
            self.stats.count_failure("malformed payload")
            raise _Retryable(self._redact(f"malformed payload: {err}")[:300]) from None

    def _server_message(self, body: bytes) -> str:
        try:
            description = json.loads(body).get("description", "")
        except (ValueError, AttributeError, RecursionError):
            return ""
        if isinstance(description, list):
            description = " ".join(str(d) for d in description)
        return f" ({self._redact(str(description))[:300]})" if description else ""


# --- download --------------------------------------------------------------------------------------


def read_token(p: JHTDBParams) -> str:
    token = os.environ.get(p.token_env, "").strip()
    if not token:
        raise JHTDBError(
            f"the JHTDB token is read from the environment variable {p.token_env}, which is not set; "
            "export it (never put it in params.yaml) or use turbulence.source: synthetic"
        )
    register_secret(token)  # every stage error is scrubbed of it (pipelines/cli.py), whatever the variable
    return token


def download_blocks(
    p: JHTDBParams,
    blocks: list[Block],
    scratch: ResumableBatches,
    client: CutoutClient,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Fetch every block not yet in ``scratch``, saving each as it arrives; returns counters.

    A finished piece is reused only if it still matches the integrity record written beside it when it
    arrived (:func:`reusable`); any other piece is downloaded again, with a warning naming it.
    ``progress=None`` shows the bar only on a terminal.
    """
    pending = [b for b in blocks if not reusable(scratch, b.name, (3, *b.size))]
    f = native_factor(p)
    start = time.perf_counter()
    with tqdm(
        total=len(blocks),
        initial=len(blocks) - len(pending),
        unit="block",
        desc="JHTDB cutouts",
        disable=None if progress is None else not progress,
    ) as bar:
        for block in pending:
            values = client.fetch(cutout_for(p, block))
            if p.mode == "box":
                values = block_mean(values, f)  # reduce at once: the native block is never kept
            piece = xr.Dataset({"velocity": (("component", "z", "y", "x"), values)})
            piece["velocity"].encoding = {"compressors": None}  # scratch: speed over size
            save_piece(scratch, block.name, piece)
            bar.update(1)
            bar.set_postfix_str(f"{client.stats.bytes / 2**20:.1f} MB, {client.stats.retries} retries")
    return {
        "blocks_total": len(blocks),
        "blocks_fetched": len(pending),
        "blocks_resumed": len(blocks) - len(pending),
        "requests": client.stats.requests,
        "retries": client.stats.retries,
        "failures": client.stats.failures or {},
        "bytes_received": client.stats.bytes,
        "seconds": time.perf_counter() - start,
    }
