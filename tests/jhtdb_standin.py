"""A loopback stand-in for the JHTDB REST cutout service, for the turbulence tests.

It answers the same GET request (token, function, dataset, xs..xe, ys..ye, zs..ze, ts..te, strides,
filter_width) with the same JSON layout (xarray ``to_dict``: one variable per time step, float32
(nz, ny, nx, 3) over dims zcoor, ycoor, xcoor, values). The velocity it serves is a deterministic
function of the periodic grid index and the time index (:func:`standin_velocity`), so a test can
compute exactly what any request should return.

Faults are injected per request from a queue (``server.faults``), or for every request
(``server.persistent``): ``timeout`` (answer only after ``slow_seconds``), ``500``, ``truncate`` (declare
the full length, send half, close), ``badjson``, ``placeholder`` (some values are -999.9), ``echo401`` (a
401 whose description repeats the token, as a careless server might), ``hang`` (wait until ``release`` is
set, for kill tests), ``redirect`` (a 302 to ``redirect_to`` carrying the whole query, token included, as a
hostile server might), ``429`` / ``503`` (with ``Retry-After: retry_after`` when that is set), ``drip`` (the
body in 20 pieces over ``drip_seconds``), ``bool`` (one velocity value is JSON ``true``), ``deep`` (deeply
nested JSON), ``gzip`` (the good reply, gzip-encoded), ``bomb`` (a gzip body, ``Content-Encoding: gzip``,
that inflates to ``huge_bytes``), ``oversize`` (``huge_bytes`` of JSON-looking text streamed without a
Content-Length, so only a reader that counts can stop it) and ``400echo`` (a 400 whose description repeats
the request line, query and token included, URL-encoded). ``offset`` is added to every velocity served, so
two stand-ins can serve different fields.
"""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

GRID = 1024
PATH = "/turbulence-svc/cutout/api/local"
REQUIRED = ("token", "function", "dataset", "xs", "xe", "ys", "ye", "zs", "ze", "ts", "te",
            "stridex", "stridey", "stridez", "stridet", "filter_width")  # fmt: skip


def standin_velocity(x: np.ndarray, y: np.ndarray, z: np.ndarray, t: int) -> np.ndarray:
    """Velocity (nz, ny, nx, 3) float32 at 0-based periodic indices ``x, y, z`` (1-D) and time ``t``."""
    zz, yy, xx = np.meshgrid(z % GRID, y % GRID, x % GRID, indexing="ij")
    out = np.empty((*zz.shape, 3), dtype=np.float64)
    for c in range(3):
        phase = 2 * np.pi * (xx + 2 * yy + 3 * zz) * (c + 1) / GRID + 0.01 * t
        hashed = ((xx * 7 + yy * 13 + zz * 29 + t * 31 + c * 101) % 97) / 97.0 - 0.5
        out[..., c] = np.sin(phase) + hashed
    return out.astype(np.float32)


def native_indices(start: int, end: int, stride: int) -> np.ndarray:
    """0-based periodic indices of a 1-based inclusive range."""
    return (np.arange(start, end + 1, stride) - 1) % GRID


class JHTDBStandIn:
    def __init__(self, token: str, max_points: int = 4096, slow_seconds: float = 1.0):
        self.token = token
        self.max_points = max_points
        self.slow_seconds = slow_seconds
        self.faults: list[str] = []
        self.persistent: str | None = None
        self.requests: list[dict[str, Any]] = []  # query of every request, token removed
        self.tokens_received = 0  # requests that carried a token (any value)
        self.redirect_to = ""
        self.retry_after: str | None = None
        self.drip_seconds = 2.0
        self.huge_bytes = 64 << 20
        self.huge_sent = 0  # bytes of the last bomb / oversize body that reached the socket
        self.offset = 0.0
        self.served: list[dict[str, Any]] = []  # queries answered with a good payload
        self.hanging = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"

    def __enter__(self) -> JHTDBStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                standin._handle(self)

            def log_message(self, *args: Any) -> None:  # the request line holds the token: stay silent
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def next_fault(self) -> str | None:
        with self._lock:
            return self.faults.pop(0) if self.faults else self.persistent

    # --- request handling ------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        token = query.pop("token", None)
        fault = self.next_fault()
        with self._lock:
            self.requests.append({**query, "fault": fault})
            self.tokens_received += token is not None
        try:
            if url.path != PATH:
                return self._json(h, 404, {"description": f"no endpoint {url.path}"})
            if fault == "redirect":
                h.send_response(302)
                h.send_header("Location", f"{self.redirect_to}?{url.query}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return None
            if fault in ("429", "503"):
                headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
                return self._json(h, int(fault), {"description": "slow down"}, headers)
            if fault == "echo401":
                return self._json(h, 401, {"description": [f"token {token} is not authorised"]})
            if fault == "400echo":
                return self._json(h, 400, {"description": f"bad request: GET {h.path} HTTP/1.1"})
            if fault in ("bomb", "oversize"):
                return self._huge(h, fault)
            if token != self.token:
                return self._json(h, 401, {"description": "invalid authorization token"})
            missing = [k for k in REQUIRED if k != "token" and k not in query]
            if missing:
                return self._json(h, 400, {"description": f"missing parameters {missing}"})
            body, shape = self._payload(query, fault)
            if body is None:
                return self._json(h, 400, {"description": shape})
            if fault == "timeout":
                time.sleep(self.slow_seconds)
            elif fault == "hang":
                self.hanging.set()
                self.release.wait(30)
            elif fault == "500":
                return self._json(h, 500, {"description": ["internal server error"]})
            if fault == "truncate":
                h.send_response(200)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body[: len(body) // 2])
                h.wfile.flush()
                h.close_connection = True
                return None
            if fault == "badjson":
                body = body[: len(body) - 7]
            elif fault == "deep":
                body = b"[" * 100_000 + b"]" * 100_000
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            if fault == "gzip":
                body = gzip.compress(body)
                h.send_header("Content-Encoding", "gzip")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if fault == "drip":
                step = len(body) // 20 + 1
                for i in range(0, len(body), step):
                    h.wfile.write(body[i : i + step])
                    h.wfile.flush()
                    time.sleep(self.drip_seconds / 20)
            else:
                h.wfile.write(body)
            if fault not in ("badjson", "placeholder", "timeout", "drip", "bool", "deep"):
                with self._lock:
                    self.served.append(query)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer
        return None

    def _payload(self, q: dict[str, str], fault: str | None) -> tuple[bytes | None, Any]:
        if q["function"] != "velocity" or q["dataset"] != "isotropic1024coarse" or q["filter_width"] != "1":
            return None, "unsupported function, dataset or filter width"
        if q["ts"] != q["te"]:
            return None, "the stand-in serves one time step per request"
        axes = [native_indices(int(q[f"{a}s"]), int(q[f"{a}e"]), int(q[f"stride{a}"])) for a in "xyz"]
        if any(int(q[f"{a}s"]) < 1 or int(q[f"{a}s"]) > GRID for a in "xyz"):
            return None, "start index outside 1..1024"
        points = int(np.prod([a.size for a in axes]))
        if points > self.max_points:
            return None, f"too many points requested: {points} > {self.max_points}"
        t = int(q["ts"])
        values = standin_velocity(*axes, t) + np.float32(self.offset)
        if fault == "placeholder":
            values.reshape(-1)[::5] = np.float32(-999.9)
        doc = {
            "dims": {
                "zcoor": values.shape[0],
                "ycoor": values.shape[1],
                "xcoor": values.shape[2],
                "values": 3,
            },
            "attrs": {},
            "coords": {
                "zcoor": {"dims": ["zcoor"], "attrs": {}, "data": (axes[2] * 2 * np.pi / GRID).tolist()},
                "ycoor": {"dims": ["ycoor"], "attrs": {}, "data": (axes[1] * 2 * np.pi / GRID).tolist()},
                "xcoor": {"dims": ["xcoor"], "attrs": {}, "data": (axes[0] * 2 * np.pi / GRID).tolist()},
                "values": {"dims": ["values"], "attrs": {}, "data": ["ux", "uy", "uz"]},
            },
            "data_vars": {
                f"velocity_{t:04d}": {
                    "dims": ["zcoor", "ycoor", "xcoor", "values"],
                    "attrs": {},
                    "data": values.tolist(),
                }
            },
        }
        if fault == "bool":
            doc["data_vars"][f"velocity_{t:04d}"]["data"][0][0][0][0] = True
        return json.dumps(doc).encode(), values.shape

    def _huge(self, h: BaseHTTPRequestHandler, fault: str) -> None:
        self.huge_sent = 0
        piece = b"[" + b"0.1234567, " * 6000 + b"0]"  # ~64 KiB of plausible numbers
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if fault == "bomb":
            buffer = io.BytesIO()
            with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=1) as gz:
                block = b" " * (1 << 20)
                for _ in range(self.huge_bytes // len(block)):
                    gz.write(block)
            body = buffer.getvalue()
            h.send_header("Content-Encoding", "gzip")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            self.huge_sent = len(body)
            return
        h.close_connection = True  # no length: the body ends when the connection does
        h.end_headers()
        while self.huge_sent < self.huge_bytes:
            h.wfile.write(piece)
            self.huge_sent += len(piece)

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, status: int, doc: dict, headers: dict | None = None) -> None:
        body = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)
