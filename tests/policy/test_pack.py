"""The pack's wiring: importing the policies starts nothing; `__main__.py` builds one mandatory pack of them all."""

from __future__ import annotations

import ast
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi_policy
import pytest
import yaml
from pulumi_policy import EnforcementLevel, Policy, ResourceValidationPolicy, StackValidationPolicy

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "policy"
RULES = {
    "aim-images-pinned": ResourceValidationPolicy,
    "aim-container-limits": ResourceValidationPolicy,
    "aim-gpu-request-equals-limit": ResourceValidationPolicy,
    "aim-namespace-network-policy": StackValidationPolicy,
    "aim-loadbalancer-source-ranges": ResourceValidationPolicy,
}


def test_importing_the_policies_starts_no_server() -> None:
    """A fresh interpreter imports the module and exits at once, writing nothing (the server would print its port)."""
    code = "import policy.aim_policies as p; assert len(p.POLICIES) == 5"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_importing_the_policies_never_builds_a_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import policy.aim_policies as module

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("PolicyPack constructed on import")

    monkeypatch.setattr(pulumi_policy, "PolicyPack", refuse)
    importlib.reload(module)
    assert [p.name for p in module.POLICIES] == list(RULES)


def test_every_policy_is_mandatory_described_and_of_its_kind() -> None:
    from policy.aim_policies import POLICIES

    assert len({p.name for p in POLICIES}) == len(POLICIES)
    for policy in POLICIES:
        assert isinstance(policy, RULES[policy.name]), policy.name
        assert policy.enforcement_level is EnforcementLevel.MANDATORY, policy.name
        assert len(policy.description) > 40 and policy.remediation_steps, policy.name


def test_main_constructs_the_pack_with_every_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `policy/` as the CLI's policy host runs it (runpy.run_path on the folder), PolicyPack recording its args."""
    calls: list[dict[str, Any]] = []

    def record(*args: Any, **kwargs: Any) -> None:
        assert not args, "PolicyPack is called with keyword arguments"
        calls.append(kwargs)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", record)
    monkeypatch.delitem(sys.modules, "aim_policies", raising=False)
    try:
        runpy.run_path(str(PACK), run_name="__main__")
    finally:
        sys.modules.pop("aim_policies", None)
    [kwargs] = calls
    assert kwargs["name"] == "aim-guardrails"
    assert kwargs["enforcement_level"] is EnforcementLevel.MANDATORY
    policies = kwargs["policies"]
    assert isinstance(policies, list) and all(isinstance(p, Policy) for p in policies)
    assert [p.name for p in policies] == list(RULES)


def test_main_does_nothing_but_construct_the_pack() -> None:
    tree = ast.parse((PACK / "__main__.py").read_text())
    body = [node for node in tree.body if not isinstance(node, ast.Import | ast.ImportFrom)]
    assert ast.get_docstring(tree)
    [_docstring, statement] = body
    assert isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
    assert isinstance(statement.value.func, ast.Name) and statement.value.func.id == "PolicyPack"


def test_pack_project_files() -> None:
    project = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == "python"
    assert project["description"]
    requirements = (PACK / "requirements.txt").read_text().split()
    assert requirements == ["pulumi-policy>=1.21,<2", "pulumi>=3.200,<4"]


def test_the_policies_module_starts_with_a_one_line_docstring() -> None:
    for path in PACK.glob("*.py"):
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert docstring and "\n" not in docstring.split("\n\n")[0], path
