"""ModelRouter under the mock runtime: it declares exactly its builders' objects, as children, on the given provider.

What those objects hold is checked without Pulumi in test_router_builders.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aim_infra.common.errors import AimError
from aim_infra.stack.components import api_proxy
from aim_infra.stack.manifests import router as objects
from aim_infra.stack.manifests.engine import API_KEY_DATA_KEY
from aim_infra.stack.manifests.router import RouterNames, StaticBackend
from aim_infra.stack.plan import Declared, PlanResult, kubernetes_objects, run_stack
from tests.stack.components.test_engine_builders import validate

ROOT = Path(__file__).resolve().parents[3]
COMPONENT = "aim:infra:ModelRouter"
PROVIDER = "pulumi:providers:kubernetes"
SECRET = "kubernetes:core/v1:Secret"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
KEY = "sk-test-api-key-abcdef0123456789"
NAMES = RouterNames("aim-router", "aim")
PROGRAM = '''"""Test program: one Kubernetes provider and one ModelRouter, nothing else."""
import json
import sys

sys.path.insert(0, {root!r})

import pulumi
import pulumi_kubernetes as k8s

from aim_infra.stack.components.router import ModelRouter, ModelRouterArgs
from aim_infra.stack.manifests.router import Interceptor, StaticBackend

arguments = json.loads({args!r})
if arguments.pop("key_as_output", False):  # as the engine hands over a generated key
    arguments["api_key"] = pulumi.Output.secret(arguments["api_key"])
if "static_backends" in arguments:  # JSON carries them as lists
    arguments["static_backends"] = [StaticBackend(tuple(names), url) for names, url in arguments["static_backends"]]
if "interceptor" in arguments:
    namespace, labels, port, engines = arguments["interceptor"]
    arguments["interceptor"] = Interceptor(namespace, labels, port, tuple(engines))
provider = k8s.Provider("k8s")
router = ModelRouter("aim-router", ModelRouterArgs(**arguments), opts=pulumi.ResourceOptions(provider=provider))
pulumi.export("provider_id", provider.id)
pulumi.export("url", router.url)
pulumi.export("api_key_secret_ref", router.api_key_secret_ref)
pulumi.export("policies", sorted(router.policies))
'''


def run_router(tmp_path: Path, **args: Any) -> PlanResult:
    """A fresh mock run of a one-component program with these ModelRouterArgs (the key given unless overridden)."""
    program = tmp_path / "program"
    program.mkdir(exist_ok=True)
    arguments = {"namespace": NAMES.namespace, "api_key": KEY, **args}
    (program / "__main__.py").write_text(PROGRAM.format(root=str(ROOT), args=json.dumps(arguments)))
    return run_stack("test", project_dir=program, config={})


def planned(tmp_path: Path, **args: Any) -> PlanResult:
    result = run_router(tmp_path, **args)
    assert result.error is None, result.error
    return result


def component(result: PlanResult) -> Declared:
    [found] = result.of_type(COMPONENT)
    return found


def manifest(resource: Declared) -> dict[str, Any]:
    return {key: value for key, value in resource.inputs.items() if not key.startswith("__")}


def declared(result: PlanResult, kind: str, name: str) -> dict[str, Any]:
    [found] = [m for m in kubernetes_objects(result) if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> PlanResult:
    return planned(
        tmp_path_factory.mktemp("router"),
        routing_logic="session",
        session_key="x-session-id",
        replicas=2,
        service_type="LoadBalancer",
        allowed_cidrs=["10.20.0.0/16"],
        allowed_namespaces=["gateway"],
        monitoring_namespace="monitoring",
    )


def test_every_object_is_a_child_on_the_provider(everything: PlanResult) -> None:
    router = component(everything)
    assert router.name == "aim-router" and not router.custom
    owned = [r for r in everything.resources if r.type not in (COMPONENT, PROVIDER)]
    assert owned and all(r.parent == router.urn for r in owned), "every resource is a direct child"
    [provider] = everything.of_type(PROVIDER)
    reference = f"{provider.urn}::{everything.outputs['provider_id']}"
    assert all(r.provider == reference for r in owned), {r.name: r.provider for r in owned}
    kinds = sorted(m["kind"] for m in kubernetes_objects(everything))
    assert kinds == sorted(
        ["ServiceAccount", "Role", "RoleBinding", "Secret", "ConfigMap", "Deployment", "PodDisruptionBudget"]
        + ["Service"] * 2
        + ["NetworkPolicy"] * 4
    )
    for each in kubernetes_objects(everything):
        validate(each)
        assert each["metadata"]["namespace"] == NAMES.namespace


def test_the_declared_objects_are_the_builders(everything: PlanResult) -> None:
    labels = objects.router_labels(NAMES.instance)
    deployment = declared(everything, "Deployment", NAMES.workload)
    template = objects.pod_template(
        NAMES,
        labels,
        image=objects.DEFAULT_ROUTER_IMAGE,
        proxy_image=api_proxy.DEFAULT_PROXY_IMAGE,
        proxy_config=objects.proxy_config(),
        logic="session",
        session_key="x-session-id",
    )
    assert deployment["spec"] == objects.deployment(NAMES, labels, replicas=2, template=template)["spec"]
    config = declared(everything, "ConfigMap", NAMES.proxy_config)
    assert config["data"] == objects.proxy_config_map(NAMES, labels, objects.proxy_config())["data"]
    assert declared(everything, "Role", NAMES.role)["rules"] == objects.role(NAMES, labels)["rules"]
    service = declared(everything, "Service", NAMES.workload)
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerSourceRanges"] == ["10.20.0.0/16"]
    assert everything.outputs["policies"] == ["api", "egress", "metrics", "to-engines"]
    assert everything.outputs["url"] == "http://aim-router.aim.svc:8000"
    assert everything.outputs["api_key_secret_ref"] == f"{NAMES.secret}:{API_KEY_DATA_KEY}"


def test_the_key_is_a_secret_in_state(everything: PlanResult) -> None:
    secret = everything.named(SECRET, NAMES.secret)
    assert secret.inputs["stringData"] == objects.secret_data(KEY)
    assert secret.options["additional_secret_outputs"] == ["data", "stringData"]


def test_a_key_known_only_at_deployment_reaches_the_secret(tmp_path: Path) -> None:
    secret = planned(tmp_path, key_as_output=True).named(SECRET, NAMES.secret)
    assert secret.inputs["stringData"] == objects.secret_data(KEY)


def test_the_deployment_waits_for_what_its_pods_use(everything: PlanResult) -> None:
    deployment = everything.named(DEPLOYMENT, f"{NAMES.instance}-deployment")
    waits_for = {everything.by_urn(urn).name for urn in deployment.dependencies}  # type: ignore[union-attr]
    assert {f"{NAMES.instance}-sa", f"{NAMES.instance}-role-binding", NAMES.secret, NAMES.proxy_config} <= waits_for


def test_one_replica_without_monitoring_declares_no_budget_and_no_metrics_policy(tmp_path: Path) -> None:
    result = planned(tmp_path)
    kinds = [m["kind"] for m in kubernetes_objects(result)]
    assert "PodDisruptionBudget" not in kinds and kinds.count("NetworkPolicy") == 3
    args = declared(result, "Deployment", NAMES.workload)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--routing-logic") + 1] == "roundrobin" and "--session-key" not in args
    assert declared(result, "Service", NAMES.workload)["spec"]["type"] == "NodePort"


def test_a_static_router_declares_no_role_and_reaches_the_interceptor(tmp_path: Path) -> None:
    backends: list[tuple[list[str], str]] = [
        (["meta-llama/Llama-3.3-70B-Instruct"], "http://chat.aim.svc:8000"),
        (["Qwen/Qwen3-8B"], "http://small-wake.aim.svc:8080"),
    ]
    labels = {"app.kubernetes.io/component": "interceptor", "app.kubernetes.io/name": "http-add-on"}
    result = planned(tmp_path, static_backends=backends, interceptor=["keda", labels, 8080, ["small"]])
    kinds = sorted(m["kind"] for m in kubernetes_objects(result))
    assert kinds == sorted(
        ["ServiceAccount", "Secret", "ConfigMap", "Deployment", *["Service"] * 2, *["NetworkPolicy"] * 4]
    )
    assert result.outputs["policies"] == ["api", "egress", "from-interceptor", "to-engines"]
    for each in kubernetes_objects(result):
        validate(each)
    template = declared(result, "Deployment", NAMES.workload)["spec"]["template"]
    static = [StaticBackend(tuple(names), url) for names, url in backends]
    expected = objects.pod_template(
        NAMES,
        objects.router_labels(NAMES.instance),
        image=objects.DEFAULT_ROUTER_IMAGE,
        proxy_image=api_proxy.DEFAULT_PROXY_IMAGE,
        proxy_config=objects.proxy_config(),
        logic="roundrobin",
        session_key=None,
        backends=static,
    )
    assert template == expected
    deployment = result.named(DEPLOYMENT, f"{NAMES.instance}-deployment")
    waits_for = {result.by_urn(urn).name for urn in deployment.dependencies}  # type: ignore[union-attr]
    assert {f"{NAMES.instance}-sa", NAMES.secret, NAMES.proxy_config} <= waits_for
    assert not any("role" in name for name in waits_for)
    with pytest.raises(AimError, match="is not one the router accepts"):
        run_router(tmp_path, static_backends=[[["m"], "http://chat:8000"]])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"routing_logic": "session"}, "router routing logic 'session' needs a session key"),
        ({"api_key": "not a bearer token"}, "the API key must be a Bearer token"),
    ],
)
def test_a_bad_input_fails_the_program_with_one_line(tmp_path: Path, args: dict[str, Any], expected: str) -> None:
    """Raised as the component is built (so at preview), before any object is declared."""
    with pytest.raises(AimError) as raised:
        run_router(tmp_path, **args)
    message = str(raised.value)
    assert message.startswith(expected) and "\n" not in message
    assert "not a bearer token" not in message  # the key is never shown
