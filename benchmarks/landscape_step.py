"""One checkpoint's landscape (pipelines/landscape.py ``measure``) the old way and the current way, per model.

    python benchmarks/landscape_step.py [--params params.yaml] [--models smoke:rsteer turbulence:cnn]

Each model of ``landscape.models`` (or ``--models``) at its params.yaml size, in its family's shared
coordinates, with random weights and random samples of the store's shapes: ``landscape.subset_fraction`` of
the preset's training split in batches of ``subset_batch_size``, the training loss (and for super-resolution
the MSE Hessian beside L1), every measure of the preset's ``landscape`` section. The cost does not depend on
the values.

old: every Hessian-vector product rebuilds each batch's forward and first backward (create_graph) before
its second backward; current: every product of a measurement is at ``w0``, so each batch's gradient graph
is built once and only the second backward runs per product (``FlatLoss.resident_graphs``). The two give
the same numbers bit for bit: every measure is compared (``identical``). Times are CPU seconds of this
process on one torch thread (steadier than wall time on a shared machine). Prints per model the seconds of
one checkpoint both ways, the stage's projection (every seed and checkpoint, longest first on
``compute.n_workers`` workers) and finally ``ratio: <old / current, summed over the models>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from study_cost import makespan, preset_task, random_batch, split_sizes

from pipelines.landscape import measure, subset_size
from pipelines.params import StudyParams, load_params
from train.curvature import FlatLoss
from train.data import build, model_hparams
from train.flatness import shared_form
from train.tasks import SuperResolutionTask

ROOT = Path(__file__).resolve().parent.parent


def losses(params: StudyParams, dataset: str, name: str) -> tuple[FlatLoss, FlatLoss | None]:
    """The landscape's training-loss function of one model (and the MSE one beside an L1 loss)."""
    section = getattr(params.train, dataset)
    model = build(dataset, name, 0, model_hparams(dataset, name, section.hparams.get(name, {})))
    model, _ = shared_form(model)
    lp = params.landscape
    x, y = random_batch(params, dataset, subset_size(split_sizes(params, dataset)["train"], lp))
    batches = [(x[i : i + lp.subset_batch_size], y[i : i + lp.subset_batch_size])
               for i in range(0, len(x), lp.subset_batch_size)]  # fmt: skip
    task = preset_task(params, dataset)
    flat = FlatLoss(model, batches, task.loss)
    if not isinstance(task, SuperResolutionTask):
        return flat, None
    return flat, FlatLoss(model, batches, lambda m, b: F.mse_loss(task.predict(m, b[0]), b[1]))


def timed_measure(params: StudyParams, dataset: str, name: str, old: bool) -> tuple[float, dict]:
    flat, mse = losses(params, dataset, name)
    if old:  # every product rebuilds its graphs, as before FlatLoss.resident_graphs
        for f in (flat, mse):
            if f is not None:
                f.resident_graphs = contextlib.nullcontext  # type: ignore[method-assign]
    start = time.process_time()
    out, spectrum = measure(flat, params.landscape, mse)
    seconds = time.process_time() - start
    out.pop("seconds")
    return seconds, {"out": out, "spectrum": spectrum}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--models", nargs="*", help="dataset:model pairs (default: landscape.models)")
    parser.add_argument("--current-only", action="store_true", help="time the current path only")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # e2cnn's deprecation noise
    torch.set_num_threads(1)
    params = load_params(args.params)
    lp = params.landscape
    pairs = [tuple(p.split(":")) for p in args.models] if args.models else [
        (d, m) for d, models in lp.models.items() for m in models
    ]  # fmt: skip
    runs = {d: len(getattr(params.train, d).seeds) * len(lp.checkpoints) for d, _ in pairs}
    print(
        f"{args.params.name}: checkpoints {lp.checkpoints}, lanczos_steps {lp.lanczos_steps}, slq_probes "
        f"{lp.slq_probes}, hutchinson_probes {lp.hutchinson_probes}; CPU s per checkpoint, 1 thread"
    )
    print(f"{'model':<18} {'samples':>7} {'old s':>8} {'current s':>10} {'ratio':>6}  identical")
    total_old = total_new = 0.0
    jobs_old: list[float] = []
    jobs_new: list[float] = []
    for dataset, name in pairs:
        t_new, r_new = timed_measure(params, dataset, name, old=False)
        t_old, r_old = (t_new, r_new) if args.current_only else timed_measure(params, dataset, name, old=True)
        samples = subset_size(split_sizes(params, dataset)["train"], lp)
        same = "yes" if json.dumps(r_old) == json.dumps(r_new) else "NO"  # nan-safe, bit for bit
        row = f"{dataset + ' ' + name:<18} {samples:>7} {t_old:>8.1f} {t_new:>10.1f}"
        print(f"{row} {t_old / t_new:>6.2f}  {same}")
        total_old, total_new = total_old + t_old, total_new + t_new
        jobs_old += [t_old] * runs[dataset]
        jobs_new += [t_new] * runs[dataset]
    workers = params.compute.n_workers
    print(f"stage ({len(jobs_new)} checkpoints on {workers} workers, longest first): old "
          f"{makespan(jobs_old, workers):.0f} s, current {makespan(jobs_new, workers):.0f} s "
          f"({math.fsum(jobs_new):.0f} CPU s)")  # fmt: skip
    print(f"ratio: {total_old / total_new:.2f}")


if __name__ == "__main__":
    main()
