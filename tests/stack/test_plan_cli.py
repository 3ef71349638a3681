"""`python -m aim_infra plan`: the offline plan of a stack file, its --out files, and secrets never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aim_infra.common.errors import AimError
from aim_infra.stack.plan import load_stack_config
from aim_infra.stack.settings import parse_settings

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


def test_plan_out_is_deterministic_and_replaces_only_its_own_files(tmp_path: Path) -> None:
    out = tmp_path / "plan"
    first = plan("--stack", "dev", "--out", str(out))
    assert first.returncode == 0, first.stderr
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}
    assert not any(name[:3].isdigit() for name in snapshot), "file names carry no registration-order numbers"
    assert "deployment-aim-aim-engine-deployment.yaml" in snapshot or any("deployment-aim" in n for n in snapshot)
    listed = (out / ".aim-plan-output").read_text().split()
    (out / "stale-object.yaml").write_text("kind: Stale\n")
    (out / ".aim-plan-output").write_text("\n".join([*listed, "stale-object.yaml"]) + "\n")
    second = plan("--stack", "dev", "--out", str(out))
    assert second.returncode == 0, second.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == snapshot  # same names, same bytes, stale file gone


def test_plan_out_refuses_a_file_the_project_and_foreign_directories(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me\n")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me\n")
    for out, expected in (
        (str(a_file), "is a file; expected a directory"),
        (str(foreign), "a non-empty directory that is not an earlier plan's output"),
        ("", "argument --out: invalid value '': expected a directory path"),
        (".", "is the project directory or contains it"),
        (str(ROOT.parent), "is the project directory or contains it"),
    ):
        result = plan("--stack", "dev", "--out", out)
        assert result.returncode == 2, (out, result.stdout[-300:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr
    assert a_file.read_text() == "keep me\n" and [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert not any(p.name.endswith(".yaml") and p.name.startswith(("deployment-", "helm-")) for p in ROOT.iterdir())


STACK_FILES = [
    (
        "config:\n  aim:model: Qwen/Qwen3-8B\n  aim:gpu: MI300X\n  aim:model: meta-llama/Llama-3.3-70B-Instruct\n",
        "line 4: key 'aim:model' appears twice (first on line 2); Pulumi refuses duplicate keys",
    ),
    (
        "config:\n  aim:hfToken:\n    secure: AAABAxyz\n    plain: oops\n",
        "aim:hfToken: extra keys plain is not allowed: expected only `secure: <ciphertext>`",
    ),
    ("config:\n  aim:hfToken:\n    secure: 42\n", "aim:hfToken: secure: 42 is not allowed: expected only `secure:"),
    ("config: [1, 2\n", "line 2:"),
]


@pytest.mark.parametrize(("text", "expected"), STACK_FILES)
def test_stack_files_are_read_as_pulumi_reads_them(text: str, expected: str, tmp_path: Path) -> None:
    (tmp_path / "Pulumi.x.yaml").write_text(text)
    with pytest.raises(AimError) as error:
        load_stack_config("x", tmp_path)
    assert "\n" not in str(error.value) and expected in str(error.value), str(error.value)


def test_yaml_1_1_booleans_reach_the_settings_as_text_and_are_refused(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.x.yaml").write_text("config:\n  aim:registry: yes\n  aim:calico: true\n  aim:gpu: MI300X\n")
    config, _ = load_stack_config("x", tmp_path)
    assert config["aim:registry"] == "yes" and config["aim:calico"] == "true"  # as Pulumi (YAML 1.2) passes them
    with pytest.raises(
        AimError,
        match=r"^aim:registry: 'yes' is not allowed: expected true or false \(yes/no/on/off are text to Pulumi",
    ):
        parse_settings({k.removeprefix("aim:"): v for k, v in config.items()})
    result = plan("--stack", "dev", "--config", "aim:registry=yes")
    assert result.returncode == 2 and "aim:registry: 'yes' is not allowed" in result.stderr
