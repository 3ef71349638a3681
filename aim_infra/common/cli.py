"""Command-line parsing for the stack's host steps: a bad argument is one line, never argparse's multi-line usage."""

from __future__ import annotations

import argparse
from typing import NoReturn


class UsageError(Exception):
    """Bad command-line arguments; the message is the line to print."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing its usage block and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
