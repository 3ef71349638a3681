"""Entry point for `python -m aim_infra`."""

import sys

from .cli import main

sys.exit(main())
