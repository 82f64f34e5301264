"""``symflow-data``: list the published datasets and their configs, and download one config or the zarr store.

    symflow-data list [--source <hub id or folder> ...] [--revision REV]
    symflow-data download <repo id> --config E0 --out DIR [--revision REV]
    symflow-data download <repo id> --zarr --out DIR

Downloads keep the repo's layout under ``DIR`` (``data/E0/train-00000-of-00001.parquet``,
``zarr/smoke.zarr/...``, plus ``README.md``, ``stats.json`` and ``checksums.sha256``) at one commit. They
resume: a file already in ``DIR`` whose size and sha256 match ``checksums.sha256`` is skipped, a partial
``<file>.part`` continues with an HTTP range request (or restarts when the server sends the whole file),
and every file is checked against its sha256 before it is renamed into place, so ``DIR`` never holds a
wrong file under its final name. The Hub endpoint and token come from ``HF_ENDPOINT`` and ``HF_TOKEN``.
An endpoint that does not answer is one line on stderr and exit status 2.

Only the standard library, yaml and ``loaders.digest`` are imported up front, so ``--help`` is quick; the
store layer, xarray and huggingface_hub load when a command needs them.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from loaders.digest import CHECKSUMS, parse_checksums, sha256_file

# the publish stage's default repos (pipelines/params/publish.py; loaders may not import pipelines)
DEFAULT_SOURCES = ("symflow/smoke-plume-c4", "symflow/isotropic-turbulence-sr")
EXAMPLES = """examples (configs of the embedded default's build):
  symflow-data list                                    # the default repos on the Hub
  symflow-data list --source data/hub                  # the folders `dvc repro` built
  symflow-data download symflow/smoke-plume-c4 --config E0 --out data/E0
  symflow-data download symflow/isotropic-turbulence-sr --config lr8_hr32 --out data/lr8_hr32
  symflow-data download symflow/smoke-plume-c4 --zarr --out data/smoke"""


class CliError(RuntimeError):
    """A failure reported as one line (exit status 1)."""


def looks_local(source: str | Path) -> bool:
    from loaders.sources import looks_local as local  # late: the store layer imports xarray and zarr

    return local(source)


def endpoint() -> str:
    """The Hub endpoint in use, without any user or password an URL may carry."""
    from urllib.parse import urlsplit, urlunsplit

    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{url.port}" if url.port else ""
    return urlunsplit((url.scheme, netloc, url.path.rstrip("/"), "", ""))


def unreachable(err: BaseException | None) -> bool:
    """True when no HTTP answer came at all (refused, unknown host, timeout), whichever HTTP client
    huggingface_hub uses (its transport errors, or the ConnectionError / TimeoutError of requests)."""
    seen = 0
    while err is not None and seen < 10:
        names = {c.__name__ for c in type(err).__mro__}
        if names & {"TransportError", "ConnectionError", "TimeoutError", "Timeout"}:
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def card_configs(readme: str) -> list[dict[str, Any]]:
    """The ``configs`` entries of a dataset card's YAML front matter (empty when there are none)."""
    if not readme.startswith("---"):
        return []
    front = readme.split("---", 2)[1]
    return list((yaml.safe_load(front) or {}).get("configs") or [])


class Repo:
    """One dataset repo, on the Hub (at one commit) or in a local folder: its files, sizes and card."""

    def __init__(self, source: str, revision: str | None = None):
        self.source, self.local = source, Path(source).expanduser() if looks_local(source) else None
        if self.local is not None:
            if not (self.local / "README.md").is_file():
                raise CliError(f"{self.local} is not a dataset repo folder (no README.md)")
            self.sha = "local"
            files = [p for p in sorted(self.local.rglob("*")) if p.is_file()]
            self.sizes = {p.relative_to(self.local).as_posix(): p.stat().st_size for p in files}
        else:
            from huggingface_hub import HfApi  # late: huggingface_hub reads HF_ENDPOINT on import
            from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

            try:
                info = HfApi().dataset_info(source, revision=revision or "main", files_metadata=True)
            except (RepositoryNotFoundError, RevisionNotFoundError) as err:
                raise CliError(f"no dataset repo {source}@{revision or 'main'} on the Hub ({err})") from None
            except (HfHubHTTPError, OSError) as err:
                if unreachable(err):
                    raise  # main() reports it as one line
                raise CliError(f"cannot read {source} from the Hub: {err}") from None
            self.sha = info.sha or revision or "main"
            self.sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}

    def text(self, rel: str) -> str:
        if self.local is not None:
            return (self.local / rel).read_text()
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(self.source, rel, repo_type="dataset", revision=self.sha)).read_text()

    def configs(self) -> list[dict[str, Any]]:
        return card_configs(self.text("README.md")) if "README.md" in self.sizes else []

    def stores(self) -> list[str]:
        parts = (rel.split("/") for rel in self.sizes if rel.startswith("zarr/"))
        return sorted({p[1] for p in parts if len(p) > 2})

    def config_files(self, name: str) -> list[str]:
        configs = {c.get("config_name"): c for c in self.configs()}
        if name not in configs:
            raise CliError(f"{self.source} has no config {name!r}; it has {sorted(configs)}")
        patterns = [entry["path"] for entry in configs[name].get("data_files", [])]
        patterns = [p for item in patterns for p in (item if isinstance(item, list) else [item])]
        return sorted(rel for rel in self.sizes if any(fnmatch.fnmatch(rel, p) for p in patterns))


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def list_source(source: str, revision: str | None) -> list[str]:
    """Lines describing every dataset repo in ``source`` (a Hub id, a repo folder or a folder of them)."""
    path = Path(source).expanduser()
    if looks_local(source) and path.is_dir() and not (path / "README.md").is_file():
        subs = [p for p in sorted(path.iterdir()) if (p / "README.md").is_file()]
        if not subs:
            raise CliError(f"{path} holds no dataset repo folders")
        return [line for p in subs for line in list_source(str(p), revision)]
    if looks_local(source) and not path.exists():
        raise CliError(f"no such folder: {path}")
    repo = Repo(source, revision)
    lines = [f"{source} @ {repo.sha[:12]}"]
    for config in repo.configs():
        files = repo.config_files(config["config_name"])
        splits = [e.get("split", "train") for e in config.get("data_files", [])]
        default = " (default)" if config.get("default") else ""
        lines.append(
            f"  config {config['config_name']}{default}: splits {', '.join(splits)}; "
            f"{len(files)} parquet file(s), {_size(sum(repo.sizes[f] for f in files))}"
        )
    for store in repo.stores():
        files = [rel for rel in repo.sizes if rel.startswith(f"zarr/{store}/")]
        lines.append(f"  zarr zarr/{store}: {len(files)} file(s), {_size(sum(repo.sizes[f] for f in files))}")
    return lines


def _fetch(repo: Repo, rel: str, dest: Path, want_sha: str, size: int, bar: Any) -> None:
    """Download ``rel`` to ``dest`` through ``dest.part`` (continued with a range request when present)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    headers = build_hf_headers()
    if have:
        headers["Range"] = f"bytes={have}-"
    url = hf_hub_url(repo.source, rel, repo_type="dataset", revision=repo.sha)
    if have == size:
        pass  # the whole file arrived before an interruption; only the check and rename are left
    else:
        with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=60) as response:
            if response.status_code == 416:  # our partial file is not a prefix of this file: restart
                part.unlink()
                return _fetch(repo, rel, dest, want_sha, size, bar)
            hf_raise_for_status(response)
            mode = "ab" if response.status_code == 206 else "wb"  # 200: the server sent the whole file
            if mode == "wb":
                bar.update(-have)
            with open(part, mode) as fh:
                for block in response.iter_bytes(1 << 20):
                    fh.write(block)
                    bar.update(len(block))
    if want_sha and sha256_file(part) != want_sha:
        part.unlink()  # a wrong partial (or a changed file): the next run starts this file again
        raise CliError(f"{rel}: sha256 does not match {CHECKSUMS}; removed the partial file, run again")
    os.replace(part, dest)


def download(source: str, out: Path, config: str | None, zarr: bool, revision: str | None) -> list[str]:
    """Download one config's parquet files or the zarr store(s) of a Hub repo to ``out``; returns the
    files fetched."""
    from tqdm.auto import tqdm

    if looks_local(source):
        raise CliError(f"{source!r} looks like a local path; download takes a Hub repo id (namespace/name)")
    repo = Repo(source, revision)
    if CHECKSUMS not in repo.sizes:
        raise CliError(f"{source} has no {CHECKSUMS}: not a published symflow dataset repo")
    checksums = parse_checksums(repo.text(CHECKSUMS))
    from loaders.sources import STATS

    wanted = [rel for rel in ("README.md", STATS, CHECKSUMS) if rel in repo.sizes]
    if config is not None:
        wanted += repo.config_files(config)
    if zarr:
        stores = repo.stores()
        if not stores:
            raise CliError(f"{source} has no zarr store")
        wanted += sorted(rel for rel in repo.sizes if rel.startswith("zarr/"))

    def done(rel: str) -> bool:
        dest = out / rel
        if not dest.is_file() or dest.stat().st_size != repo.sizes[rel]:
            return False
        return rel not in checksums or sha256_file(dest) == checksums[rel]

    todo = [rel for rel in wanted if not done(rel)]
    total = sum(repo.sizes[rel] for rel in todo)
    partial = sum((out / (rel + ".part")).is_file() for rel in todo)
    print(
        f"{source} @ {repo.sha[:12]}: {len(wanted)} file(s), {len(wanted) - len(todo)} already complete, "
        f"{partial} partial (continued)"
    )
    with tqdm(total=total, unit="B", unit_scale=True, desc="download", file=sys.stderr) as bar:
        for rel in todo:
            part = out / (rel + ".part")
            bar.update(part.stat().st_size if part.exists() else 0)
            _fetch(repo, rel, out / rel, checksums.get(rel, ""), repo.sizes[rel], bar)
    return todo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="symflow-data",
        description=__doc__.splitlines()[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list datasets and their configs")
    ls.add_argument("--source", action="append", help="Hub repo id or local folder (repeatable)")
    ls.add_argument("--revision", default=None, help="branch, tag or commit (Hub sources)")
    dl = sub.add_parser("download", help="download one config or the zarr store")
    dl.add_argument("repo", help="Hub dataset repo id, namespace/name")
    what = dl.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="config name (e.g. E0, mini, lr8_hr32): its parquet files")
    what.add_argument("--zarr", action="store_true", help="the zarr store")
    dl.add_argument("--out", type=Path, required=True, help="folder to download into (created)")
    dl.add_argument("--revision", default=None, help="branch, tag or commit (default main)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for source in args.source or DEFAULT_SOURCES:
                print("\n".join(list_source(source, args.revision)))
        else:
            fetched = download(args.repo, args.out, args.config, args.zarr, args.revision)
            print(f"downloaded {len(fetched)} file(s) to {args.out}")
    except CliError as err:
        print(f"symflow-data: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 -- only a Hub that does not answer is reported here
        if not unreachable(err):
            raise
        print(
            f"symflow-data: cannot reach {endpoint()}: set HF_ENDPOINT or check the network", file=sys.stderr
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
