"""`python -m metrics_ingest` is the `metrics-ingest` command."""

import sys

from metrics_ingest.cli import main

sys.exit(main())
