"""Shared by the monitoring tests: the dev/prod decisions' rule groups, and finding promtool/prometheus."""

from __future__ import annotations

import ast
import os
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

import pytest

from aim_infra.planning.monitoring import rules
from aim_infra.planning.selection import Decision
from aim_infra.stack.components.engine import label_value as engine_label_value
from aim_infra.stack.components.engine import startup_budget_seconds
from aim_infra.stack.decide import decide, replica_count
from aim_infra.stack.plan import load_stack_config
from aim_infra.stack.settings import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[3]
REQUIRE = os.environ.get("AIM_TESTS_REQUIRE_TOOLS") == "1"
STACKS = ("dev", "prod")


def unavailable(reason: str) -> NoReturn:
    if REQUIRE:
        pytest.fail(f"{reason} (AIM_TESTS_REQUIRE_TOOLS=1: .ci/run installs Debian's prometheus package)")
    pytest.skip(reason)


def tool(name: str) -> str:
    """Path of `promtool` or `prometheus` (Debian package `prometheus`); skip, or fail under CI, without it."""
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed (apt-get install prometheus)")
    return found


def engine_deployment_name() -> str:
    """The AimEngine's name in the Pulumi program (`ENGINE = ...` in __main__.py): its Deployment's name."""
    tree = ast.parse((ROOT / "__main__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ENGINE" for t in node.targets):
            assert isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            return node.value.value
    raise AssertionError("__main__.py defines no ENGINE name")


@dataclass(frozen=True)
class StackRules:
    """One stack's decision and everything the rules are built from."""

    stack: str
    settings: Settings
    decision: Decision
    replicas: int
    deployment: str
    budget: int
    thresholds: rules.AlertThresholds

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    @property
    def summary(self) -> dict[str, Any]:
        return self.decision.summary()

    @property
    def labels(self) -> dict[str, str]:
        """recipe/model/gpu as the engine writes them on its pods (and kube-state-metrics exports them)."""
        return {
            "recipe": engine_label_value(self.decision.recipe.id),
            "model": engine_label_value(self.settings.model),
            "gpu": self.decision.gpu.name,
        }

    def estimate_group(self) -> dict[str, Any]:
        return rules.estimate_group(self.summary, self.namespace, self.replicas)

    def alert_group(self) -> dict[str, Any]:
        return rules.alert_group(
            namespace=self.namespace,
            deployment=self.deployment,
            startup_budget_seconds=self.budget,
            thresholds=self.thresholds,
        )

    def groups(self) -> list[dict[str, Any]]:
        return [*rules.recording_groups(), self.estimate_group(), self.alert_group()]


@cache
def stack_rules(stack: str) -> StackRules:
    """The stack file's settings through the real recipe engine (offline: both stacks name GPU type and count)."""
    config, _ = load_stack_config(stack)
    raw = {key.split(":", 1)[1]: value for key, value in config.items() if key.startswith("aim:")}
    settings = parse_settings(raw)
    decision, _ = decide(settings, None)
    replicas, decision = replica_count(settings, decision)
    return StackRules(
        stack=stack,
        settings=settings,
        decision=decision,
        replicas=replicas,
        deployment=engine_deployment_name(),
        budget=startup_budget_seconds(decision),
        thresholds=rules.default_thresholds(decision.metric),
    )


def step_rate(estimate: dict[str, Any], running: float) -> float:
    """One replica's pure-decode tokens/s at `running` sequences: a step of base + running × slope ms each."""
    per_replica = estimate["per_replica"]
    return running / ((per_replica["step_base_ms"] + running * per_replica["step_per_sequence_ms"]) / 1000)


def expected_low(estimate: dict[str, Any], running_per_pod: list[float]) -> float:
    """The low end of the estimate at this load, from the estimate's own numbers (not from rules.py): the step line
    per pod, scaled so that at the workload's load it gives the estimate (Little's law for that load's running
    count), times the calibration's low ratio."""
    replicas = estimate["layout"]["replicas"]
    workload_running = min(
        estimate["requests_per_s"] * estimate["e2e_latency_s"] / replicas,
        estimate["per_replica"]["max_running_sequences"],
    )
    factor = min(1.0, estimate["output_tokens_per_s"] / (replicas * step_rate(estimate, workload_running)))
    low_ratio = estimate["calibration"]["throughput_band"][0]
    return sum(step_rate(estimate, n) for n in running_per_pod) * factor * low_ratio
