"""`python -m pipeline`: the same as the `cloud-import-prep` command."""

import sys

from pipeline.cli import process_main

sys.exit(process_main())
