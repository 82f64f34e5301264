"""Command-line entry point of the turbulence stage: `python -m pipelines.turbulence --help`."""

import sys

from pipelines.turbulence.stage import main

sys.exit(main())
