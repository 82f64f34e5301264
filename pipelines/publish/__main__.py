"""Command-line entry point of the publish stage: `python -m pipelines.publish --help`."""

import sys

from pipelines.publish.stage import main

sys.exit(main())
