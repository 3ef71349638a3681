"""`python -m aim_infra plan`: the offline plan of a stack file, its --out files, and secrets never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_PLANsecretTOKEN_42"


def plan(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "aim_infra", "plan", *args], cwd=ROOT, capture_output=True, text=True, env=env
    )


def test_plan_dev_prints_decision_tree_and_writes_objects(tmp_path: Path) -> None:
    result = plan("--stack", "dev", "--config", f"aim:hfToken={TOKEN}", "--config", "apiKey=k3y-value", "--out",
                  str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Offline plan of stack 'dev'" in out and "not a diff against a live cluster" in out
    assert "AIM recipe:" in out
    assert "aim:infra:AimEngine  aim-engine" in out
    assert "kubernetes:apps/v1:Deployment  aim-engine-deployment" in out
    files = sorted(tmp_path.glob("*.yaml"))
    assert (tmp_path / "helm-releases.yaml") in files
    manifests = [yaml.safe_load(p.read_text()) for p in files if p.name != "helm-releases.yaml"]
    assert {"Deployment", "Service", "Secret", "ConfigMap", "Namespace"} <= {m["kind"] for m in manifests}
    releases = yaml.safe_load((tmp_path / "helm-releases.yaml").read_text())
    assert releases and all(
        {"name", "chart", "version", "repository", "namespace", "values"} <= set(r) for r in releases
    )
    everything = out + result.stderr + "".join(p.read_text() for p in files)
    assert TOKEN not in everything and "k3y-value" not in everything
    secret = next(m for m in manifests if m["kind"] == "Secret" and "HF_TOKEN" in m.get("stringData", {}))
    assert secret["stringData"]["HF_TOKEN"] == "<redacted>"


def test_plan_errors_are_one_line() -> None:
    for args, expected in (
        (("--stack", "nope"), "stack 'nope': no Pulumi.nope.yaml"),
        (("--stack", "dev", "--config", "aim:gpuCount=lots"), "aim:gpuCount: 'lots' is not allowed"),
        (("--stack", "dev", "--config", "novalue"), "--config 'novalue': expected KEY=VALUE"),
    ):
        result = plan(*args)
        assert result.returncode == 2, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr
        assert "Traceback" not in result.stderr
