"""The JHTDB source against a loopback stand-in service: retries, resume, token hygiene, exact assembly."""

from __future__ import annotations

import email.utils
import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import quote, quote_plus

import numpy as np
import pytest
import yaml

from loaders.storage import open_store
from pipelines.params import ComputeParams, ParamsError, TurbulenceParams, parse_params
from pipelines.turbulence import jhtdb, jhtdb_payload
from pipelines.turbulence.downsample import block_mean
from pipelines.turbulence.stage import build_turbulence_dataset, jhtdb_scratch, main, sample_plan
from tests.jhtdb_standin import JHTDBStandIn, native_indices, standin_velocity

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-7c1e9f-STANDIN-SECRET-d41d8cd9"  # distinctive: any leak is easy to find


@pytest.fixture
def server():
    with JHTDBStandIn(TOKEN, max_points=4096, slow_seconds=1.6) as s:
        yield s


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JHTDB_TOKEN", TOKEN)


def jhtdb_section(url: str, **over: object) -> dict:
    jhtdb_over = over.pop("jhtdb", {})
    section = {
        "source": "jhtdb",
        "hr_resolution": 8,
        "lr_factor": 2,
        "splits": {"train": 1, "valid": 1, "test": 1},
        "seed": 7,
        "jhtdb": {
            "base_url": url,
            "mode": "stride",
            "factor": 16,
            "time_range": [1, 40],
            "max_points_per_request": 4096,
            "timeout_s": 5.0,
            "retries": 3,
            "backoff_s": 0.01,
            "allow_insecure_http": True,  # the loopback stand-in speaks plain http
            **jhtdb_over,
        },
    }
    section.update(over)
    return section


def client_for(url: str, token: str = TOKEN, **kw: object) -> jhtdb.CutoutClient:
    """A client of the loopback stand-in (plain http, so the insecure override is needed)."""
    return jhtdb.CutoutClient(url, token, allow_insecure_http=True, **kw)  # type: ignore[arg-type]


def params_for(url: str, **over: object) -> TurbulenceParams:
    return parse_params({"turbulence": jhtdb_section(url, **over)}).turbulence


def build(p: TurbulenceParams, tmp_path: Path, name: str = "t.zarr", plots: bool = False) -> dict:
    figures = (tmp_path / "spec.png", tmp_path / "modes.png") if plots else (None, None)
    return build_turbulence_dataset(
        p, ComputeParams(), tmp_path / name, tmp_path / "m.json", *figures,
        scratch_root=tmp_path / "scratch", progress=False,
    )  # fmt: skip


def expected_hr(p: TurbulenceParams, t: int) -> np.ndarray:
    """What the stored hr frame at JHTDB time ``t`` must be, from the stand-in's field definition."""
    j, n = p.jhtdb, p.hr_resolution
    if j.mode == "box":
        axes = [native_indices(o, o + n * j.factor - 1, 1) for o in j.origin]
        return block_mean(standin_velocity(*axes, t).transpose(3, 0, 1, 2), j.factor)
    f = jhtdb.native_factor(j)
    axes = [native_indices(o, o + (n - 1) * f, f) for o in j.origin]
    return standin_velocity(*axes, t).transpose(3, 0, 1, 2)


# --- client ---------------------------------------------------------------------------------------------


def test_client_retries_every_transient_fault_then_succeeds(server: JHTDBStandIn) -> None:
    server.faults = ["timeout", "500", "truncate", "badjson", "placeholder"]
    cut = jhtdb.Cutout(time_index=3, start=(1020, 5, 9), count=(6, 4, 2), stride=2)  # wraps in x
    with client_for(server.url, timeout_s=0.8, retries=5, backoff_s=0.01) as client:
        values = client.fetch(cut)
    assert client.stats.requests == 6 and client.stats.retries == 5
    assert set(client.stats.failures) == {
        "ReadTimeout",
        "HTTP 500",
        "ProtocolError",  # the truncated body (urllib3's IncompleteRead)
        "malformed payload",
    }
    axes = [native_indices(s, e, 2) for s, e in zip(cut.start, cut.end, strict=True)]
    np.testing.assert_array_equal(values, standin_velocity(*axes, 3).transpose(3, 0, 1, 2))
    assert values.shape == (3, 2, 4, 6)


def test_client_gives_up_with_a_clear_error(server: JHTDBStandIn) -> None:
    server.persistent = "500"
    sleeps: list[float] = []
    client = client_for(server.url, retries=3, backoff_s=0.5, backoff_max_s=1.5, sleep=sleeps.append)
    with pytest.raises(jhtdb.JHTDBError, match=r"failed after 4 attempts \(last: HTTP 500\)") as err:
        client.fetch(jhtdb.Cutout(1, (1, 1, 1), (2, 2, 2), 1))
    client.close()
    assert sleeps == [0.5, 1.0, 1.5]  # exponential backoff, capped
    assert "t=1 x=1..2 y=1..2 z=1..2" in str(err.value) and TOKEN not in str(err.value)
    server.persistent = "placeholder"
    with client_for(server.url, retries=1, backoff_s=0) as client:
        with pytest.raises(jhtdb.JHTDBError, match="missing-value placeholder"):
            client.fetch(jhtdb.Cutout(1, (1, 1, 1), (2, 2, 2), 1))


def test_client_does_not_retry_refusals(server: JHTDBStandIn) -> None:
    with client_for(server.url, "wrong-token", retries=3, backoff_s=0) as client:
        with pytest.raises(jhtdb.JHTDBError, match="HTTP 401"):
            client.fetch(jhtdb.Cutout(1, (1, 1, 1), (2, 2, 2), 1))
    assert len(server.requests) == 1


def test_block_plan_respects_the_request_limits() -> None:
    for mode, factor, limit in (
        ("stride", 16, 256),
        ("box", 4, 512),
        ("subcube", 1, 4096),
        ("stride", 4, 100),
    ):
        section = jhtdb_section(
            "http://127.0.0.1:1/x", jhtdb={"mode": mode, "factor": factor, "max_points_per_request": limit}
        )
        p = parse_params({"turbulence": {**section, "hr_resolution": 8 if mode != "box" else 4}}).turbulence
        blocks = jhtdb.plan_blocks(p.jhtdb, p.hr_resolution, [5])
        covered = np.zeros((p.hr_resolution,) * 3, dtype=int)
        for b in blocks:
            cut = jhtdb.cutout_for(p.jhtdb, b)
            assert cut.points <= limit and cut.span_bytes <= p.jhtdb.max_request_mb * 2**20
            covered[tuple(slice(lo, lo + s) for lo, s in zip(b.lo, b.size, strict=True))] += 1
        assert np.all(covered == 1), mode


# --- the stage --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, over",
    [
        ("stride", {"jhtdb": {"max_points_per_request": 448}}),  # blocks of 7 and 1 planes
        ("box", {"hr_resolution": 4, "jhtdb": {"mode": "box", "factor": 4}}),
        (
            "subcube",
            {
                "jhtdb": {
                    "mode": "subcube",
                    "factor": 1,
                    "origin": [1020, 5, 17],
                    "max_points_per_request": 4096,
                }
            },
        ),
    ],
)
def test_assembled_field_equals_what_the_server_served(
    mode: str, over: dict, server: JHTDBStandIn, token_env: None, tmp_path: Path
) -> None:
    jhtdb_over = {"base_url": server.url, "time_range": [1, 40], "timeout_s": 5.0, "backoff_s": 0.01,
                  **over.pop("jhtdb", {})}  # fmt: skip
    p = params_for(server.url, **over, jhtdb=jhtdb_over)
    result = build(p, tmp_path)
    ds = open_store(tmp_path / "t.zarr", verify=True)
    assert ds.attrs["source"] == "jhtdb" and ds.attrs["jhtdb_mode"] == mode
    assert "Source: JHTDB" in ds.attrs["dataset_card"]
    plan = sample_plan(p)
    assert list(ds.time_index.values) == [int(t) for t in plan.time_index]
    np.testing.assert_allclose(ds.time.values, (plan.time_index - 1) * 0.002)
    for i, t in enumerate(plan.time_index):
        np.testing.assert_array_equal(ds.hr[i].values, expected_hr(p, int(t)))
    np.testing.assert_allclose(ds.lr.values, block_mean(ds.hr.values, 2), rtol=1e-6, atol=1e-6)
    n_blocks = len(jhtdb.plan_blocks(p.jhtdb, p.hr_resolution, [1]))
    assert result["download"]["blocks_total"] == len(server.requests) == n_blocks * plan.time_index.size
    dx = 2 * np.pi / 1024
    f = jhtdb.native_factor(p.jhtdb)
    offset = (f - 1) / 2 if mode == "box" else 0
    np.testing.assert_allclose(
        ds.x.values, (p.jhtdb.origin[0] - 1 + np.arange(p.hr_resolution) * f + offset) * dx
    )


def test_bad_params_and_missing_token_fail_before_any_request(
    server: JHTDBStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JHTDB_TOKEN", TOKEN)
    bad = [
        {"jhtdb": {"base_url": server.url, "origin": [0, 1, 1]}},  # box outside the domain
        {"lr_factor": 3},  # does not divide hr_resolution 8
        {"jhtdb": {"base_url": server.url, "time_range": [1, 8]}},  # 8 steps: too few for 3 windows of 3
    ]
    for i, over in enumerate(bad):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(yaml.safe_dump({"turbulence": jhtdb_section(server.url, **over)}))
        assert (
            main(["--params", str(path), "--out", str(tmp_path / f"o{i}.zarr"), "--scratch", str(tmp_path)])
            == 1
        )
    monkeypatch.delenv("JHTDB_TOKEN")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"turbulence": jhtdb_section(server.url)}))
    assert main(["--params", str(good), "--out", str(tmp_path / "g.zarr"), "--scratch", str(tmp_path)]) == 1
    assert server.requests == []
    assert not (tmp_path / "g.zarr").exists()


def test_killed_download_resumes_without_refetching(server: JHTDBStandIn, tmp_path: Path) -> None:
    section = jhtdb_section(server.url)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"turbulence": section}))
    finished = 5
    server.faults = [None] * finished + ["hang"]  # type: ignore[list-item]
    cmd = [sys.executable, "-m", "pipelines.turbulence", "--params", str(params_file), "--out",
           str(tmp_path / "t.zarr"), "--scratch", str(tmp_path / "scratch")]  # fmt: skip
    env = {**os.environ, "JHTDB_TOKEN": TOKEN}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.hanging.wait(60), "the download never reached the hanging request"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    server.release.set()
    first_run = [dict(q) for q in server.served]
    assert len(first_run) == finished and not (tmp_path / "t.zarr").exists()
    p = parse_params({"turbulence": section}).turbulence
    scratch = jhtdb_scratch(p, tmp_path / "scratch", [int(t) for t in sample_plan(p).time_index])
    assert len(list(scratch.dir.glob("*.done"))) == finished
    server.requests.clear()
    server.served.clear()
    os.environ["JHTDB_TOKEN"] = TOKEN
    try:
        result = build(p, tmp_path)
    finally:
        del os.environ["JHTDB_TOKEN"]
    key = ("xs", "ys", "zs", "ts")
    refetched = {tuple(q[k] for k in key) for q in server.requests} & {
        tuple(q[k] for k in key) for q in first_run
    }
    assert not refetched
    assert result["download"]["blocks_resumed"] == finished
    assert len(server.requests) == result["download"]["blocks_total"] - finished
    ds = open_store(tmp_path / "t.zarr")
    for i, t in enumerate(sample_plan(p).time_index):
        np.testing.assert_array_equal(ds.hr[i].values, expected_hr(p, int(t)))


def test_token_never_leaks(
    server: JHTDBStandIn,
    token_env: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs every request line (query string included) at DEBUG
    server.faults = ["timeout", "500", "truncate", "badjson", "placeholder"]
    p = params_for(
        server.url, jhtdb={"base_url": server.url, "retries": 5, "timeout_s": 0.8, "backoff_s": 0.01}
    )
    result = build(p, tmp_path, plots=True)
    assert result["download"]["retries"] == 5
    assert any("GET" in r.getMessage() for r in caplog.records), "urllib3 debug logging was not captured"
    texts = [caplog.text]
    # failures: a refusal whose description echoes the token, and retries running out
    for fault, match in (("echo401", "HTTP 401"), ("500", "failed after")):
        server.persistent = fault
        with pytest.raises(jhtdb.JHTDBError, match=match) as err:
            build(params_for(server.url, seed=11), tmp_path, name=f"fail-{fault}.zarr")
        texts += [str(err.value), "".join(traceback.format_exception(err.value)), repr(err.value)]
    server.persistent = None
    out, errout = capfd.readouterr()
    texts += [out, errout, caplog.text]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    client = client_for(server.url)
    texts.append(repr(client))
    client.close()
    assert len(texts) > 10 and all(TOKEN not in t for t in texts)
    # the name of the variable is recorded, its value is not
    assert json.loads((tmp_path / "m.json").read_text())["source"] == "jhtdb"
    assert "JHTDB_TOKEN" in open_store(tmp_path / "t.zarr").attrs["provenance"]


# --- issue 10: token and request safety ------------------------------------------------------------------


def test_redirect_is_not_followed_so_the_token_stays_with_base_url(server: JHTDBStandIn) -> None:
    with JHTDBStandIn(TOKEN) as other:  # another port: another origin
        server.redirect_to = other.url
        server.faults = ["redirect"]
        with client_for(server.url, retries=3, backoff_s=0) as client:
            with pytest.raises(jhtdb.JHTDBError, match=r"redirect \(HTTP 302\)") as err:
                client.fetch(jhtdb.Cutout(1, (1, 1, 1), (2, 2, 2), 1))
        assert other.requests == [] and other.tokens_received == 0
    message = str(err.value)
    assert "t=1 x=1..2 y=1..2 z=1..2" in message
    assert TOKEN not in message and "127.0.0.1" not in message  # neither the token nor a URL
    assert len(server.requests) == 1  # a redirect is not retried


def test_params_require_https_and_a_jhtdb_token_variable(
    server: JHTDBStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    insecure = jhtdb_section(server.url, jhtdb={"allow_insecure_http": False})
    with pytest.raises(ParamsError, match=r"jhtdb.base_url must start with https://"):
        parse_params({"turbulence": insecure})
    assert params_for(server.url).jhtdb.allow_insecure_http  # the documented override
    secure = {**insecure["jhtdb"], "base_url": "https://jhtdb.example/cutout"}
    assert parse_params({"turbulence": {**insecure, "jhtdb": secure}}).turbulence.jhtdb.base_url
    for name, ok in (("HF_TOKEN", False), ("PATH", False), ("jhtdb_token", False), ("JHTDB_TOKEN_2", True)):
        section = jhtdb_section(server.url, jhtdb={"token_env": name})
        if ok:
            assert parse_params({"turbulence": section}).turbulence.jhtdb.token_env == name
        else:
            with pytest.raises(ParamsError, match=r"turbulence\.jhtdb\.token_env"):
                parse_params({"turbulence": section})
    for url in (server.url, "ftp://127.0.0.1/x"):  # the client refuses them too
        with pytest.raises(jhtdb.JHTDBError, match="https://"):
            jhtdb.CutoutClient(url, TOKEN)
    # the stage: any other secret in the environment is never sent anywhere
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    for i, over in enumerate([insecure["jhtdb"], {"token_env": "HF_TOKEN"}]):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(yaml.safe_dump({"turbulence": jhtdb_section(server.url, jhtdb=over)}))
        out = tmp_path / f"o{i}.zarr"
        assert main(["--params", str(path), "--out", str(out), "--scratch", str(tmp_path)]) == 1
    assert server.requests == []


def test_retry_after_is_honoured_up_to_backoff_max(server: JHTDBStandIn) -> None:
    cut = jhtdb.Cutout(1, (1, 1, 1), (2, 2, 2), 1)
    server.faults, server.retry_after = ["429"], "1"
    with client_for(server.url, retries=2, backoff_s=0.01, backoff_max_s=2) as client:
        start = time.monotonic()
        client.fetch(cut)
        assert time.monotonic() - start >= 1.0  # waited as asked, not 0.01 s
    assert client.stats.retries == 1 and client.stats.failures == {"HTTP 429": 1}
    server.faults, server.retry_after = ["503"], "5"
    sleeps: list[float] = []
    with client_for(server.url, retries=3, backoff_s=0.01, backoff_max_s=1, sleep=sleeps.append) as client:
        with pytest.raises(jhtdb.JHTDBError, match=r"asked to wait 5 s .*backoff_max_s=1") as err:
            client.fetch(cut)
    assert sleeps == [] and "t=1 x=1..2" in str(err.value)  # fails at once instead of hammering
    # the HTTP-date form, and headers that say nothing usable
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= jhtdb_payload.retry_after_seconds(date, now=now) <= 31
    assert jhtdb_payload.retry_after_seconds(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0
    for bad in (None, "", "soon", "-3", "1.5e3"):
        assert jhtdb_payload.retry_after_seconds(bad) is None


def test_timeout_is_a_deadline_for_the_whole_reply(server: JHTDBStandIn) -> None:
    cut = jhtdb.Cutout(2, (1, 1, 1), (4, 4, 4), 1)
    server.drip_seconds = 1.5  # every byte arrives well within any per-read timeout
    server.faults = ["drip"]
    with client_for(server.url, timeout_s=0.4, retries=1, backoff_s=0.01) as client:
        values = client.fetch(cut)
    assert client.stats.failures == {"deadline": 1} and client.stats.retries == 1
    assert values.shape == (3, 4, 4, 4)
    server.persistent = "drip"
    with client_for(server.url, timeout_s=0.4, retries=1, backoff_s=0.01) as client:
        with pytest.raises(jhtdb.JHTDBError, match=r"t=2 x=1..4 .*0.4 s deadline"):
            client.fetch(cut)


def payload(values: np.ndarray) -> dict:
    """A reply document in the service's layout for ``values`` (nz, ny, nx, 3)."""
    return {
        "coords": {"values": {"dims": ["values"], "data": ["ux", "uy", "uz"]}},
        "data_vars": {"velocity_0001": {"dims": jhtdb_payload.DIMS, "data": values.tolist()}},
    }


def _set_first(doc: dict, value: object) -> dict:
    doc["data_vars"]["velocity_0001"]["data"][0][0][0][0] = value
    return doc


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: _set_first(d, True), "non-numbers"),
        (lambda d: _set_first(d, "0.5"), "non-numbers"),
        (lambda d: _set_first(d, None), "non-numbers"),
        (lambda d: _set_first(d, [0.5]), "non-numbers|shape"),
        (lambda d: _set_first(d, {"v": 1}), "non-numbers"),
        (lambda d: _set_first(d, float("nan")), "non-finite"),
        (lambda d: _set_first(d, 1e39), "float32 range"),
        (lambda d: _set_first(d, 10**400), "out of range|float32 range"),
        (lambda d: _set_first(d, -999.9), "placeholder"),
        (lambda d: {**d, "coords": []}, "coords"),
        (
            lambda d: {**d, "data_vars": {"v": {**d["data_vars"]["velocity_0001"], "data": "x"}}},
            "not an array",
        ),
        (lambda d: {**d, "data_vars": {"v": {**d["data_vars"]["velocity_0001"], "data": [[1.0]]}}}, "shape"),
        (lambda d: [d], "data_vars"),
    ],
)
def test_payload_must_be_a_regular_array_of_json_numbers(mutate, match: str) -> None:
    values = standin_velocity(np.arange(2), np.arange(3), np.arange(4), 1)
    ok = json.dumps(payload(values)).encode()
    np.testing.assert_array_equal(jhtdb.parse_cutout(ok, (4, 3, 2)), values.transpose(3, 0, 1, 2))
    with pytest.raises(ValueError, match=match):
        jhtdb.parse_cutout(json.dumps(mutate(payload(values))).encode(), (4, 3, 2))
    with pytest.raises(ValueError, match="nested too deeply"):
        jhtdb.parse_cutout(b"[" * 100_000 + b"]" * 100_000, (4, 3, 2))


def test_malformed_payloads_are_retried_and_name_the_block(server: JHTDBStandIn) -> None:
    cut = jhtdb.Cutout(3, (1, 1, 1), (2, 2, 2), 1)
    server.faults = ["bool", "deep"]
    with client_for(server.url, retries=2, backoff_s=0.01) as client:
        values = client.fetch(cut)
    assert client.stats.failures == {"malformed payload": 2} and np.all(values != 1.0)
    for fault, match in (("bool", r"non-numbers \(bool\)"), ("deep", "nested too deeply")):
        server.persistent = fault
        with client_for(server.url, retries=1, backoff_s=0.01) as client:
            with pytest.raises(jhtdb.JHTDBError, match=rf"t=3 x=1..2 y=1..2 z=1..2.*{match}"):
                client.fetch(cut)


# --- issue 10: resume and scratch safety ------------------------------------------------------------------


def test_corrupted_resume_pieces_are_downloaded_again(
    server: JHTDBStandIn, token_env: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.faults = [None] * 7  # type: ignore[list-item]
    server.persistent = "500"  # then the download stops, keeping 7 finished pieces
    with pytest.raises(jhtdb.JHTDBError):
        build(params_for(server.url, jhtdb={"retries": 0}), tmp_path)
    server.persistent = None
    p = params_for(server.url)
    scratch = jhtdb_scratch(p, tmp_path / "scratch", [int(t) for t in sample_plan(p).time_index])
    names = sorted(m.stem for m in scratch.dir.glob("*.done"))
    assert len(names) == 7
    flipped, deleted, unrecorded = names[1], names[4], names[6]
    chunks = [f for f in (scratch.dir / f"{flipped}.zarr" / "velocity" / "c").rglob("*") if f.is_file()]
    data = bytearray(chunks[0].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in an uncompressed chunk: still a valid store
    chunks[0].write_bytes(bytes(data))
    for f in (scratch.dir / f"{deleted}.zarr" / "velocity" / "c").rglob("*"):
        if f.is_file():
            f.unlink()  # zarr reads a missing chunk back as the fill value, silently
    (scratch.dir / f"{unrecorded}.integrity.json").unlink()  # e.g. killed between piece and record
    server.requests.clear()
    caplog.set_level(logging.WARNING)
    result = build(p, tmp_path)
    redone = {flipped, deleted, unrecorded}
    assert result["download"]["blocks_resumed"] == 4 and result["download"]["blocks_fetched"] == 5
    requested = {int(q["ts"]) for q in server.requests}  # one block per time step here
    assert {int(n[1:6]) for n in redone} <= requested
    assert not requested & {int(n[1:6]) for n in set(names) - redone}
    for name in redone:
        assert f"JHTDB scratch piece {name} is not reusable" in caplog.text
    ds = open_store(tmp_path / "t.zarr", verify=True)
    for i, t in enumerate(sample_plan(p).time_index):
        np.testing.assert_array_equal(ds.hr[i].values, expected_hr(p, int(t)))


def test_a_new_base_url_never_reuses_pieces_of_the_old_server(
    server: JHTDBStandIn, token_env: None, tmp_path: Path
) -> None:
    server.faults = [None, None, None]  # type: ignore[list-item]
    server.persistent = "500"
    with pytest.raises(jhtdb.JHTDBError, match="failed after 1 attempts"):
        build(params_for(server.url, jhtdb={"retries": 0}), tmp_path)
    assert len(server.served) == 3
    with JHTDBStandIn(TOKEN) as other:
        other.offset = 1.0  # a different field
        p = params_for(other.url)
        server.requests.clear()
        result = build(p, tmp_path)
        assert result["download"]["blocks_resumed"] == 0
        assert len(other.requests) == result["download"]["blocks_total"] and server.requests == []
    ds = open_store(tmp_path / "t.zarr")
    for i, t in enumerate(sample_plan(p).time_index):
        np.testing.assert_array_equal(ds.hr[i].values, expected_hr(p, int(t)) + np.float32(1.0))


# --- issue 19 §8: a reply can be no larger than its cutout allows ----------------------------------------


@pytest.mark.parametrize(
    ("fault", "match"), [("bomb", "decompresses to more than"), ("oversize", "sent more")]
)
def test_gzip_bomb_and_oversize_reply_are_refused_in_small_memory(
    server: JHTDBStandIn, fault: str, match: str
) -> None:
    import tracemalloc

    cut = jhtdb.Cutout(1, (1, 1, 1), (2, 2, 2), 1)
    server.persistent = fault
    tracemalloc.start()
    try:
        with client_for(server.url, retries=2, backoff_s=0) as client:
            with pytest.raises(jhtdb.JHTDBError, match=match) as err:
                client.fetch(cut)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "t=1 x=1..2 y=1..2 z=1..2" in str(err.value) and TOKEN not in str(err.value)
    assert len(server.requests) == 1  # refused, not retried
    # 64 MiB inflated or streamed; the cap for 2x2x2 points is ~1 MiB and only that much is ever held
    assert cut.max_reply_bytes < 2 << 20 and peak < 8 << 20, peak
    server.persistent = "gzip"  # a well-formed compressed reply still passes
    with client_for(server.url) as client:
        values = client.fetch(cut)
    np.testing.assert_array_equal(values, standin_velocity(*[np.arange(2)] * 3, 1).transpose(3, 0, 1, 2))


def test_a_refusal_echoing_its_request_line_shows_no_token_in_any_encoding() -> None:
    token = "tok+9f/a3=SECRET=="  # '+', '/' and '=' all change under URL encoding
    with JHTDBStandIn(token) as standin:
        standin.faults = ["400echo"]
        with client_for(standin.url, token=token, retries=0) as client:
            with pytest.raises(jhtdb.JHTDBError, match="HTTP 400") as err:
                client.fetch(jhtdb.Cutout(1, (1, 1, 1), (2, 2, 2), 1))
    message = str(err.value)
    assert "bad request: GET /turbulence-svc/cutout/api/local?token=<redacted>&function=velocity" in message
    for form in (token, quote(token, safe=""), quote_plus(token), "9f%2Fa3", "SECRET"):
        assert form.lower() not in message.lower(), form
