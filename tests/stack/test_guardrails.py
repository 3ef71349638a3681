"""Guardrails as declared: the recipe admission policy (its CEL run for real with cel-python), the NetworkPolicies (run
through a small evaluator of NetworkPolicy semantics), the pod's security settings against Pod Security baseline."""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import kubernetes_validate
import pytest

from aim_infra.common.contract import TENSOR_PARALLEL_ANNOTATION
from aim_infra.common.errors import AimError
from aim_infra.stack.components.api_proxy import DEFAULT_PROXY_IMAGE
from aim_infra.stack.components.guardrails import image_repository, policy_spec
from aim_infra.stack.plan import Declared, PlanResult, kubernetes_objects, run_stack
from aim_infra.stack.settings import parse_settings

from .components.test_engine_builders import deployment_for, engine_decisions
from .test_manifests import KUBERNETES_VERSION

VAP = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
BINDING = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
NAMESPACE = "kubernetes:core/v1:Namespace"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DIGEST = "@sha256:" + "ab" * 32
ENGINE_IMAGE = "localhost:5000/aim-engine" + DIGEST
#: The policy's validations in order, by what each checks.
CHECKS = (
    "annotations",
    "gpu-limit",
    "tensor-parallel",
    "pipeline-parallel",
    "parallel-product",
    "digest",
    "repository",
    "limits",
)
ALLOW_LISTS = {
    "aim:apiAllowedCidrs": '["10.20.0.0/16", "192.0.2.0/24"]',
    "aim:apiAllowedNamespaces": '["gateway", "ingress-nginx"]',
}


def only(result: PlanResult, type_: str) -> Declared:
    [resource] = result.of_type(type_)
    return resource


def deployment_manifest(result: PlanResult) -> dict[str, Any]:
    """The engine's Deployment as the API server would receive it."""
    return next(
        m for m in kubernetes_objects(result) if m["kind"] == "Deployment" and m["metadata"]["name"] == "aim-engine"
    )


def engine_namespace(result: PlanResult) -> Declared:
    return result.named(NAMESPACE, "aim-engine-namespace")


# --- the admission policy's CEL, evaluated ---------------------------------------------------------------------------


@dataclass
class Admission:
    checked: bool  # the match condition selected the object
    failed: dict[str, str]  # check → message, for every validation that did not pass

    @property
    def allowed(self) -> bool:
        return not self.failed


def _run(env: celpy.Environment, expression: str, activation: dict[str, Any]) -> Any:
    """Evaluate one expression; an evaluation error comes back as the CELEvalError (as Kubernetes would see it)."""
    try:
        return env.program(env.compile(expression)).evaluate(activation)
    except celpy.CELEvalError as error:
        return error


def _passed(value: Any) -> bool:
    return isinstance(value, celpy.celtypes.BoolType) and bool(value)


def admit(spec: dict[str, Any], deployment: dict[str, Any]) -> Admission:
    """What the API server does with the policy for one CREATE of `deployment`: match conditions, then the variables
    in order (each sees the earlier ones), then every validation; an error counts as a denial (failurePolicy Fail),
    a failed validation reports its messageExpression, or its message when that fails too."""
    assert spec["failurePolicy"] == "Fail"
    assert len(spec["validations"]) == len(CHECKS)
    env = celpy.Environment()
    activation: dict[str, Any] = {"object": celpy.json_to_cel(deployment)}
    for condition in spec["matchConditions"]:
        if not _passed(_run(env, condition["expression"], activation)):
            return Admission(checked=False, failed={})
    variables: dict[str, Any] = {}
    for variable in spec["variables"]:
        value = _run(env, variable["expression"], {**activation, "variables": celpy.celtypes.MapType(variables)})
        if not isinstance(value, celpy.CELEvalError):  # a failed variable stays unset: using it is an error
            variables[celpy.celtypes.StringType(variable["name"])] = value
    activation["variables"] = celpy.celtypes.MapType(variables)
    failed = {}
    for check, validation in zip(CHECKS, spec["validations"], strict=True):
        outcome = _run(env, validation["expression"], activation)
        if _passed(outcome):
            continue
        message = validation.get("message", "")
        if "messageExpression" in validation:
            text = _run(env, validation["messageExpression"], activation)
            message = str(text) if isinstance(text, str) else message
        failed[check] = message if not isinstance(outcome, celpy.CELEvalError) else f"error: {outcome}"
    return Admission(checked=True, failed=failed)


def vllm(deployment: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm")


def proxy(deployment: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "api-proxy")


def replace_arg(deployment: dict[str, Any], prefix: str, new: list[str]) -> None:
    container = vllm(deployment)
    index = next(i for i, a in enumerate(container["args"]) if a.startswith(prefix))
    container["args"][index : index + 1] = new


@pytest.fixture(scope="module", params=["dev", "prod"])
def declared(request: pytest.FixtureRequest, dev: PlanResult, prod: PlanResult) -> tuple[dict[str, Any], dict]:
    """(the policy spec, the Deployment) exactly as the stack declares them."""
    result = {"dev": dev, "prod": prod}[request.param]
    return only(result, VAP).inputs["spec"], deployment_manifest(result)


def test_the_declared_deployment_is_admitted(declared: tuple[dict[str, Any], dict]) -> None:
    spec, deployment = declared
    admission = admit(spec, deployment)
    assert admission.checked and admission.allowed, admission.failed


def test_the_builders_deployments_are_admitted(tmp_path: Path) -> None:
    """The pure builders' Deployment for a 1-GPU and a TP 4 × PP 2 recipe passes the policy as built for its image;
    a Deployment whose annotations disagree with its own pod spec does not."""
    spec = policy_spec(image_repository(ENGINE_IMAGE), [DEFAULT_PROXY_IMAGE])
    for decision in engine_decisions(tmp_path).values():
        deployment = deployment_for(decision, replicas=2, image=ENGINE_IMAGE)
        admission = admit(spec, deployment)
        assert admission.checked and admission.allowed, (decision.recipe.id, admission.failed)
        annotations = deployment["metadata"]["annotations"]
        annotations[TENSOR_PARALLEL_ANNOTATION] = str(decision.recipe.tensor_parallel_size * 2)
        assert {"tensor-parallel", "parallel-product"} <= admit(spec, deployment).failed.keys()


def wrong_gpu_limit(d: dict[str, Any]) -> None:
    for kind in ("requests", "limits"):
        vllm(d)["resources"][kind]["amd.com/gpu"] = "16"


def wrong_tensor_parallel(d: dict[str, Any]) -> None:
    replace_arg(d, "--tensor-parallel-size=", ["--tensor-parallel-size=16"])


def second_tensor_parallel(d: dict[str, Any]) -> None:
    vllm(d)["args"].append("--tensor-parallel-size=16")


def short_tensor_parallel(d: dict[str, Any]) -> None:
    vllm(d)["args"] += ["-tp", "16"]


def two_token_pipeline_parallel(d: dict[str, Any]) -> None:
    replace_arg(d, "--pipeline-parallel-size=", ["--pipeline-parallel-size", "1"])


def product_mismatch(d: dict[str, Any]) -> None:
    # Arguments, limit and annotations agree one by one, but TP × PP is not the GPU count.
    tp = int(d["metadata"]["annotations"]["aim.amd.com/tensor-parallel-size"])
    d["metadata"]["annotations"]["aim.amd.com/pipeline-parallel-size"] = "2"
    replace_arg(d, "--pipeline-parallel-size=", ["--pipeline-parallel-size=2"])
    assert tp * 2 != int(d["metadata"]["annotations"]["aim.amd.com/gpu-count"])


def tag_only_image(d: dict[str, Any]) -> None:
    vllm(d)["image"] = image_repository(vllm(d)["image"]) + ":2026.11.0"


def other_proxy_digest(d: dict[str, Any]) -> None:
    # The sidecar is admitted by its exact pinned reference only: same repository and tag, another digest is refused.
    proxy(d)["image"] = proxy(d)["image"].split("@")[0] + DIGEST


def other_registry(d: dict[str, Any]) -> None:
    vllm(d)["image"] = "ghcr.io/someone/aim-engine" + DIGEST


def lookalike_repository(d: dict[str, Any]) -> None:
    vllm(d)["image"] = image_repository(vllm(d)["image"]) + "-evil" + DIGEST


def no_limits(d: dict[str, Any]) -> None:
    del proxy(d)["resources"]["limits"]


def no_memory_limit(d: dict[str, Any]) -> None:
    del vllm(d)["resources"]["limits"]["memory"]


MUTATIONS = [
    (wrong_gpu_limit, {"gpu-limit"}, "it limits it to 16"),
    (wrong_tensor_parallel, {"tensor-parallel"}, "must set --tensor-parallel-size exactly once, as"),
    (second_tensor_parallel, {"tensor-parallel"}, "--tensor-parallel-size exactly once"),
    (short_tensor_parallel, {"tensor-parallel"}, "--tensor-parallel-size exactly once"),
    (two_token_pipeline_parallel, {"pipeline-parallel"}, "--pipeline-parallel-size exactly once"),
    (product_mismatch, {"parallel-product"}, "x pipeline-parallel-size 2 must equal the GPU count"),
    (tag_only_image, {"digest"}, ":2026.11.0 is not pinned by digest"),
    (other_registry, {"repository"}, "image ghcr.io/someone/aim-engine@sha256:"),
    (lookalike_repository, {"repository"}, "-evil@sha256:"),
    (other_proxy_digest, {"repository"}, "nginx-unprivileged:1.30.4-alpine-slim@sha256:abab"),
    (no_limits, {"limits"}, "container api-proxy needs resources.limits with cpu and memory"),
    (no_memory_limit, {"limits"}, "container vllm needs resources.limits"),
]


@pytest.mark.parametrize(("mutate", "expected", "message"), MUTATIONS, ids=[m[0].__name__ for m in MUTATIONS])
def test_each_validation_catches_its_own_mistake(
    declared: tuple[dict[str, Any], dict], mutate: Any, expected: set[str], message: str
) -> None:
    spec, deployment = declared
    wrong = copy.deepcopy(deployment)
    mutate(wrong)
    admission = admit(spec, wrong)
    assert admission.checked
    assert set(admission.failed) == expected, admission.failed
    [text] = admission.failed.values()
    assert message in text, text


def test_missing_annotations_and_vllm_container_are_denied(declared: tuple[dict[str, Any], dict]) -> None:
    spec, deployment = declared
    bare = copy.deepcopy(deployment)
    del bare["metadata"]["annotations"]
    failed = admit(spec, bare).failed
    assert {"annotations", "gpu-limit", "tensor-parallel", "pipeline-parallel", "parallel-product"} <= set(failed)
    assert not any(m.startswith("error:") for m in failed.values()), failed
    renamed = copy.deepcopy(deployment)
    vllm(renamed)["name"] = "engine"
    assert admit(spec, renamed).failed == {"gpu-limit": "expected exactly one container named vllm, found 0"}


def test_only_recipe_labelled_deployments_are_checked(declared: tuple[dict[str, Any], dict]) -> None:
    spec, deployment = declared
    other = copy.deepcopy(deployment)
    del other["metadata"]["labels"]["aim.amd.com/recipe"]
    vllm(other)["image"] = "nginx:latest"
    assert admit(spec, other) == Admission(checked=False, failed={})
    unlabelled = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {}}
    assert not admit(spec, unlabelled).checked


def test_the_repository_is_the_pushed_or_configured_one(dev: PlanResult, prod: PlanResult) -> None:
    def pattern(result: PlanResult) -> str:
        return only(result, VAP).inputs["spec"]["validations"][CHECKS.index("repository")]["expression"]

    assert "'^localhost:5000/aim-engine(:" in pattern(dev)
    assert "'^registry[.]example[.]com/ml-platform/aim-engine(:" in pattern(prod)
    pushed = run_stack("dev", {"aim:registry": "false", "aim:image": "reg.example.com/aim/engine"})
    assert pushed.error is None, pushed.error
    assert "'^reg[.]example[.]com/aim/engine(:" in pattern(pushed)
    spec, deployment = only(pushed, VAP).inputs["spec"], deployment_manifest(pushed)
    assert vllm(deployment)["image"].startswith("reg.example.com/aim/engine@sha256:")
    assert admit(spec, deployment).allowed


def test_image_repository_strips_tag_and_digest() -> None:
    assert image_repository("reg.example.com:5000/team/aim:1.0" + DIGEST) == "reg.example.com:5000/team/aim"
    assert image_repository("localhost:5000/aim-engine" + DIGEST) == "localhost:5000/aim-engine"
    assert image_repository("localhost:5000/aim-engine") == "localhost:5000/aim-engine"
    assert image_repository("aim:1.0") == "aim"
    with pytest.raises(ValueError, match="not an image repository"):
        policy_spec("Reg.example.com/x'; true")


def test_policy_and_binding_scope(prod: PlanResult) -> None:
    policy, binding = only(prod, VAP), only(prod, BINDING)
    name = policy.inputs["metadata"]["name"]
    assert name == "aim-recipe-aim-prod" and "namespace" not in policy.inputs["metadata"]
    spec = policy.inputs["spec"]
    assert spec["matchConstraints"] == {
        "resourceRules": [
            {
                "apiGroups": ["apps"],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["deployments"],
            }
        ]
    }
    assert [c["expression"] for c in spec["matchConditions"]] == [
        "has(object.metadata.labels) && 'aim.amd.com/recipe' in object.metadata.labels"
    ]
    assert all(v.get("message") or v.get("messageExpression") for v in spec["validations"])
    assert binding.inputs["spec"] == {
        "policyName": name,
        "validationActions": ["Deny"],
        "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "aim-prod"}}},
    }
    assert policy.urn in binding.dependencies
    # The engine waits for the admission policy, so its first rollout is already checked.
    deployment = prod.named("kubernetes:apps/v1:Deployment", "aim-engine-deployment")
    assert policy.urn in deployment.dependencies and binding.urn in deployment.dependencies
    component = prod.by_urn(policy.parent)
    assert component is not None and component.type == "aim:infra:RecipeAdmission"
    assert binding.parent == policy.parent


def test_the_deployment_carries_its_recipe_layout(prod: PlanResult) -> None:
    annotations = deployment_manifest(prod)["metadata"]["annotations"]
    recipe = prod.outputs["recipe"]
    assert annotations == {
        "aim.amd.com/gpu-count": str(recipe["gpu_count"]),
        "aim.amd.com/tensor-parallel-size": str(recipe["tensor_parallel_size"]),
        "aim.amd.com/pipeline-parallel-size": str(recipe["pipeline_parallel_size"]),
        "aim.amd.com/owned-by": "aim/prod",
    }


def test_admission_policy_can_be_turned_off() -> None:
    result = run_stack("dev", {"aim:admissionPolicy": "false"})
    assert result.error is None, result.error
    types = {r.type for r in result.resources}
    assert VAP not in types and BINDING not in types and "aim:infra:RecipeAdmission" not in types
    assert result.of_type(NETWORK_POLICY)  # the network guardrails stay


def test_an_external_image_must_be_pinned_by_digest() -> None:
    tag_only = "registry.example.com/ml-platform/aim-engine:2026.11.0"
    with pytest.raises(AimError) as error:
        parse_settings({"buildImage": "false", "registry": "false", "image": tag_only})
    message = str(error.value)
    assert message.startswith(f"aim:image: '{tag_only}' is not allowed: expected a digest-pinned reference")
    assert f"docker buildx imagetools inspect {tag_only}" in message and "\n" not in message
    result = run_stack("prod", {"aim:image": tag_only})
    assert result.error is not None and result.error.startswith("aim:image:") and result.resources == []
    pinned = parse_settings({"buildImage": "false", "registry": "false", "image": tag_only + DIGEST})
    assert pinned.image == tag_only + DIGEST


# --- NetworkPolicies, evaluated ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    ip: str
    namespace: str | None = None  # None: outside the cluster
    labels: tuple[tuple[str, str], ...] = ()


ENGINE_LABELS = {"app.kubernetes.io/name": "aim-engine", "app.kubernetes.io/instance": "aim-engine"}
DOWNLOAD_LABELS = {"app.kubernetes.io/name": "aim-model-download", "app.kubernetes.io/instance": "aim-engine-download"}
METRICS_PORT = 9400
OUTSIDE = Peer("203.0.113.9")
KUBE_DNS = Peer("10.96.0.10", "kube-system", (("k8s-app", "kube-dns"),))
PROMETHEUS = Peer("192.168.7.7", "monitoring", (("app.kubernetes.io/name", "prometheus"),))


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for term in selector.get("matchExpressions") or []:
        present, value = term["key"] in labels, labels.get(term["key"])
        ok = {
            "In": present and value in term.get("values", []),
            "NotIn": not present or value not in term.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[term["operator"]]
        if not ok:
            return False
    return True


def peer_matches(rule_peer: dict[str, Any], peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(peer.ip)
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if peer.namespace is None:
        return False  # pod and namespace selectors only ever match pods
    if "namespaceSelector" in rule_peer:
        namespace_ok = selects(rule_peer["namespaceSelector"], {"kubernetes.io/metadata.name": peer.namespace})
    else:
        namespace_ok = peer.namespace == policy_namespace
    return namespace_ok and selects(rule_peer.get("podSelector") or {}, dict(peer.labels))


def allowed(
    policies: list[dict[str, Any]],
    direction: str,
    pod_labels: dict[str, str],
    namespace: str,
    peer: Peer,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Kubernetes NetworkPolicy semantics: a pod no policy of this direction selects is open; otherwise a connection
    passes when any rule of any selecting policy admits the peer and the port."""
    kind, peers_key = {"Ingress": ("ingress", "from"), "Egress": ("egress", "to")}[direction]
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == namespace
        and direction in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"], pod_labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(kind) or []:
            ports = rule.get("ports")
            port_ok = not ports or any(p.get("protocol", "TCP") == protocol and p.get("port") == port for p in ports)
            peers = rule.get(peers_key)
            peer_ok = not peers or any(peer_matches(p, peer, namespace) for p in peers)
            if port_ok and peer_ok:
                return True
    return False


def network_policies(result: PlanResult) -> list[dict[str, Any]]:
    return [m for m in kubernetes_objects(result) if m["kind"] == "NetworkPolicy"]


def without(policies: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    remaining = [p for p in policies if not p["metadata"]["name"].endswith(suffix)]
    assert len(remaining) == len(policies) - 1
    return remaining


@pytest.fixture(scope="module")
def allow_lists() -> PlanResult:
    result = run_stack("dev", {**ALLOW_LISTS, "aim:monitoring": "false"})
    assert result.error is None, result.error
    return result


@pytest.fixture(scope="module")
def air_gapped() -> PlanResult:
    result = run_stack("prod", {"aim:airGapped": "true", **ALLOW_LISTS})
    assert result.error is None, result.error
    return result


def test_default_policies_open_the_api_and_close_the_rest(dev: PlanResult) -> None:
    policies = network_policies(dev)
    assert {p["metadata"]["name"] for p in policies} == {
        "aim-network-default-deny-ingress",
        "aim-network-default-deny-egress",
        "aim-network-api",
        "aim-network-metrics",
        "aim-network-download-egress",
    }
    for policy in dev.of_type(NETWORK_POLICY):
        assert engine_namespace(dev).urn in policy.dependencies
        assert policy.inputs["metadata"]["namespace"] == "aim"

    def ingress(policies: list[dict[str, Any]], peer: Peer, port: int = 8000, labels: dict | None = None) -> bool:
        return allowed(policies, "Ingress", labels or ENGINE_LABELS, "aim", peer, port)

    assert ingress(policies, OUTSIDE)  # aim:apiAllowedCidrs defaults to 0.0.0.0/0
    assert ingress(policies, PROMETHEUS)
    assert not ingress(policies, OUTSIDE, port=9000)
    # The metrics listener: Prometheus only, never the API's clients.
    assert ingress(policies, PROMETHEUS, port=METRICS_PORT) and not ingress(policies, OUTSIDE, port=METRICS_PORT)
    # Any other pod of the namespace is closed by the default deny; without it, it would be open.
    other_pod = {"app": "debug"}
    assert not ingress(policies, OUTSIDE, labels=other_pod)
    assert ingress(without(policies, "default-deny-ingress"), OUTSIDE, labels=other_pod)


def test_allow_lists_admit_only_their_networks_and_namespaces(allow_lists: PlanResult) -> None:
    policies = network_policies(allow_lists)
    assert "aim-network-metrics" not in {p["metadata"]["name"] for p in policies}  # monitoring is off

    def ingress(peer: Peer, chosen: list[dict[str, Any]] = policies) -> bool:
        return allowed(chosen, "Ingress", ENGINE_LABELS, "aim", peer, 8000)

    assert ingress(Peer("10.20.3.4")) and ingress(Peer("192.0.2.200"))
    assert not ingress(OUTSIDE) and not ingress(Peer("10.21.0.1"))
    assert ingress(Peer("192.168.1.5", "gateway")) and ingress(Peer("192.168.1.6", "ingress-nginx"))
    assert not ingress(Peer("192.168.1.7", "default")) and not ingress(PROMETHEUS)
    # The API policy is what opens the port: without it (the default deny still selects the pods) nothing gets in.
    assert not ingress(Peer("10.20.3.4"), without(policies, "-api"))
    api = next(p for p in policies if p["metadata"]["name"] == "aim-network-api")
    [rule] = api["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert rule["from"][-1] == {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["gateway", "ingress-nginx"]}
            ]
        }
    }


def test_metrics_scrape_only_from_the_monitoring_namespace(prod: PlanResult) -> None:
    policies = network_policies(prod)
    metrics = next(p for p in policies if p["metadata"]["name"] == "aim-network-metrics")
    assert metrics["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": METRICS_PORT}]
    only_metrics = [p for p in policies if not p["metadata"]["name"].endswith("-api")]
    assert allowed(only_metrics, "Ingress", ENGINE_LABELS, "aim-prod", PROMETHEUS, METRICS_PORT)
    assert not allowed(only_metrics, "Ingress", ENGINE_LABELS, "aim-prod", PROMETHEUS, 8000)
    default = Peer("192.168.7.8", "default")
    assert not allowed(only_metrics, "Ingress", ENGINE_LABELS, "aim-prod", default, METRICS_PORT)
    assert not allowed(
        without(only_metrics, "-metrics"), "Ingress", ENGINE_LABELS, "aim-prod", PROMETHEUS, METRICS_PORT
    )


def test_only_the_downloader_has_egress_dns_and_public_https(prod: PlanResult) -> None:
    policies = network_policies(prod)

    def egress(
        labels: dict[str, str], peer: Peer, port: int, protocol: str = "TCP", chosen: list[dict[str, Any]] = policies
    ) -> bool:
        return allowed(chosen, "Egress", labels, "aim-prod", peer, port, protocol)

    hub = Peer("18.160.0.1")  # the Hub's CDN
    # The engine pods: nothing at all, not even DNS.
    for peer, port, protocol in ((KUBE_DNS, 53, "UDP"), (hub, 443, "TCP"), (Peer("10.0.0.5", "default"), 5432, "TCP")):
        assert not egress(ENGINE_LABELS, peer, port, protocol)
    # The download pods: cluster DNS and HTTPS to public addresses only.
    assert egress(DOWNLOAD_LABELS, KUBE_DNS, 53, "UDP") and egress(DOWNLOAD_LABELS, KUBE_DNS, 53, "TCP")
    assert egress(DOWNLOAD_LABELS, hub, 443) and egress(DOWNLOAD_LABELS, Peer("2600:9000:2000::1"), 443)
    assert not egress(DOWNLOAD_LABELS, Peer("8.8.8.8"), 53, "UDP")  # DNS only through the cluster's
    assert not egress(DOWNLOAD_LABELS, hub, 80)
    for private in ("10.96.0.1", "172.20.0.5", "192.168.3.3", "169.254.169.254", "100.64.1.1", "fd00:ec2::254"):
        assert not egress(DOWNLOAD_LABELS, Peer(private), 443), private
    # The default deny is what closes the engine: without it the engine pods would be open.
    assert egress(ENGINE_LABELS, hub, 80, chosen=without(policies, "-default-deny-egress"))


def test_a_public_pod_cidr_is_kept_from_the_downloader() -> None:
    result = run_stack("prod", {"aim:podCidr": "198.18.0.0/15"})
    assert result.error is None, result.error
    policies = network_policies(result)
    assert not allowed(policies, "Egress", DOWNLOAD_LABELS, "aim-prod", Peer("198.18.4.4"), 443)
    assert allowed(policies, "Egress", DOWNLOAD_LABELS, "aim-prod", Peer("198.20.0.1"), 443)


def test_air_gapped_nothing_may_connect_anywhere(air_gapped: PlanResult) -> None:
    policies = network_policies(air_gapped)
    assert "aim-network-download-egress" not in {p["metadata"]["name"] for p in policies}
    for labels in (ENGINE_LABELS, DOWNLOAD_LABELS):
        for peer, port, protocol in ((KUBE_DNS, 53, "UDP"), (Peer("18.160.0.1"), 443, "TCP")):
            assert not allowed(policies, "Egress", labels, "aim-prod", peer, port, protocol)
    assert allowed(without(policies, "-default-deny-egress"), "Egress", ENGINE_LABELS, "aim-prod", KUBE_DNS, 53, "UDP")


def test_load_balancer_admits_only_the_allowed_networks(dev: PlanResult) -> None:
    result = run_stack("dev", {"aim:serviceType": "LoadBalancer", "aim:apiAllowedCidrs": '["10.20.0.0/16"]'})
    assert result.error is None, result.error
    service = result.named("kubernetes:core/v1:Service", "aim-engine-service").inputs["spec"]
    assert service["type"] == "LoadBalancer" and service["loadBalancerSourceRanges"] == ["10.20.0.0/16"]
    node_port = dev.named("kubernetes:core/v1:Service", "aim-engine-service").inputs["spec"]
    assert "loadBalancerSourceRanges" not in node_port


@pytest.mark.parametrize("variant", ["allow_lists", "air_gapped"])
def test_guardrail_objects_validate_strictly(variant: str, request: pytest.FixtureRequest) -> None:
    result: PlanResult = request.getfixturevalue(variant)
    kinds = {"NetworkPolicy", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Namespace"}
    checked = 0
    for manifest in kubernetes_objects(result):
        if manifest["kind"] in kinds:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
            checked += 1
    assert checked >= 6


# --- pod security -----------------------------------------------------------------------------------------------------

#: Pod Security Standards (Kubernetes v1.30), baseline profile: capabilities a container may add, sysctls a pod may
#: set, SELinux types it may ask for.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t"}
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]


def baseline_violations(metadata: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """Every baseline control of the Pod Security Standards the pod breaks, as `control: where`."""
    problems = []
    pod_context = spec.get("securityContext") or {}
    contexts = [("pod", pod_context)] + [(c["name"], c.get("securityContext") or {}) for c in _containers(spec)]
    for who, context in contexts:
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"HostProcess: {who}")
        if (context.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            problems.append(f"AppArmor: {who}")
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            problems.append(f"SELinux: {who}")
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            problems.append(f"Seccomp: {who}")
    problems += [f"Host namespaces: {f}" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    for container in _containers(spec):
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            problems.append(f"Privileged containers: {container['name']}")
        added = set((context.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            problems.append(f"Capabilities: {container['name']} adds {sorted(added)}")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"Host ports: {container['name']}")
        if context.get("procMount", "Default") != "Default":
            problems.append(f"/proc mount type: {container['name']}")
    problems += [f"HostPath volumes: {v['name']}" for v in spec.get("volumes") or [] if "hostPath" in v]
    for key, value in (metadata.get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            problems.append(f"AppArmor: annotation {key}")
    problems += [f"Sysctls: {s['name']}" for s in pod_context.get("sysctls") or [] if s["name"] not in SAFE_SYSCTLS]
    return problems


def restricted_gaps(spec: dict[str, Any]) -> list[str]:
    """The controls the restricted profile adds on top of baseline that the pod does not meet."""
    pod = spec.get("securityContext") or {}
    containers = [(c.get("securityContext") or {}) for c in _containers(spec)]
    gaps = []
    if any(set(v) - {"name"} - RESTRICTED_VOLUMES for v in spec.get("volumes") or []):
        gaps.append("Volume types")
    if any(c.get("allowPrivilegeEscalation") is not False for c in containers):
        gaps.append("Privilege escalation")
    if not all(c.get("runAsNonRoot", pod.get("runAsNonRoot")) is True for c in containers):
        gaps.append("Running as non-root")
    if any(c.get("runAsUser", pod.get("runAsUser")) == 0 for c in containers):
        gaps.append("Running as non-root user")
    seccomp = [(c.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type") for c in containers]
    if any(t not in ("RuntimeDefault", "Localhost") for t in seccomp):
        gaps.append("Seccomp")
    capabilities = [c.get("capabilities") or {} for c in containers]
    if any("ALL" not in (c.get("drop") or []) or set(c.get("add") or []) - {"NET_BIND_SERVICE"} for c in capabilities):
        gaps.append("Capabilities")
    return gaps


def pod_template(result: PlanResult) -> dict[str, Any]:
    return deployment_manifest(result)["spec"]["template"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_engine_pod_meets_pod_security_baseline(stack: str, dev: PlanResult, prod: PlanResult) -> None:
    template = pod_template({"dev": dev, "prod": prod}[stack])
    assert baseline_violations(template["metadata"], template["spec"]) == []
    # Restricted is missed only because the engine runs as root (warned and audited by the namespace's labels).
    assert restricted_gaps(template["spec"]) == ["Running as non-root"]


def privileged(spec: dict[str, Any]) -> None:
    spec["containers"][0]["securityContext"]["privileged"] = True


def sys_admin(spec: dict[str, Any]) -> None:
    spec["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]


def host_path(spec: dict[str, Any]) -> None:
    spec["volumes"].append({"name": "dev", "hostPath": {"path": "/dev"}})


def host_network(spec: dict[str, Any]) -> None:
    spec["hostNetwork"] = True


def unconfined(spec: dict[str, Any]) -> None:
    spec["securityContext"]["seccompProfile"] = {"type": "Unconfined"}


def unsafe_sysctl(spec: dict[str, Any]) -> None:
    spec["securityContext"]["sysctls"] = [{"name": "kernel.msgmax", "value": "65536"}]


def host_port(spec: dict[str, Any]) -> None:
    spec["containers"][1]["ports"][0]["hostPort"] = 8000


def unmasked_proc(spec: dict[str, Any]) -> None:
    spec["containers"][1]["securityContext"]["procMount"] = "Unmasked"


@pytest.mark.parametrize(
    ("mutate", "control"),
    [
        (privileged, "Privileged containers: vllm"),
        (sys_admin, "Capabilities: vllm adds ['SYS_ADMIN']"),
        (host_path, "HostPath volumes: dev"),
        (host_network, "Host namespaces: hostNetwork"),
        (unconfined, "Seccomp: pod"),
        (unsafe_sysctl, "Sysctls: kernel.msgmax"),
        (host_port, "Host ports: api-proxy"),
        (unmasked_proc, "/proc mount type: api-proxy"),
    ],
)
def test_the_baseline_checker_catches_a_violation(dev: PlanResult, mutate: Any, control: str) -> None:
    template = copy.deepcopy(pod_template(dev))
    mutate(template["spec"])
    assert baseline_violations(template["metadata"], template["spec"]) == [control]


def test_least_privilege_settings(dev: PlanResult, prod: PlanResult) -> None:
    for result in (dev, prod):
        spec = pod_template(result)["spec"]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {44, 110} <= set(spec["securityContext"]["supplementalGroups"])
        assert spec["automountServiceAccountToken"] is False
        assert "initContainers" not in spec  # the download is a Job of its own (tests/stack/test_closed_by_default.py)
        for container in _containers(spec):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert "privileged" not in context
        engine, sidecar = spec["containers"]
        assert "runAsUser" not in engine["securityContext"]
        assert engine["securityContext"]["readOnlyRootFilesystem"] is False  # caches and AITER JIT (see engine.py)
        assert sidecar["securityContext"]["runAsUser"] == 101 and sidecar["securityContext"]["runAsNonRoot"] is True
        assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "proxy-tmp", "mountPath": "/tmp"} in sidecar["volumeMounts"]
        # No RBAC for the workload: nothing in the AIM namespace and nothing under the engine component.
        namespace = engine_namespace(result).inputs["metadata"]["name"]
        for resource in result.resources:
            if "rbac.authorization.k8s.io" in resource.type:
                assert "aim:infra:AimEngine" not in resource.urn
                assert (resource.inputs.get("metadata") or {}).get("namespace") != namespace


def test_namespace_enforces_baseline_and_warns_restricted(dev: PlanResult) -> None:
    labels = engine_namespace(dev).inputs["metadata"]["labels"]
    assert {k: v for k, v in labels.items() if k.startswith("pod-security.kubernetes.io/")} == {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "v1.30",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "v1.30",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "v1.30",
    }
