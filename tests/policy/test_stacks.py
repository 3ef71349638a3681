"""The policies on what the mocked dev and prod stacks declare today: only their known gaps are violations.

KNOWN_GAPS holds every rule a stack configuration does not meet, as the program stands (none today): the tests assert
that exact state. The rules the stacks do meet are
shown to be live on the stacks' own objects: the same records with one field broken are reported.
"""

from __future__ import annotations

import copy
from collections import Counter

import pytest

from aim_infra.stack.plan import Declared, PlanResult
from policy.aim_policies import (
    CONTAINER_LIMITS,
    GPU_REQUESTS,
    IMAGES_PINNED,
    LOAD_BALANCER_RANGES,
    NETWORK_POLICY,
    POLICIES,
    workload,
)
from tests.policy.support import Violation, check, check_plan, resource_args

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
NETWORK_POLICY_TYPE = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
AIM_DEPLOYMENT = "aim-engine-deployment"
AIM_SERVICE = "aim-engine-service"
LOCAL_PATH = "addons-local-path-provisioner"
CONFIGS = ("dev", "prod", "prod_load_balancer")

#: (policy, Pulumi resource name) → number of violations, per stack configuration, as the program stands today.
KNOWN_GAPS: dict[str, Counter[tuple[str, str]]] = {
    "dev": Counter(),
    "prod": Counter(),
    "prod_load_balancer": Counter(),
}


def tally(plan: PlanResult, violations: list[Violation]) -> Counter[tuple[str, str]]:
    names = {r.urn: r.name for r in plan.resources}
    return Counter((v.policy, names.get(v.urn or "", "<stack>")) for v in violations)


def of(violations: list[Violation], policy: str) -> list[Violation]:
    return [v for v in violations if v.policy == policy]


def replaced(plan: PlanResult, changed: Declared) -> list[Declared]:
    """The plan's resources with one of them replaced by a changed copy."""
    return [changed if r.urn == changed.urn else r for r in plan.resources]


@pytest.mark.parametrize("config", CONFIGS)
def test_stack_violates_only_its_known_gaps(config: str, request: pytest.FixtureRequest) -> None:
    plan: PlanResult = request.getfixturevalue(config)
    assert tally(plan, check_plan(plan, POLICIES)) == KNOWN_GAPS[config]


@pytest.mark.parametrize("config", CONFIGS)
def test_policies_see_the_aim_workload(config: str, request: pytest.FixtureRequest) -> None:
    """Not vacuous: the recipe Deployment is read as an AIM workload with its GPU request and both containers."""
    plan: PlanResult = request.getfixturevalue(config)
    args = resource_args(plan.named(DEPLOYMENT, AIM_DEPLOYMENT), plan)
    found = workload(args.resource_type, args.props, args.name)
    assert found is not None and found.is_aim and found.has_recipe
    containers = {c.label: c for c in found.containers()}
    assert set(containers) == {"container 'vllm'", "container 'api-proxy'"}
    assert int(containers["container 'vllm'"].resources("requests")["amd.com/gpu"]) >= 1
    assert args.provider is not None and args.provider.resource_type == "pulumi:providers:kubernetes"


# --- container limits, live on the local-path provisioner (dev) ------------------------------------------------


def test_container_limits_fire_on_the_local_path_provisioner_without_a_cpu_limit(dev: PlanResult) -> None:
    assert not of(check_plan(dev, POLICIES), CONTAINER_LIMITS.name)
    provisioner = copy.deepcopy(dev.named(DEPLOYMENT, LOCAL_PATH))
    del provisioner.inputs["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]
    broken = copy.copy(dev)
    broken.resources = [provisioner if r.urn == provisioner.urn else r for r in dev.resources]
    [violation] = of(check_plan(broken, POLICIES), CONTAINER_LIMITS.name)
    assert violation.urn == provisioner.urn
    assert violation.message.startswith(
        "Deployment local-path-storage/local-path-provisioner (Pulumi resource addons-local-path-provisioner): "
        "container 'local-path-provisioner' has no resources.limits.cpu;"
    )


# --- rules the stacks meet, live on their own objects --------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
def test_aim_images_are_digest_pinned(config: str, request: pytest.FixtureRequest) -> None:
    plan: PlanResult = request.getfixturevalue(config)
    engine = plan.named(DEPLOYMENT, AIM_DEPLOYMENT)
    pod = engine.inputs["spec"]["template"]["spec"]
    assert all("@sha256:" in c["image"] for c in [*pod["containers"], *pod.get("initContainers", [])])
    assert not of(check_plan(plan, POLICIES), IMAGES_PINNED.name)

    tag_only = copy.deepcopy(engine)
    vllm = tag_only.inputs["spec"]["template"]["spec"]["containers"][0]
    vllm["image"] = vllm["image"].split("@")[0].rsplit(":", 1)[0] + ":2026.11.0"
    [violation] = of(check(replaced(plan, tag_only), POLICIES, plan), IMAGES_PINNED.name)
    assert "container 'vllm' image" in violation.message and "pinned only by the tag :2026.11.0" in violation.message


@pytest.mark.parametrize("config", CONFIGS)
def test_gpu_request_equals_limit_on_the_engine(config: str, request: pytest.FixtureRequest) -> None:
    plan: PlanResult = request.getfixturevalue(config)
    assert not of(check_plan(plan, POLICIES), GPU_REQUESTS.name)

    no_gpu = copy.deepcopy(plan.named(DEPLOYMENT, AIM_DEPLOYMENT))
    resources = no_gpu.inputs["spec"]["template"]["spec"]["containers"][0]["resources"]
    resources["limits"]["amd.com/gpu"] = int(resources["requests"]["amd.com/gpu"]) + 1
    [violation] = of(check(replaced(plan, no_gpu), POLICIES, plan), GPU_REQUESTS.name)
    assert "container 'vllm' has amd.com/gpu request" in violation.message


@pytest.mark.parametrize("config", CONFIGS)
def test_aim_namespace_has_a_network_policy(config: str, request: pytest.FixtureRequest) -> None:
    plan: PlanResult = request.getfixturevalue(config)
    engine = plan.named(DEPLOYMENT, AIM_DEPLOYMENT)
    namespace = engine.inputs["metadata"]["namespace"]
    assert namespace in {p.inputs["metadata"].get("namespace") for p in plan.of_type(NETWORK_POLICY_TYPE)}
    assert not of(check_plan(plan, POLICIES), NETWORK_POLICY.name)

    without = [r for r in plan.resources if r.type != NETWORK_POLICY_TYPE]
    [violation] = of(check(without, POLICIES, plan), NETWORK_POLICY.name)
    assert violation.urn == engine.urn
    assert f"namespace '{namespace}' has no NetworkPolicy" in violation.message


@pytest.mark.parametrize("config", ["dev", "prod"])
def test_the_api_service_is_not_a_load_balancer(config: str, request: pytest.FixtureRequest) -> None:
    plan: PlanResult = request.getfixturevalue(config)
    assert plan.named(SERVICE, AIM_SERVICE).inputs["spec"]["type"] in {"NodePort", "ClusterIP"}
    assert not of(check_plan(plan, POLICIES), LOAD_BALANCER_RANGES.name)


def test_prod_load_balancer_lists_the_configured_networks(prod_load_balancer: PlanResult) -> None:
    service = prod_load_balancer.named(SERVICE, AIM_SERVICE)
    assert service.inputs["spec"]["type"] == "LoadBalancer"
    assert service.inputs["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
    assert not of(check_plan(prod_load_balancer, POLICIES), LOAD_BALANCER_RANGES.name)

    open_to_all = copy.deepcopy(service)
    open_to_all.inputs["spec"]["loadBalancerSourceRanges"] = ["10.0.0.0/8", "0.0.0.0/0"]
    [violation] = of(check(replaced(prod_load_balancer, open_to_all), POLICIES), LOAD_BALANCER_RANGES.name)
    assert violation.urn == service.urn
    assert (
        "Service aim-prod/aim-engine" in violation.message and "'0.0.0.0/0' admits every address" in violation.message
    )
