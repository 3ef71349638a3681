"""Small helpers shared by everything that talks to the Hugging Face Hub: offline mode and readable error causes.

Standard library only: the image's model downloader and preflight import it.
"""

from __future__ import annotations

import os

TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now; huggingface_hub itself reads it only once, at import."""
    value = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip().upper()
    if value in TRUE_VALUES:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.is_offline_mode())


def first_line(error: BaseException) -> str:
    """The first paragraph of an exception's message on one line, at most 200 characters."""
    text = " ".join(str(error).split("\n\n")[0].split())
    return text[:200] or type(error).__name__


def causes(error: BaseException) -> list[BaseException]:
    """The exception and everything it was raised from or during, outermost first (cycles cut)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
