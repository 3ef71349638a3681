"""What a Hugging Face Hub revision may be: empty (the default branch), a full commit sha, or a git branch/tag name."""

from __future__ import annotations

import re

#: A Hub commit: the full 40-hex sha (a short sha is not resolved by the Hub).
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
#: A branch or tag name as the Hub (git) accepts it; the rest of git's ref rules are checked in `revision_problem`.
REF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$")
ALLOWED = (
    "expected empty (the default branch), a 40-hex commit sha, or a branch/tag name (git ref rules: "
    "letters, digits, '.', '_', '-', '/'; no spaces, '..', or leading '.'/'-')"
)


def revision_problem(value: str) -> str | None:
    """None when `value` is a revision the Hub can resolve by name; otherwise what is allowed."""
    if not value or COMMIT_SHA.fullmatch(value):
        return None
    bad = (
        not REF_NAME.fullmatch(value)
        or ".." in value
        or "//" in value
        or value.endswith(("/", ".", ".lock"))
        or any(part.startswith(".") for part in value.split("/"))
    )
    return ALLOWED if bad else None


def is_commit(value: str) -> bool:
    return COMMIT_SHA.fullmatch(value) is not None
