"""Issue 19 §9: one scrubber (pipelines/cli.py) keeps secrets out of every stage error, in any encoding."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import pytest

from pipelines.cli import register_secret, run_stage, scrub_secrets

HF = "hf_Qx7+Lm/Zp=Rt9Wv2Ks4Ny6Bc"
JHTDB = "edu.jhu.pha+turb/ulence=q9"


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", HF)
    monkeypatch.setenv("JHTDB_TOKEN", JHTDB)
    monkeypatch.setenv("HF_ENDPOINT", "http://user:password@127.0.0.1:1")


def test_every_encoding_of_every_secret_is_scrubbed() -> None:
    leaks = [
        "cannot reach http://user:password@127.0.0.1:1 (ConnectError)",
        f"GET /api?token={quote(JHTDB, safe='')}&x=1 HTTP/1.1",
        f"GET /api?token={quote(JHTDB, safe='').lower()}",
        f"form {quote_plus(HF)} and path {quote(HF)}",
        f"Authorization: Basic {base64.b64encode(f'u:{HF}'.encode()).decode()}",
        f"raw {HF} and base64 {base64.b64encode(HF.encode()).decode()} and json {HF!r}",
        "https://other:s3cr3t-pw@example.org/x and token=abc123&y",
    ]
    for text in leaks:
        clean = scrub_secrets(text)
        for secret in (HF, JHTDB, "password", "s3cr3t-pw", "abc123"):
            b64 = base64.b64encode(secret.encode()).decode()
            for form in (secret, quote(secret, safe=""), quote_plus(secret), b64):
                assert form.lower().strip("=") not in clean.lower(), (text, clean)
    plain = "a user read 12 files at http://127.0.0.1:1/x"
    assert scrub_secrets(plain) == plain  # ordinary text is left alone


def test_registered_secrets_and_stage_errors_are_scrubbed(capsys: pytest.CaptureFixture) -> None:
    register_secret("my-custom-jhtdb-key")  # a token from a variable whose name does not say so

    def body() -> None:
        raise RuntimeError(f"HTTP 400 for GET /x?token=my-custom-jhtdb-key via http://user:password@h {HF}")

    assert run_stage("demo", body) == 1
    err = capsys.readouterr().err
    assert err.startswith("demo stage failed: HTTP 400") and "<redacted>" in err
    for secret in ("my-custom-jhtdb-key", "password", HF):
        assert secret not in err
