"""Shared test setup: the quick default run versus the full CI run (Hypothesis profiles, slow tests), loopback-only
networking and a fake Hugging Face Hub with an isolated cache and token.

`python -m pytest` is quick by default: the `quick` Hypothesis profile and no test marked `slow`. With
AIM_TESTS_FULL=1 in the environment (.ci/run sets it) the same command runs everything, the property tests at the
`ci` profile's 1000 examples each.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests.fake_hub import FakeHub, isolate_hub_client

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})

#: AIM_TESTS_FULL=1: run the slow tests too and the property tests at CI depth (what .ci/run does).
FULL = os.environ.get("AIM_TESTS_FULL") == "1"

# Hypothesis keeps constants and failure patches under .hypothesis/ of the working directory: keep the checkout clean.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "aim-hypothesis")

# quick: a smoke check of each property that gives the same answer on every machine and every run (derandomized: the
# same examples each time, so a red default run is always the change's doing); the search for new inputs is CI's job.
# No deadline in either: on 2 shared cores a per-example time limit fails tests for the machine's load, not the code.
settings.register_profile("quick", max_examples=50, derandomize=True, database=None, deadline=None)
# ci: 1000 fresh random examples per property on every CI run, so CI keeps searching where the quick run never looks;
# a failure prints the falsifying input and a @reproduce_failure blob that replays it, and the input then becomes a
# case in tests/fuzz/test_regressions.py. No example database: a CI machine starts empty and keeps nothing.
settings.register_profile("ci", max_examples=1000, derandomize=False, database=None, deadline=None, print_blob=True)
# Loaded before any test module is imported, so every @settings(...) inherits it; `--hypothesis-profile=ci` on the
# command line still overrides this (Hypothesis' pytest plugin loads it later).
settings.load_profile("ci" if FULL else "quick")

_SLOW_DESELECTED = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect tests marked `slow` unless AIM_TESTS_FULL=1 or the command line chooses by marker itself (`-m ...`)."""
    if FULL:
        return
    slow = [] if config.option.markexpr else [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]
    config.stash[_SLOW_DESELECTED] = len(slow)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line saying what the quick default left out, and the command that runs everything."""
    if FULL or _SLOW_DESELECTED not in config.stash:
        return
    slow = config.stash[_SLOW_DESELECTED]
    left_out = [f"{slow} slow test(s) deselected"] if slow else []
    if settings.get_current_profile_name() == "quick":  # not when --hypothesis-profile chose another
        left_out.append(f"property tests at {settings.default.max_examples} examples each")
    if left_out:
        terminalreporter.write_line(
            f"quick run: {', '.join(left_out)}; `AIM_TESTS_FULL=1 python -m pytest` runs everything at CI depth,"
            " as .ci/run does"
        )


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
