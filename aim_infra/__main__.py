"""Entry point for `python -m aim_infra`."""

import sys

from aim_infra.cli import main

sys.exit(main())
