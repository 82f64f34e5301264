"""A small Hugging Face Hub stand-in on loopback, for round-trip tests without network.

It speaks the subset of the Hub's HTTP protocol that ``huggingface_hub`` (with ``HF_HUB_DISABLE_XET=1``) and
``datasets`` call when publishing and reading a dataset repo:

* ``POST /api/repos/create``, ``POST /api/validate-yaml``
* ``GET /api/{type}s/{repo}[/revision/{rev}]`` (repo info), ``.../tree/{rev}[/{path}]`` (paginated listing),
  ``POST .../paths-info/{rev}``, ``GET .../commits/{rev}``, ``GET .../refs``, ``POST .../branch/{name}``
* ``POST .../preupload/{rev}`` and ``POST .../commit/{rev}`` (NDJSON body)
* the git-LFS batch API (``POST /{prefix}{repo}.git/info/lfs/objects/batch``), a basic-transfer upload URL and
  a verify URL
* ``GET``/``HEAD /{prefix}{repo}/resolve/{rev}/{path}`` with ``Range``, ``ETag`` and ``X-Repo-Commit``

Missing repos, revisions and paths answer 404 with the ``X-Error-Code`` header the client maps to its typed
errors. State lives in memory. Failure injection for tests: ``fail`` = ``"401"`` / ``"500"`` / ``"hang"`` for
every request, and ``pause_lfs_after`` to block LFS uploads after a number of them (an interrupted upload).
Nothing here unpickles or executes uploaded content.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

PREFIX_TO_TYPE = {"datasets": "dataset", "spaces": "space", "models": "model"}
TYPE_TO_PREFIX = {"dataset": "datasets/", "space": "spaces/", "model": ""}
TREE_PAGE = 1000
LFS_MIN_SIZE = 10 * 1024 * 1024
LFS_EXTENSIONS = (".parquet", ".png", ".h5", ".hdf5", ".arrow", ".npy", ".npz", ".pt", ".bin", ".zip")
DEFAULT_GITATTRIBUTES = (
    "*.parquet filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"
)


def git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Entry:
    """One file of a commit's tree. LFS files keep their content in the LFS store under ``sha256``."""

    size: int
    sha256: str
    lfs: bool
    blob_oid: str
    last_commit: str

    def content(self, hub: HubState) -> bytes:
        return hub.lfs_objects[self.sha256] if self.lfs else hub.regular_blobs[self.blob_oid]


@dataclass
class Commit:
    oid: str
    title: str
    message: str
    parent: str | None
    date: str
    files: dict[str, Entry]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


@dataclass
class HubState:
    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    regular_blobs: dict[str, bytes] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HubStandIn:
    """The server: ``with HubStandIn() as hub: ... hub.url ...``. Counters let tests see what was sent."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, user: str = "tester", tokens: tuple[str, ...] = ()
    ):
        self.state = HubState()
        self.user = user
        self.tokens = set(tokens)  # empty: any bearer token may write
        self.fail: str | None = None
        self.hang_seconds = 30.0
        self.pause_lfs_after: int | None = None
        self.lfs_paused = threading.Event()  # set once uploads are being held
        self.release = threading.Event()
        self.commits_made = 0
        self.lfs_uploads = 0
        self.lfs_started = 0
        self.lfs_puts: dict[str, int] = {}  # PUTs per object id, stored or not
        self.regular_files_committed = 0
        self.requests: list[tuple[str, str, int]] = []
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_fail(self, mode: str | None) -> None:
        """Answer every request with ``"401"``, ``"500"``, or not at all (``"hang"``); ``None`` heals."""
        self.release.clear() if mode == "hang" else self.release.set()
        self.fail = mode

    def hold_lfs_after(self, count: int | None) -> None:
        """Hold every LFS upload after ``count`` stored objects, as a stalled or killed upload would."""
        self.lfs_paused.clear()
        self.release.clear() if count is not None else self.release.set()
        self.pause_lfs_after = count

    def reset_faults(self) -> None:
        self.set_fail(None)
        self.hold_lfs_after(None)

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> Commit | None:
        repo = self.state.repos.get((repo_type, repo_id))
        return repo.resolve(revision) if repo else None

    def read(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "dataset") -> bytes:
        commit = self.head(repo_id, revision, repo_type)
        if commit is None or path not in commit.files:
            raise KeyError(path)
        return commit.files[path].content(self.state)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        return Handler


class HttpError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.extra = extra or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: HubStandIn

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        pass  # keep pytest output clean; ``requests`` records what was asked

    # --- plumbing -----------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str | None = None
    ):
        self.send_response(status)
        headers = dict(headers or {})
        if content_type:
            headers.setdefault("Content-Type", content_type)
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj: object, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers, "application/json")

    def _dispatch(self, method: str) -> None:
        hub = self.server_hub
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        self.raw_parts = [p for p in split.path.split("/") if p]
        status = 200
        try:
            if hub.fail == "hang":
                hub.release.wait(hub.hang_seconds)
                raise HttpError(503, "the stand-in was told to hang")
            if hub.fail == "500":
                raise HttpError(500, "Internal Error - We're working hard to fix this as soon as possible!")
            if hub.fail == "401":
                raise HttpError(401, "Invalid credentials in Authorization header")
            self.body = self._read_body() if method in ("POST", "PUT") else b""
            self._route(method)
        except HttpError as err:
            status = err.status
            headers = dict(err.headers)
            if err.code:
                headers["X-Error-Code"] = err.code
            headers["X-Error-Message"] = err.message
            try:
                self._json({"error": err.message, **err.extra}, err.status, headers)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            status = -1
        except Exception as err:  # a bug in the stand-in: answer 500 so the test sees it
            status = 500
            self._json({"error": f"stand-in failure: {type(err).__name__}: {err}"}, 500)
        hub.requests.append((method, self.path, status))

    def _part(self, i: int) -> str:
        return unquote(self.raw_parts[i])

    def _authorised(self) -> None:
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not token or (self.server_hub.tokens and token not in self.server_hub.tokens):
            raise HttpError(401, "Invalid credentials in Authorization header")

    # --- routing ------------------------------------------------------------------------------------------
    def _route(self, method: str) -> None:
        p = self.raw_parts
        if p[:1] == ["api"]:
            if p[1:3] == ["repos", "create"] and method == "POST":
                return self._create_repo()
            if p[1:2] == ["validate-yaml"] and method == "POST":
                return self._validate_yaml()
            if len(p) >= 4 and p[1] in ("datasets", "models", "spaces"):
                repo_type, repo_id = PREFIX_TO_TYPE[p[1]], f"{self._part(2)}/{self._part(3)}"
                return self._api_repo(method, repo_type, repo_id, p[4:])
            if p[1:2] == ["whoami-v2"]:
                self._authorised()
                return self._json({"type": "user", "name": self.server_hub.user, "orgs": []})
        if p[:1] == ["lfs-storage"] and method == "PUT":
            return self._lfs_put(self._part(1))
        if p[:1] == ["lfs-verify"] and method == "POST":
            return self._lfs_verify()
        repo_type = "model"
        rest = p
        if p and p[0] in ("datasets", "spaces"):
            repo_type, rest = PREFIX_TO_TYPE[p[0]], p[1:]
        if len(rest) >= 5 and rest[1].endswith(".git") and rest[2:5] == ["info", "lfs", "objects"]:
            repo_id = f"{unquote(rest[0])}/{unquote(rest[1])[:-4]}"
            if rest[5:] == ["batch"] and method == "POST":
                return self._lfs_batch(repo_type, repo_id)
        if len(rest) >= 4 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            repo_id = f"{unquote(rest[0])}/{unquote(rest[1])}"
            return self._resolve(repo_type, repo_id, unquote(rest[3]), "/".join(unquote(x) for x in rest[4:]))
        raise HttpError(404, f"no route for {method} {self.path}")

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.server_hub.state.repos.get((repo_type, repo_id))
        if repo is None:
            raise HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _base(self, repo: Repo) -> str:
        return f"{self.server_hub.url}/{TYPE_TO_PREFIX[repo.repo_type]}{repo.repo_id}"

    # --- repos --------------------------------------------------------------------------------------------
    def _create_repo(self) -> None:
        self._authorised()
        hub = self.server_hub
        payload = json.loads(self.body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or hub.user}/{payload['name']}"
        key = (repo_type, repo_id)
        with hub.state.lock:
            url = f"{hub.url}/{TYPE_TO_PREFIX[repo_type]}{repo_id}"
            if key in hub.state.repos:
                raise HttpError(409, "You already created this repo", extra={"url": url})
            repo = Repo(repo_type, repo_id, payload.get("visibility") == "private", _now())
            hub.state.repos[key] = repo
            # like the Hub, a new repo starts with one commit holding .gitattributes
            self._apply_commit(
                repo, "main", "initial commit", "", {".gitattributes": DEFAULT_GITATTRIBUTES.encode()}
            )
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self) -> None:
        content = json.loads(self.body or b"{}").get("content", "")
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        if match:
            try:
                meta = yaml.safe_load(match.group(1))
            except yaml.YAMLError as err:
                self._json({"errors": [{"message": f"invalid YAML: {err}"}], "warnings": []}, 400)
                return
            if not isinstance(meta, dict):
                self._json({"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, 400)
                return
        self._json({"errors": [], "warnings": []})

    def _api_repo(self, method: str, repo_type: str, repo_id: str, rest: list[str]) -> None:
        repo = self._repo(repo_type, repo_id)
        if not rest and method == "GET":
            return self._info(repo, "main")
        action = rest[0]
        if action == "revision" and method == "GET":
            return self._info(repo, unquote(rest[1]))
        if action == "tree" and method == "GET":
            return self._tree(repo, unquote(rest[1]), "/".join(unquote(x) for x in rest[2:]))
        if action == "paths-info" and method == "POST":
            return self._paths_info(repo, unquote(rest[1]))
        if action == "preupload" and method == "POST":
            self._authorised()
            return self._preupload(repo, unquote(rest[1]))
        if action == "commit" and method == "POST":
            self._authorised()
            return self._commit_ndjson(repo, unquote(rest[1]))
        if action == "commits" and method == "GET":
            return self._commits(repo, unquote(rest[1]))
        if action == "refs" and method == "GET":
            branches = [
                {"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in repo.branches.items()
            ]
            return self._json({"branches": branches, "tags": [], "converts": [], "pullRequests": []})
        if action == "branch" and method == "POST":
            self._authorised()
            return self._create_branch(repo, unquote(rest[1]))
        raise HttpError(404, f"no route for {method} {self.path}")

    def _info(self, repo: Repo, revision: str) -> None:
        commit = self._commit(repo, revision)
        blobs = self.query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sib: dict = {"rfilename": path}
            if blobs:
                sib.update(size=entry.size, blobId=entry.blob_oid)
                if entry.lfs:
                    sib["lfs"] = {
                        "size": entry.size,
                        "sha256": entry.sha256,
                        "pointerSize": self._pointer_size(entry),
                    }
            siblings.append(sib)
        card = self._card_data(commit)
        self._json(
            {
                "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.oid,
                "lastModified": commit.date,
                "createdAt": repo.created,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": list((card or {}).get("tags", []) or []),
                "cardData": card,
                "siblings": siblings,
            }
        )

    def _card_data(self, commit: Commit) -> dict | None:
        entry = commit.files.get("README.md")
        if entry is None:
            return None
        text = entry.content(self.server_hub.state).decode(errors="replace")
        match = re.match(r"^---\n(.*?)\n---", text, re.S)
        try:
            data = yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError:
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _pointer_size(entry: Entry) -> int:
        return len(lfs_pointer(entry.sha256, entry.size))

    def _entry_json(self, repo: Repo, path: str, entry: Entry | None, expand: bool, commit: Commit) -> dict:
        if entry is None:  # a folder
            folder_files = sorted((p, e) for p, e in commit.files.items() if p.startswith(path + "/"))
            out = {
                "type": "directory",
                "oid": hashlib.sha1(repr(folder_files).encode()).hexdigest(),
                "size": 0,
                "path": path,
            }
            last = max(
                (e.last_commit for _, e in folder_files), key=lambda c: repo.commits[c].date, default=None
            )
        else:
            out = {"type": "file", "oid": entry.blob_oid, "size": entry.size, "path": path}
            if entry.lfs:
                out["lfs"] = {
                    "oid": entry.sha256,
                    "size": entry.size,
                    "pointerSize": self._pointer_size(entry),
                }
            last = entry.last_commit
        if expand and last is not None:
            c = repo.commits[last]
            out["lastCommit"] = {"id": c.oid, "title": c.title, "date": c.date}
        return out

    @staticmethod
    def _folders(commit: Commit) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in commit.files for i in range(1, p.count("/") + 1)}

    def _tree(self, repo: Repo, revision: str, path: str) -> None:
        commit = self._commit(repo, revision)
        path = path.strip("/")
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
        expand = self.query.get("expand", ["false"])[0].lower() == "true"
        folders = self._folders(commit)
        if path and path not in folders:
            code = "EntryNotFound"
            raise HttpError(404, f"{path} does not exist on {revision}", code, {"X-Repo-Commit": commit.oid})
        prefix = path + "/" if path else ""
        items = []
        for name in sorted(folders | set(commit.files)):
            if not name.startswith(prefix) or name == path:
                continue
            if not recursive and "/" in name[len(prefix) :]:
                continue
            items.append(self._entry_json(repo, name, commit.files.get(name), expand, commit))
        # cursor pagination through a Link header, like the Hub
        start = int(self.query.get("cursor", ["0"])[0])
        page = 50 if expand else TREE_PAGE
        headers = {}
        if start + page < len(items):
            split = urlsplit(self.path)
            keep = "&".join(f"{k}={v[0]}" for k, v in self.query.items() if k != "cursor")
            headers["Link"] = f'<{self.server_hub.url}{split.path}?{keep}&cursor={start + page}>; rel="next"'
        self._json(items[start : start + page], headers=headers)

    def _paths_info(self, repo: Repo, revision: str) -> None:
        commit = self._commit(repo, revision)
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            form = json.loads(self.body or b"{}")
            paths, expand = form.get("paths", []), bool(form.get("expand"))
        else:
            form = parse_qs(self.body.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[0].lower() == "true"
        folders = self._folders(commit)
        out = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                out.append(self._entry_json(repo, path, commit.files[path], expand, commit))
            elif path in folders:
                out.append(self._entry_json(repo, path, None, expand, commit))
        self._json(out)

    def _commits(self, repo: Repo, revision: str) -> None:
        commit: Commit | None = self._commit(repo, revision)
        out = []
        while commit is not None:
            out.append(
                {
                    "id": commit.oid,
                    "title": commit.title,
                    "message": commit.message,
                    "authors": [{"user": self.server_hub.user}],
                    "date": commit.date,
                }
            )
            commit = repo.commits.get(commit.parent) if commit.parent else None
        self._json(out)

    def _create_branch(self, repo: Repo, branch: str) -> None:
        payload = json.loads(self.body or b"{}")
        if branch in repo.branches:
            raise HttpError(409, "Reference already exists")
        start = self._commit(repo, payload.get("startingPoint") or "main")
        repo.branches[branch] = start.oid
        self._json({})

    # --- uploads ------------------------------------------------------------------------------------------
    def _upload_mode(self, path: str, size: int, sample: bytes) -> str:
        if size >= LFS_MIN_SIZE or path.endswith(LFS_EXTENSIONS) or b"\0" in sample:
            return "lfs"
        return "regular"

    def _preupload(self, repo: Repo, revision: str) -> None:
        commit = self._commit(repo, revision)
        files = json.loads(self.body)["files"]
        out = []
        for f in files:
            mode = self._upload_mode(f["path"], f["size"], base64.b64decode(f["sample"]))
            remote = commit.files.get(f["path"])
            oid = None
            if remote is not None:
                mode = "lfs" if remote.lfs else mode
                oid = remote.sha256 if remote.lfs else remote.blob_oid
            out.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._json({"files": out, "commitOid": commit.oid})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        self._authorised()
        self._repo(repo_type, repo_id)
        hub = self.server_hub
        payload = json.loads(self.body)
        if payload.get("operation") != "upload":
            raise HttpError(400, "only uploads are supported by the stand-in")
        objects = []
        for obj in payload["objects"]:
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in hub.state.lfs_objects:
                item["actions"] = {
                    "upload": {"href": f"{hub.url}/lfs-storage/{obj['oid']}", "header": {}},
                    "verify": {"href": f"{hub.url}/lfs-verify", "header": {}},
                }
            objects.append(item)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            content_type="application/vnd.git-lfs+json",
        )

    def _lfs_put(self, oid: str) -> None:
        hub = self.server_hub
        with hub.state.lock:
            hub.lfs_puts[oid] = hub.lfs_puts.get(oid, 0) + 1
            held = hub.pause_lfs_after is not None and hub.lfs_started >= hub.pause_lfs_after
            hub.lfs_started += 0 if held else 1  # counted under the lock: concurrent PUTs cannot overshoot
        if held:
            hub.lfs_paused.set()
            hub.release.wait(hub.hang_seconds)  # the client is killed meanwhile; nothing is stored
            raise HttpError(503, "upload held by the stand-in")
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise HttpError(400, "content does not match its sha256")
        with hub.state.lock:
            hub.state.lfs_objects[oid] = self.body
            hub.lfs_uploads += 1
        self._send(200)

    def _lfs_verify(self) -> None:
        payload = json.loads(self.body)
        data = self.server_hub.state.lfs_objects.get(payload["oid"])
        if data is None or len(data) != payload["size"]:
            raise HttpError(404, "object not found", "EntryNotFound")
        self._json({"success": True})

    def _commit_ndjson(self, repo: Repo, revision: str) -> None:
        hub = self.server_hub
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        header = next(x["value"] for x in lines if x["key"] == "header")
        with hub.state.lock:
            head = self._commit(repo, revision)
            if header.get("parentCommit") and header["parentCommit"] != head.oid:
                raise HttpError(412, "A commit has happened since. Please refresh and try again.")
            adds: dict[str, bytes | tuple[str, int]] = {}
            deletes: list[tuple[str, bool]] = []
            for item in lines:
                key, value = item["key"], item.get("value", {})
                if key == "file":
                    adds[value["path"]] = base64.b64decode(value["content"])
                elif key == "lfsFile":
                    if value["oid"] not in hub.state.lfs_objects:
                        raise HttpError(
                            422, f"LFS object {value['oid']} for {value['path']} was never uploaded"
                        )
                    adds[value["path"]] = (value["oid"], value["size"])
                elif key in ("deletedFile", "deletedFolder"):
                    deletes.append((value["path"].strip("/"), key == "deletedFolder"))
            oid = self._apply_commit(
                repo, revision, header.get("summary", ""), header.get("description", ""), adds, deletes
            )
        hub.commits_made += 1
        self._json(
            {
                "success": True,
                "commitOid": oid,
                "commitUrl": f"{self._base(repo)}/commit/{oid}",
                "hookOutput": "",
            }
        )

    def _apply_commit(
        self,
        repo: Repo,
        branch: str,
        title: str,
        message: str,
        adds: dict[str, bytes | tuple[str, int]],
        deletes: list[tuple[str, bool]] = (),  # type: ignore[assignment]
    ) -> str:
        state = self.server_hub.state
        parent = repo.resolve(branch)
        files = dict(parent.files) if parent else {}
        for path, is_folder in deletes:
            if is_folder:
                files = {p: e for p, e in files.items() if not p.startswith(path + "/")}
            elif files.pop(path, None) is None:
                raise HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
        date = _now()
        oid = hashlib.sha1(f"{parent.oid if parent else ''}{title}{date}{sorted(adds)}".encode()).hexdigest()
        for path, content in adds.items():
            if isinstance(content, tuple):
                sha, size = content
                files[path] = Entry(size, sha, True, git_blob_oid(lfs_pointer(sha, size)), oid)
            else:
                blob = git_blob_oid(content)
                state.regular_blobs[blob] = content
                files[path] = Entry(len(content), hashlib.sha256(content).hexdigest(), False, blob, oid)
                self.server_hub.regular_files_committed += 1
        if parent is not None and branch not in repo.branches:
            raise HttpError(400, f"{branch} is not a branch; commits go to branches")
        repo.commits[oid] = Commit(oid, title, message, parent.oid if parent else None, date, files)
        repo.branches[branch] = oid
        return oid

    # --- downloads ----------------------------------------------------------------------------------------
    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HttpError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        data = entry.content(self.server_hub.state)
        etag = entry.sha256 if entry.lfs else entry.blob_oid
        headers = {
            "ETag": f'"{etag}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if entry.lfs:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(entry.size)
        rng = self.headers.get("Range")
        if rng:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not match:
                raise HttpError(416, f"bad range {rng}")
            first, last = match.groups()
            if first == "":  # suffix range
                start, stop = max(len(data) - int(last), 0), len(data)
            else:
                start, stop = int(first), min(int(last) + 1 if last else len(data), len(data))
            if start >= len(data) and len(data) > 0:
                raise HttpError(
                    416, "range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"}
                )
            headers["Content-Range"] = f"bytes {start}-{max(stop - 1, start)}/{len(data)}"
            self._send(HTTPStatus.PARTIAL_CONTENT, data[start:stop], headers)
            return
        self._send(200, data, headers)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Hub stand-in on loopback until interrupted.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with HubStandIn(port=args.port) as hub:
        print(f"HF_ENDPOINT={hub.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
