"""The one base class of every user-facing error: a single line naming what is wrong and what is allowed."""

from __future__ import annotations


class AimError(Exception):
    """A user-facing failure. Its message is exactly one line naming what is wrong and what is allowed."""

    def __init__(self, message: str) -> None:
        # Collapse whitespace so the message is always one line, whatever the caller formatted.
        super().__init__(" ".join(str(message).split()))
