"""Shared pytest fixtures: loopback-only networking and a fake Hugging Face Hub with an isolated cache and token."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_hub import FakeHub, isolate_hub_client

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse (and record) every name lookup or connection to anything but 127.0.0.1; the test fails if one happened."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in _LOOPBACK:
            attempts.append(f"lookup {name}")
            raise OSError(f"test network guard: lookup of {name!r} refused")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in _LOOPBACK:
            attempts.append(f"connect {address}")
            raise OSError(f"test network guard: connection to {address!r} refused")
        real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield attempts
    assert not attempts, f"the test tried to leave 127.0.0.1: {attempts}"


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_only: list[str]) -> Iterator[FakeHub]:
    """A running fake Hub; HF_ENDPOINT points at it, HF_HOME is a temporary folder, no token, not offline."""
    hub = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    isolate_hub_client(monkeypatch, tmp_path / "hf-home", offline=False)
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="session", autouse=True)
def _private_yaml_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the parsed-YAML cache of the test run out of the user's home."""
    import os

    previous = os.environ.get("AIM_CACHE_DIR")
    os.environ["AIM_CACHE_DIR"] = str(tmp_path_factory.mktemp("aim-cache"))
    yield
    if previous is None:
        os.environ.pop("AIM_CACHE_DIR", None)
    else:
        os.environ["AIM_CACHE_DIR"] = previous
