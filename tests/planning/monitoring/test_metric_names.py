"""Every vLLM metric the rules (and the dashboards, when that module exists) query is a current V1 name."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aim_infra.planning.monitoring import rules
from aim_infra.planning.monitoring.metric_catalogue import CATALOGUE_FILE, VllmMetrics, load_vllm_metrics
from tests.planning.monitoring.support import ROOT, STACKS, stack_rules

VLLM_NAME = re.compile(r"vllm:[A-Za-z0-9_:]+")
DASHBOARDS = ROOT / "aim_infra" / "planning" / "monitoring" / "dashboards.py"


@pytest.fixture(scope="module")
def catalogue() -> VllmMetrics:
    return load_vllm_metrics()


def rule_expressions() -> Iterator[tuple[str, str]]:
    """(where, expression) of every rule built for the dev and prod decisions and both recipe metrics."""
    for stack in STACKS:
        ctx = stack_rules(stack)
        groups = [*rules.recording_groups(), ctx.estimate_group(), ctx.alert_group()]
        for metric in ("latency", "throughput"):
            groups.append(
                rules.alert_group(
                    namespace=ctx.namespace,
                    deployment=ctx.deployment,
                    startup_budget_seconds=ctx.budget,
                    thresholds=rules.default_thresholds(metric),
                )
            )
        for group in groups:
            for rule in group["rules"]:
                yield f"{stack} {group['name']} {rule.get('record') or rule.get('alert')}", rule["expr"]


def _docstring_nodes(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def dashboard_strings(path: Path) -> Iterator[tuple[str, str]]:
    """String literals of the dashboards module (docstrings aside), and the `expr` of every query of every
    dashboard its public `*_dashboard()` functions build: names assembled at run time are caught too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield f"dashboards.py:{node.lineno}", node.value
    try:
        module = importlib.import_module("aim_infra.planning.monitoring.dashboards")
    except Exception as error:  # imported defensively: the literals above are still checked
        warnings.warn(
            f"aim_infra.planning.monitoring.dashboards does not import ({error!r}): checked its literals only",
            stacklevel=2,
        )
        return
    for name, function in inspect.getmembers(module, inspect.isfunction):
        if name.startswith("_") or not name.endswith("_dashboard") or function.__module__ != module.__name__:
            continue
        if any(p.default is p.empty for p in inspect.signature(function).parameters.values()):
            continue
        for expr in _exprs(function()):
            yield f"dashboards.{name}()", expr


def _exprs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "expr" and isinstance(item, str):
                yield item
            else:
                yield from _exprs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _exprs(item)


def check(where: str, text: str, catalogue: VllmMetrics) -> list[str]:
    problems = []
    for name in VLLM_NAME.findall(text):
        if name in catalogue.removed:
            problems.append(f"{where}: {name} was removed from vLLM V1 (use {catalogue.replacement(name)})")
        elif not catalogue.is_current(name):
            problems.append(f"{where}: {name} is not a current vLLM V1 metric ({CATALOGUE_FILE.name})")
    return problems


def test_rules_use_only_current_vllm_metrics(catalogue: VllmMetrics) -> None:
    used: set[str] = set()
    problems: list[str] = []
    for where, expr in rule_expressions():
        used.update(VLLM_NAME.findall(expr))
        problems += check(where, expr, catalogue)
    assert not problems, "\n".join(problems)
    # The rules do read vLLM: an empty extraction would make this test vacuous.
    assert {"vllm:kv_cache_usage_perc", "vllm:generation_tokens_total", "vllm:num_preemptions_total"} <= used
    assert "vllm:time_to_first_token_seconds_bucket" in used


@pytest.mark.skipif(not DASHBOARDS.exists(), reason="aim_infra/planning/monitoring/dashboards.py does not exist yet")
def test_dashboards_use_only_current_vllm_metrics(catalogue: VllmMetrics) -> None:
    found = list(dashboard_strings(DASHBOARDS))
    problems = [p for where, text in found for p in check(where, text, catalogue)]
    assert not problems, "\n".join(problems)
    assert any(VLLM_NAME.search(text) for _, text in found), "no vllm: metric found in the dashboards"


def test_catalogue_lists_the_v1_names_and_the_removed_ones(catalogue: VllmMetrics) -> None:
    assert all(name.endswith("_total") for name in catalogue.counters)
    assert "vllm:kv_cache_usage_perc" in catalogue.gauges
    assert "vllm:inter_token_latency_seconds" in catalogue.histograms
    assert catalogue.is_current("vllm:e2e_request_latency_seconds_bucket")
    assert catalogue.replacement("vllm:gpu_cache_usage_perc") == "vllm:kv_cache_usage_perc"
    assert {
        "vllm:time_per_output_token_seconds",
        "vllm:avg_prompt_throughput_toks_per_s",
        "vllm:avg_generation_throughput_toks_per_s",
        "vllm:num_requests_swapped",
        "vllm:cpu_cache_usage_perc",
        "vllm:gpu_prefix_cache_hit_rate",
    } <= set(catalogue.removed)
    assert not catalogue.current & set(catalogue.removed)


def test_the_check_catches_a_removed_and_an_unknown_name(catalogue: VllmMetrics) -> None:
    problems = check("t", "max(vllm:gpu_cache_usage_perc) + vllm:made_up_total", catalogue)
    assert len(problems) == 2
    assert "use vllm:kv_cache_usage_perc" in problems[0]
    assert check("t", 'rate(vllm:generation_tokens_total{pod="p"}[5m])', catalogue) == []


def test_catalogue_loader_refuses_a_name_both_current_and_removed(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text(
        "current: {gauges: [vllm:kv_cache_usage_perc]}\nremoved: [{name: vllm:kv_cache_usage_perc}]\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="current and removed"):
        load_vllm_metrics(bad)
