"""One smoke training run with every validation window (``train.smoke.valid_stride: 1``) and with the windows
that share no frame (the default's 7), side by side, on the real store.

    python benchmarks/valid_stride.py [--smoke data/smoke.zarr] [--params params.yaml] [--models gcnn e2cnn]

Each run is the train stage's own ``run_training`` (seed 0, first level, training, test and Domain scoring),
in its own process on one torch thread, into a scratch folder. It prints per model the seconds of the
epochs (``train_seconds``) and of the whole run for both strides, and whether the best epoch and the test
and Domain errors are the same; ``ratio: <geometric mean of stride-1 / default epoch seconds>`` last.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE_RUN = """
import json, sys, time, torch
from pathlib import Path
torch.set_num_threads(1)
from pipelines.fit import run_training
from pipelines.params import load_params
params_path, store, model, stride, out = sys.argv[1:6]
params = load_params(Path(params_path))
smoke = params.train.smoke.model_copy(update={"valid_stride": int(stride)})
params = params.model_copy(update={"train": params.train.model_copy(update={"smoke": smoke})})
start = time.perf_counter()
m = run_training("smoke", model, 0, params, Path(store), Path(out) / "runs", Path(out) / "metrics")
keys = ("best_epoch", "test_rmse", "test_domain_rmse")
print(json.dumps({"wall": time.perf_counter() - start, "epochs": m["train_seconds"],
                  **{k: m.get(k) for k in keys}}))
"""


def one_run(params: Path, store: Path, model: str, stride: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        args = [sys.executable, "-c", ONE_RUN, str(params), str(store), model, str(stride), out]
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", type=Path, default=ROOT / "data" / "smoke.zarr")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--models", nargs="+", default=["gcnn", "e2cnn"])
    parser.add_argument("--stride", type=int, default=7, help="the validation stride compared with 1")
    args = parser.parse_args(argv)
    if not args.smoke.is_dir():
        parser.error(f"no smoke store at {args.smoke}; run `dvc repro smoke` first or pass --smoke")
    ratios = []
    for model in args.models:
        every = one_run(args.params, args.smoke, model, 1)
        apart = one_run(args.params, args.smoke, model, args.stride)
        same = all(every[k] == apart[k] for k in ("best_epoch", "test_rmse", "test_domain_rmse"))
        ratios.append(every["epochs"] / apart["epochs"])
        print(f"{model}: epochs {every['epochs']:.1f} -> {apart['epochs']:.1f} s, run {every['wall']:.1f} -> "
              f"{apart['wall']:.1f} s, same best epoch and test / Domain errors: {same}", flush=True)
    print(f"ratio: {math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
