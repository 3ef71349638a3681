"""Fuzz tests run sealed off: offline Hugging Face Hub with an empty cache, no cluster, no network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_hub import isolate_hub_client


@pytest.fixture(autouse=True)
def sealed_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_only: list[str]) -> Iterator[None]:
    """HF_HUB_OFFLINE=1 with an empty private HF cache, so an unknown model id is a one-line error, never a download;
    KUBECONFIG names a file that does not exist, so `aim:gpu auto` cannot reach a real cluster; and the loopback
    guard fails the test if anything still tries to leave 127.0.0.1."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    isolate_hub_client(monkeypatch, tmp_path / "hf-home", offline=True)
    yield
