"""The rules under promtool: they load for the dev and prod decisions, and unit tests on synthetic series show every
alert firing when it should and staying silent when it should not, and the `aim:` series joined to the recipe."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from aim_infra.planning.monitoring import names, rules
from aim_infra.stack.components.api_proxy import DEFAULT_PROXY_IMAGE
from aim_infra.stack.manifests import engine_pod
from aim_infra.stack.manifests.engine import EngineNames
from tests.planning.monitoring.support import ROOT, STACKS, StackRules, expected_low, stack_rules, step_rate, tool

MINUTES = 60  # the length of every synthetic series, in one-minute samples
NODE = "gpu-node-1"
OTHER_NODE = "gpu-node-2"


# ------------------------------------------------------------------------------------------------ helpers


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def write_rules(ctx: StackRules, folder: Path) -> Path:
    path = folder / "rules.yaml"
    path.write_text(rules.rule_file(ctx.groups()), encoding="utf-8")
    return path


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    rendered = ", ".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{rendered}}}", "values": values}


def const(value: float) -> str:
    return f"{value:.10g}x{MINUTES}"


def growing(per_minute: float) -> str:
    return f"0+{per_minute:.10g}x{MINUTES}"


def pod_name(ctx: StackRules, suffix: str = "x2k4q") -> str:
    return f"{ctx.deployment}-7c9d8f6b5-{suffix}"


def pod_labels(ctx: StackRules, pod: str, namespace: str | None = None) -> dict[str, str]:
    """kube_pod_labels of an engine pod, as kube-state-metrics exports the allow-listed labels."""
    ksm = names.KSM_LABEL
    return series(
        "kube_pod_labels",
        {
            "job": "kube-state-metrics",
            "namespace": namespace or ctx.namespace,
            "pod": pod,
            "uid": f"uid-{pod}",
            ksm["aim.amd.com/recipe"]: ctx.labels["recipe"],
            ksm["aim.amd.com/model"]: ctx.labels["model"],
            ksm["aim.amd.com/gpu"]: ctx.labels["gpu"],
            ksm["app.kubernetes.io/instance"]: ctx.deployment,
        },
        const(1),
    )


def vllm(ctx: StackRules, name: str, pod: str, values: str, namespace: str | None = None, **extra: str) -> dict:
    """A vLLM series as the ServiceMonitor scrapes it: vLLM's labels plus namespace/pod of the target."""
    labels = {
        "job": ctx.deployment,
        "namespace": namespace or ctx.namespace,
        "pod": pod,
        "model_name": ctx.settings.model,
        "engine": "0",
        **extra,
    }
    return series(name, labels, values)


def ksm_pod(ctx: StackRules, name: str, pod: str, values: str, **extra: str) -> dict:
    labels = {"job": "kube-state-metrics", "namespace": ctx.namespace, "pod": pod, "uid": f"uid-{pod}", **extra}
    return series(name, labels, values)


def deployment_series(ctx: StackRules, available: str, wanted: str = const(1)) -> list[dict]:
    labels = {"job": "kube-state-metrics", "namespace": ctx.namespace, "deployment": ctx.deployment}
    return [
        series("kube_deployment_status_replicas_available", labels, available),
        series("kube_deployment_spec_replicas", labels, wanted),
    ]


def recipe_alert_labels(ctx: StackRules) -> dict[str, str]:
    return {"namespace": ctx.namespace, **ctx.labels}


_LABEL = re.compile(r"\{\{ \$labels\.(\w+) \}\}")
_PRINTF = re.compile(r'\{\{ printf "(%[^"]+)" \$value \}\}')
_PERCENT = re.compile(r"\{\{ \$value \| humanizePercentage \}\}")


def render(template: str, labels: dict[str, str], value: float) -> str:
    """The few template forms the rules use, rendered as Prometheus does (humanizePercentage: `%.4g%%` of v×100).
    A label the alert does not carry is a KeyError: promtool would print `<no value>`."""
    text = _LABEL.sub(lambda m: labels[m.group(1)], template)
    text = _PRINTF.sub(lambda m: m.group(1) % value, text)
    text = _PERCENT.sub(lambda m: f"{value * 100:.4g}%", text)
    assert "{{" not in text, f"unrendered template left in {text!r}"
    return text


@dataclass
class Case:
    """One promtool test group: input series, one evaluation time, and the alerts expected to be firing then
    (labels the expression yields, without severity, and the value; empty = silent)."""

    alert: str
    title: str
    input_series: list[dict[str, str]]
    eval_minutes: int
    firing: list[tuple[dict[str, str], float]] = field(default_factory=list)


def alert_rules(ctx: StackRules) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in ctx.alert_group()["rules"]}


def expected_alerts(rule: dict[str, Any], firing: list[tuple[dict[str, str], float]]) -> list[dict[str, Any]]:
    expected = []
    for labels, value in firing:
        all_labels = {**labels, **rule["labels"]}
        annotations = {key: render(text, all_labels, value) for key, text in rule["annotations"].items()}
        expected.append({"exp_labels": all_labels, "exp_annotations": annotations})
    return expected


# ------------------------------------------------------------------------------------------------ the cases


def alert_cases(ctx: StackRules) -> list[Case]:
    ns, t = ctx.namespace, ctx.thresholds
    pod, other_pod = pod_name(ctx), pod_name(ctx, "b7m2p")
    stranger = "other-app-5f6d7c8b9-abcde"  # same namespace, not a pod of the engine Deployment
    budget_floor = ctx.budget // 60  # minutes still within the start-up budget
    past_budget = math.ceil(ctx.budget / 60)
    assert budget_floor >= 6, "start-up budget shorter than the 5-minute engine-down window: cases need rework"
    recipe = recipe_alert_labels(ctx)
    down = {"namespace": ns, "deployment": ctx.deployment}
    never_ready = [
        ksm_pod(ctx, "kube_pod_status_initialized_time", pod, const(0)),
        ksm_pod(ctx, "kube_pod_status_ready", pod, const(0), condition="true"),
    ]
    cases = [
        Case("AimEngineDown", "no replica available for 10 minutes", deployment_series(ctx, const(0)), 10, [(down, 0)]),
        Case("AimEngineDown", "a replica is available", deployment_series(ctx, const(1)), 10),
        Case(
            "AimEngineDown",
            "the only replica is loading within its budget",
            deployment_series(ctx, const(0)) + never_ready,
            budget_floor,
        ),
        Case(
            "AimEngineDown",
            "the only replica exceeded its budget five minutes ago",
            deployment_series(ctx, const(0)) + never_ready,
            past_budget + 6,
            [(down, 0)],
        ),
        Case(
            "AimEngineNotReady",
            "one of two replicas available for 15 minutes",
            deployment_series(ctx, const(1), const(2)),
            15,
            [(down, 1)],
        ),
        Case("AimEngineNotReady", "both replicas available", deployment_series(ctx, const(2), const(2)), 15),
        Case(
            "AimEngineNotReady",
            "the missing replica is loading within its budget",
            deployment_series(ctx, const(1), const(2)) + never_ready,
            budget_floor,
        ),
        Case(
            "AimModelLoadTooSlow",
            "not Ready, budget exceeded",
            never_ready,
            past_budget + 4,
            [({"namespace": ns, "pod": pod}, (past_budget + 4) * 60)],
        ),
        Case(
            "AimModelLoadTooSlow",
            "no initialized time: counted from the pod's start",
            [
                ksm_pod(ctx, "kube_pod_start_time", pod, const(0)),
                ksm_pod(ctx, "kube_pod_status_ready", pod, const(0), condition="true"),
            ],
            past_budget + 4,
            [({"namespace": ns, "pod": pod}, (past_budget + 4) * 60)],
        ),
        Case("AimModelLoadTooSlow", "not Ready, still within the budget", never_ready, budget_floor),
        Case(
            "AimModelLoadTooSlow",
            "Ready after five minutes",
            [
                ksm_pod(ctx, "kube_pod_status_initialized_time", pod, const(0)),
                ksm_pod(ctx, "kube_pod_status_ready", pod, f"0x4 1x{MINUTES - 5}", condition="true"),
            ],
            past_budget + 4,
        ),
        Case(
            "AimEngineRestarting",
            "vllm restarted five minutes ago",
            [
                ksm_pod(
                    ctx,
                    "kube_pod_container_status_restarts_total",
                    pod,
                    f"0x4 1x{MINUTES - 5}",
                    container=rules.ENGINE_CONTAINER,
                ),
            ],
            10,
            [({"namespace": ns, "pod": pod, "container": rules.ENGINE_CONTAINER}, 1)],
        ),
        Case(
            "AimEngineRestarting",
            "old restarts only, and a restarting pod of another app",
            [
                ksm_pod(
                    ctx, "kube_pod_container_status_restarts_total", pod, const(3), container=rules.ENGINE_CONTAINER
                ),
                ksm_pod(ctx, "kube_pod_container_status_restarts_total", stranger, growing(1), container="app"),
            ],
            10,
        ),
        Case(
            "AimQueueDepthHigh",
            f"{t.queue_depth + 8} waiting for 10 minutes",
            [
                pod_labels(ctx, pod),
                vllm(ctx, "vllm:num_requests_waiting", pod, const(t.queue_depth + 8)),
            ],
            10,
            [(recipe, t.queue_depth + 8)],
        ),
        Case(
            "AimQueueDepthHigh",
            "a short queue here, a long one in another namespace",
            [
                pod_labels(ctx, pod),
                vllm(ctx, "vllm:num_requests_waiting", pod, const(t.queue_depth // 4)),
                pod_labels(ctx, pod, namespace="elsewhere"),
                vllm(ctx, "vllm:num_requests_waiting", pod, const(t.queue_depth * 2), namespace="elsewhere"),
            ],
            10,
        ),
        Case(
            "AimKvCacheNearlyFull",
            "one replica at 95% for 15 minutes",
            [
                pod_labels(ctx, pod),
                pod_labels(ctx, other_pod),
                vllm(ctx, "vllm:kv_cache_usage_perc", pod, const(0.95)),
                vllm(ctx, "vllm:kv_cache_usage_perc", other_pod, const(0.3)),
            ],
            15,
            [(recipe, 0.95)],
        ),
        Case(
            "AimKvCacheNearlyFull",
            "at the threshold, not above",
            [
                pod_labels(ctx, pod),
                vllm(ctx, "vllm:kv_cache_usage_perc", pod, const(t.kv_cache_usage)),
            ],
            15,
        ),
        Case(
            "AimTimeToFirstTokenHigh",
            "every request waits 10-20 s for its first token",
            ttft_series(ctx, pod, slow=True),
            20,
            [(recipe, 19.5)],
        ),
        Case("AimTimeToFirstTokenHigh", "first tokens within half a second", ttft_series(ctx, pod, slow=False), 20),
        *throughput_cases(ctx, pod, recipe),
        Case(
            "AimPreempting",
            "one preemption a second",
            [
                pod_labels(ctx, pod),
                vllm(ctx, "vllm:num_preemptions_total", pod, growing(60)),
            ],
            30,
            [(recipe, 1)],
        ),
        Case(
            "AimPreempting",
            "no preemption lately",
            [
                pod_labels(ctx, pod),
                vllm(ctx, "vllm:num_preemptions_total", pod, const(5)),
            ],
            30,
        ),
        Case(
            "AimGpuMemoryNearlyFull",
            "a GPU 99% full; one reported with exported_* labels too",
            gpu_memory_series(ctx, pod, used=195000, gpu_id="3")
            + gpu_memory_series(ctx, other_pod, used=195000, gpu_id="5", exported=True),
            15,
            [
                ({"namespace": ns, "pod": pod, "hostname": NODE, "gpu_id": "3"}, 195000 / 196608),
                ({"namespace": ns, "pod": other_pod, "hostname": NODE, "gpu_id": "5"}, 195000 / 196608),
            ],
        ),
        Case(
            "AimGpuMemoryNearlyFull",
            "vLLM's normal 90%, and someone else's full GPU",
            gpu_memory_series(ctx, pod, used=176947, gpu_id="3")
            + gpu_memory_series(ctx, stranger, used=196000, gpu_id="4"),
            15,
        ),
        Case(
            "AimGpuLost",
            "allocatable below capacity",
            gpu_node_series(ctx, pod, NODE, "8", "7"),
            10,
            [({"node": NODE, "namespace": ns}, 1)],
        ),
        Case(
            "AimGpuLost",
            "two devices vanished twenty minutes ago",
            gpu_node_series(ctx, pod, NODE, f"8x19 6x{MINUTES - 20}", f"8x19 6x{MINUTES - 20}"),
            30,
            [({"node": NODE, "namespace": ns}, 2)],
        ),
        Case(
            "AimGpuLost",
            "all GPUs healthy here; one lost on a node without engine pods",
            gpu_node_series(ctx, pod, NODE, "8", "8") + gpu_node_series(ctx, None, OTHER_NODE, "8", "7"),
            10,
        ),
    ]
    return cases


def ttft_series(ctx: StackRules, pod: str, *, slow: bool) -> list[dict]:
    """TTFT histogram: 10 requests a minute, all in (10, 20] s when slow, all in (0.25, 0.5] s otherwise."""
    first_filled = "20" if slow else "0.5"
    out = [pod_labels(ctx, pod)]
    filled = False
    for le in ("0.25", "0.5", "1", "2.5", "5", "10", "20", "+Inf"):
        filled = filled or le == first_filled
        out.append(
            vllm(ctx, "vllm:time_to_first_token_seconds_bucket", pod, growing(10) if filled else const(0), le=le)
        )
    return out


def throughput_cases(ctx: StackRules, pod: str, recipe: dict[str, str]) -> list[Case]:
    estimate = ctx.summary["estimate"]
    fraction = ctx.thresholds.throughput_fraction
    other = pod_name(ctx, "b7m2p")
    running = 100
    threshold = fraction * expected_low(estimate, [running])
    slow, healthy = math.floor(0.9 * threshold), math.ceil(1.1 * threshold)

    def load(tokens_per_second: float, running_by_pod: dict[str, str]) -> list[dict]:
        """Pods running the given requests (a promtool values string each), generating tokens_per_second together."""
        out = []
        for index, (name, values) in enumerate(running_by_pod.items()):
            out += [pod_labels(ctx, name), vllm(ctx, "vllm:num_requests_running", name, values)]
            share = tokens_per_second if index == 0 else 0.0  # the counter of one pod carries the whole rate
            out.append(vllm(ctx, "vllm:generation_tokens_total", name, growing(share * 60)))
        return out

    # Two pods, 200 and 4 running: the sum of the per-pod rates is well below twice the rate at the mean (102).
    uneven = fraction * expected_low(estimate, [200, 4])
    at_mean = fraction * expected_low(estimate, [102, 102])
    assert at_mean > 1.2 * uneven, "no room between per-pod and mean-count expectations for this recipe"
    between = math.ceil((uneven + at_mean) / 2)
    # One pod alternating 0 and 200 running each minute: the expected rate averages half the rate at 200 (3 or
    # 2 of the window's 5-6 samples), far below the rate at the mean count of 100.
    bursty_high = fraction * 0.6 * expected_low(estimate, [200])
    bursty_at_mean = fraction * expected_low(estimate, [100])
    assert bursty_at_mean > 1.2 * bursty_high, "no room between averaged-rate and averaged-count expectations"
    bursty = math.ceil((bursty_high + bursty_at_mean) / 2)
    alternating = " ".join("0" if minute % 2 else "200" for minute in range(MINUTES))
    # Two running requests, generating at the estimate's low end for that load: far below the workload's range (and
    # the saturated rate), which the alert must not compare with.
    light = math.ceil(expected_low(estimate, [2]))
    assert light < estimate["range"]["output_tokens_per_s"][0]

    name = "AimThroughputBelowEstimate"
    return [
        Case(name, f"{running} running at {slow} tokens/s", load(slow, {pod: const(running)}), 30, [(recipe, slow)]),
        Case(name, f"{running} running at {healthy} tokens/s", load(healthy, {pod: const(running)}), 30),
        Case(
            name,
            f"200 and 4 running at {between} tokens/s: above the per-pod sum",
            load(between, {pod: const(200), other: const(4)}),
            30,
        ),
        Case(
            name,
            "200 and 4 running, below the per-pod sum",
            load(math.floor(0.9 * uneven), {pod: const(200), other: const(4)}),
            30,
            [(recipe, math.floor(0.9 * uneven))],
        ),
        Case(
            name, f"bursts of 200 running every other minute at {bursty} tokens/s", load(bursty, {pod: alternating}), 30
        ),
        Case(name, f"2 running at {light} tokens/s, the low end at that load", load(light, {pod: const(2)}), 30),
        Case(name, "tokens trickle in with no request running", load(slow, {pod: const(0)}), 30),
    ]


def gpu_memory_series(ctx: StackRules, pod: str, *, used: int, gpu_id: str, exported: bool = False) -> list[dict]:
    """device-metrics-exporter series of one MI300X (196,608 MB) held by `pod`."""
    workload = {"namespace": ctx.namespace, "pod": pod, "container": rules.ENGINE_CONTAINER}
    if exported:  # scraped without honorLabels: the target's namespace/pod win, the exporter's get `exported_`
        workload = {
            "namespace": "kube-amd-gpu",
            "pod": "amd-metrics-exporter-q8w4z",
            "exported_namespace": ctx.namespace,
            "exported_pod": pod,
            "exported_container": rules.ENGINE_CONTAINER,
        }
    labels = {"job": "amd-device-metrics-exporter", "hostname": NODE, "gpu_id": gpu_id, **workload}
    return [
        series(names.GPU_USED_VRAM, labels, const(used)),
        series(names.GPU_TOTAL_VRAM, labels, const(196608)),
    ]


def gpu_node_series(ctx: StackRules, pod: str | None, node: str, capacity: str, allocatable: str) -> list[dict]:
    def values(text: str) -> str:
        return text if "x" in text else const(float(text))

    resource = {"job": "kube-state-metrics", "node": node, "resource": rules.GPU_RESOURCE, "unit": "integer"}
    out = [
        series("kube_node_status_capacity", resource, values(capacity)),
        series("kube_node_status_allocatable", resource, values(allocatable)),
    ]
    if pod is not None:
        out.append(ksm_pod(ctx, "kube_pod_info", pod, const(1), node=node, created_by_kind="ReplicaSet"))
    return out


def promtool_alert_tests(ctx: StackRules, rule_path: Path) -> dict[str, Any]:
    by_name = alert_rules(ctx)
    tests = []
    for case in alert_cases(ctx):
        tests.append(
            {
                "name": f"{case.alert}: {case.title}",
                "interval": "1m",
                "input_series": case.input_series,
                "alert_rule_test": [
                    {
                        "eval_time": f"{case.eval_minutes}m",
                        "alertname": case.alert,
                        "exp_alerts": expected_alerts(by_name[case.alert], case.firing),
                    }
                ],
            }
        )
    return {"rule_files": [rule_path.name], "evaluation_interval": "1m", "tests": tests}


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("stack", STACKS)
def test_promtool_check_rules_passes_on_the_stack_decision(stack: str, tmp_path: Path) -> None:
    ctx = stack_rules(stack)
    path = write_rules(ctx, tmp_path)
    result = run_promtool("check", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("stack", STACKS)
def test_every_alert_fires_when_it_should_and_stays_silent_otherwise(stack: str, tmp_path: Path) -> None:
    ctx = stack_rules(stack)
    cases = alert_cases(ctx)
    for alert in alert_rules(ctx):
        mine = [c for c in cases if c.alert == alert]
        assert any(c.firing for c in mine), f"{alert}: no case where it fires"
        assert any(not c.firing for c in mine), f"{alert}: no case where it stays silent"
    assert {c.alert for c in cases} <= set(alert_rules(ctx))
    path = write_rules(ctx, tmp_path)
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(promtool_alert_tests(ctx, path), sort_keys=False), encoding="utf-8")
    result = run_promtool("test", "rules", test_file.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def recording_test(ctx: StackRules, rule_path: Path) -> dict[str, Any]:
    """Two engine pods of the recipe (one Pending, so only one holds a GPU), a pod of another app, and vLLM series
    in a namespace without AIM pods: the `aim:` series carry the recipe labels and sum/max the right pods."""
    ns = ctx.namespace
    pod, pending = pod_name(ctx), pod_name(ctx, "b7m2p")
    buckets = {
        "vllm:time_to_first_token_seconds_bucket": ("0.1", "0.25"),  # every request in (0.1, 0.25] s
        "vllm:inter_token_latency_seconds_bucket": ("0.01", "0.05"),
        "vllm:e2e_request_latency_seconds_bucket": ("5", "10"),
    }
    inputs = [
        pod_labels(ctx, pod),
        pod_labels(ctx, pending),
        ksm_pod(ctx, "kube_pod_labels", "postgres-0", const(1), label_app="postgres"),
        vllm(ctx, "vllm:num_requests_running", pod, const(7)),
        vllm(ctx, "vllm:num_requests_running", pending, const(5)),
        vllm(ctx, "vllm:num_requests_running", "loose-pod", const(50), namespace="no-aim-here"),
        vllm(ctx, "vllm:num_requests_waiting", pod, const(3)),
        vllm(ctx, "vllm:num_requests_waiting", pending, const(2)),
        vllm(ctx, "vllm:kv_cache_usage_perc", pod, const(0.4)),
        vllm(ctx, "vllm:kv_cache_usage_perc", pending, const(0.7)),
        vllm(ctx, "vllm:generation_tokens_total", pod, growing(6000)),
        vllm(ctx, "vllm:generation_tokens_total", pending, growing(6000)),
        vllm(ctx, "vllm:prompt_tokens_total", pod, growing(12000)),
        vllm(ctx, "vllm:request_success_total", pod, growing(60), finished_reason="stop"),
        vllm(ctx, "vllm:request_success_total", pod, growing(30), finished_reason="length"),
        vllm(ctx, "vllm:num_preemptions_total", pod, growing(6)),
        vllm(
            ctx, "http_requests_total", pod, growing(114), handler="/v1/chat/completions", method="POST", status="2xx"
        ),
        vllm(ctx, "http_requests_total", pod, growing(6), handler="/v1/chat/completions", method="POST", status="5xx"),
        ksm_pod(
            ctx,
            "kube_pod_container_resource_requests",
            pod,
            const(1),
            container=rules.ENGINE_CONTAINER,
            node=NODE,
            resource=rules.GPU_RESOURCE,
            unit="integer",
        ),
        ksm_pod(
            ctx,
            "kube_pod_container_resource_requests",
            pending,
            const(1),
            container=rules.ENGINE_CONTAINER,
            node="",
            resource=rules.GPU_RESOURCE,
            unit="integer",
        ),
        ksm_pod(ctx, "kube_pod_status_phase", pod, const(1), phase="Running"),
        ksm_pod(ctx, "kube_pod_status_phase", pending, const(0), phase="Running"),
        ksm_pod(ctx, "kube_pod_status_phase", pending, const(1), phase="Pending"),
    ]
    for name, (empty, full) in buckets.items():
        for le in (empty, full, "+Inf"):
            inputs.append(vllm(ctx, name, pod, const(0) if le == empty else growing(60), le=le))

    recipe = {"namespace": ns, **ctx.labels}

    def sample(value: float, labels: dict[str, str] = recipe) -> dict[str, Any]:
        rendered = ", ".join(f'{k}="{v}"' for k, v in labels.items())
        return {"labels": f"{{{rendered}}}", "value": value}

    def close(record: str, value: float) -> dict[str, Any]:
        """1 when the series is within a billionth of `value` (the constants hold ten significant digits)."""
        return {
            "expr": f"abs({record} / {value!r} - 1) < bool 1e-9",
            "eval_time": "20m",
            "exp_samples": [sample(1)],
        }

    def rounded(record: str, value: float) -> dict[str, Any]:
        # round(): promtool compares floats exactly; `round(v, 0.0001)` divides by 10000, hitting the decimal.
        return {"expr": f"round({record}, 0.0001)", "eval_time": "20m", "exp_samples": [sample(value)]}

    info = [
        {
            "labels": f'{names.POD_RECIPE_INFO}{{namespace="{ns}", pod="{p}", '
            + ", ".join(f'{k}="{v}"' for k, v in ctx.labels.items())
            + "}",
            "value": 1,
        }
        for p in sorted((pod, pending))
    ]
    expressions = [
        {"expr": names.POD_RECIPE_INFO, "eval_time": "20m", "exp_samples": info},
        rounded(names.REQUESTS_RUNNING, 12),
        rounded(names.REQUESTS_WAITING, 5),
        rounded(names.KV_CACHE_USAGE, 0.7),
        rounded(names.GENERATION_TOKENS_RATE, 200),
        rounded(names.PROMPT_TOKENS_RATE, 200),
        rounded(names.REQUESTS_RATE, 1.5),
        rounded(names.PREEMPTIONS_RATE, 0.1),
        rounded(names.HTTP_ERROR_RATIO, 0.05),
        rounded(names.TTFT_P50, 0.175),
        rounded(names.TTFT_P95, 0.2425),
        rounded(names.ITL_P50, 0.03),
        rounded(names.ITL_P95, 0.048),
        rounded(names.E2E_P95, 9.75),
        rounded(names.GPUS_IN_USE, 1),
    ]
    for record, value in estimate_values(ctx.summary["estimate"], ctx.replicas).items():
        expressions.append(close(record, value))
    # Both pods of the recipe report running requests (7 and 5): the low end at that load sums the two.
    expressions.append(close(names.ESTIMATE_AT_LOAD_LOW, expected_low(ctx.summary["estimate"], [7, 5])))
    no_errors = [
        vllm(ctx, "http_requests_total", pod, growing(120), handler="/v1/completions", method="POST", status="2xx"),
        pod_labels(ctx, pod),
    ]
    return {
        "rule_files": [rule_path.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "aim: series joined to the recipe",
                "interval": "1m",
                "input_series": inputs,
                "promql_expr_test": expressions,
            },
            {
                "name": "no 5xx yet: the error ratio is 0, not absent",
                "interval": "1m",
                "input_series": no_errors,
                "promql_expr_test": [rounded(names.HTTP_ERROR_RATIO, 0)],
            },
        ],
    }


@pytest.mark.parametrize("stack", STACKS)
def test_recording_rules_join_vllm_series_to_the_recipe(stack: str, tmp_path: Path) -> None:
    ctx = stack_rules(stack)
    path = write_rules(ctx, tmp_path)
    test_file = tmp_path / "recording_test.yaml"
    test_file.write_text(yaml.safe_dump(recording_test(ctx, path), sort_keys=False), encoding="utf-8")
    result = run_promtool("test", "rules", test_file.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------ pure checks


def estimate_values(estimate: dict[str, Any], replicas: int) -> dict[str, float]:
    """The constant series an estimate (PerformanceEstimate.as_json) should become, worked out here."""
    ranged = estimate["range"]
    per_replica = estimate["per_replica"]
    workload_running = estimate["requests_per_s"] * estimate["e2e_latency_s"] / replicas
    workload_running = min(workload_running, per_replica["max_running_sequences"])
    factor = min(1.0, estimate["output_tokens_per_s"] / (replicas * step_rate(estimate, workload_running)))
    return {
        names.ESTIMATE_OUTPUT_TOKENS: estimate["output_tokens_per_s"],
        names.ESTIMATE_OUTPUT_TOKENS_LOW: ranged["output_tokens_per_s"][0],
        names.ESTIMATE_OUTPUT_TOKENS_HIGH: ranged["output_tokens_per_s"][1],
        names.ESTIMATE_TTFT_P95: estimate["ttft_p95_ms"] / 1000,
        names.ESTIMATE_TTFT_P95_LOW: ranged["ttft_p95_ms"][0] / 1000,
        names.ESTIMATE_TTFT_P95_HIGH: ranged["ttft_p95_ms"][1] / 1000,
        names.ESTIMATE_TPOT_P95: estimate["tpot_p95_ms"] / 1000,
        names.ESTIMATE_TPOT_P95_LOW: ranged["tpot_p95_ms"][0] / 1000,
        names.ESTIMATE_TPOT_P95_HIGH: ranged["tpot_p95_ms"][1] / 1000,
        names.ESTIMATE_STEP_BASE: per_replica["step_base_ms"] / 1000,
        names.ESTIMATE_STEP_PER_SEQUENCE: per_replica["step_per_sequence_ms"] / 1000,
        names.ESTIMATE_THROUGHPUT_LOW_RATIO: estimate["calibration"]["throughput_band"][0],
        names.ESTIMATE_WORKLOAD_FACTOR: factor,
        names.ESTIMATE_MAX_RUNNING: per_replica["max_running_sequences"],
        names.RECIPE_REPLICAS: replicas,
    }


def constants(group: dict[str, Any]) -> dict[str, float]:
    """The group's constant series by name (the info series aside)."""
    return {
        r["record"]: float(r["expr"][7:-1])
        for r in group["rules"]
        if r["expr"].startswith("vector(") and r["record"] != names.ESTIMATE_INFO
    }


def hand_made_estimate(**changes: Any) -> dict[str, Any]:
    """An estimate in PerformanceEstimate.as_json()'s shape, with round numbers: 2 replicas, a 10 ms + 0.1 ms × n
    decode step, 4 requests/s of 10 s each (20 running per replica)."""
    estimate: dict[str, Any] = {
        "kind": "estimate",
        "output_tokens_per_s": 2500.0,
        "ttft_ms": 400.0,
        "tpot_ms": 20.0,
        "e2e_latency_s": 10.0,
        "ttft_p95_ms": 800.0,
        "tpot_p95_ms": 25.0,
        "requests_per_s": 4.0,
        "range": {
            "output_tokens_per_s": [2250.0, 3000.0],
            "ttft_ms": [380.0, 600.0],
            "tpot_ms": [19.0, 30.0],
            "e2e_latency_s": [9.5, 15.0],
            "ttft_p95_ms": [760.0, 1200.0],
            "tpot_p95_ms": [24.0, 37.5],
        },
        "calibration": {"version": "cal-test", "calibrated": True, "throughput_band": [0.9, 1.2], "latency_band": []},
        "workload": {"inputTokens": 1000, "outputTokens": 250, "concurrency": 40},
        "layout": {"gpu": "MI300X", "gpu_count": 2, "replicas": 2, "tensor_parallel_size": 1},
        "saturation_output_tokens_per_s": 9000.0,
        "per_replica": {
            "max_running_sequences": 256,
            "kv_capacity_sequences": 300,
            "step_base_ms": 10.0,
            "step_per_sequence_ms": 0.1,
        },
    }
    for key, value in changes.items():
        target = estimate
        *path, last = key.split("__")
        for part in path:
            target = target[part]
        target[last] = value
    return estimate


def hand_made_summary(**changes: Any) -> dict[str, Any]:
    return {"recipe_id": "r-tp1", "model": "org/Model-8B", "gpu": "MI300X", "estimate": hand_made_estimate(**changes)}


def test_a_hand_made_estimate_becomes_these_series() -> None:
    group = rules.estimate_group(hand_made_summary(), "aim", 2)
    values = constants(group)
    # 20 running per replica: 20 / (0.010 + 20 × 0.0001) s = 1666.67 tok/s each, 3333.3 for two; 2500 of it.
    assert values[names.ESTIMATE_WORKLOAD_FACTOR] == pytest.approx(0.75)
    assert values == pytest.approx(estimate_values(hand_made_estimate(), 2))
    assert values[names.ESTIMATE_OUTPUT_TOKENS_LOW] == 2250 and values[names.ESTIMATE_TPOT_P95_HIGH] == 0.0375
    assert values[names.ESTIMATE_STEP_BASE] == 0.01 and values[names.ESTIMATE_STEP_PER_SEQUENCE] == 0.0001
    info = next(r for r in group["rules"] if r["record"] == names.ESTIMATE_INFO)
    assert info["labels"]["calibration"] == "cal-test" and info["labels"]["calibrated"] == "true"
    assert group["rules"][-1]["record"] == names.ESTIMATE_AT_LOAD_LOW, "must run after the constants it reads"
    # At the workload's own load (20 running on each replica) the expected low end is the range's low end.
    assert expected_low(hand_made_estimate(), [20, 20]) == pytest.approx(2250)


def test_the_workload_factor_never_raises_the_step_line_and_needs_a_load() -> None:
    assert rules.workload_factor(hand_made_estimate(output_tokens_per_s=9999.0)) == 1.0
    assert rules.workload_factor(hand_made_estimate(requests_per_s=0.0)) == 1.0
    # A queue beyond the running cap counts as the cap: 4 req/s × 200 s = 400 per replica, capped at 256.
    capped = rules.workload_factor(hand_made_estimate(e2e_latency_s=200.0))
    assert capped == pytest.approx(2500 / (2 * 256 / (0.010 + 256 * 0.0001)))


@pytest.mark.parametrize(
    ("changes", "replicas", "message"),
    [
        ({}, 3, "replicas 3: the decision's estimate is for 2"),
        ({"per_replica__step_base_ms": 0.0}, 2, "step_base_ms 0.0"),
        ({"per_replica__step_per_sequence_ms": -1.0}, 2, "step_per_sequence_ms -1.0"),
        ({"calibration__throughput_band": [0.0, 1.2]}, 2, "throughput_band"),
        ({"output_tokens_per_s": float("nan")}, 2, "not a finite number"),
    ],
)
def test_a_bad_estimate_is_refused_with_the_key(changes: dict[str, Any], replicas: int, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        rules.estimate_group(hand_made_summary(**changes), "aim", replicas)


@pytest.mark.parametrize("stack", STACKS)
def test_estimate_series_carry_the_labels_the_engine_puts_on_its_pods(stack: str) -> None:
    ctx = stack_rules(stack)
    group = ctx.estimate_group()
    expected = estimate_values(ctx.summary["estimate"], ctx.replicas)
    assert [rule["record"] for rule in group["rules"]] == [*expected, names.ESTIMATE_INFO, names.ESTIMATE_AT_LOAD_LOW]
    for rule in group["rules"]:
        labels = {"namespace": ctx.namespace, **ctx.labels}
        if rule["record"] == names.ESTIMATE_AT_LOAD_LOW:
            assert "labels" not in rule and f'namespace="{ctx.namespace}"' in rule["expr"]
        elif rule["record"] == names.ESTIMATE_INFO:
            assert labels.items() <= rule["labels"].items()
        else:
            assert rule["labels"] == labels
            assert re.fullmatch(r"vector\([0-9.e+-]+\)", rule["expr"])
    assert constants(group) == pytest.approx(expected)


def test_no_rule_compares_with_a_saturation_figure_or_the_old_roofline() -> None:
    text = rules.rule_file(stack_rules("prod").groups())
    for gone in ("decode_tokens_per_second", "single_stream", "max_concurrent_sequences", "saturation"):
        assert gone not in text


def test_thresholds_follow_the_recipe_metric() -> None:
    latency, throughput = rules.default_thresholds("latency"), rules.default_thresholds("throughput")
    assert latency.ttft_p95_seconds < throughput.ttft_p95_seconds
    for thresholds in (latency, throughput):
        # vLLM reserves --gpu-memory-utilization (0.9) of HBM: the normal state must not page anyone.
        assert thresholds.gpu_memory_usage > 0.9
        assert 0 < thresholds.kv_cache_usage < 1 and 0 < thresholds.throughput_fraction < 1
    with pytest.raises(ValueError, match="latency or throughput"):
        rules.default_thresholds("cost")


def test_alerts_are_scoped_to_the_engine() -> None:
    ctx = stack_rules("prod")
    for rule in ctx.alert_group()["rules"]:
        assert f'namespace="{ctx.namespace}"' in rule["expr"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}
    with pytest.raises(ValueError, match="DNS label"):
        rules.alert_group(namespace="Bad_NS", deployment="x", startup_budget_seconds=600, thresholds=ctx.thresholds)


@pytest.mark.parametrize("stack", STACKS)
def test_the_containers_the_alerts_name_are_the_engine_pod_template_ones(stack: str) -> None:
    ctx = stack_rules(stack)
    template = engine_pod.pod_template(
        EngineNames(ctx.deployment, ctx.namespace),
        {},
        ctx.decision,
        image="localhost:5000/aim-engine@sha256:" + "0" * 64,
        model_id=ctx.settings.model,
        model_revision=ctx.settings.model_revision_or_none,
        proxy_image=DEFAULT_PROXY_IMAGE,
        proxy_config="",
        render_group_id=ctx.settings.render_group_id,
        require_gpu_labels=False,
        cache_access_mode=ctx.settings.cache_access_mode,
    )
    containers = template["spec"]["containers"]
    # The container the alerts select by name is the one holding the GPUs (the other is the API proxy).
    assert [c["name"] for c in containers if "amd.com/gpu" in c["resources"]["limits"]] == [rules.ENGINE_CONTAINER]
    # No alert waits for a download: it runs in a Job of its own (stack/manifests/model_download.py), and the engine
    # pod template has no init container that could still be fetching the model.
    assert "initContainers" not in template["spec"]
    source = (ROOT / "aim_infra" / "stack" / "manifests" / "engine_pod.py").read_text(encoding="utf-8")
    assert "initContainers" not in source


def test_rule_file_is_plain_prometheus_yaml() -> None:
    groups = stack_rules("dev").groups()
    assert yaml.safe_load(rules.rule_file(groups)) == {"groups": groups}
    assert rules.label_value("meta-llama/Llama-3.3-70B-Instruct") == "meta-llama_Llama-3.3-70B-Instruct"


# ------------------------------------------------------------------------------------------------ several models


SERVING_ALERTS = (
    "AimQueueDepthHigh",
    "AimKvCacheNearlyFull",
    "AimTimeToFirstTokenHigh",
    "AimThroughputBelowEstimate",
    "AimPreempting",
)


def two_models() -> list[tuple[str, dict[str, Any]]]:
    """Two engines sharing the namespace `aim`: their deployment name and decision summary (recipes differ)."""
    other = {**hand_made_summary(), "recipe_id": "other-tp1", "model": "org/Other-1B"}
    return [("first", hand_made_summary()), ("second", other)]


def test_two_models_estimate_groups_without_a_deployment_collide_and_with_one_do_not() -> None:
    unscoped = [rules.estimate_group(summary, "aim", 2) for _, summary in two_models()]
    problems = rules.recording_collisions([*rules.recording_groups(), *unscoped])
    # The constants carry each recipe's labels; the at-load rule sums every recipe of the namespace in both.
    assert len(problems) == 1 and problems[0].startswith(names.ESTIMATE_AT_LOAD_LOW), problems
    scoped = [rules.estimate_group(summary, "aim", 2, deployment=name) for name, summary in two_models()]
    assert rules.recording_collisions([*rules.recording_groups(), *scoped]) == []
    assert [g["name"] for g in scoped] == ["aim.estimate.aim.first", "aim.estimate.aim.second"]
    at_load = scoped[1]["rules"][-1]
    assert at_load["record"] == names.ESTIMATE_AT_LOAD_LOW
    assert rules.pinned_labels(at_load) == {"namespace": "aim", "recipe": "other-tp1", "model": "org_Other-1B"}
    # The running requests are vLLM's, which carry no recipe label: they stay selected by namespace alone.
    assert 'vllm:num_requests_running{namespace="aim"}' in at_load["expr"]
    # The recording group declared twice collides on every one of its series.
    twice = rules.recording_collisions([*rules.recording_groups(), *rules.recording_groups()])
    assert len(twice) == len(rules.recording_groups()[0]["rules"])


def test_with_series_labels_the_alerts_read_only_their_models_series() -> None:
    ctx = stack_rules("prod")
    groups = [
        rules.alert_group(
            namespace="aim",
            deployment=name,
            startup_budget_seconds=600,
            thresholds=ctx.thresholds,
            series=rules.model_series_labels(summary),
        )
        for name, summary in two_models()
    ]
    assert [g["name"] for g in groups] == ["aim.alerts.aim.first", "aim.alerts.aim.second"]
    for group, (_, summary) in zip(groups, two_models(), strict=True):
        labels = rules.model_series_labels(summary)
        alerts = {rule["alert"]: rule for rule in group["rules"]}
        assert set(alerts) == set(rules.RUNBOOKS)
        for alert in SERVING_ALERTS:
            for selector in re.findall(r"aim:[a-z_:0-9]+\{[^}]*\}", alerts[alert]["expr"]):
                assert f'recipe="{labels["recipe"]}", model="{labels["model"]}"' in selector, (alert, selector)
    with pytest.raises(ValueError, match="series label pod"):
        rules.alert_group(
            namespace="aim", deployment="x", startup_budget_seconds=600, thresholds=ctx.thresholds, series={"pod": "p"}
        )


def test_without_series_labels_the_rules_are_the_single_model_ones() -> None:
    """One model per namespace (dev, prod): the same groups as before several models existed, byte for byte."""
    ctx = stack_rules("dev")
    assert ctx.alert_group()["name"] == f"aim.alerts.{ctx.namespace}"
    assert ctx.estimate_group()["name"] == f"aim.estimate.{ctx.namespace}"
    at_load = ctx.estimate_group()["rules"][-1]["expr"]
    assert at_load == rules.at_load_low_expr(f'namespace="{ctx.namespace}"')
    assert "recipe=" not in at_load and 'recipe="' not in rules.rule_file([ctx.alert_group()])
    assert rules.recording_collisions(ctx.groups()) == []
