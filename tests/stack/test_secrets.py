"""Known secret values never leak: not in any declared object but its Secret, outputs, logs, or `plan` output."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from aim_infra.stack.plan import run_stack

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "aim:hfToken": "hf_SECRETtokenFORtests_7f3a9c",
    "aim:apiKey": "sk-SECRET-api-key-for-tests-42",
    "aim:grafanaAdminPassword": "SECRET-grafana-password-99",
}


def forms(value: str) -> list[str]:
    encoded = base64.b64encode(value.encode()).decode()
    return [value, encoded, encoded.rstrip("=")]


def leaks(text: str) -> list[str]:
    return [f"{key} ({form[:6]}…)" for key, value in SECRETS.items() for form in forms(value) if form in text]


def test_declared_exported_and_logged_values_hold_no_secret() -> None:
    for stack in ("dev", "prod"):
        result = run_stack(stack, dict(SECRETS))
        assert result.error is None, result.error
        secret_objects = 0
        for resource in result.resources:
            text = json.dumps(resource.inputs)
            if resource.type == "kubernetes:core/v1:Secret":
                # The one place a value may be: a Secret's stringData, which Pulumi keeps encrypted in state.
                assert resource.options["additional_secret_outputs"] == ["data", "stringData"]
                without_data = {k: v for k, v in resource.inputs.items() if k not in ("data", "stringData")}
                assert not leaks(json.dumps(without_data)), resource.name
                secret_objects += bool(leaks(text))
                continue
            assert not leaks(text), f"{stack}: {resource.type} {resource.name} holds {leaks(text)}"
        assert secret_objects == 3, "the three secrets end up in Secrets"
        assert not leaks(json.dumps(result.outputs)), f"{stack} outputs"
        assert not leaks("\n".join(message for _, message in result.logs)), f"{stack} logs"


def test_plan_prints_and_writes_no_secret(tmp_path: Path) -> None:
    arguments = [f"--config={key}={value}" for key, value in SECRETS.items()]
    for stack in ("dev", "prod"):
        out = tmp_path / stack
        result = subprocess.run(
            [sys.executable, "-m", "aim_infra", "plan", "--stack", stack, *arguments, "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert result.returncode == 0, result.stderr
        written = "".join(path.read_text() for path in sorted(out.glob("*.yaml")))
        assert written and "<redacted>" in written
        assert not leaks(result.stdout + result.stderr + written), stack
