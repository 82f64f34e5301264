"""`python -m pipelines.report`: the report stage's entry point (pipelines/report/__init__.py)."""

import sys

from pipelines.report import main

sys.exit(main())
