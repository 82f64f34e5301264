"""The one way a stage's command-line entry point reports success or failure."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from pipelines.storage import to_json

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
