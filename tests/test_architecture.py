"""The layout's rules, checked on the source: imports point one way, no cycles, no stage imports another,
modules stay small, and dvc.yaml declares every in-repo file a stage imports."""

from __future__ import annotations

import shlex

import yaml

from tests.import_graph import ROOT, closure, cycles, graph, modules

# pipelines -> train -> loaders -> models: an import may only point to the same or a lower layer
LAYER = {"models": 0, "loaders": 1, "train": 2, "pipelines": 3}
# a stage is a module or package of pipelines/ that dvc.yaml runs; the rest of pipelines/ is shared
STAGES = ("pipelines.smoke", "pipelines.turbulence", "pipelines.publish", "pipelines.fit",
          "pipelines.landscape", "pipelines.report", "pipelines.baselines")  # fmt: skip
MAX_LINES = 400


def _stage_of(module: str) -> str | None:
    return next((s for s in STAGES if module == s or module.startswith(s + ".")), None)


def test_imports_point_one_way():
    backward = [
        f"{src} -> {dst}"
        for src, targets in graph().items()
        for dst in targets
        if LAYER[dst.split(".")[0]] > LAYER[src.split(".")[0]]
    ]
    assert backward == [], "imports must go pipelines -> train -> loaders -> models:\n" + "\n".join(backward)


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_no_stage_imports_another_stage():
    crossing = [
        f"{src} -> {dst}"
        for src, targets in graph().items()
        for dst in targets
        if _stage_of(src) and _stage_of(dst) and _stage_of(src) != _stage_of(dst)
    ]
    assert crossing == []


def test_no_module_is_over_the_size_limit():
    sizes = {m: len(p.read_text().splitlines()) for m, p in modules().items()}
    sizes.update({p.name: len(p.read_text().splitlines()) for p in (ROOT / "benchmarks").glob("*.py")})
    large = {m: n for m, n in sizes.items() if n > MAX_LINES}
    assert large == {}, f"modules over {MAX_LINES} lines: split them by responsibility"


def test_the_graph_sees_real_edges():
    """Guard against a walker that finds nothing: known edges must be there."""
    edges = graph()
    assert "train.data" in edges["pipelines.fit"]
    assert "models.groups" in edges["pipelines.smoke.levels"]
    assert "loaders.storage" in edges["train.loop"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def _stage_commands() -> dict[str, tuple[str, list[str]]]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    out = {}
    for name, stage in spec["stages"].items():
        argv = shlex.split(" ".join(stage["cmd"].split()))
        module = argv[argv.index("-m") + 1]
        out[name] = (module, [str(d) for d in stage.get("deps", [])])
    return out


def test_dvc_declares_every_imported_file():
    known = modules()
    edges = graph()
    missing = []
    for stage, (entry, deps) in _stage_commands().items():
        # `python -m pkg` runs pkg/__main__.py
        start = f"{entry}.__main__" if f"{entry}.__main__" in known else entry
        for module in sorted(closure(start, edges)):
            rel = known[module].relative_to(ROOT).as_posix()
            if not any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps):
                missing.append(f"{stage}: {rel}")
    assert missing == [], "dvc.yaml deps miss in-repo files their stage imports:\n" + "\n".join(missing)


def test_run_path_pattern_matches_dvc_yaml():
    """The train and landscape stages run the whole matrix, so dvc.yaml declares the folders; every file
    RunId spells must lie in a folder the writing stage declares as a (persistent) out."""
    from train.runs import RunId

    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]

    def outs(stage: str) -> dict[str, dict]:
        return {next(iter(o)) if isinstance(o, dict) else o: (next(iter(o.values())) if isinstance(o, dict)
                else {}) for o in spec[stage]["outs"]}  # fmt: skip

    run = RunId("smoke", "cnn", 0, level=5)
    assert run.name == "smoke-E5-cnn-seed0"
    assert run.run_dir("runs").as_posix() == "runs/smoke/E5/cnn/seed0"
    assert RunId("smoke", "cnn", 0, level=0).run_dir("runs").as_posix() == "runs/smoke/cnn/seed0"
    train, landscape = outs("train"), outs("landscape")
    for path, stage_outs in (
        (run.checkpoint("runs", "best"), train),
        (run.train_metrics("metrics"), train),
        (run.curves("metrics"), train),
        (run.landscape_metrics("metrics", "best"), landscape),
        (run.spectrum("metrics", "best"), landscape),
    ):
        owner = [o for o in stage_outs if path.as_posix().startswith(o + "/")]
        assert len(owner) == 1, (path, stage_outs)
        assert stage_outs[owner[0]].get("persist") is True, owner  # skipped runs keep their files
    assert "runs" in spec["landscape"]["deps"]
