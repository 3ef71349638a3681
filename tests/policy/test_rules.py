"""Each rule of the pack on hand-made objects: at least one that violates it and one that passes, for every rule."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from policy.aim_policies import (
    CONTAINER_LIMITS,
    GPU_REQUESTS,
    IMAGES_PINNED,
    LOAD_BALANCER_RANGES,
    NETWORK_POLICY,
    POLICIES,
    gpu_count,
    image_problem,
    parse_type,
    source_range_problem,
)
from tests.policy.support import Violation, check_manifests, declared, resource_args, run_resource_policy

DIGEST = "sha256:" + "0123456789abcdef" * 4
PINNED = f"registry.example.com/ml/aim-engine@{DIGEST}"
TAGGED = "registry.example.com/ml/aim-engine:2026.11.0"
AIM_LABELS = {"app.kubernetes.io/part-of": "aim"}
RECIPE_LABELS = {"app.kubernetes.io/part-of": "aim", "aim.amd.com/recipe": "qwen3-8b-mi300x-tp1-bf16-throughput"}


def container(
    name: str = "app",
    image: str = PINNED,
    *,
    limits: dict[str, Any] | None = None,
    requests: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A container with CPU and memory limits unless `limits` says otherwise."""
    return {
        "name": name,
        "image": image,
        "resources": {
            "requests": {"cpu": "1", "memory": "1Gi", **(requests or {})},
            "limits": {"cpu": "2", "memory": "2Gi"} if limits is None else limits,
        },
    }


def gpu_container(request: Any = "1", limit: Any = "1", name: str = "vllm") -> dict[str, Any]:
    requests = {} if request is None else {"amd.com/gpu": request}
    limits = {"cpu": "2", "memory": "2Gi", **({} if limit is None else {"amd.com/gpu": limit})}
    return container(name, requests=requests, limits=limits)


POD_TEMPLATE_PATHS = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "Pod": "v1",
}


def workload(
    kind: str = "Deployment",
    *,
    containers: list[dict[str, Any]] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    template_labels: dict[str, str] | None = None,
    namespace: str | None = "aim",
    name: str = "engine",
) -> dict[str, Any]:
    """A manifest of any workload kind, its pod spec where that kind keeps it."""
    pod_spec: dict[str, Any] = {"containers": containers if containers is not None else [container()]}
    if init_containers:
        pod_spec["initContainers"] = init_containers
    metadata: dict[str, Any] = {"name": name, "labels": dict(labels or {})}
    if namespace is not None:
        metadata["namespace"] = namespace
    manifest: dict[str, Any] = {"apiVersion": POD_TEMPLATE_PATHS[kind], "kind": kind, "metadata": metadata}
    template = {"metadata": {"labels": dict(template_labels or labels or {})}, "spec": pod_spec}
    if kind == "Pod":
        metadata["labels"].update(template_labels or {})
        manifest["spec"] = pod_spec
    elif kind == "CronJob":
        manifest["spec"] = {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}
    else:
        manifest["spec"] = {"template": template}
    return manifest


def service(service_type: str, ranges: Any = None, namespace: str = "aim") -> dict[str, Any]:
    spec: dict[str, Any] = {"type": service_type, "ports": [{"port": 8000}]}
    if ranges is not None:
        spec["loadBalancerSourceRanges"] = ranges
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": namespace}, "spec": spec}


def network_policy(namespace: str | None = "aim", api_version: str = "networking.k8s.io/v1") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "aim-engine"}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": api_version, "kind": "NetworkPolicy", "metadata": metadata, "spec": {"podSelector": {}}}


def violations(policy_name: str, *manifests: dict[str, Any]) -> list[Violation]:
    return [v for v in check_manifests(*manifests, policies=POLICIES) if v.policy == policy_name]


# --- type tokens ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("kubernetes:apps/v1:Deployment", ("apps", "Deployment")),
        ("kubernetes:core/v1:Pod", ("core", "Pod")),
        ("kubernetes:batch/v1:CronJob", ("batch", "CronJob")),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", ("networking.k8s.io", "NetworkPolicy")),
        ("kubernetes:helm.sh/v3:Release", ("helm.sh", "Release")),
        ("pulumi:providers:kubernetes", None),
        ("aim:infra:AimEngine", None),
        ("docker:index/image:Image", None),
    ],
)
def test_type_tokens(token: str, expected: tuple[str, str] | None) -> None:
    assert parse_type(token) == expected


# --- rule 1: images -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "strict", "problem"),
    [
        (PINNED, True, None),
        (f"registry.example.com/ml/aim-engine:2026.11.0@{DIGEST}", True, None),
        (f"localhost:5000/aim-engine@{DIGEST}", True, None),
        (TAGGED, False, None),
        ("localhost:5000/aim-engine:1.0", False, None),
        (TAGGED, True, "is pinned only by the tag :2026.11.0"),
        ("localhost:5000/aim-engine", False, "has no tag"),
        ("busybox", False, "has no tag"),
        ("busybox:latest", False, "uses the mutable tag :latest"),
        ("localhost:5000/aim-engine:latest", True, "uses the mutable tag :latest"),
        ("registry.example.com/ml/aim-engine@sha256:abc", True, "has a malformed digest"),
        ("registry.example.com/ml/aim-engine@sha512:" + "0" * 128, False, "has a malformed digest"),
        ("", False, "has no image"),
    ],
)
def test_image_references(image: str, strict: bool, problem: str | None) -> None:
    found = image_problem(image, require_digest=strict)
    assert found == problem if problem is None else (found or "").startswith(problem)


@pytest.mark.parametrize("kind", sorted(POD_TEMPLATE_PATHS))
def test_aim_workload_of_every_kind_needs_a_digest(kind: str) -> None:
    bad = workload(kind, labels=AIM_LABELS, containers=[container("vllm", TAGGED)])
    [violation] = violations(IMAGES_PINNED.name, bad)
    assert violation.message.startswith(f"{kind} aim/engine (Pulumi resource engine): container 'vllm' image")
    assert "is pinned only by the tag :2026.11.0" in violation.message
    assert "@sha256:" in violation.message  # the fix
    assert not violations(IMAGES_PINNED.name, workload(kind, labels=AIM_LABELS))


def test_aim_init_container_needs_a_digest_too() -> None:
    bad = workload(labels=AIM_LABELS, init_containers=[container("model-download", TAGGED)])
    [violation] = violations(IMAGES_PINNED.name, bad)
    assert "init container 'model-download'" in violation.message


def test_a_recipe_label_alone_or_on_the_pod_template_makes_a_workload_aim() -> None:
    recipe_only = {"aim.amd.com/recipe": "some-recipe"}
    tagged = [container("vllm", TAGGED)]
    assert violations(IMAGES_PINNED.name, workload(labels=recipe_only, containers=tagged))
    assert violations(IMAGES_PINNED.name, workload(labels={}, template_labels=AIM_LABELS, containers=tagged))
    other_part = {"app.kubernetes.io/part-of": "aim-cluster-addons"}
    assert not violations(IMAGES_PINNED.name, workload(labels=other_part, containers=tagged))


@pytest.mark.parametrize(
    ("image", "problem"),
    [("rancher/local-path-provisioner:latest", ":latest"), ("rancher/local-path-provisioner", "has no tag")],
)
def test_other_workloads_must_not_run_latest_or_untagged(image: str, problem: str) -> None:
    bad = workload("DaemonSet", labels={"app": "exporter"}, containers=[container("exporter", image)])
    [violation] = violations(IMAGES_PINNED.name, bad)
    assert f"container 'exporter' image '{image}'" in violation.message
    assert problem in violation.message
    assert "explicit version tag" in violation.message


def test_other_workloads_may_use_a_version_tag() -> None:
    good = workload("DaemonSet", labels={"app": "exporter"}, containers=[container("exporter", "rancher/lpp:v0.0.37")])
    assert not violations(IMAGES_PINNED.name, good)


# --- rule 2: CPU and memory limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "missing"),
    [
        ({"memory": "128Mi"}, "no resources.limits.cpu;"),
        ({"cpu": "1"}, "no resources.limits.memory;"),
        ({}, "no resources.limits.cpu and no resources.limits.memory;"),
        ({"cpu": "0", "memory": "1Gi"}, "no resources.limits.cpu;"),
        ({"cpu": 0, "memory": "1Gi"}, "no resources.limits.cpu;"),
        ({"cpu": "", "memory": "1Gi"}, "no resources.limits.cpu;"),
    ],
)
def test_container_without_cpu_or_memory_limit(limits: dict[str, Any], missing: str) -> None:
    bad = workload(labels={"app": "x"}, containers=[container("app", limits=limits)])
    [violation] = violations(CONTAINER_LIMITS.name, bad)
    assert violation.message.startswith("Deployment aim/engine (Pulumi resource engine): container 'app' has ")
    assert missing in violation.message


def test_container_without_resources_at_all() -> None:
    bare = {"name": "app", "image": TAGGED}
    [violation] = violations(CONTAINER_LIMITS.name, workload(containers=[bare]))
    assert "no resources.limits.cpu and no resources.limits.memory" in violation.message


@pytest.mark.parametrize("kind", sorted(POD_TEMPLATE_PATHS))
def test_init_containers_of_every_kind_need_limits(kind: str) -> None:
    bad = workload(kind, init_containers=[container("init", limits={"cpu": "1"})])
    [violation] = violations(CONTAINER_LIMITS.name, bad)
    assert "init container 'init' has no resources.limits.memory" in violation.message


def test_limits_as_numbers_or_quantities_pass() -> None:
    good = workload(containers=[container("a", limits={"cpu": 2, "memory": "64Gi"}), container("b")])
    assert not violations(CONTAINER_LIMITS.name, good)


def test_objects_that_run_no_pods_are_not_checked() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"image": "x:latest"}}
    assert not check_manifests(config_map, service("ClusterIP"), policies=POLICIES)


# --- rule 3: GPUs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("request_", "limit"), [("1", "1"), ("8", 8), (2, 2.0)])
def test_gpu_request_equal_to_limit_passes(request_: Any, limit: Any) -> None:
    assert not violations(
        GPU_REQUESTS.name, workload(labels=RECIPE_LABELS, containers=[gpu_container(request_, limit)])
    )


@pytest.mark.parametrize(
    ("request_", "limit"),
    [("1", "2"), (None, "1"), ("1", None), ("0.5", "0.5"), ("1", "1500m")],
)
def test_gpu_request_must_equal_limit(request_: Any, limit: Any) -> None:
    bad = workload("StatefulSet", labels={"app": "x"}, containers=[gpu_container(request_, limit)])
    [violation] = violations(GPU_REQUESTS.name, bad)
    assert violation.message.startswith("StatefulSet aim/engine (Pulumi resource engine): container 'vllm' has")
    assert f"request {request_!r} and limit {limit!r}" in violation.message
    assert "same whole number" in violation.message


def test_gpu_rule_covers_init_containers() -> None:
    bad = workload(labels=RECIPE_LABELS, containers=[gpu_container()], init_containers=[gpu_container("1", "2", "w")])
    [violation] = violations(GPU_REQUESTS.name, bad)
    assert "init container 'w'" in violation.message


def test_recipe_deployment_must_request_gpus() -> None:
    bad = workload(labels=RECIPE_LABELS, containers=[container("vllm")])
    [violation] = violations(GPU_REQUESTS.name, bad)
    assert "carries aim.amd.com/recipe=qwen3-8b-mi300x-tp1-bf16-throughput but no container requests" in (
        violation.message
    )


def test_recipe_deployment_whose_only_gpu_is_in_an_init_container_requests_none() -> None:
    bad = workload(labels=RECIPE_LABELS, containers=[container("vllm")], init_containers=[gpu_container(name="w")])
    [violation] = violations(GPU_REQUESTS.name, bad)
    assert "no container requests amd.com/gpu" in violation.message


def test_recipe_label_on_the_pod_template_counts() -> None:
    bad = workload(labels={}, template_labels=RECIPE_LABELS, containers=[container("vllm")])
    assert violations(GPU_REQUESTS.name, bad)


def test_deployments_without_a_recipe_need_no_gpu() -> None:
    assert not violations(GPU_REQUESTS.name, workload(labels=AIM_LABELS, containers=[container("web")]))
    # The "must request" half is about the recipe Deployment only.
    assert not violations(GPU_REQUESTS.name, workload("Job", labels=RECIPE_LABELS, containers=[container("bench")]))


@pytest.mark.parametrize(
    ("quantity", "count"), [(1, 1), (2.0, 2), ("8", 8), (" 4 ", 4), ("0.5", None), (1.5, None), (True, None)]
)
def test_gpu_count(quantity: Any, count: int | None) -> None:
    assert gpu_count(quantity) == count


# --- rule 4 (stack): NetworkPolicy in the AIM namespace -------------------------------------------------------------


def test_recipe_namespace_with_a_network_policy_passes() -> None:
    engine = workload(labels=RECIPE_LABELS, containers=[gpu_container()])
    assert not violations(NETWORK_POLICY.name, engine, network_policy("aim"))


def test_recipe_namespace_without_a_network_policy() -> None:
    engine = workload(labels=RECIPE_LABELS, containers=[gpu_container()])
    elsewhere = network_policy("monitoring")
    [violation] = violations(NETWORK_POLICY.name, engine, elsewhere)
    assert violation.urn == declared(engine).urn
    assert violation.message.startswith("Deployment aim/engine (Pulumi resource engine): its namespace 'aim' has no")
    assert "NetworkPolicy in 'aim'" in violation.message


def test_only_a_network_policy_counts() -> None:
    engine = workload(labels=RECIPE_LABELS, containers=[gpu_container()])
    decoy = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "network-policy", "namespace": "aim"}}
    assert violations(NETWORK_POLICY.name, engine, decoy)


def test_every_recipe_namespace_is_checked() -> None:
    engines = [
        workload(labels=RECIPE_LABELS, containers=[gpu_container()], namespace=ns, name=f"engine-{ns}")
        for ns in ("aim", "aim-b")
    ]
    [violation] = violations(NETWORK_POLICY.name, *engines, network_policy("aim"))
    assert "namespace 'aim-b'" in violation.message


def test_objects_without_a_namespace_are_in_default() -> None:
    engine = workload(labels=RECIPE_LABELS, containers=[gpu_container()], namespace=None)
    assert not violations(NETWORK_POLICY.name, engine, network_policy(None))
    assert not violations(NETWORK_POLICY.name, engine, network_policy("default"))
    assert violations(NETWORK_POLICY.name, engine)


def test_no_recipe_deployment_no_network_policy_needed() -> None:
    assert not violations(NETWORK_POLICY.name, workload(labels=AIM_LABELS), service("ClusterIP"))


# --- rule 5: LoadBalancer source ranges -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ranges", "problem"),
    [
        (None, "a LoadBalancer without loadBalancerSourceRanges is open to the internet"),
        ([], "a LoadBalancer without loadBalancerSourceRanges is open to the internet"),
        (["0.0.0.0/0"], "'0.0.0.0/0' admits every address"),
        (["10.0.0.0/8", "::/0"], "'::/0' admits every address"),
        (["::0/0"], "'::0/0' admits every address"),
        (["10.1.2.3/0"], "'10.1.2.3/0' admits every address"),
        (["10.0.0.0/33"], "'10.0.0.0/33' is not a CIDR"),
        (["everyone"], "'everyone' is not a CIDR"),
    ],
)
def test_load_balancer_needs_restrictive_source_ranges(ranges: Any, problem: str) -> None:
    [violation] = violations(LOAD_BALANCER_RANGES.name, service("LoadBalancer", ranges))
    assert violation.message.startswith("Service aim/api (Pulumi resource api): ")
    assert problem in violation.message
    assert "spec.loadBalancerSourceRanges" in violation.message


@pytest.mark.parametrize("ranges", [["10.0.0.0/8"], ["192.168.10.0/24", "2001:db8::/32"], ["203.0.113.7/32"]])
def test_load_balancer_with_client_networks_passes(ranges: list[str]) -> None:
    assert not violations(LOAD_BALANCER_RANGES.name, service("LoadBalancer", ranges))


@pytest.mark.parametrize("service_type", ["NodePort", "ClusterIP"])
def test_other_service_types_need_no_ranges(service_type: str) -> None:
    assert not violations(LOAD_BALANCER_RANGES.name, service(service_type))


@pytest.mark.parametrize(("cidr", "ok"), [("10.0.0.0/8", True), ("0.0.0.0/0", False), ("fd00::/8", True)])
def test_source_range_problem(cidr: str, ok: bool) -> None:
    assert (source_range_problem(cidr) is None) is ok


# --- preview: values not known yet ----------------------------------------------------------------------------------


def test_an_image_not_known_during_preview_is_neither_passed_nor_failed() -> None:
    """The SDK's proxy raises UnknownValueError (the server reports "can't run during preview"): no false verdict."""
    resource = declared(workload(labels=AIM_LABELS, containers=[container("vllm", UNKNOWN_STRING_VALUE)]))
    with pytest.raises(UnknownValueError):
        run_resource_policy(IMAGES_PINNED, resource_args(resource))
    # The other rules read other fields of the same object and still run.
    assert not run_resource_policy(CONTAINER_LIMITS, resource_args(resource))
