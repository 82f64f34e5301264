"""The smoke stage's *Domain* test stores and its command line.

The Domain protocol of Wang et al. 2022 tests on simulations no run trains on: here, held-out buoyancy
ladders (``smoke.domain.ladder_starts``), each built by :func:`pipelines.smoke.stage.build_smoke_dataset`
into a store of the training store's layout (all three levels, four directions each, E_0 exactly C4), with
the same checks and provenance (the ladder's start recorded). Each ladder's frames, every split of its
store, are test data: its split names are only the layout's.
"""

from __future__ import annotations

from pathlib import Path

from loaders.storage import ensure_writable, write_json_atomic
from pipelines.cli import dataset_stage_parser, run_stage
from pipelines.params import ComputeParams, SmokeParams, load_params
from pipelines.smoke.stage import build_smoke_dataset, domain_params, scratch_keys


def domain_store_name(start: int) -> str:
    return f"b{start:03d}.zarr"


def build_domain_stores(
    params: SmokeParams,
    compute: ComputeParams,
    out_dir: Path,
    scratch_root: Path = Path("data/.scratch"),
    overwrite: bool = False,
) -> dict[str, dict]:
    """The *Domain* test data (Wang et al. 2022): one smoke store per held-out ladder of
    ``domain.ladder_starts`` in ``out_dir`` (``b<start>.zarr``), built, checked and recorded like the
    training store, from simulations no run trains on. Returns each store's metrics by file name."""
    out_dir = Path(out_dir)
    names = [domain_store_name(b) for b in params.domain.ladder_starts]
    for name in names:
        ensure_writable(out_dir / name, overwrite)
    stale = sorted(p.name for p in out_dir.glob("b*.zarr") if p.name not in names) if out_dir.is_dir() else []
    if stale:  # another ladder list's stores would be scored as this one's
        raise ValueError(f"{out_dir} holds stores of ladders not in smoke.domain.ladder_starts: {stale}; "
                         "delete them (dvc repro removes stage outputs itself)")  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    keep = scratch_keys(params)
    results = {}
    for start, name in zip(params.domain.ladder_starts, names, strict=True):
        ladder = domain_params(params, start)
        result = build_smoke_dataset(ladder, compute, out_dir / name, None, scratch_root, overwrite, keep)
        results[name] = {k: v for k, v in result.items() if k not in ("run", "simulation_code")}
    return results


NOT_PRINTED = ("level_equivariance_error_all", "simulation_code", "domain")  # in the metrics file only


def main(argv: list[str] | None = None) -> int:
    parser = dataset_stage_parser(__doc__.splitlines()[0], "data/smoke.zarr", "metrics/smoke.json")
    parser.add_argument("--domain-out", type=Path, default=Path("data/smoke_domain"),
                        help="folder of the held-out Domain stores (smoke.domain.ladder_starts)")  # fmt: skip
    args = parser.parse_args(argv)

    def body() -> dict:
        params = load_params(args.params)
        p, compute = params.smoke, params.compute
        # the Domain stores first: a bad ladder list fails before the training store is replaced
        domain = build_domain_stores(p, compute, args.domain_out, args.scratch, args.overwrite)
        result = build_smoke_dataset(p, compute, args.out, None, args.scratch, args.overwrite)
        result["domain"] = domain
        if args.metrics is not None:
            write_json_atomic(Path(args.metrics), result)
        return result

    return run_stage(
        "smoke",
        body,
        lambda r: {k: v for k, v in r.items() if k not in NOT_PRINTED},
    )
