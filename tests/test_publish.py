"""Publish stage: repo layout and card, idempotency, and a real round trip through a Hub stand-in.

The client side (the publish stage, ``datasets``, ``xarray`` over ``hf://``, our loaders) runs in
subprocesses, because huggingface_hub reads ``HF_ENDPOINT`` when it is imported; the stand-in server runs
in this process on 127.0.0.1 (tests/hub_standin.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from loaders.storage import COMPLETE_MARKER, file_manifest
from pipelines.params import PublishParams
from pipelines.publish.repo import CHECKSUMS, read_checksums, verify_folder
from pipelines.publish.stage import publish
from pipelines.publish.upload import PublishError, upload_repo

REPO = Path(__file__).resolve().parent.parent
REPOS = {"smoke": "tester/smoke-plume", "turbulence": "tester/turbulence-sr"}


def _params(**extra: object) -> PublishParams:
    return PublishParams(repos=REPOS, mini_frames=2, **extra)  # type: ignore[arg-type]


def _hub_env(url: str, tmp_path: Path, token: str = "hf_dummy") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_ENDPOINT=url,
        HF_TOKEN=token,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        PYTHONPATH=str(REPO),
    )
    if not token:
        env.pop("HF_TOKEN")
    return env


def _write_params(tmp_path: Path, **publish_section: object) -> Path:
    section = {"target": "hub", "repos": REPOS, "mini_frames": 2, **publish_section}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"publish": section}))
    return path


def _publish_cmd(params: Path, stores: dict[str, Path], out: Path, receipt: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pipelines.publish", "--params", str(params), "--out", str(out)]
    cmd += ["--receipt", str(receipt)]
    for name, store in stores.items():
        cmd += [f"--{name}", str(store)]
    return cmd


def _run(cmd: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


# --- local target (in process) ---------------------------------------------------------------------------
def test_local_repo_layout_card_and_idempotency(smoke_store: Path, turbulence_store: Path, tmp_path: Path):
    stores = {"smoke": smoke_store, "turbulence": turbulence_store}
    before = {name: file_manifest(path) for name, path in stores.items()}
    receipt = tmp_path / "receipt.json"
    first = publish(_params(), stores, tmp_path / "hub", receipt)
    folder = tmp_path / "hub" / "smoke-plume"

    card = (folder / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["license"] and "physics" in meta["tags"] and meta["task_categories"]
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert set(configs) == {"E0", "E3", "mini", "preview"} and configs["E0"].get("default") is True
    assert [f["split"] for f in configs["E3"]["data_files"]] == ["train", "validation", "test"]
    for config in configs.values():
        for entry in config["data_files"]:
            assert list(folder.glob(entry["path"])), entry["path"]
    for text in (
        "**Source: synthetic.**",
        "PhiFlow",
        "(level=2, direction=4, time=12, component=2, y=16, x=16)",
        "## Statistics (train split only)",
        "figures/directions.png",
        'load_dataset("tester/smoke-plume"',
    ):
        assert text in card
    assert (folder / "figures" / "directions.png").stat().st_size > 1000
    turb_card = (tmp_path / "hub" / "turbulence-sr" / "README.md").read_text()
    assert "**Source: synthetic -- NOT JHTDB data.**" in turb_card and "figures/resolutions.png" in turb_card

    # checksums cover every other file, and no folder holds more than a few thousand files
    assert verify_folder(folder) == []
    assert set(read_checksums(folder)) == {p for p in first["repos"]["smoke"]["files"] if p != CHECKSUMS}
    assert max(len(list(d.iterdir())) for d in folder.rglob("*") if d.is_dir()) < 1000

    # statistics: train split only, per component, the same numbers the loaders compute
    stats = json.loads((folder / "stats.json").read_text())
    import xarray as xr

    ds = xr.open_zarr(smoke_store)
    train = ds.velocity.isel(level=1, time=slice(0, 6)).values.astype(np.float64)
    np.testing.assert_allclose(
        stats["configs"]["E3"]["velocity"]["mean"], train.mean(axis=(0, 1, 3, 4)), rtol=1e-9
    )
    np.testing.assert_allclose(
        stats["configs"]["E3"]["velocity"]["std"], train.std(axis=(0, 1, 3, 4)), rtol=1e-9
    )

    # a second run changes nothing: same files, same content address, nothing rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    second = publish(_params(), stores, tmp_path / "hub", receipt)
    assert second["repos"]["smoke"]["changed_locally"] == []
    assert second["repos"]["smoke"]["commit"] == first["repos"]["smoke"]["commit"]
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == mtimes
    assert (
        json.loads(receipt.read_text())["repos"]["turbulence"]["commit"]
        == first["repos"]["turbulence"]["commit"]
    )
    assert {name: file_manifest(path) for name, path in stores.items()} == before  # inputs only read
    assert not list((tmp_path / "hub").glob(".*staging*"))


def _with_domain(smoke_store: Path, data: Path) -> Path:
    """``data/smoke.zarr`` (a copy of the session's store) and one held-out ladder, built by the smoke stage's
    Domain code, at ``data/smoke_domain/b002.zarr``; returns the training store's path."""
    import shutil

    from distributed import LocalCluster

    from pipelines.params import ComputeParams, parse_params
    from pipelines.smoke.domain import build_domain_stores
    from tests.conftest import TINY_SMOKE

    shutil.copytree(smoke_store, data / "smoke.zarr")
    smoke = parse_params({"smoke": {**TINY_SMOKE, "domain": {"ladder_starts": [2]}}}).smoke
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        compute = ComputeParams().model_copy(update={"scheduler_address": cluster.scheduler_address})
        build_domain_stores(smoke, compute, data / "smoke_domain", data / "scratch")
    return data / "smoke.zarr"


def test_domain_stores_travel_with_smoke_and_load_back_with_the_training_statistics(
    smoke_store: Path, tmp_path: Path
) -> None:
    import shutil

    import torch

    from loaders import smoke_plume
    from loaders.storage import StoreError

    data, smoke_only = tmp_path / "data", _params(datasets=["smoke"])
    out, receipt = tmp_path / "hub", tmp_path / "receipt.json"
    _with_domain(smoke_store, data)
    domain_dir = data / "smoke_domain"
    shutil.move(domain_dir, tmp_path / "aside")  # first without the held-out folder, then with it
    alone = publish(smoke_only, {"smoke": data / "smoke.zarr"}, out, receipt)["repos"]["smoke"]
    assert not any(f.startswith("zarr/smoke_domain") for f in alone["files"])
    shutil.move(tmp_path / "aside", domain_dir)
    name = "smoke_domain/b002.zarr"
    entry = publish(smoke_only, {"smoke": data / "smoke.zarr"}, out, receipt)["repos"]["smoke"]
    folder = Path(entry["folder"])
    held = [f for f in entry["files"] if f.startswith(f"zarr/{name}/")]
    assert held and set(held) <= set(entry["changed_locally"])  # a new held-out store rebuilds the repo
    assert verify_folder(folder) == [] and set(held) <= set(read_checksums(folder))
    card = (folder / "README.md").read_text()
    assert f"`zarr/{name}`" in card and f'store="{name}"' in card

    # read back from the repo folder: the held-out windows, normalised with the training store's statistics
    train = smoke_plume(folder, level=3, split="train", normalise="scale")
    domain = smoke_plume(folder, level=3, split="test", store=name, normalise="scale")
    direct = smoke_plume(data / name, level=3, split="test", normalise="scale", stats=train.stats)
    own = smoke_plume(data / name, level=3, split="test", normalise="scale")  # its own statistics
    assert domain.stats == train.stats != own.stats
    assert len(domain) == len(direct) > 0
    for i in range(len(domain)):
        assert all(torch.equal(a, b) for a, b in zip(domain[i], direct[i], strict=True))
    with pytest.raises(ValueError, match="is a store itself"):
        smoke_plume(data / "smoke.zarr", store=name)

    # a corrupt held-out store stops the publish before the folder is touched
    chunk = max((p for p in (data / name).rglob("*") if p.is_file() and "c" in p.parts),
                key=lambda p: p.stat().st_size)  # fmt: skip
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(StoreError):
        publish(smoke_only, {"smoke": data / "smoke.zarr"}, out, receipt)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before


def test_an_edited_card_template_changes_the_build_key(smoke_store: Path, tmp_path: Path, monkeypatch):
    import pipelines.publish.repo as repo
    from pipelines.publish.registry import get_kind

    code = tmp_path / "code"
    (code / "templates").mkdir(parents=True)
    (code / "kind.py").write_text("x = 1\n")
    (code / "templates" / "card.md.j2").write_text("{{ a }}\n")
    monkeypatch.setattr(repo, "CODE_DIRS", (code,))
    key = repo.build_key(get_kind("smoke"), smoke_store, "tester/smoke-plume", _params())
    (code / "templates" / "card.md.j2").write_text("{{ a }} and {{ b }}\n")  # a stale card otherwise
    assert repo.build_key(get_kind("smoke"), smoke_store, "tester/smoke-plume", _params()) != key


def test_missing_store_and_missing_token_are_clear(smoke_store: Path, tmp_path: Path, monkeypatch):
    with pytest.raises(PublishError, match="--turbulence"):
        publish(_params(), {"smoke": smoke_store}, tmp_path / "hub")
    folder = tmp_path / "hub"
    publish(_params(datasets=["smoke"]), {"smoke": smoke_store}, folder)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PublishError, match="HF_TOKEN is not set"):
        upload_repo(folder / "smoke-plume", "tester/smoke-plume")


# --- the real round trip ---------------------------------------------------------------------------------
CLIENT_CHECKS = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import xarray as xr
    from datasets import load_dataset
    from loaders import smoke_plume, turbulence_sr

    store, which = sys.argv[1], sys.argv[2]
    done = []
    local = xr.open_zarr(store)
    if which == "smoke":
        repo = "tester/smoke-plume"
        splits = load_dataset(repo, "E3").with_format("numpy")  # every split of one config
        for split, (a, b) in {"train": (0, 6), "validation": (6, 9), "test": (9, 12)}.items():
            rows = splits[split]
            want_v = local.velocity.values[1, :, a:b].reshape(-1, *local.velocity.shape[3:])
            want_s = local.smoke.values[1, :, a:b].reshape(-1, *local.smoke.shape[3:])
            assert np.array_equal(np.stack(rows["velocity"]), want_v), split
            assert np.array_equal(np.stack(rows["smoke"]), want_s), split
            assert rows[0]["velocity"].dtype == np.float32 and rows[0]["velocity"].shape == (2, 16, 16)
        done.append("load_dataset")
        remote = xr.open_zarr(f"hf://datasets/{repo}/zarr/smoke.zarr", chunks=None)
        for name in ("velocity", "smoke", "buoyancy", "frame"):
            assert np.array_equal(remote[name].values, local[name].values), name
        assert remote.velocity.dims == local.velocity.dims and remote.attrs["splits"] == local.attrs["splits"]
        done.append("xarray hf://")
        cases = ({"level": 3, "split": "valid"}, {"level": 0, "directions": [90, 270], "split": "test",
                 "input_frames": 1, "output_frames": 1, "normalise": "standard"})
        pairs = [(smoke_plume(repo, **kw), smoke_plume(store, **kw)) for kw in cases]
        train = smoke_plume(repo, level=3, split="train", normalise="scale")
        ladders = sorted((Path(store).parent / "smoke_domain").glob("*.zarr"))  # the Domain test's
        for path in ladders:
            kw = {"level": 3, "split": "test", "normalise": "scale"}
            pairs.append((smoke_plume(repo, store=f"smoke_domain/{path.name}", **kw),
                          smoke_plume(path, stats=train.stats, **kw)))
    else:
        repo = "tester/turbulence-sr"
        rows = load_dataset(repo, "lr2_hr8", split="train").with_format("numpy")
        centres = [1, 4, 7]
        assert np.array_equal(np.stack(rows["hr"]), local.hr.values[centres])
        lrs = np.stack([local.lr.values[c - 1 : c + 2] for c in centres])
        assert np.array_equal(np.stack(rows["lrs"]), lrs)
        done.append("load_dataset")
        remote = xr.open_zarr(f"hf://datasets/{repo}/zarr/turbulence.zarr", chunks=None)
        for name in ("hr", "lr"):
            assert np.array_equal(remote[name].values, local[name].values), name
        done.append("xarray hf://")
        pairs = [(turbulence_sr(repo, split="train", normalise="scale"), turbulence_sr(store, split="train",
                  normalise="scale"))]
    for hub_ds, loc_ds in pairs:
        assert len(hub_ds) == len(loc_ds) > 0
        for i in range(len(hub_ds)):
            for a, b in zip(hub_ds[i], loc_ds[i]):
                assert np.array_equal(a.numpy(), b.numpy())
    done.append("loader")
    if which == "smoke" and ladders:
        done.append(f"{len(ladders)} Domain ladder(s)")
    print(json.dumps(done))
    """
)


def _round_trip(hub, stores: dict[str, Path], tmp_path: Path) -> None:
    env = _hub_env(hub.url, tmp_path)
    params = _write_params(tmp_path, datasets=list(stores))
    receipt = tmp_path / "receipt.json"
    cmd = _publish_cmd(params, stores, tmp_path / "hub", receipt)
    result = _run(cmd, env)
    assert result.returncode == 0, result.stderr[-3000:]
    first = json.loads(receipt.read_text())
    commits = hub.commits_made
    assert commits == len(stores) and all(entry["committed"] for entry in first["repos"].values())
    for name, entry in first["repos"].items():
        assert entry["commit"] == hub.head(REPOS[name]).oid and entry["revision"] == "main"
        folder = tmp_path / "hub" / REPOS[name].split("/")[1]
        for rel in entry["files"]:  # every published file is on the Hub stand-in, byte for byte
            assert hub.read(REPOS[name], rel) == (folder / rel).read_bytes()

    script = tmp_path / "client_checks.py"
    script.write_text(CLIENT_CHECKS)
    for name, store in stores.items():
        checks = _run([sys.executable, str(script), str(store), name], env)
        assert checks.returncode == 0, checks.stderr[-4000:]
        ladders = len(list((store.parent / "smoke_domain").glob("*.zarr"))) if name == "smoke" else 0
        assert json.loads(checks.stdout.strip().splitlines()[-1]) == [
            "load_dataset",
            "xarray hf://",
            "loader",
        ] + ([f"{ladders} Domain ladder(s)"] if ladders else [])

    uploads = hub.lfs_uploads
    again = _run(cmd, env)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(receipt.read_text())
    assert hub.commits_made == commits and hub.lfs_uploads == uploads  # no commit, nothing sent again
    for name in stores:
        assert second["repos"][name]["committed"] is False
        assert second["repos"][name]["commit"] == first["repos"][name]["commit"]
        assert second["repos"][name]["files"] == first["repos"][name]["files"]


def test_hub_round_trip_smoke(hub, smoke_store: Path, tmp_path: Path):
    """Publish, read back three ways (bitwise equal; a Domain ladder through the loader too), re-publish
    with no change: no commit."""
    _round_trip(hub, {"smoke": _with_domain(smoke_store, tmp_path / "data")}, tmp_path)


@pytest.mark.slow
def test_hub_round_trip_both_datasets(hub, smoke_store: Path, turbulence_store: Path, tmp_path: Path):
    _round_trip(hub, {"smoke": smoke_store, "turbulence": turbulence_store}, tmp_path)


# --- failures --------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAILURES = {
    "401": "refused access to dataset tester/smoke-plume (HTTP 401)",
    "unreachable": "cannot reach http://<redacted>@127.0.0.1:",  # HF_ENDPOINT's credentials never shown
    "500": "failed with HTTP 500",
    "hang": "did not answer within 2 s",
}


@pytest.fixture(scope="module")
def built_smoke_repo(smoke_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke repo folder built once; publish runs over it skip the (unchanged) build."""
    out = tmp_path_factory.mktemp("built") / "hub"
    publish(_params(datasets=["smoke"]), {"smoke": smoke_store}, out)
    return out


@pytest.mark.parametrize(
    "mode", ["401"] + [pytest.param(m, marks=pytest.mark.slow) for m in ("unreachable", "500", "hang")]
)
def test_server_failures_give_clear_errors_and_leave_local_state(
    hub, smoke_store: Path, built_smoke_repo: Path, tmp_path: Path, mode: str
):
    url = f"http://user:password@127.0.0.1:{_free_port()}" if mode == "unreachable" else hub.url
    if mode != "unreachable":
        hub.set_fail(mode)
    receipt = tmp_path / "metrics" / "receipt.json"
    receipt.parent.mkdir()
    receipt.write_text('{"previous": true}\n')
    params = _write_params(tmp_path, datasets=["smoke"], timeout_seconds=2)
    store_before = file_manifest(smoke_store)
    folder = built_smoke_repo / "smoke-plume"
    folder_before = file_manifest(folder, skip=())
    result = _run(
        _publish_cmd(params, {"smoke": smoke_store}, built_smoke_repo, receipt), _hub_env(url, tmp_path)
    )
    assert result.returncode == 1
    assert FAILURES[mode] in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "password" not in result.stderr
    assert receipt.read_text() == '{"previous": true}\n'  # the old receipt is untouched
    assert file_manifest(smoke_store) == store_before and (smoke_store / COMPLETE_MARKER).is_file()
    assert file_manifest(folder, skip=()) == folder_before and verify_folder(folder) == []
    assert not list(built_smoke_repo.glob(".*staging*")) and not list(receipt.parent.glob(".*tmp"))


@pytest.mark.slow
def test_interrupted_upload_resumes(hub, smoke_store: Path, tmp_path: Path):
    env = _hub_env(hub.url, tmp_path)
    params = _write_params(tmp_path, datasets=["smoke"])
    receipt = tmp_path / "receipt.json"
    cmd = _publish_cmd(params, {"smoke": smoke_store}, tmp_path / "hub", receipt)
    hub.hold_lfs_after(3)
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert hub.lfs_paused.wait(120), "the upload never reached the held LFS transfer"
        proc.send_signal(signal.SIGKILL)  # the upload dies mid-way, as with a lost machine
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert hub.lfs_uploads == 3 and hub.commits_made == 0 and not receipt.exists()
    assert hub.head("tester/smoke-plume").files.keys() == {".gitattributes"}
    stored = {oid: hub.lfs_puts[oid] for oid in hub.state.lfs_objects}
    hub.reset_faults()

    result = _run(cmd, env)
    assert result.returncode == 0, result.stderr[-3000:]
    entry = json.loads(receipt.read_text())["repos"]["smoke"]
    assert entry["committed"] and hub.commits_made == 1
    head = hub.head("tester/smoke-plume")
    folder = tmp_path / "hub" / "smoke-plume"
    for rel, digest in entry["files"].items():
        assert (
            head.files[rel].sha256 == digest
            and hub.read("tester/smoke-plume", rel) == (folder / rel).read_bytes()
        )
    # the three objects stored before the interruption were not sent again
    assert {oid: hub.lfs_puts[oid] for oid in stored} == stored


# --- path safety (project issue 10 §2): no repo id or symlink can make publish delete outside its folder ---

BAD_REPO_IDS = [
    "symflow/..", "symflow/.", "..", ".", "a/../..", "/etc/passwd", "symflow//x", "symflow/a/b",
    "symflow/-x", "symflow/x-", "symflow/.x", "symflow/x.", "symflow/a--b", "symflow/a..b", "sym flow/x",
    "symflow/" + "x" * 90,
]  # fmt: skip


@pytest.mark.parametrize("repo_id", BAD_REPO_IDS)
def test_path_like_repo_ids_are_refused_before_work(repo_id: str) -> None:
    from pipelines.params import ParamsError, parse_params

    with pytest.raises(ParamsError) as info:
        parse_params({"publish": {"repos": {"smoke": repo_id, "turbulence": "symflow/t"}}})
    assert "publish.repos" in str(info.value) and repr(repo_id) in str(info.value)


def test_hub_valid_repo_ids_pass() -> None:
    for repo_id in ("symflow/smoke-plume-c4", "a_b.c/x_y.z-1", "A1/" + "x" * 89):
        assert PublishParams(repos={"smoke": repo_id, "turbulence": "o/t"}).repos["smoke"] == repo_id


@pytest.mark.parametrize(
    "repos", [{"smoke": "symflow/x", "turbulence": "symflow/x"}, {"smoke": "a/x", "turbulence": "b/X"}]
)
def test_two_datasets_sharing_a_repo_or_folder_are_refused(repos: dict) -> None:
    from pipelines.params import ParamsError, parse_params

    with pytest.raises(ParamsError, match="share the repo name"):
        parse_params({"publish": {"repos": repos}})


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["..", ".", "a/../..", "/abs/elsewhere", "link-out/x"])
def test_inside_refuses_every_path_that_leaves_the_folder(tmp_path: Path, name: str) -> None:
    from pipelines.publish.repo import inside

    root = tmp_path / "hub" / "repo"
    root.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link-out").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="not inside"):
        inside(root, root / name if not name.startswith("/") else Path(name))
    assert inside(root, root / "data" / "x.parquet") == root.resolve() / "data" / "x.parquet"


def test_sync_never_deletes_outside_through_symlinks(tmp_path: Path) -> None:
    from pipelines.publish.repo import sync_tree

    outside = tmp_path / "precious"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep.txt").write_text("keep")
    (outside / "sub" / "deep.txt").write_text("deep")
    before = _tree(outside)
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "data").mkdir(parents=True)
    (src / "data" / "a.txt").write_text("new")
    dst.mkdir()
    (dst / "file-link.txt").symlink_to(outside / "keep.txt")  # stale: removing it removes only the link
    (dst / "dir-link").symlink_to(outside)  # a folder pointing out
    (dst / "data").symlink_to(outside / "sub")  # the target folder itself pointing out
    with pytest.raises(ValueError, match="not inside"):
        sync_tree(src, dst)
    assert _tree(outside) == before and (outside / "sub").is_dir()
    (dst / "data").unlink()
    changed, removed = sync_tree(src, dst)
    assert changed == ["data/a.txt"] and "file-link.txt" in removed
    assert _tree(outside) == before  # the link is gone, its target is not
    assert (dst / "data" / "a.txt").read_text() == "new" and not (dst / "file-link.txt").exists()


def test_publish_refuses_a_repo_folder_outside_out_before_work(smoke_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "hub"
    out.mkdir()
    (tmp_path / "sibling.txt").write_text("x")
    bad = PublishParams.model_construct(**{**PublishParams().model_dump(), "repos": {"smoke": "symflow/.."}})
    bad = bad.model_copy(update={"datasets": ["smoke"]})
    with pytest.raises(ValueError, match="not inside"):
        publish(bad, {"smoke": smoke_store}, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub", "sibling.txt"] and not any(out.iterdir())


# --- issue 19 §3, §10, issue 20: a symlinked repo folder, one publish per --out, HF_TOKEN up front ---------


def test_publish_refuses_a_symlinked_repo_folder(smoke_store: Path, tmp_path: Path) -> None:
    out, outside = tmp_path / "hub", tmp_path / "precious"
    out.mkdir()
    (outside / "data").mkdir(parents=True)
    (outside / "data" / "keep.parquet").write_text("not a repo file")
    (outside / "notes.txt").write_text("mine")
    before = _tree(outside)
    (out / "smoke-plume").symlink_to(outside)
    with pytest.raises(ValueError, match=r"smoke-plume: it is a symlink \(to .*precious\)"):
        publish(_params(datasets=["smoke"]), {"smoke": smoke_store}, out)
    assert _tree(outside) == before and sorted(p.name for p in out.iterdir()) == ["smoke-plume"]


def test_a_second_publish_into_one_out_is_refused_and_a_killed_ones_lock_recovered(
    smoke_store: Path, built_smoke_repo: Path
) -> None:
    hold = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    lock = built_smoke_repo / ".publish.lock"  # what a running publish holds
    holder = subprocess.Popen([sys.executable, "-c", hold, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = file_manifest(built_smoke_repo, skip=())
        with pytest.raises(PublishError, match=f"another publish is writing into {built_smoke_repo}"):
            publish(_params(datasets=["smoke"]), {"smoke": smoke_store}, built_smoke_repo)
        assert file_manifest(built_smoke_repo, skip=()) == before
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed publish: the kernel drops its lock
        holder.wait()
    result = publish(_params(datasets=["smoke"]), {"smoke": smoke_store}, built_smoke_repo)
    assert verify_folder(Path(result["repos"]["smoke"]["folder"])) == []


def test_missing_hf_token_is_reported_before_building(
    smoke_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PublishError, match="HF_TOKEN is not set"):
        publish(_params(datasets=["smoke"], target="hub"), {"smoke": smoke_store}, tmp_path / "hub")
    assert not (tmp_path / "hub").exists()  # nothing was built
