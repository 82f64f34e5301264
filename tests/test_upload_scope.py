"""The publish upload bounds its HTTP requests without changing huggingface_hub's client for the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines.params import PublishParams
from pipelines.publish.stage import publish
from pipelines.publish.upload import hub_request_timeout

REPO = Path(__file__).resolve().parent.parent


def test_timeout_client_lives_only_inside_the_block() -> None:
    from huggingface_hub import get_session
    from huggingface_hub.utils import _http

    before = _http._GLOBAL_CLIENT_FACTORY
    with hub_request_timeout(3.5):
        inside = get_session()
        assert inside.timeout.read == 3.5 and inside.timeout.connect == 3.5
        assert _http._GLOBAL_CLIENT_FACTORY is not before
    assert _http._GLOBAL_CLIENT_FACTORY is before
    assert inside.is_closed  # the bounded client does not linger as the shared session
    assert get_session().timeout.read != 3.5
    with pytest.raises(KeyError), hub_request_timeout(1.0):
        raise KeyError("an upload error")
    assert _http._GLOBAL_CLIENT_FACTORY is before


UPLOAD_TWICE = textwrap.dedent(
    """
    import json, os, sys
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http
    from pipelines.publish.upload import PublishError, upload_repo

    built = []
    def mine():  # the process's own factory, as a user of huggingface_hub might set it
        built.append(1)
        return _http.default_client_factory()

    set_client_factory(mine)
    out = {}
    receipt = upload_repo(sys.argv[1], "tester/smoke-plume", timeout=5.0)
    out["committed"] = receipt["committed"]
    out["restored_after_success"] = _http._GLOBAL_CLIENT_FACTORY is mine
    os.environ["HF_TOKEN"] = "hf_refused"
    try:  # a new repo needs a write the stand-in refuses to this token
        upload_repo(sys.argv[1], "tester/refused", timeout=5.0)
    except PublishError as err:
        out["error"] = str(err)
    out["restored_after_failure"] = _http._GLOBAL_CLIENT_FACTORY is mine
    n = len(built)
    _http.get_session()
    out["session_from_own_factory"] = len(built) == n + 1
    print(json.dumps(out))
    """
)


def test_upload_restores_the_process_client_factory(hub, smoke_store: Path, tmp_path: Path) -> None:
    hub.tokens = {"hf_good"}
    folder = tmp_path / "hub"
    publish(
        PublishParams(repos={"smoke": "tester/smoke-plume"}, datasets=["smoke"], mini_frames=2),  # type: ignore[arg-type]
        {"smoke": smoke_store},
        folder,
    )
    script = tmp_path / "upload_twice.py"
    script.write_text(UPLOAD_TWICE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_ENDPOINT=hub.url,  # read when huggingface_hub is imported: hence a fresh process
        HF_TOKEN="hf_good",
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        PYTHONPATH=str(REPO),
    )
    run = subprocess.run(
        [sys.executable, str(script), str(folder / "smoke-plume")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["committed"] is True and hub.commits_made == 1
    assert "refused access" in out["error"]
    assert out["restored_after_success"] and out["restored_after_failure"] and out["session_from_own_factory"]
