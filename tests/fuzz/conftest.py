"""Fuzz tests run sealed off: offline Hugging Face Hub with an empty cache, no cluster, no network."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps constants and failure patches under .hypothesis/ of the working directory: keep the checkout clean.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "aim-fuzz-hypothesis")


@pytest.fixture(autouse=True)
def sealed_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_only: list[str]) -> Iterator[None]:
    """HF_HUB_OFFLINE=1 with an empty private HF cache, so an unknown model id is a one-line error, never a download;
    KUBECONFIG names a file that does not exist, so `aim:gpu auto` cannot reach a real cluster; and the loopback
    guard fails the test if anything still tries to leave 127.0.0.1."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub copied these from the environment at import: point the copies at the empty home as well.
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_XET_CACHE", str(home / "xet"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    yield
