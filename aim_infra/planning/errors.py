"""Pydantic validation errors as the one line a user can act on."""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation_error(error: ValidationError, where: str) -> str:
    """Turn the first pydantic error into one line: `<where>: field a.b: <what is wrong> (got <value>)`."""
    first = error.errors(include_url=False)[0]
    location = ".".join(str(part) for part in first.get("loc", ())) or "(top level)"
    value = first.get("input")
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    message = first.get("msg", "invalid value")
    extra = f" and {error.error_count() - 1} more problem(s)" if error.error_count() > 1 else ""
    if first.get("type") == "missing":
        return f"{where}: field {location}: required but missing{extra}"
    return f"{where}: field {location}: {message} (got {shown}){extra}"
