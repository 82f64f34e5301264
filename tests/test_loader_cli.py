"""Reading published datasets back from a Hub: the disk-cached loaders and the ``symflow-data`` command.

A repo folder built by the publish stage is uploaded to the loopback Hub stand-in (tests/hub_standin.py);
the clients run in subprocesses, because huggingface_hub reads ``HF_ENDPOINT`` when it is imported.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from loaders import smoke_plume
from loaders.storage import file_manifest

REPO = Path(__file__).resolve().parent.parent
SMOKE_REPO = "tester/smoke-plume"


def _env(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_ENDPOINT=url, HF_TOKEN="hf_dummy", HF_HUB_DISABLE_XET="1", HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONPATH=str(REPO),
    )  # fmt: skip
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "loaders.cli", *args], env)


@pytest.fixture(scope="module")
def published(smoke_store: Path, tmp_path_factory: pytest.TempPathFactory):
    """(hub stand-in, local smoke repo folder), the folder uploaded once as ``tester/smoke-plume``."""
    from pipelines.params import PublishParams
    from pipelines.publish.stage import publish
    from tests.hub_standin import HubStandIn

    root = tmp_path_factory.mktemp("hubload")
    params = PublishParams(repos={"smoke": SMOKE_REPO, "turbulence": "tester/t"}, datasets=["smoke"])
    publish(params, {"smoke": smoke_store}, root / "hub")
    folder = root / "hub" / "smoke-plume"
    with HubStandIn() as hub:
        upload = (
            "from huggingface_hub import HfApi; api = HfApi(); "
            f"api.create_repo({SMOKE_REPO!r}, repo_type='dataset'); "
            f"api.upload_folder(repo_id={SMOKE_REPO!r}, folder_path={str(folder)!r}, repo_type='dataset')"
        )
        done = _run([sys.executable, "-c", upload], _env(hub.url, root / "uploader"))
        assert done.returncode == 0, done.stderr[-3000:]
        yield hub, folder


def _resolves(hub, since: int, suffix: str = "") -> list[str]:
    return [p for m, p, _ in hub.requests[since:] if m == "GET" and "/resolve/" in p and p.endswith(suffix)]


LOADER_CHECK = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from loaders import smoke_plume
    hub_ds = smoke_plume(sys.argv[1], level="E3", split="train", fields=("velocity", "smoke"))
    local = smoke_plume(sys.argv[2], level=3, split="train", fields=("velocity", "smoke"))
    assert len(hub_ds) == len(local) > 0
    for i in range(len(hub_ds)):
        for a, b in zip(hub_ds[i], local[i]):
            assert np.array_equal(a.numpy(), b.numpy()), i
    print(json.dumps({"windows": len(hub_ds)}))
    """
)


@pytest.mark.slow
def test_hub_loader_caches_shards_on_disk(published, smoke_store: Path, tmp_path: Path):
    """Bitwise equal to the local store; each shard is fetched once, whole; a new process reads the cache."""
    hub, folder = published
    env = _env(hub.url, tmp_path / "home")
    script = tmp_path / "check.py"
    script.write_text(LOADER_CHECK)
    start = len(hub.requests)
    first = _run([sys.executable, str(script), SMOKE_REPO, str(smoke_store)], env)
    assert first.returncode == 0, first.stderr[-3000:]
    chunk_gets = [p for p in _resolves(hub, start) if "/velocity/c/" in p or "/smoke/c/" in p]
    # level E3 = index 1: one shard per direction and field, each requested once, with no range requests
    assert len(chunk_gets) == len(set(chunk_gets)) == 8
    assert all(
        "/zarr/smoke.zarr/velocity/c/1/" in p or "/zarr/smoke.zarr/smoke/c/1/" in p for p in chunk_gets
    )
    again = len(hub.requests)
    second = _run([sys.executable, str(script), SMOKE_REPO, str(smoke_store)], env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert _resolves(hub, again) == []  # everything from the local cache; only the revision is asked
    cached = list(
        (tmp_path / "home" / "hub").glob("datasets--tester--smoke-plume/snapshots/*/zarr/smoke.zarr")
    )
    assert len(cached) == 1 and (cached[0] / "velocity/c/1/3/0/0/0/0").is_file()
    assert not (cached[0] / "velocity/c/0/0/0/0/0/0").exists()  # level E0 was never read: never fetched

    # a fetched file whose bytes differ from checksums.sha256 is refused and dropped from the cache
    entry = hub.head(SMOKE_REPO).files["zarr/smoke.zarr/velocity/c/1/2/0/0/0/0"]
    blobs, key = (
        (hub.state.lfs_objects, entry.sha256) if entry.lfs else (hub.state.regular_blobs, entry.blob_oid)
    )
    good = blobs[key]
    blobs[key] = good[:100] + bytes([good[100] ^ 0xFF]) + good[101:]
    try:
        bad = _run(
            [sys.executable, str(script), SMOKE_REPO, str(smoke_store)], _env(hub.url, tmp_path / "h2")
        )
    finally:
        blobs[key] = good
    assert bad.returncode != 0
    assert "zarr/smoke.zarr/velocity/c/1/2/0/0/0/0 of tester/smoke-plume" in bad.stderr
    assert "does not match its sha256 in checksums.sha256" in bad.stderr
    assert not list(
        (tmp_path / "h2" / "hub").glob("datasets--*/snapshots/*/zarr/smoke.zarr/velocity/c/1/2/0/0/0/0")
    )


@pytest.mark.slow
def test_list_and_download_are_bitwise_and_resume(published, tmp_path: Path):
    hub, folder = published
    env = _env(hub.url, tmp_path / "home")
    listing = _cli(env, "list", "--source", SMOKE_REPO, "--source", str(folder.parent))
    assert listing.returncode == 0, listing.stderr[-2000:]
    lines = listing.stdout.splitlines()
    assert lines[0].startswith(f"{SMOKE_REPO} @ ") and lines[6].startswith(f"{folder} @ local")
    assert [ln.split(":")[0].strip() for ln in lines[1:6]] == [
        "config E0 (default)", "config E3", "config mini", "config preview", "zarr zarr/smoke.zarr"
    ]  # fmt: skip
    assert lines[1:6] == lines[7:12]  # the Hub copy and the local folder describe the same files

    out = tmp_path / "out"
    got = _cli(env, "download", SMOKE_REPO, "--config", "E3", "--out", str(out))
    assert got.returncode == 0, got.stderr[-2000:]
    e3 = sorted(p.relative_to(folder).as_posix() for p in (folder / "data" / "E3").iterdir())
    want = {rel: sha for rel, sha in file_manifest(folder).items() if rel in e3 or "/" not in rel}
    assert file_manifest(out) == {k: v for k, v in want.items() if not k.endswith(".png")}

    # an interrupted run leaves a prefix in <file>.part; a broken complete file and a missing one are fetched
    parquet, broken, gone = (f"data/E3/{s}-00000-of-00001.parquet" for s in ("train", "validation", "test"))
    full = (out / parquet).read_bytes()
    (out / parquet).unlink()
    (out / (parquet + ".part")).write_bytes(full[: len(full) // 2])
    data = bytearray((out / broken).read_bytes())
    data[-10] ^= 0xFF
    (out / broken).write_bytes(bytes(data))
    (out / gone).unlink()
    start = len(hub.requests)
    again = _cli(env, "download", SMOKE_REPO, "--config", "E3", "--out", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "3 already complete, 1 partial (continued)" in again.stdout
    assert sorted(p.rsplit("/", 1)[1] for p in _resolves(hub, start, ".parquet")) == sorted(
        p.rsplit("/", 1)[1] for p in (parquet, broken, gone)
    )
    assert file_manifest(out) == {k: v for k, v in want.items() if not k.endswith(".png")}
    assert not list(out.rglob("*.part"))

    # a partial file that is not a prefix of the real one fails its sha256, is removed, and the next run
    # downloads the file whole
    (out / gone).unlink()
    (out / (gone + ".part")).write_bytes(b"garbage")
    bad = _cli(env, "download", SMOKE_REPO, "--config", "E3", "--out", str(out))
    assert bad.returncode == 1 and "sha256 does not match" in bad.stderr and not (out / gone).exists()
    assert not (out / (gone + ".part")).exists()
    healed = _cli(env, "download", SMOKE_REPO, "--config", "E3", "--out", str(out))
    assert healed.returncode == 0 and (out / gone).read_bytes() == (folder / gone).read_bytes()

    # the zarr store alone, usable by the loaders as a local repo folder
    zarr_out = tmp_path / "zarr_out"
    z = _cli(env, "download", SMOKE_REPO, "--zarr", "--out", str(zarr_out))
    assert z.returncode == 0, z.stderr[-2000:]
    local = smoke_plume(folder, level=0, split="valid")
    fetched = smoke_plume(zarr_out, level="E0", split="valid")
    assert all(np.array_equal(a[0].numpy(), b[0].numpy()) for a, b in zip(local, fetched, strict=True))
    assert file_manifest(zarr_out / "zarr") == file_manifest(folder / "zarr")
    wrong = _cli(env, "download", SMOKE_REPO, "--config", "E9", "--out", str(out))
    assert wrong.returncode == 1
    assert "has no config 'E9'; it has ['E0', 'E3', 'mini', 'preview']" in wrong.stderr


def test_help_loads_no_heavy_module_and_its_configs_exist_in_the_default_build(tmp_path: Path):
    """``symflow-data --help`` imports neither torch nor the store layer (it used to take 5-7 s), and every
    config its help names is one the embedded default's publish stage builds."""
    from pipelines.params import load_params

    code = textwrap.dedent(
        """
        import sys
        from loaders.cli import main
        for argv in (["--help"], ["download", "--help"]):
            try:
                main(argv)
            except SystemExit:
                pass
        heavy = ("torch", "numpy", "xarray", "zarr", "huggingface_hub", "loaders.sources")
        print("LOADED", sorted(m for m in heavy if m in sys.modules))
        """
    )
    done = _run([sys.executable, "-c", code], _env("http://127.0.0.1:9", tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout
    named = set(re.findall(r"--config (\w+) --out", done.stdout))  # the examples
    for listed in re.findall(r"\(e\.g\.\s+([^)]*)\)", done.stdout):  # --config's own help
        named |= {name.strip() for name in listed.split(",")}
    params = load_params(REPO / "params.yaml")
    hr, factor = params.turbulence.hr_resolution, params.turbulence.lr_factor
    built = {f"E{level}" for level in params.smoke.levels} | {"mini", f"lr{hr // factor}_hr{hr}"}
    assert {"E0", "mini"} <= named and named <= built, (named, built)


def test_an_unreachable_hub_is_one_line_and_exit_2(tmp_path: Path):
    """No traceback, the endpoint named without the credentials its URL carries, and what to do."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _cli(_env(f"http://someone:s3cret@127.0.0.1:{port}", tmp_path), "list")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        f"symflow-data: cannot reach http://127.0.0.1:{port}: set HF_ENDPOINT or check the network"
    ]
    assert "s3cret" not in done.stdout + done.stderr
