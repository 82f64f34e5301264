"""Command-line entry point of the smoke stage: `python -m pipelines.smoke --help`."""

import sys

from pipelines.smoke.domain import main

sys.exit(main())
