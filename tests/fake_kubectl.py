"""A fake `kubectl` on PATH for the host steps' tests: `port-forward` to a local fake engine, `get secret` values."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# Modes: forward (says it forwards to $FAKE_ENGINE_PORT, then waits), fail (the Service is missing), silent (never
# says where it listens). `get secret NAME` prints $FAKE_SECRET_B64_<NAME> (dashes as underscores) or
# $FAKE_SECRET_B64, or fails as NotFound when neither is set. Every call is logged, one line of arguments each.
FAKE_KUBECTL = """#!{python}
import os, sys, time
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
mode = os.environ["FAKE_KUBECTL_MODE"]
if "get" in sys.argv and "secret" in sys.argv:
    name = sys.argv[sys.argv.index("secret") + 1]
    value = os.environ.get("FAKE_SECRET_B64_" + name.replace("-", "_").upper(), os.environ.get("FAKE_SECRET_B64"))
    if value is None:
        print(f'Error from server (NotFound): secrets "{{name}}" not found', file=sys.stderr)
        sys.exit(1)
    print(value, end="")
    sys.exit(0)
if mode == "fail":
    print('error: services "aim-engine" not found', file=sys.stderr)
    sys.exit(1)
if mode == "forward":
    port = os.environ["FAKE_ENGINE_PORT"]
    print(f"Forwarding from 127.0.0.1:{{port}} -> 8000", flush=True)
    print(f"Forwarding from [::1]:{{port}} -> 8000", flush=True)
with open(os.environ["FAKE_KUBECTL_LOG"] + ".pid", "w") as pid:
    pid.write(str(os.getpid()))
time.sleep(60)
"""


def install_fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Put the fake first on PATH; returns `use(mode, engine_url="")`, which sets the mode and gives the log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "kubectl"
    program.write_text(FAKE_KUBECTL.format(python=sys.executable))
    program.chmod(0o755)
    log = tmp_path / "kubectl.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(log))

    def use(mode: str, engine_url: str = "") -> Path:
        monkeypatch.setenv("FAKE_KUBECTL_MODE", mode)
        monkeypatch.setenv("FAKE_ENGINE_PORT", engine_url.rsplit(":", 1)[-1])
        return log

    return use


def still_running(log: Path) -> bool:
    """Whether the fake's last waiting process (a port-forward) is still alive."""
    pid_file = Path(str(log) + ".pid")
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    return True
