"""The names several rooms agree on are spelled once, in aim_infra/common/contract.py, and every reader uses them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from aim_infra.common import contract
from aim_infra.planning.monitoring import names, rules
from aim_infra.stack.plan import PlanResult, helm_releases

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "aim_infra" / "common" / "contract.py"
#: A qualified label or annotation key: an optional DNS-subdomain prefix and `/`, then a name of up to 63 characters.
QUALIFIED_NAME = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
#: A label value (the contract's fixed values are used as such).
LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def literals(path: Path) -> list[tuple[int, object]]:
    """(line, value) of every constant in a module except docstrings (prose may name a key)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and id(node) not in docstrings
    ]


def test_no_module_spells_an_aim_key_or_the_engine_ports_itself() -> None:
    found = []
    for path in sorted((ROOT / "aim_infra").rglob("*.py")):
        if path == CONTRACT:
            continue
        for line, value in literals(path):
            if isinstance(value, str) and "aim.amd.com/" in value:
                found.append(f"{path.relative_to(ROOT)}:{line} {value!r}")
            if type(value) is int and value in (contract.API_PORT, contract.METRICS_PORT):
                found.append(f"{path.relative_to(ROOT)}:{line} {value}")
    assert found == [], "use aim_infra.common.contract instead:\n" + "\n".join(found)


def test_the_check_above_sees_a_spelled_key(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text('"""Docstrings may say aim.amd.com/recipe."""\nKEY = "aim.amd.com/recipe"\nPORT = 8000\n')
    assert literals(module) == [(2, "aim.amd.com/recipe"), (3, 8000)]


def test_the_contract_imports_nothing() -> None:
    tree = ast.parse(CONTRACT.read_text(encoding="utf-8"))
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def test_keys_values_and_ports_are_what_kubernetes_accepts() -> None:
    keys = {name: value for name, value in vars(contract).items() if name.endswith(("_LABEL", "_ANNOTATION"))}
    assert len(keys) == len(set(keys.values())) >= 17
    for name, key in keys.items():
        assert QUALIFIED_NAME.fullmatch(key), f"{name} = {key!r}"
    fixed = (contract.PART_OF, contract.MANAGED_BY, contract.ENGINE_APP_NAME, contract.DOWNLOAD_APP_NAME)
    assert all(LABEL_VALUE.fullmatch(value) for value in fixed)
    assert contract.ENGINE_APP_NAME != contract.DOWNLOAD_APP_NAME  # the engine's Service never selects the download
    ports = (contract.API_PORT, contract.METRICS_PORT, contract.VLLM_INTERNAL_PORT)
    assert len(set(ports)) == 3 and all(1024 <= port <= 65535 for port in ports)  # unprivileged: the proxy is uid 101


def test_the_policy_pack_agrees_with_the_contract() -> None:
    """The policy pack runs outside this package (its own requirements), so it keeps a copy: the same values."""
    from policy import aim_policies

    assert aim_policies.RECIPE_LABEL == contract.RECIPE_LABEL
    assert (aim_policies.PART_OF_LABEL, aim_policies.PART_OF_AIM) == (contract.PART_OF_LABEL, contract.PART_OF)


def test_monitoring_joins_on_what_kube_state_metrics_exports(dev: PlanResult) -> None:
    assert names.POD_LABELS == contract.RECIPE_POD_LABELS
    assert rules.ENGINE_CONTAINER == contract.ENGINE_CONTAINER
    info = rules.pod_recipe_info_expr()
    assert all(names.KSM_LABEL[label] in info for label in (contract.RECIPE_LABEL, contract.MODEL_LABEL))
    [monitoring] = [r for r in helm_releases(dev) if r["name"] == "kube-prometheus-stack"]
    allowed = monitoring["values"]["kube-state-metrics"]["metricLabelsAllowlist"]
    assert allowed == [f"pods=[{','.join(contract.RECIPE_POD_LABELS)}]"]
