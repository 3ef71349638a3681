"""Several models behind one router (aim:models): the whole program under mocks for the 3-model stack
Pulumi.multi.yaml (chat, small and mid on one 8 × MI300X node, each autoscaled between 1 and 2 replicas)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from aim_infra.common.errors import AimError
from aim_infra.planning.monitoring import dashboards, names, rules
from aim_infra.stack.plan import Declared, PlanResult, kubernetes_objects, load_stack_config, run_stack
from tests.planning.monitoring.test_rules_promtool import const, expected_alerts, growing, run_promtool, series
from tests.stack import scaledobject_schema as schemas
from tests.stack.components.test_autoscaling_builders import assert_valid_scaled_object, schema_errors
from tests.stack.components.test_router_builders import ROUTER_OPTIONS, parse, router_keeps, static_pairs
from tests.stack.test_manifests import CRD_GROUPS, KUBERNETES_VERSION

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["chat", "small", "mid"]
NAMESPACE = "aim-models"
ROUTER = "aim-router"
ENGINE_TYPE = "aim:infra:AimEngine"
SCALED_OBJECT_TYPE = "kubernetes:keda.sh/v1alpha1:ScaledObject"
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"
#: The example's node: aim:gpu MI300X × aim:gpuCount 8.
NODE_GPUS = 8


def example_config(**changes: dict[str, Any]) -> dict[str, str]:
    """Pulumi.multi.yaml's config as the engine hands it over, each named model's entry updated with `changes[name]`
    (a value None removes the key)."""
    config, _ = load_stack_config("multi", ROOT)
    models = json.loads(config["aim:models"])
    for model in models:
        for key, value in changes.get(model["name"], {}).items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
    return {**config, "aim:models": json.dumps(models)}


def run(config: dict[str, str], overrides: dict[str, str] | None = None) -> PlanResult:
    return run_stack("multi", overrides, config=config)


@pytest.fixture(scope="module")
def multi() -> PlanResult:
    result = run_stack("multi")  # as `python -m aim_infra plan --stack multi` runs it
    assert result.error is None, result.error
    return result


def objects_of(result: PlanResult, kind: str) -> list[dict[str, Any]]:
    return [m for m in kubernetes_objects(result) if m["kind"] == kind]


def test_one_engine_per_model_and_one_router(multi: PlanResult) -> None:
    assert sorted(r.name for r in multi.of_type(ENGINE_TYPE)) == sorted(MODELS)
    assert [r.name for r in multi.of_type("aim:infra:ModelRouter")] == [ROUTER]
    deployments = sorted(m["metadata"]["name"] for m in objects_of(multi, "Deployment"))
    assert deployments == sorted([*MODELS, ROUTER])
    # Each model's own cache and download Job, named after it.
    claims = sorted(m["metadata"]["name"] for m in objects_of(multi, "PersistentVolumeClaim"))
    assert claims == sorted(f"{name}-model-cache" for name in MODELS)
    jobs = [m["metadata"]["name"] for m in objects_of(multi, "Job")]
    assert sorted(job.rsplit("-download-", 1)[0] for job in jobs) == sorted(MODELS)


def test_no_two_objects_share_a_name(multi: PlanResult) -> None:
    seen = Counter(
        (m["apiVersion"], m["kind"], m["metadata"].get("namespace", ""), m["metadata"]["name"])
        for m in kubernetes_objects(multi)
    )
    assert [key for key, count in seen.items() if count > 1] == []
    assert len({r.urn for r in multi.resources}) == len(multi.resources)


def test_the_models_share_one_namespace_and_one_api_key(multi: PlanResult) -> None:
    assert [m["metadata"]["name"] for m in objects_of(multi, "Namespace") if "addons" not in str(m)] == [NAMESPACE]
    generated = [r for r in multi.of_type("random:index/randomPassword:RandomPassword") if "api-key" in r.name]
    assert [r.name for r in generated] == ["chat-api-key-value"], "one key, generated once, for every model"
    assert multi.outputs["apiKey"] == "[secret]"


def test_the_router_is_the_one_endpoint(multi: PlanResult) -> None:
    services = {m["metadata"]["name"]: m["spec"] for m in objects_of(multi, "Service")}
    assert services[ROUTER]["type"] == "ClusterIP"  # the example's aim:serviceType
    assert all(services[name]["type"] == "ClusterIP" for name in MODELS)
    assert multi.outputs["endpoint"] == "http://localhost:8000"
    exposed = run(example_config(), {"aim:serviceType": "NodePort", "aim:nodePort": "30080"})
    assert exposed.error is None, exposed.error
    services = {m["metadata"]["name"]: m["spec"] for m in objects_of(exposed, "Service")}
    assert services[ROUTER]["type"] == "NodePort" and services[ROUTER]["ports"][0]["nodePort"] == 30080
    assert [name for name, spec in services.items() if spec["type"] != "ClusterIP"] == [ROUTER]
    assert exposed.outputs["endpoint"] == "http://${NODE_IP}:30080"


def test_no_client_reaches_an_engine_but_through_the_router(multi: PlanResult) -> None:
    policies = {m["metadata"]["name"]: m["spec"] for m in objects_of(multi, "NetworkPolicy")}
    for name in MODELS:
        assert policies[f"{name}-network-api"]["ingress"] == [], name
    assert "to-engines" in " ".join(policies) and f"{ROUTER}-api" in policies


def test_the_preview_shows_the_packing_table(multi: PlanResult) -> None:
    info = [message for level, message in multi.logs if level == "info"]
    packing = [line.removeprefix("AIM packing: ") for line in info if line.startswith("AIM packing: ")]
    assert packing[0].split()[:4] == ["MODEL", "RECIPE", "GPUS", "REPLICAS"]
    assert [row.split()[0] for row in packing[1:]] == MODELS
    assert any(line.startswith("AIM models: 3 on configured-node (8 free) × MI300X") for line in info)
    assert any(line.startswith("AIM free: ") for line in info)
    assert not any(line.startswith("AIM recipe: ") for line in info), "no single-model decision lines"


def test_every_object_validates(multi: PlanResult) -> None:
    checked = scaled = 0
    for manifest in kubernetes_objects(multi):
        api_version = str(manifest["apiVersion"])
        if api_version == "keda.sh/v1alpha1":
            assert_valid_scaled_object(manifest)
            scaled += 1
            continue
        if api_version.startswith(CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest['kind']} {manifest['metadata'].get('name')}: {error.message} at {list(error.path)}")
        checked += 1
    assert scaled == len(MODELS) and checked >= 40


def test_ranged_models_autoscale_within_the_gpus_the_plan_reserved(multi: PlanResult) -> None:
    planned = multi.outputs["models"]
    scaled = {m["metadata"]["name"]: m["spec"] for m in objects_of(multi, "ScaledObject")}
    assert sorted(scaled) == sorted(MODELS)
    gpus_at_max = 0
    for name, spec in scaled.items():
        per_replica = planned[name]["gpus"] // planned[name]["replicas"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, planned[name]["maxReplicas"])
        assert spec["maxReplicaCount"] <= 2, "never above the model's replicas.max"
        query = spec["triggers"][0]["metadata"]["query"]
        assert f'model_name="{planned[name]["model"]}"' in query and f'namespace="{NAMESPACE}"' in query
        gpus_at_max += spec["maxReplicaCount"] * per_replica
    assert gpus_at_max <= NODE_GPUS, "every model at its maximum fits the node's GPUs"
    # Pulumi leaves the replica count to KEDA once the Deployment exists.
    for deployment in multi.of_type(DEPLOYMENT_TYPE):
        expected = [] if deployment.name.startswith(ROUTER) else ["spec.replicas"]
        assert deployment.options["ignore_changes"] == expected, deployment.name
    [keda] = [r for r in multi.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "keda"]
    assert keda.inputs["values"]["watchNamespace"] == NAMESPACE


def test_a_fixed_model_gets_no_scaled_object_and_keda_only_comes_with_a_range() -> None:
    one_fixed = run(example_config(mid={"replicas": 1}))
    assert one_fixed.error is None, one_fixed.error
    assert sorted(m["metadata"]["name"] for m in objects_of(one_fixed, "ScaledObject")) == ["chat", "small"]
    [mid] = [d for d in one_fixed.of_type(DEPLOYMENT_TYPE) if d.name == "mid-deployment"]
    assert mid.options["ignore_changes"] == [] and mid.inputs["spec"]["replicas"] == 1
    all_fixed = run(example_config(chat={"replicas": 1}, small={"replicas": 1}, mid={"replicas": 1}))
    assert all_fixed.error is None, all_fixed.error
    assert objects_of(all_fixed, "ScaledObject") == []
    assert "keda" not in [r.inputs["name"] for r in all_fixed.of_type("kubernetes:helm.sh/v3:Release")]


def test_one_smoke_test_per_model_through_the_router(multi: PlanResult) -> None:
    checks = {r.name: r.inputs["create"] for r in multi.of_type("command:local:Command") if "smoke" in r.name}
    assert sorted(checks) == sorted(f"{name}-smoke-test-check" for name in MODELS)
    for name, model in ((n, multi.outputs["models"][n]["model"]) for n in MODELS):
        command = checks[f"{name}-smoke-test-check"]
        assert f"--service {ROUTER}" in command and f"--model {model}" in command, command
        assert f"{ROUTER}-api-key:" in command


# ------------------------------------------------------------------------------------------------ scale to zero

HELM_RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
#: The example with its small model scaling to zero: a fixture config, the stack file itself unchanged.
TO_ZERO = {"small": {"replicas": {"min": 0, "max": 2}, "scaleToZero": True}}
WAKE_HOST = f"small-wake.{NAMESPACE}.svc"
INTERCEPTOR_LABELS = {
    "app.kubernetes.io/component": "interceptor",
    "app.kubernetes.io/name": "http-add-on",
    "app.kubernetes.io/part-of": "keda-add-ons-http",
    "app.kubernetes.io/instance": "keda-add-ons-http",
}


@pytest.fixture(scope="module")
def to_zero() -> PlanResult:
    result = run(example_config(**TO_ZERO))
    assert result.error is None, result.error
    return result


def waits_for(result: PlanResult, resource: Declared) -> set[str]:
    """The names of the resources `resource` depends on."""
    found = [result.by_urn(urn) for urn in resource.dependencies]
    return {each.name for each in found if each is not None}


def named(result: PlanResult, kind: str, name: str) -> dict[str, Any]:
    [found] = [m for m in objects_of(result, kind) if m["metadata"]["name"] == name]
    return found


def test_scale_to_zero_installs_the_http_add_on_after_keda(to_zero: PlanResult) -> None:
    releases = {r.inputs["name"]: r for r in to_zero.of_type(HELM_RELEASE_TYPE)}
    addon = releases["keda-add-ons-http"]
    assert (addon.inputs["chart"], addon.inputs["version"], addon.inputs["namespace"]) == (
        "keda-add-ons-http",
        "0.15.0",
        "keda",
    )
    assert addon.inputs["repositoryOpts"] == {"repo": "https://kedacore.github.io/charts"}
    assert addon.inputs["values"]["operator"] == {"replicas": 0}
    assert releases["keda"].urn in addon.dependencies
    # KEDA scales the add-on's interceptor too: its ScaledObject lives in KEDA's namespace.
    assert releases["keda"].inputs["values"]["watchNamespace"] == f"{NAMESPACE},keda"


def test_a_scale_to_zero_model_gets_its_route_wake_service_and_http_trigger(to_zero: PlanResult) -> None:
    route = named(to_zero, "InterceptorRoute", "small")
    assert schema_errors(route, schemas.INTERCEPTOR_ROUTE) == []
    spec = route["spec"]
    assert spec["target"] == {"service": "small", "port": 8000}
    assert spec["rules"] == [{"hosts": [WAKE_HOST], "paths": [{"value": "/v1"}]}]
    wake = named(to_zero, "Service", "small-wake")
    assert wake["spec"]["type"] == "ExternalName"
    assert wake["spec"]["externalName"] == "keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local"
    scaled = {m["metadata"]["name"]: m["spec"] for m in objects_of(to_zero, "ScaledObject")}
    small = scaled["small"]
    assert (small["minReplicaCount"], small["maxReplicaCount"]) == (0, 2)
    assert [(t["type"], t["name"]) for t in small["triggers"]] == [
        ("prometheus", "vllm-requests"),
        ("prometheus", "vllm-kv-cache"),
        ("external-push", "http-requests"),
    ]
    assert small["triggers"][2]["metadata"] == {
        "scalerAddress": "keda-add-ons-http-external-scaler.keda:9090",
        "interceptorRoute": "small",
    }
    # The route counts requests against the same per-replica target the Prometheus trigger divides by.
    assert str(spec["scalingMetric"]["concurrency"]["targetValue"]) == small["triggers"][0]["metadata"]["threshold"]
    for name in ("chat", "mid"):
        assert [t["type"] for t in scaled[name]["triggers"]] == ["prometheus", "prometheus"]
        assert scaled[name]["minReplicaCount"] == 1
    assert [m["metadata"]["name"] for m in objects_of(to_zero, "InterceptorRoute")] == ["small"]
    # The ScaledObject comes after the add-on and the route it names; the smoke test after the route.
    after = waits_for(to_zero, to_zero.named(SCALED_OBJECT_TYPE, "small-scaled-object"))
    assert {"addons-keda-http", "small-interceptor-route", "small-wake-service", "small-deployment"} <= after
    smoke = waits_for(to_zero, to_zero.named("command:local:Command", "small-smoke-test-check"))
    assert {"small-interceptor-route", "small-wake-service"} <= smoke


def test_the_router_lists_every_model_statically_when_one_scales_to_zero(to_zero: PlanResult) -> None:
    router = named(to_zero, "Deployment", ROUTER)["spec"]["template"]["spec"]
    [container] = [c for c in router["containers"] if c["name"] == "router"]
    options = parse(container["args"])
    assert set(options) <= set(ROUTER_OPTIONS)
    assert options["--service-discovery"] == "static"
    assert static_pairs(options) == [
        ("meta-llama/Llama-3.3-70B-Instruct", f"http://chat.{NAMESPACE}.svc:8000"),
        ("Qwen/Qwen3-8B", f"http://{WAKE_HOST}:8080"),
        ("Qwen/Qwen3-30B-A3B", f"http://mid.{NAMESPACE}.svc:8000"),
    ]
    assert all(router_keeps(url) for _, url in static_pairs(options))
    assert "--static-backend-health-checks" not in options
    # Each warm URL is a declared engine Service on its port; the cold one names the route's host.
    services = {m["metadata"]["name"]: m["spec"] for m in objects_of(to_zero, "Service")}
    for name in ("chat", "mid"):
        assert services[name]["ports"][0]["port"] == 8000
    # No discovery, so no Role, no binding, no token and no key in the router process.
    assert objects_of(to_zero, "Role") == [] and objects_of(to_zero, "RoleBinding") == []
    assert "VLLM_API_KEY" not in {e["name"] for e in container["env"]}
    assert "kube-api-access" not in {v["name"] for v in router["volumes"]}


def test_the_policies_open_exactly_the_interceptors_paths(to_zero: PlanResult) -> None:
    policies = {m["metadata"]["name"]: m["spec"] for m in objects_of(to_zero, "NetworkPolicy")}
    interceptor = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
        "podSelector": {"matchLabels": INTERCEPTOR_LABELS},
    }
    egress = policies[f"{ROUTER}-egress"]["egress"]
    assert {"to": [interceptor], "ports": [{"protocol": "TCP", "port": 8080}]} in egress
    assert not {443, 6443} & {p["port"] for rule in egress for p in rule["ports"]}, "no API server: no discovery"
    inbound = policies[f"{ROUTER}-from-interceptor"]
    assert inbound["podSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/instance", "operator": "In", "values": ["small"]}
    ]
    assert inbound["ingress"] == [{"from": [interceptor], "ports": [{"protocol": "TCP", "port": 8000}]}]
    # Everything else stays as without scale-to-zero: the same policies, byte for byte.
    warm = {m["metadata"]["name"]: m["spec"] for m in objects_of(run(example_config()), "NetworkPolicy")}
    changed = {name for name in policies if policies[name] != warm.get(name)}
    assert changed == {f"{ROUTER}-egress", f"{ROUTER}-from-interceptor"}
    assert set(warm) - set(policies) == set()


def test_every_scale_to_zero_object_validates_and_meets_every_policy(to_zero: PlanResult) -> None:
    from policy.aim_policies import POLICIES
    from tests.policy.support import check_plan

    kinds: Counter[str] = Counter()
    for manifest in kubernetes_objects(to_zero):
        api_version = str(manifest["apiVersion"])
        kinds[manifest["kind"]] += 1
        if api_version == "keda.sh/v1alpha1":
            assert_valid_scaled_object(manifest)
        elif api_version == "http.keda.sh/v1beta1":
            assert schema_errors(manifest, schemas.INTERCEPTOR_ROUTE) == []
        elif not api_version.startswith(CRD_GROUPS):
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert (kinds["ScaledObject"], kinds["InterceptorRoute"]) == (3, 1)
    assert check_plan(to_zero, POLICIES) == []


def test_the_preview_says_the_cold_start_and_why_the_router_is_static(to_zero: PlanResult) -> None:
    info = [message for level, message in to_zero.logs if level == "info"]
    [cold] = [line for line in info if line.startswith("AIM scale to zero ")]
    route = named(to_zero, "InterceptorRoute", "small")
    waits = route["spec"]["timeouts"]["readiness"].removesuffix("s")
    assert cold.startswith("AIM scale to zero small: KEDA removes the last replica after 1800 s without requests")
    assert f"the first request after that waits up to {waits} s" in cold
    assert "answers 504 after that" in cold
    [router] = [line for line in info if line.startswith("AIM router: ")]
    assert "static discovery, because small scale(s) to zero" in router
    assert "the Service balances a model's replicas" in router
    packing = [line for line in info if line.startswith("AIM packing: small ")]
    assert packing and " 0–2 " in packing[0]
    assert to_zero.outputs["models"]["small"]["minReplicas"] == 0
    # Without scale-to-zero neither line appears.
    warm = [message for level, message in run(example_config()).logs if level == "info"]
    assert not any(line.startswith(("AIM scale to zero ", "AIM router: ")) for line in warm)


def test_a_cold_start_longer_than_the_router_waits_is_refused_in_one_line() -> None:
    """The router's proxy waits an hour for an answer to start: a 405B checkpoint loads for longer than that."""
    big = {"name": "big", "model": "meta-llama/Llama-3.1-405B-Instruct", "replicas": {"min": 0, "max": 1}}
    result = run({**example_config(), "aim:models": json.dumps([{**big, "scaleToZero": True}])})
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith("aim:models: big.scaleToZero: true is not allowed: a cold start of "), result.error
    assert "longer than the 3600 s the router's proxy waits" in result.error
    assert result.resources == []
    warm = run({**example_config(), "aim:models": json.dumps([{**big, "replicas": {"min": 1, "max": 1}}])})
    assert warm.error is None, warm.error


def test_a_wake_service_may_not_take_another_models_name() -> None:
    config = example_config(**TO_ZERO)
    models = json.loads(config["aim:models"])
    models[2]["name"] = "small-wake"
    result = run({**config, "aim:models": json.dumps(models)})
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith("aim:models: small.scaleToZero: the model's wake Service small-wake has another")
    assert result.resources == []


def test_a_missed_slo_stops_the_preview_in_one_line() -> None:
    workload = {"inputTokens": 8192, "outputTokens": 1024, "concurrency": 512, "ttftP95Ms": 200}
    result = run(example_config(chat={"workload": workload}))
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith("aim:models: chat misses its SLO"), result.error
    assert result.resources == []


def test_a_model_may_not_take_the_routers_name() -> None:
    config = example_config()
    models = json.loads(config["aim:models"])
    models[2]["name"] = ROUTER
    result = run({**config, "aim:models": json.dumps(models)})
    assert result.error is not None and "the name is the router's" in result.error


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_single_model_stacks_declare_no_router_and_no_autoscaling(stack: str) -> None:
    result = run_stack(stack)
    assert result.error is None, result.error
    assert [r.name for r in result.of_type(ENGINE_TYPE)] == ["aim-engine"]
    assert result.of_type("aim:infra:ModelRouter") == [] and result.of_type(SCALED_OBJECT_TYPE) == []
    assert "keda" not in [r.inputs["name"] for r in result.of_type("kubernetes:helm.sh/v3:Release")]
    assert all(d.options["ignore_changes"] == [] for d in result.of_type(DEPLOYMENT_TYPE))
    assert "models" not in result.outputs


def test_the_stack_meets_every_policy(multi: PlanResult) -> None:
    from policy.aim_policies import POLICIES
    from tests.policy.support import check_plan

    assert check_plan(multi, POLICIES) == []
    balanced = run(example_config(), {"aim:serviceType": "LoadBalancer", "aim:apiAllowedCidrs": '["10.0.0.0/8"]'})
    assert balanced.error is None, balanced.error
    assert check_plan(balanced, POLICIES) == []
    services = {m["metadata"]["name"]: m["spec"] for m in objects_of(balanced, "Service")}
    assert services[ROUTER]["type"] == "LoadBalancer" and services[ROUTER]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]


def test_the_preview_says_how_each_model_scales(multi: PlanResult) -> None:
    info = [message for level, message in multi.logs if level == "info"]
    scaling = {line.split(":")[0].removeprefix("AIM autoscaling "): line for line in info if "AIM autoscaling" in line}
    assert sorted(scaling) == sorted(MODELS)
    for name, spec in ((m["metadata"]["name"], m["spec"]) for m in objects_of(multi, "ScaledObject")):
        target = spec["triggers"][0]["metadata"]["threshold"]
        assert "KEDA keeps 1–2 replicas" in scaling[name] and f"more than {target} requests each" in scaling[name]
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        window = behavior["scaleDown"]["stabilizationWindowSeconds"]
        assert f"after {window} s below target" in scaling[name]


def test_models_pack_onto_the_discovered_nodes_of_one_gpu_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """gpu and gpuCount auto: every node of the GPU type decide() would choose, each with its own free GPUs."""
    from aim_infra.planning.detect import NodeGpus
    from aim_infra.planning.hardware import load_gpus
    from aim_infra.stack import decide
    from aim_infra.stack.settings import Settings

    gpus = load_gpus()
    found = [
        NodeGpus(node="b", gpu=gpus.get("MI300X"), count=4, identified_by="device-id"),
        NodeGpus(node="a", gpu=gpus.get("MI300X"), count=2, identified_by="device-id"),
        NodeGpus(node="old", gpu=gpus.get("MI250"), count=2, identified_by="device-id"),
    ]
    monkeypatch.setattr(decide, "discover_gpus", lambda context: found)
    models = [
        {"name": "chat", "model": "meta-llama/Llama-3.3-70B-Instruct", "replicas": 2},
        {"name": "small", "model": "Qwen/Qwen3-8B", "replicas": {"min": 1, "max": 2}},
    ]
    settings = Settings(models=models, clusterBootstrap="none", cacheAccessMode="ReadWriteMany")
    plan, detected = decide.decide_models(settings, "some-context")
    assert detected is True
    assert [n.node for n in plan.nodes] == ["a", "b"], "the MI250 node is left out"
    chat, small = plan.models
    assert (chat.replicas, chat.gpus_per_replica, sorted(chat.placement)) == (2, 2, ["a", "b"])
    assert small.gpus_per_replica == 1 and small.max_replicas == 2 and plan.free == {"a": 0, "b": 0}
    # A ReadWriteOnce cache stays on one node: replicas planned on two would stay Pending.
    with pytest.raises(AimError, match=r"^aim:cacheAccessMode: 'ReadWriteOnce' is not allowed: the plan spreads model"):
        decide.decide_models(settings.model_copy(update={"cache_access_mode": "ReadWriteOnce"}), "some-context")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"aim:cacheAccessMode": "ReadWriteOncePod"}, "aim:cacheAccessMode: 'ReadWriteOncePod' is not allowed: model"),
        ({"aim:benchmark": "true"}, "aim:benchmark: true is not supported with aim:models yet"),
        ({"aim:monitoring": "false"}, "aim:models: chat.replicas: {min: 1, max: 2} needs aim:monitoring true"),
    ],
)
def test_what_the_models_cannot_run_with_is_one_line(overrides: dict[str, str], error: str) -> None:
    result = run(example_config(), overrides)
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith(error), result.error
    assert result.resources == []


# ------------------------------------------------------------------------------------------------ monitoring

PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
THROUGHPUT_ALERT = "AimThroughputBelowEstimate"


def rule_groups(result: PlanResult) -> list[dict[str, Any]]:
    """Every group of every model's PrometheusRule, in aim:models order: one rule file, as Prometheus loads them."""
    by_name = {r.inputs["metadata"]["name"]: r.inputs["spec"]["groups"] for r in result.of_type(PROMETHEUS_RULE)}
    assert sorted(by_name) == sorted(MODELS)
    return [group for model in MODELS for group in by_name[model]]


def group_of(groups: list[dict[str, Any]], kind: str, model: str) -> dict[str, Any]:
    [group] = [g for g in groups if g["name"] == f"aim.{kind}.{NAMESPACE}.{model}"]
    return group


def estimate_constants(group: dict[str, Any]) -> dict[str, float]:
    return {
        r["record"]: float(r["expr"].removeprefix("vector(").removesuffix(")"))
        for r in group["rules"]
        if r["expr"].startswith("vector(")
    }


def test_every_model_has_its_service_monitor_estimates_and_alerts(multi: PlanResult) -> None:
    monitors = {r.inputs["metadata"]["name"]: r.inputs for r in multi.of_type(SERVICE_MONITOR)}
    assert sorted(monitors) == sorted(MODELS)
    groups = rule_groups(multi)
    group_names = [g["name"] for g in groups]
    assert len(group_names) == len(set(group_names)), group_names
    assert group_names.count("aim.recording") == 1
    for model in MODELS:
        # Each model's monitor selects its own engine's metrics Service, no other's.
        selected = monitors[model]["spec"]["selector"]["matchLabels"]
        services = [
            s.inputs["metadata"]["name"]
            for s in multi.of_type("kubernetes:core/v1:Service")
            if s.inputs["metadata"]["name"].endswith("-metrics")
            and selected.items() <= s.inputs["metadata"]["labels"].items()
        ]
        assert services == [f"{model}-metrics"], (model, services)
        estimate = group_of(groups, "estimate", model)
        labels = estimate["rules"][0]["labels"]
        assert labels["recipe"] == multi.outputs["models"][model]["recipe"]
        alerts = {r["alert"]: r for r in group_of(groups, "alerts", model)["rules"]}
        assert set(alerts) == set(rules.RUNBOOKS)
        pinned = f'recipe="{labels["recipe"]}", model="{labels["model"]}"'
        assert pinned in alerts[THROUGHPUT_ALERT]["expr"] and pinned in alerts["AimQueueDepthHigh"]["expr"]
        assert f'pod=~"{model}-[a-z0-9]+-[a-z0-9]+"' in alerts["AimEngineRestarting"]["expr"]
    recipes = {group_of(groups, "estimate", m)["rules"][0]["labels"]["recipe"] for m in MODELS}
    assert len(recipes) == len(MODELS), "two models with one recipe and model would share their aim: series"


def test_no_two_recording_rules_record_the_same_series(multi: PlanResult) -> None:
    groups = rule_groups(multi)
    assert rules.recording_collisions(groups) == []
    at_load = [r for g in groups for r in g["rules"] if r.get("record") == names.ESTIMATE_AT_LOAD_LOW]
    assert len(at_load) == len(MODELS)
    assert len({rules.pinned_labels(r)["recipe"] for r in at_load}) == len(MODELS)


def test_promtool_checks_the_whole_multi_model_rule_file(multi: PlanResult, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(rules.rule_file(rule_groups(multi)), encoding="utf-8")
    check = run_promtool("check", "rules", path.name, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout


def low_end_at(constants: dict[str, float], running: float) -> float:
    """One pod's low end of the estimate at `running` requests, from the model's own recorded constants."""
    step = constants[names.ESTIMATE_STEP_BASE] + running * constants[names.ESTIMATE_STEP_PER_SEQUENCE]
    factor = constants[names.ESTIMATE_WORKLOAD_FACTOR] * constants[names.ESTIMATE_THROUGHPUT_LOW_RATIO]
    return running / step * factor


@pytest.mark.parametrize(("slow", "healthy"), [("chat", "small"), ("small", "chat")])
def test_the_throughput_alert_fires_for_the_slow_model_only(
    multi: PlanResult, slow: str, healthy: str, tmp_path: Path
) -> None:
    """Two models under the same load in one namespace: the one generating below its own estimate's low end pages,
    once; the other, at its low end, stays silent (with namespace-wide rules both groups would page for the first)."""
    groups = rule_groups(multi)
    running = 16
    inputs: list[dict[str, str]] = []
    expected: dict[str, tuple[dict[str, str], int]] = {}
    alert_rules = {
        model: next(r for r in group_of(groups, "alerts", model)["rules"] if r["alert"] == THROUGHPUT_ALERT)
        for model in (slow, healthy)
    }
    for model in (slow, healthy):
        estimate = group_of(groups, "estimate", model)
        labels = dict(estimate["rules"][0]["labels"])
        [fraction] = re.findall(r"([0-9.]+) \* avg_over_time", alert_rules[model]["expr"])
        low = low_end_at(estimate_constants(estimate), running)
        rate = math.floor(0.5 * float(fraction) * low) if model == slow else math.ceil(low)
        assert rate > 0
        expected[model] = (labels, rate)
        pod = f"{model}-7c9d8f6b5-x2k4q"
        ksm = names.KSM_LABEL
        inputs.append(
            series(
                "kube_pod_labels",
                {
                    "job": "kube-state-metrics",
                    "namespace": NAMESPACE,
                    "pod": pod,
                    ksm["aim.amd.com/recipe"]: labels["recipe"],
                    ksm["aim.amd.com/model"]: labels["model"],
                    ksm["aim.amd.com/gpu"]: labels["gpu"],
                    ksm["app.kubernetes.io/instance"]: model,
                },
                const(1),
            )
        )
        scraped = {"job": f"{model}-metrics", "namespace": NAMESPACE, "pod": pod, "engine": "0"}
        scraped["model_name"] = multi.outputs["models"][model]["model"]
        inputs.append(series("vllm:num_requests_running", scraped, const(running)))
        inputs.append(series("vllm:generation_tokens_total", scraped, growing(rate * 60)))
    path = tmp_path / "rules.yaml"
    path.write_text(rules.rule_file(groups), encoding="utf-8")
    labels, rate = expected[slow]
    tests = {
        "rule_files": [path.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": f"{slow} slow, {healthy} at its low end",
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {
                        "eval_time": "30m",
                        "alertname": THROUGHPUT_ALERT,
                        "exp_alerts": expected_alerts(alert_rules[slow], [(labels, rate)]),
                    }
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = run_promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboards_are_declared_once_with_a_row_per_model(multi: PlanResult) -> None:
    maps = [
        r.inputs
        for r in multi.of_type("kubernetes:core/v1:ConfigMap")
        if r.inputs["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert sorted(key for m in maps for key in m["data"]) == sorted(dashboards.DASHBOARDS)
    for config_map in maps:
        [(key, text)] = config_map["data"].items()
        assert text == dashboards.dashboard_json(key, per_model=True) != dashboards.dashboard_json(key)
        model = json.loads(text)
        variables = {v["name"]: v for v in model["templating"]["list"]}
        [repeat] = [p["repeat"] for p in model["panels"] if p["type"] == "row" and p.get("repeat")]
        assert variables[repeat]["multi"] and variables[repeat]["includeAll"]
        assert repeat in ("model", "model_name")
