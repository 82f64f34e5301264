"""Idempotent upload of a built repo folder to the Hub (or any Hub-compatible endpoint).

* The endpoint comes from ``HF_ENDPOINT`` and the token from ``HF_TOKEN``; huggingface_hub reads
  ``HF_ENDPOINT`` when it is imported, so it is imported here, late, never at module import time.
* Only files whose hash differs from the Hub's copy are sent (LFS files compare sha256, small git files
  compare the git blob id), stale files are deleted, and when nothing differs no commit is made at all.
* Everything goes in one ``create_commit`` pinned to the head it was compared against (``parent_commit``),
  so a concurrent push fails instead of being overwritten. LFS objects already stored by an interrupted
  run are skipped by the LFS batch API, so re-running finishes the job.
* Every request has a timeout (huggingface_hub sets none). The timeout-bound HTTP client is installed only
  for the duration of one upload (:func:`hub_request_timeout`) and the caller's client factory is put back
  afterwards, so other Hub users in the process (``datasets``, loaders) keep their own settings.
* Errors are turned into :class:`PublishError` with the cause spelled out (no token, refused write, server
  error, timeout, unreachable endpoint). Uploading only reads local files.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.cli import scrub_secrets
from pipelines.publish.repo import CHECKSUMS, read_checksums

# Files the Hub manages itself; never deleted by a publish.
HUB_OWNED = {".gitattributes"}


class PublishError(RuntimeError):
    """Publishing failed; the message says why and what to do."""


def git_blob_oid(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _http_client_factory(timeout: float) -> Any:
    """huggingface_hub's default client with a timeout on every request (it defaults to none at all)."""
    import httpx2
    from huggingface_hub import get_session

    hooks = get_session().event_hooks  # the library's own request hooks (headers, request ids)

    class _Timeout(httpx2.HTTPTransport):
        # some hub calls pass timeout=None explicitly; enforce the bound at the transport
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            request.extensions["timeout"] = httpx2.Timeout(timeout).as_dict()
            return super().handle_request(request)

    def factory() -> httpx2.Client:
        return httpx2.Client(transport=_Timeout(), event_hooks=hooks, follow_redirects=True, timeout=timeout)

    return factory


_SCOPE_LOCK = threading.Lock()  # one scoped factory at a time: nested swaps would restore out of order


@contextmanager
def hub_request_timeout(timeout: float) -> Iterator[None]:
    """Within the block, huggingface_hub's shared HTTP client bounds every request by ``timeout`` seconds.

    huggingface_hub keeps one process-wide client built by a settable factory and exposes no per-call
    timeout for the commit/LFS calls, so the bound has to live in that client. This swaps the factory in and
    restores the previous one on exit (also on errors); ``set_client_factory`` closes the old shared client
    each time, so no client built by our factory outlives the block. Threads of the same process using the
    Hub *during* an upload share the bounded client: harmless, a timeout only turns a hang into an error.
    """
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    with _SCOPE_LOCK:
        previous = _http._GLOBAL_CLIENT_FACTORY  # no public getter; read-only use of the library's slot
        set_client_factory(_http_client_factory(timeout))
        try:
            yield
        finally:
            set_client_factory(previous)


def _explain(err: BaseException, endpoint: str, repo_id: str, timeout: float) -> str:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if isinstance(err, httpx2.TimeoutException):
        return f"{endpoint} did not answer within {timeout:g} s (publish.timeout_seconds); try again later"
    if isinstance(err, httpx2.TransportError):
        return f"cannot reach {endpoint} ({type(err).__name__}: {err}); check HF_ENDPOINT and the network"
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        if status in (401, 403) or isinstance(err, RepositoryNotFoundError):
            return (
                f"{endpoint} refused access to dataset {repo_id} (HTTP {status}): check that HF_TOKEN is "
                f"valid and has write access to the {repo_id.split('/')[0]!r} namespace"
            )
        if status >= 500:
            return f"{endpoint} failed with HTTP {status} (a server-side error); try again later"
        return f"{endpoint} rejected the upload (HTTP {status}): {err}"
    return f"{type(err).__name__}: {err}"


def require_token() -> str:
    """``HF_TOKEN``, or :class:`PublishError` saying how to set it (checked before any repo is built)."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise PublishError(
            "HF_TOKEN is not set: export a Hugging Face token with write access (or set "
            "publish.target: local to build the repo folders offline)"
        )
    return token


def upload_repo(
    folder: Path,
    repo_id: str,
    revision: str = "main",
    private: bool = False,
    timeout: float = 60.0,
    commit_message: str | None = None,
) -> dict[str, Any]:
    """Upload ``folder`` (a built repo with ``checksums.sha256``) to dataset ``repo_id`` at ``revision``.

    Returns the receipt: endpoint, repo, revision, commit id, whether a commit was made, and every file's
    sha256. Raises :class:`PublishError` on any failure.
    """
    folder = Path(folder)
    token = require_token()
    if not (folder / CHECKSUMS).is_file():
        raise PublishError(f"{folder} has no {CHECKSUMS}; it is not a complete repo folder")
    local = read_checksums(folder)
    local[CHECKSUMS] = hashlib.sha256((folder / CHECKSUMS).read_bytes()).hexdigest()

    from huggingface_hub import (
        CommitOperationAdd,
        CommitOperationDelete,
        HfApi,
        constants,
    )

    endpoint = constants.ENDPOINT
    api = HfApi(endpoint=endpoint, token=token)
    with hub_request_timeout(timeout):  # bounded requests for this upload only
        try:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            if revision != constants.DEFAULT_REVISION:
                api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
            head = api.dataset_info(repo_id, revision=revision).sha
            remote = {
                f.path: f
                for f in api.list_repo_tree(repo_id, repo_type="dataset", revision=revision, recursive=True)
                if hasattr(f, "blob_id")  # files only
            }
            changed = []
            for rel, digest in sorted(local.items()):
                f = remote.get(rel)
                if f is None:
                    changed.append(rel)
                elif f.lfs is not None:
                    if f.lfs.sha256 != digest:
                        changed.append(rel)
                elif f.blob_id != git_blob_oid(folder / rel):
                    changed.append(rel)
            removed = sorted(p for p in remote if p not in local and p not in HUB_OWNED)
            if changed or removed:
                ops: list[Any] = [CommitOperationDelete(path_in_repo=p) for p in removed]
                ops += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in changed]
                info = api.create_commit(
                    repo_id,
                    ops,
                    commit_message=commit_message or f"Publish {len(changed)} file(s), delete {len(removed)}",
                    repo_type="dataset",
                    revision=revision,
                    parent_commit=head,
                )
                commit = info.oid
            else:
                commit = head
            # read back what the Hub now holds and compare with the local manifest
            after = {
                f.path: f
                for f in api.list_repo_tree(repo_id, repo_type="dataset", revision=commit, recursive=True)
                if hasattr(f, "blob_id")
            }
        except PublishError:
            raise
        except Exception as err:  # not chained: the cause's text may hold the endpoint's credentials
            raise PublishError(
                scrub_secrets(f"publishing {repo_id} failed: {_explain(err, endpoint, repo_id, timeout)}")
            ) from None
    mismatched = [
        p
        for p, d in local.items()
        if p not in after or (after[p].lfs is not None and after[p].lfs.sha256 != d)
    ]
    if mismatched:
        raise PublishError(f"after the commit the Hub copy of {repo_id} differs for {mismatched[:5]}")
    return {
        "target": "hub",
        "endpoint": scrub_secrets(endpoint),  # the receipt is versioned: no user:password@
        "repo_id": repo_id,
        "repo_type": "dataset",
        "revision": revision,
        "commit": commit,
        "committed": bool(changed or removed),
        "uploaded": changed,
        "deleted": removed,
        "files": dict(sorted(local.items())),
    }
