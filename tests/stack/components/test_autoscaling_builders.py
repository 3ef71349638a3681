"""Autoscaling builders, called directly: ScaledObject and InterceptorRoute against our schemas of the pinned CRDs, the
wake Service under `kubernetes-validate --strict`, the PromQL under promtool, the per-replica target from real
estimates, and the pins and values of the KEDA chart and its HTTP add-on's."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

from aim_infra.common.errors import AimError
from aim_infra.planning.compat import layout_of
from aim_infra.planning.hardware import load_gpus
from aim_infra.planning.model_profile import load_model_catalogue
from aim_infra.planning.performance import PerformanceEstimate, estimate_performance
from aim_infra.planning.selection import Decision, Selector
from aim_infra.planning.workload import Workload
from aim_infra.stack.manifests import autoscaling
from aim_infra.stack.manifests.addon_pins import KEDA, KEDA_HTTP_ADDON, KUBE_PROMETHEUS_STACK
from aim_infra.stack.manifests.addon_values import (
    HTTP_ADDON_RESOURCES,
    KEDA_RESOURCES,
    http_addon_interceptor_labels,
    http_addon_values,
    keda_values,
    release_spec,
)
from aim_infra.stack.manifests.autoscaling import (
    cold_start_seconds,
    http_scaler_address,
    in_flight_per_replica,
    in_flight_query,
    interceptor_host,
    interceptor_route,
    kv_cache_query,
    prometheus_address,
    scale_down_window_seconds,
    scale_up_period_seconds,
    scaled_object,
    target_concurrency,
    wake_host,
    wake_labels,
    wake_service,
    wake_url,
)
from aim_infra.stack.manifests.engine import selector_labels as engine_selector_labels
from aim_infra.stack.manifests.sizing import POD_START_SLACK_SECONDS
from tests.planning.monitoring.support import tool
from tests.stack import scaledobject_schema as schemas
from tests.stack.components.test_addon_builders import assert_evidence, missing_keys

ROOT = Path(__file__).resolve().parents[3]
NAMESPACE = "aim"
SERVED = "meta-llama/Llama-3.1-8B-Instruct"
SELECTOR = Selector()
MODELS = load_model_catalogue()
MI300X = load_gpus().get("MI300X")


def build(**overrides: Any) -> dict[str, Any]:
    """A ScaledObject of a model planned at 3 replicas with GPUs reserved for 4."""
    args: dict[str, Any] = {
        "namespace": NAMESPACE,
        "name": "chat",
        "deployment": "chat",
        "served_model_name": SERVED,
        "min_replicas": 1,
        "max_replicas": 4,
        "reserved_replicas": 4,
        "target": 16,
        "startup_budget_seconds": 900,
        "prometheus": prometheus_address(),
        "scale_to_zero": False,
        **overrides,
    }
    if args["scale_to_zero"] and "scaler_address" not in overrides:
        args["scaler_address"] = http_scaler_address("keda")
    return scaled_object(**args)


def to_zero(**overrides: Any) -> dict[str, Any]:
    return build(min_replicas=0, scale_to_zero=True, **overrides)


def route(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "namespace": NAMESPACE,
        "name": "chat",
        "service": "chat",
        "port": 8000,
        "hosts": ["chat.aim.internal"],
        "target": 16,
        "startup_budget_seconds": 900,
        **overrides,
    }
    return interceptor_route(**args)


def schema_errors(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def cel_failures(spec: dict[str, Any]) -> list[str]:
    """The CRD's CEL rules on `spec`, evaluated as the API server would (an error counts as a failure)."""
    env = celpy.Environment()
    failed = []
    for message, rule in schemas.SPEC_CEL_RULES.items():
        try:
            outcome = env.program(env.compile(rule)).evaluate({"self": celpy.json_to_cel(spec)})
        except celpy.CELEvalError as error:
            failed.append(f"{message} (error: {error})")
            continue
        if not (isinstance(outcome, celpy.celtypes.BoolType) and bool(outcome)):
            failed.append(message)
    return failed


def assert_valid_scaled_object(manifest: dict[str, Any]) -> None:
    assert schema_errors(manifest, schemas.SCALED_OBJECT) == []
    assert cel_failures(manifest["spec"]) == []
    for trigger in manifest["spec"]["triggers"]:
        assert all(isinstance(value, str) for value in trigger["metadata"].values()), trigger["name"]


def test_the_builders_load_no_pulumi() -> None:
    modules = "aim_infra.stack.manifests.autoscaling, aim_infra.stack.manifests.addon_values"
    code = f"import sys, {modules}; print([m for m in sys.modules if 'pulumi' in m])"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


# --- the ScaledObject: shape, schema, CEL --------------------------------------------------------------------------


@pytest.mark.parametrize("zero", [False, True], ids=["min-1", "scale-to-zero"])
def test_the_scaled_object_validates_against_the_pinned_crd(zero: bool) -> None:
    manifest = to_zero() if zero else build()
    assert_valid_scaled_object(manifest)
    assert (manifest["apiVersion"], manifest["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    spec = manifest["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"}
    assert spec["pollingInterval"] == 15
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == ((0, 4) if zero else (1, 4))


def test_the_requests_trigger_divides_held_requests_by_the_per_replica_target() -> None:
    requests, kv = build(target=24)["spec"]["triggers"]
    assert requests == {
        "type": "prometheus",
        "name": "vllm-requests",
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": "http://kube-prometheus-stack-prometheus.monitoring.svc:9090",
            "query": (
                'sum(vllm:num_requests_running{namespace="aim",model_name="meta-llama/Llama-3.1-8B-Instruct"}) + '
                'sum(vllm:num_requests_waiting{namespace="aim",model_name="meta-llama/Llama-3.1-8B-Instruct"})'
            ),
            "threshold": "24",
            "activationThreshold": "0",
            "ignoreNullValues": "true",
        },
    }
    assert kv["metricType"] == "Value"
    assert kv["metadata"]["threshold"] == "0.9"
    assert kv["metadata"]["query"] == (
        'max(vllm:kv_cache_usage_perc{namespace="aim",model_name="meta-llama/Llama-3.1-8B-Instruct"})'
    )


def test_scale_to_zero_only_when_asked_and_then_woken_from_in_front() -> None:
    warm = build()["spec"]
    assert warm["minReplicaCount"] >= 1
    assert "cooldownPeriod" not in warm and "initialCooldownPeriod" not in warm
    assert [t["type"] for t in warm["triggers"]] == ["prometheus", "prometheus"]
    cold = to_zero(startup_budget_seconds=900)["spec"]
    assert cold["minReplicaCount"] == 0
    assert cold["cooldownPeriod"] == 1800
    # A fresh deployment is kept through its first start and one idle period (pulumi up's wait, the smoke test).
    assert cold["initialCooldownPeriod"] == cold_start_seconds(900) + 1800
    http = cold["triggers"][-1]
    assert http == {
        "type": "external-push",
        "name": "http-requests",
        "metadata": {"scalerAddress": "keda-add-ons-http-external-scaler.keda:9090", "interceptorRoute": "chat"},
    }
    assert cold["triggers"][:2] == warm["triggers"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"max_replicas": 5}, "chat: max replicas 5 is above the 4 replicas the plan reserved GPUs for"),
        ({"max_replicas": 2, "min_replicas": 3}, "chat: max replicas 2 is below min 3"),
        ({"min_replicas": 0}, "chat: min replicas 0 with scale-to-zero off"),
        ({"scale_to_zero": True}, "chat: min replicas 1 with scale-to-zero on"),
        ({"min_replicas": 0, "scale_to_zero": True, "scaler_address": None}, "needs the HTTP add-on's scaler"),
        ({"target": 0}, "chat: target 0 requests per replica"),
        ({"startup_budget_seconds": 0}, "chat: startup budget 0 s"),
        ({"name": "Chat_1"}, "model name 'Chat_1' is not a DNS-1123 label"),
    ],
)
def test_bounds_the_plan_cannot_honour_are_one_line_errors(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(AimError) as raised:
        build(**overrides)
    message = str(raised.value)
    assert expected in message and "\n" not in message


def test_max_at_the_reserved_replicas_is_accepted() -> None:
    assert build(max_replicas=4, reserved_replicas=4)["spec"]["maxReplicaCount"] == 4
    assert build(min_replicas=4, max_replicas=4, reserved_replicas=4)["spec"]["minReplicaCount"] == 4


def test_the_schema_and_cel_checks_catch_what_they_should() -> None:
    """Each check fails on a manifest broken in its way: the test above cannot pass by accident."""
    good = build()

    def broken(change: Any) -> dict[str, Any]:
        manifest = copy.deepcopy(good)
        change(manifest)
        return manifest

    def set_threshold(m: dict[str, Any]) -> None:
        m["spec"]["triggers"][0]["metadata"]["threshold"] = 5

    def misspell(m: dict[str, Any]) -> None:
        m["spec"]["cooldownPeriode"] = 300

    def long_window(m: dict[str, Any]) -> None:
        m["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
            "stabilizationWindowSeconds"
        ] = 3601

    def long_period(m: dict[str, Any]) -> None:
        m["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["policies"][0][
            "periodSeconds"
        ] = 3600

    def old_parameter(m: dict[str, Any]) -> None:
        m["spec"]["triggers"][0]["metadata"]["metricName"] = "vllm"

    def no_server(m: dict[str, Any]) -> None:
        del m["spec"]["triggers"][1]["metadata"]["serverAddress"]

    def wrong_version(m: dict[str, Any]) -> None:
        m["apiVersion"] = "keda.sh/v1beta1"

    for change in (set_threshold, misspell, long_window, long_period, old_parameter, no_server, wrong_version):
        assert schema_errors(broken(change), schemas.SCALED_OBJECT), change.__name__
    assert cel_failures({**good["spec"], "minReplicaCount": 5, "maxReplicaCount": 4})
    assert cel_failures({"minReplicaCount": 101, "triggers": []}), "max defaults to 100"
    assert cel_failures({"minReplicaCount": 100, "triggers": []}) == []


@pytest.mark.parametrize("budget", [1, 30, 60, 299, 900, 1800, 3599, 3600, 3601, 100_000])
def test_windows_respect_the_startup_budget_within_the_apis_bounds(budget: int) -> None:
    manifest = to_zero(startup_budget_seconds=budget)
    assert_valid_scaled_object(manifest)
    behavior = manifest["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    up, down = behavior["scaleUp"], behavior["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 0
    assert 0 <= down["stabilizationWindowSeconds"] <= 3600
    assert down["stabilizationWindowSeconds"] == min(3600, max(300, budget))
    [policy] = up["policies"]
    assert 1 <= policy["periodSeconds"] <= 1800
    # A new replica's budget passes before the next scale-up step, as far as the HPA's 30-minute limit allows.
    assert policy["periodSeconds"] == min(1800, max(60, budget))
    assert policy["periodSeconds"] >= min(budget, 1800)
    assert (policy["type"], policy["value"]) == ("Percent", 100)
    assert scale_up_period_seconds(budget) == policy["periodSeconds"]
    assert scale_down_window_seconds(budget) == down["stabilizationWindowSeconds"]


def test_tiny_and_huge_budgets_hit_the_floors_and_ceilings() -> None:
    assert (scale_up_period_seconds(1), scale_down_window_seconds(1)) == (60, 300)
    assert (scale_up_period_seconds(100_000), scale_down_window_seconds(100_000)) == (1800, 3600)


# --- the InterceptorRoute and the cold start ------------------------------------------------------------------------


def test_the_interceptor_route_validates_and_waits_out_a_cold_start() -> None:
    manifest = route(startup_budget_seconds=1200)
    assert schema_errors(manifest, schemas.INTERCEPTOR_ROUTE) == []
    spec = manifest["spec"]
    assert spec["target"] == {"service": "chat", "port": 8000}
    assert spec["rules"] == [{"hosts": ["chat.aim.internal"]}]
    assert spec["scalingMetric"] == {"concurrency": {"targetValue": 16}}
    assert spec["timeouts"] == {"readiness": f"{cold_start_seconds(1200)}s", "responseHeader": "3600s"}
    assert "request" not in spec["timeouts"], "no overall deadline: a long completion must not be cut"
    # Longer than the add-on's default response-header timeout (300 s), which would cut long non-streamed answers.
    assert autoscaling.RESPONSE_HEADER_TIMEOUT_SECONDS > 300
    # The route the ScaledObject's trigger names is this one.
    assert to_zero()["spec"]["triggers"][-1]["metadata"]["interceptorRoute"] == manifest["metadata"]["name"]


def test_the_route_schema_catches_what_it_should() -> None:
    good = route()
    both_ports = copy.deepcopy(good)
    both_ports["spec"]["target"]["portName"] = "http"
    no_metric = copy.deepcopy(good)
    del no_metric["spec"]["scalingMetric"]
    bad_duration = copy.deepcopy(good)
    bad_duration["spec"]["timeouts"]["responseHeader"] = "3600"
    for broken in (both_ports, no_metric, bad_duration):
        assert schema_errors(broken, schemas.INTERCEPTOR_ROUTE)
    with pytest.raises(AimError, match="at least one host"):
        route(hosts=[])
    with pytest.raises(AimError, match="port 70000"):
        route(port=70000)


def test_a_route_takes_only_the_openai_api_of_its_wake_host() -> None:
    """The router polls every backend's /metrics: a route without a path would count those polls as requests, so a
    model at zero would be woken every 15 s. With the /v1 prefix the poll matches no route (the interceptor's 404)."""
    manifest = route(hosts=[wake_host(NAMESPACE, "chat")], paths=[autoscaling.WAKE_PATH_PREFIX])
    assert schema_errors(manifest, schemas.INTERCEPTOR_ROUTE) == []
    assert manifest["spec"]["rules"] == [{"hosts": ["chat-wake.aim.svc"], "paths": [{"value": "/v1"}]}]
    # The interceptor matches the Host header without its port against the route's hosts: the URL the router dials.
    assert wake_url(NAMESPACE, "chat") == "http://chat-wake.aim.svc:8080"
    assert (
        wake_url(NAMESPACE, "chat").removeprefix("http://").rsplit(":", 1)[0] in manifest["spec"]["rules"][0]["hosts"]
    )
    with pytest.raises(AimError, match="start with '/'"):
        route(paths=["v1"])
    empty_path = copy.deepcopy(manifest)
    empty_path["spec"]["rules"][0]["paths"] = [{"value": ""}]
    assert schema_errors(empty_path, schemas.INTERCEPTOR_ROUTE)


def test_the_wake_service_names_the_interceptor_for_one_model() -> None:
    manifest = wake_service(namespace=NAMESPACE, model="chat", addon_namespace="keda", labels=wake_labels("chat"))
    kubernetes_validate.validate(manifest, "1.30", strict=True)
    assert manifest["metadata"]["name"] == "chat-wake" and manifest["metadata"]["namespace"] == NAMESPACE
    spec = manifest["spec"]
    # A CNAME target is never completed with search domains: the interceptor's name is written out whole.
    assert spec == {
        "type": "ExternalName",
        "externalName": "keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    assert interceptor_host("keda") == spec["externalName"]
    # The model's ServiceMonitor selects Services by the engine's selector labels: never this one.
    selector = engine_selector_labels("chat")
    assert not selector.items() <= manifest["metadata"]["labels"].items()
    assert "selector" not in spec
    long_name = "m" * 60
    with pytest.raises(AimError, match="wake Service"):
        wake_service(namespace=NAMESPACE, model=long_name, addon_namespace="keda")
    with pytest.raises(AimError, match="add-on namespace"):
        wake_service(namespace=NAMESPACE, model="chat", addon_namespace="KEDA")
    # kubernetes-validate would refuse a broken one: the check above can fail.
    broken = copy.deepcopy(manifest)
    broken["spec"]["externalNames"] = broken["spec"].pop("externalName")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30", strict=True)


def test_cold_start_is_the_startup_budget_plus_pod_start_and_one_poll() -> None:
    assert cold_start_seconds(900) == 900 + POD_START_SLACK_SECONDS + 15
    assert cold_start_seconds(60) < cold_start_seconds(61)
    with pytest.raises(AimError):
        cold_start_seconds(0)


# --- the PromQL under promtool ----------------------------------------------------------------------------------------

ODD = 'odd "name" \\ with quotes'  # escaping: a served model name is free text


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def rule_file(served: str) -> str:
    rules = [
        {"record": "aim_test:in_flight", "expr": in_flight_query(NAMESPACE, served)},
        {"record": "aim_test:kv_cache_max", "expr": kv_cache_query(NAMESPACE, served)},
    ]
    return yaml.safe_dump({"groups": [{"name": "autoscaling", "rules": rules}]}, sort_keys=False)


def series(name: str, labels: dict[str, str], value: float) -> dict[str, str]:
    """A constant series; label values escaped as PromQL strings (promtool parses series as PromQL selectors)."""
    rendered = ",".join(f"{key}={autoscaling._promql_string(text)}" for key, text in labels.items())
    return {"series": f"{name}{{{rendered}}}", "values": f"{value:g}x10"}


def engine(served: str, pod: str, namespace: str = NAMESPACE) -> dict[str, str]:
    """The labels of a vLLM series as the ServiceMonitor scrapes it."""
    return {"job": "chat-metrics", "namespace": namespace, "pod": pod, "model_name": served, "engine": "0"}


def expect(record: str, value: float | None) -> dict[str, Any]:
    """The recorded series at 5 minutes: one sample of `value`, or none."""
    samples = [] if value is None else [{"labels": record, "value": value}]
    return {"expr": record, "eval_time": "5m", "exp_samples": samples}


def promtool_cases(served: str) -> dict[str, Any]:
    """Two replicas of the model; the router's same-named series (label `server`, no `model_name`), another model
    in the namespace and the same model in another namespace, none of which may count."""
    a, b = engine(served, "chat-5d9f-a"), engine(served, "chat-5d9f-b")
    router = {"job": "router", "namespace": NAMESPACE, "pod": "router-7c8d-x", "server": "http://10.0.0.7:8000"}
    other_model = engine("Qwen/Qwen2.5-7B-Instruct", "coder-6f7a-c")
    other_namespace = engine(served, "chat-1a2b-d", namespace="staging")
    own = [
        series("vllm:num_requests_running", a, 12),
        series("vllm:num_requests_waiting", a, 3),
        series("vllm:num_requests_running", b, 9),
        series("vllm:num_requests_waiting", b, 0),
        series("vllm:kv_cache_usage_perc", a, 0.42),
        series("vllm:kv_cache_usage_perc", b, 0.97),
    ]
    others = [
        series("vllm:num_requests_running", router, 500),
        series("vllm:num_requests_waiting", router, 400),
        series("vllm:num_requests_running", other_model, 70),
        series("vllm:num_requests_waiting", other_model, 7),
        series("vllm:kv_cache_usage_perc", other_model, 1),
        series("vllm:num_requests_running", other_namespace, 40),
        series("vllm:num_requests_waiting", other_namespace, 4),
        series("vllm:kv_cache_usage_perc", other_namespace, 0.99),
    ]
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "two replicas, with look-alike series around them",
                "interval": "1m",
                "input_series": own + others,
                "promql_expr_test": [
                    expect("aim_test:in_flight", 24),  # 12 + 3 + 9 + 0
                    expect("aim_test:kv_cache_max", 0.97),
                ],
            },
            {
                # At zero replicas only the others export: no sample, which KEDA (ignoreNullValues) reads as 0.
                "name": "scaled to zero",
                "interval": "1m",
                "input_series": copy.deepcopy(others),  # no YAML aliases in the test file
                "promql_expr_test": [
                    expect("aim_test:in_flight", None),
                    expect("aim_test:kv_cache_max", None),
                ],
            },
        ],
    }


@pytest.mark.parametrize("served", [SERVED, ODD], ids=["model-id", "quoted"])
def test_promtool_accepts_the_queries(served: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(rule_file(served), encoding="utf-8")
    result = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rules found" in result.stdout


@pytest.mark.parametrize("served", [SERVED, ODD], ids=["model-id", "quoted"])
def test_the_queries_count_only_the_models_own_replicas(served: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(rule_file(served), encoding="utf-8")
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(promtool_cases(served), sort_keys=False), encoding="utf-8")
    result = run_promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_would_catch_a_query_that_counts_the_router(tmp_path: Path) -> None:
    """The evaluation test fails when the model_name filter is dropped: it is not passing by accident."""
    unfiltered = rule_file(SERVED).replace(f',model_name="{SERVED}"', "")
    assert unfiltered != rule_file(SERVED)
    (tmp_path / "rules.yaml").write_text(unfiltered, encoding="utf-8")
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(promtool_cases(SERVED), sort_keys=False), encoding="utf-8")
    result = run_promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert result.returncode != 0 and "aim_test:in_flight" in result.stdout + result.stderr


# --- the target from the performance model ----------------------------------------------------------------------------


def select(model: str, workload: Workload | None) -> Decision:
    return SELECTOR.select(MODELS.get(model), MI300X, 8, workload=workload)


def estimate_at(decision: Decision, workload: Workload, replicas: int) -> PerformanceEstimate:
    """The decision's recipe at another replica count, as joint planning estimates it."""
    layout = layout_of(decision.recipe, MI300X, SELECTOR.rules, decision.recipe.max_model_len)
    return estimate_performance(decision.model, MI300X, layout, decision.fit, workload, replicas, SELECTOR.performance)


@pytest.mark.parametrize(
    ("model", "workload"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", Workload(concurrency=256, ttft_p95_ms=500, tpot_p95_ms=30)),
        ("meta-llama/Llama-3.3-70B-Instruct", Workload(concurrency=64, ttft_p95_ms=2000, tpot_p95_ms=60)),
    ],
    ids=["8b", "70b"],
)
def test_the_target_is_the_planned_share_when_the_slo_is_met(model: str, workload: Workload) -> None:
    estimate = select(model, workload).estimate
    assert estimate.meets_slo and workload.concurrency is not None
    share = workload.concurrency / estimate.replicas
    assert in_flight_per_replica(estimate) == pytest.approx(share)
    target = target_concurrency(estimate)
    assert target == min(math.ceil(share), estimate.max_running_per_replica)
    # The planned load asks the autoscaler for no more than the planned replicas.
    assert math.ceil(workload.concurrency / target) <= estimate.replicas


def test_an_open_loop_target_follows_littles_law() -> None:
    workload = Workload(requests_per_second=8, ttft_p95_ms=1000, tpot_p95_ms=50)
    estimate = select("meta-llama/Llama-3.1-8B-Instruct", workload).estimate
    assert estimate.meets_slo
    held = 8 * estimate.e2e_latency_s / estimate.replicas
    assert target_concurrency(estimate) == min(math.ceil(held), estimate.max_running_per_replica)


def test_a_missed_slo_shrinks_the_target_so_the_autoscaler_adds_replicas() -> None:
    workload = Workload(concurrency=256, ttft_p95_ms=500, tpot_p95_ms=30)
    decision = select("meta-llama/Llama-3.1-8B-Instruct", workload)
    assert decision.estimate.replicas >= 2, "the workload needs more than one replica"
    for replicas in range(1, decision.estimate.replicas):
        short = estimate_at(decision, workload, replicas)
        assert not short.meets_slo
        share = 256 / replicas
        target = target_concurrency(short)
        assert 1 <= target < share
        assert math.ceil(256 / target) > replicas, "at the planned load, more replicas are wanted"
        # Only TPOT is missed here: the line from the decode step's base through the estimate.
        assert all(v.startswith("TPOT") for v in short.slo_violations)
        line = share * (30 - short.step_base_ms) / (short.tpot_p95_ms - short.step_base_ms)
        assert target == math.floor(line)


def test_the_target_is_never_below_one_nor_above_the_running_cap() -> None:
    default = select("meta-llama/Llama-3.1-8B-Instruct", None)  # the default workload: throughput, 64 clients
    assert 1 <= target_concurrency(default.estimate) <= default.estimate.max_running_per_replica
    lonely = SELECTOR.select(MODELS.get("meta-llama/Llama-3.1-8B-Instruct"), MI300X, 8, metric="latency")
    assert in_flight_per_replica(lonely.estimate) < 1  # one client over several replicas
    assert target_concurrency(lonely.estimate) == 1
    crowded = estimate_at(lonely, Workload(concurrency=5000), 1)
    assert crowded.meets_slo and target_concurrency(crowded) == crowded.max_running_per_replica < 5000
    hopeless = estimate_at(lonely, Workload(concurrency=512, tpot_p95_ms=1), 1)
    assert target_concurrency(hopeless) == 1  # a TPOT target below one decode step


# --- the KEDA chart: pin and values ---------------------------------------------------------------------------------


def test_keda_is_pinned_with_its_evidence() -> None:
    assert (KEDA.chart, KEDA.version, KEDA.repo) == ("keda", "2.20.2", "https://kedacore.github.io/charts")
    assert (KEDA.release_name, KEDA.namespace) == ("keda", "keda")
    assert_evidence("KEDA", KEDA.evidence)
    assert KEDA.evidence.url.endswith(f"/releases/tag/v{KEDA.version}")


#: The keys keda_values sets, as kedacore/charts keda/values.yaml at tag v2.20.2 defines them (read on 2026-12-05 from
#: the search tool's snapshot of the repository); `{}` is free-form there.
KEDA_VALUES_KEYS: dict[str, Any] = {
    "crds": {"install": True, "additionalAnnotations": {}},
    "watchNamespace": "",
    "image": {"pullPolicy": "Always"},
    "rbac": {
        "create": True,
        "aggregateToDefaultRoles": False,
        "enabledCustomScaledRefKinds": True,
        "controlPlaneServiceAccountsNamespace": "kube-system",
        "scaledRefKinds": [{"apiGroup": "*", "kind": "*"}],
    },
    "permissions": {
        "metricServer": {"restrict": {"secret": False}},
        "operator": {
            "restrict": {
                "secret": False,
                "namesAllowList": [],
                "serviceAccountTokenCreationRoles": [],
                "allowAllServiceAccountTokenCreation": False,
            }
        },
    },
    "resources": {
        pod: {"limits": {"cpu": 1, "memory": "1000Mi"}, "requests": {"cpu": "100m", "memory": "100Mi"}}
        for pod in ("operator", "metricServer", "webhooks")
    },
    "prometheus": {
        "operator": {
            "enabled": False,
            "port": 8080,
            "serviceMonitor": {
                "enabled": False,
                "jobLabel": "",
                "targetLabels": [],
                "podTargetLabels": [],
                "port": "metrics",
                "targetPort": "",
                "interval": "",
                "scrapeTimeout": "",
                "relabelings": [],
                "metricRelabelings": [],
                "additionalLabels": {},
                "scheme": "http",
                "tlsConfig": {},
            },
        }
    },
}


@pytest.mark.parametrize("monitoring", [True, False])
def test_keda_values_exist_in_the_pinned_chart(monitoring: bool) -> None:
    values = keda_values([NAMESPACE], monitoring=monitoring)
    assert list(missing_keys(values, KEDA_VALUES_KEYS, "", False)) == []
    assert list(missing_keys({"rbac": {"enableCustomScaledRefKinds": False}}, KEDA_VALUES_KEYS, "", False)) == [
        "rbac.enableCustomScaledRefKinds"
    ]


def test_keda_installs_its_crds_and_no_more_cluster_power_than_it_needs() -> None:
    values = keda_values(["aim", "aim-staging", "aim"], monitoring=True)
    assert values["crds"] == {"install": True}
    assert values["watchNamespace"] == "aim,aim-staging"  # RoleBindings there, no ClusterRoleBinding
    assert values["rbac"] == {"enabledCustomScaledRefKinds": False}  # no `*/scale` over every API group
    assert values["permissions"]["operator"]["restrict"]["secret"] is True
    assert values["permissions"]["metricServer"]["restrict"]["secret"] is True
    assert values["resources"] == KEDA_RESOURCES
    assert set(KEDA_RESOURCES) == {"operator", "metricServer", "webhooks"}
    operator = values["prometheus"]["operator"]
    assert operator["enabled"] is True
    assert operator["serviceMonitor"] == {
        "enabled": True,
        "additionalLabels": {"release": KUBE_PROMETHEUS_STACK.release_name},
    }
    assert keda_values(["aim"], monitoring=False)["prometheus"]["operator"]["serviceMonitor"]["enabled"] is False
    with pytest.raises(ValueError):
        keda_values([], monitoring=True)


def test_the_keda_release_installs_the_pinned_chart() -> None:
    spec = release_spec(KEDA, keda_values([NAMESPACE], monitoring=True))
    assert (spec["name"], spec["chart"], spec["version"], spec["namespace"]) == ("keda", "keda", "2.20.2", "keda")
    assert spec["repositoryOpts"] == {"repo": "https://kedacore.github.io/charts"}
    assert spec["skipAwait"] is False


# --- the KEDA HTTP add-on's chart: pin and values -------------------------------------------------------------------


def test_the_http_add_on_is_pinned_with_its_evidence() -> None:
    pin = KEDA_HTTP_ADDON
    assert (pin.chart, pin.version, pin.repo) == ("keda-add-ons-http", "0.15.0", "https://kedacore.github.io/charts")
    assert (pin.release_name, pin.namespace) == ("keda-add-ons-http", KEDA.namespace)
    assert_evidence("KEDA HTTP add-on", pin.evidence)
    # No tag carries the chart after 0.12.2: the evidence is the release commit's Chart.yaml.
    assert pin.evidence.url == (
        "https://github.com/kedacore/charts/blob/c4b92e9eed0ddc6668b1395d5f137e3ad4baa3d4/http-add-on/Chart.yaml"
    )
    # The Services the chart names after itself (not after the release), which the builders address.
    assert http_scaler_address(pin.namespace) == "keda-add-ons-http-external-scaler.keda:9090"
    assert interceptor_host(pin.namespace).startswith("keda-add-ons-http-interceptor-proxy.keda.svc.")


#: The keys http_addon_values sets and their siblings, as kedacore/charts http-add-on/values.yaml at the 0.15.0
#: release commit (c4b92e9e) defines them (read on 2026-12-06 from the search tool's snapshot of the repository).
HTTP_ADDON_VALUES_KEYS: dict[str, Any] = {
    "crds": {"install": True},
    "operator": {
        "extraEnvs": {},
        "replicas": 1,
        "imagePullSecrets": [],
        "watchNamespace": "",
        "pullPolicy": "Always",
        "resources": {"limits": {"cpu": 0.5, "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "20Mi"}},
        "port": 8443,
        "nodeSelector": {},
        "tolerations": [],
        "affinity": {},
        "topologySpreadConstraints": [],
        "podAnnotations": {},
        "metrics": {"secure": True, "auth": True, "certDir": ""},
    },
    "scaler": {
        "extraEnvs": {},
        "replicas": 3,
        "imagePullSecrets": [],
        "service": "external-scaler",
        "pullPolicy": "Always",
        "grpcPort": 9090,
        "pendingRequestsInterceptor": 200,
        "streamInterval": 200,
        "nodeSelector": {},
        "tolerations": [],
        "affinity": {},
        "topologySpreadConstraints": [],
        "resources": {"limits": {"cpu": 0.5, "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "20Mi"}},
        "podAnnotations": {},
    },
    "interceptor": {
        "extraEnvs": {},
        "imagePullSecrets": [],
        "pullPolicy": "Always",
        "admin": {"service": "interceptor-admin", "port": 9090, "appProtocol": ""},
        "proxy": {"service": "interceptor-proxy", "port": 8080, "appProtocol": ""},
        "replicas": {"min": 3, "max": 50, "waitTimeout": ""},
        "scaledObject": {"pollingInterval": 1},
        "shutdownDelay": "5s",
        "drainTimeout": "30s",
        "terminationGracePeriodSeconds": 45,
        "requestTimeout": "",
        "responseHeaderTimeout": "",
        "readinessTimeout": "",
        "tcpConnectTimeout": "",
        "maxIdleConns": 1000,
        "maxIdleConnsPerHost": 200,
        "nodeSelector": {},
        "tolerations": [],
        "affinity": {},
        "topologySpreadConstraints": [],
        "resources": {"limits": {"cpu": 0.5, "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "20Mi"}},
        "podAnnotations": {},
        "pdb": {"enabled": True, "minAvailable": 0, "maxUnavailable": 1},
    },
}


def test_http_add_on_values_exist_in_the_pinned_chart() -> None:
    values = http_addon_values(KEDA_HTTP_ADDON.release_name)
    assert list(missing_keys(values, HTTP_ADDON_VALUES_KEYS, "", False)) == []
    assert list(missing_keys({"interceptor": {"replica": {"min": 2}}}, HTTP_ADDON_VALUES_KEYS, "", False)) == [
        "interceptor.replica"
    ]
    # The Service names and the port the builders address are the chart's defaults, which we leave alone.
    assert "proxy" not in values["interceptor"] and "service" not in values["scaler"]
    proxy = HTTP_ADDON_VALUES_KEYS["interceptor"]["proxy"]
    assert f"{KEDA_HTTP_ADDON.chart}-{proxy['service']}" == autoscaling.HTTP_ADDON_INTERCEPTOR_SERVICE
    assert proxy["port"] == autoscaling.HTTP_ADDON_INTERCEPTOR_PORT
    scaler = HTTP_ADDON_VALUES_KEYS["scaler"]
    assert f"{KEDA_HTTP_ADDON.chart}-{scaler['service']}" == autoscaling.HTTP_ADDON_SCALER_SERVICE
    assert scaler["grpcPort"] == autoscaling.HTTP_ADDON_SCALER_PORT


def test_the_http_add_on_runs_no_operator_and_no_single_interceptor() -> None:
    values = http_addon_values("keda-add-ons-http")
    assert values["crds"] == {"install": True}
    # No operator, so no ClusterRole that creates and deletes ScaledObjects everywhere (we write ours).
    assert values["operator"] == {"replicas": 0}
    interceptor = values["interceptor"]
    assert interceptor["replicas"]["min"] >= 2 and interceptor["replicas"]["max"] >= interceptor["replicas"]["min"]
    assert values["scaler"]["replicas"] >= 2
    # The chart requires grace ≥ shutdown delay + drain; in-flight answers get the engine's 120 s.
    delay, drain = (int(interceptor[key].removesuffix("s")) for key in ("shutdownDelay", "drainTimeout"))
    assert delay + drain <= interceptor["terminationGracePeriodSeconds"] == 120
    assert interceptor["resources"] == HTTP_ADDON_RESOURCES["interceptor"]
    assert interceptor["resources"]["limits"]["memory"] == "256Mi"
    assert values["scaler"]["resources"] == HTTP_ADDON_RESOURCES["scaler"]
    assert {interceptor["pullPolicy"], values["scaler"]["pullPolicy"]} == {"IfNotPresent"}
    [spread] = interceptor["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway" and spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"] == {"matchLabels": http_addon_interceptor_labels("keda-add-ons-http")}
    # No global timeouts: the routes carry their own.
    assert not {"requestTimeout", "responseHeaderTimeout", "readinessTimeout"} & interceptor.keys()


def test_the_interceptor_labels_are_the_ones_its_chart_sets() -> None:
    """Chart 0.15.0's interceptor pods: component and name from templates/interceptor/deployment.yaml, part-of (the
    chart's name) and instance (the release's) from the matchLabels helper in templates/_helpers.tpl."""
    assert http_addon_interceptor_labels("keda-add-ons-http") == {
        "app.kubernetes.io/component": "interceptor",
        "app.kubernetes.io/name": "http-add-on",
        "app.kubernetes.io/part-of": "keda-add-ons-http",
        "app.kubernetes.io/instance": "keda-add-ons-http",
    }


def test_the_http_add_on_release_installs_the_pinned_chart() -> None:
    spec = release_spec(KEDA_HTTP_ADDON, http_addon_values(KEDA_HTTP_ADDON.release_name))
    assert (spec["name"], spec["chart"], spec["version"], spec["namespace"]) == (
        "keda-add-ons-http",
        "keda-add-ons-http",
        "0.15.0",
        "keda",
    )
    assert spec["repositoryOpts"] == {"repo": "https://kedacore.github.io/charts"}
    assert spec["skipAwait"] is False and spec["createNamespace"] is False
