"""The one way a stage's command-line entry point reports success or failure."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loaders.storage import to_json

# Where each dataset stage writes its store, and so where the run stages read it by default.
STORE_PATHS = {"smoke": Path("data/smoke.zarr"), "turbulence": Path("data/turbulence.zarr")}

# Failures a user can act on: bad params, a missing or corrupt input, a failing server or solver.
# Anything else is a bug and keeps its traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)


def run_stage(
    name: str, body: Callable[[], Any], summary: Callable[[Any], Any] = lambda result: result
) -> int:
    """Run ``body``; print ``summary(result)`` as JSON and return 0, or one clear line and return 1."""
    try:
        result = body()
    except EXPECTED_ERRORS as err:
        print(f"{name} stage failed: {err}", file=sys.stderr)
        return 1
    print(to_json(summary(result)))
    return 0


def dataset_stage_parser(description: str, out: str, metrics: str) -> argparse.ArgumentParser:
    """Arguments every dataset-building stage takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=out, type=Path)
    parser.add_argument("--metrics", default=metrics, type=Path)
    parser.add_argument("--scratch", default="data/.scratch", type=Path, help="resumable pieces of this run")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store")
    return parser


def run_stage_parser(description: str, datasets: list[str], matrix: bool = False) -> argparse.ArgumentParser:
    """Arguments of the stages that work on one trained run (dataset, model, seed); with ``matrix`` the
    three may be left out, and the stage runs every run params.yaml lists (pipelines/matrix.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", choices=datasets, required=not matrix)
    parser.add_argument("--model", required=not matrix)
    parser.add_argument("--seed", type=int, required=not matrix)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, help="the dataset store (default: the dataset stage's output)")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    return parser
