"""AIM guardrail policies (images, limits, GPUs, NetworkPolicy, LoadBalancer ranges); importing starts nothing.

The policy pack's `__main__.py` builds the `PolicyPack` from `POLICIES`; everything here is plain functions and
policy objects, so tests import this module and call the policies directly. Resources arrive as the Kubernetes
provider sees them: a type token such as `kubernetes:apps/v1:Deployment` and camelCase manifest properties
(`metadata`, `spec`, ...). During `pulumi preview` the properties are read-only proxies (`Mapping`/`Sequence`, not
dict/list) that raise `UnknownValueError` on a value not known yet; the policy SDK reports that as "can't run
during preview" instead of a violation, so nothing here catches it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

PACK_NAME = "aim-guardrails"

PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF_AIM = "aim"
RECIPE_LABEL = "aim.amd.com/recipe"
GPU_RESOURCE = "amd.com/gpu"

#: Workload kinds and the API groups whose type tokens carry them (`kubernetes:<group>/<version>:<Kind>`).
WORKLOAD_GROUPS: dict[str, frozenset[str]] = {
    "Deployment": frozenset({"apps", "extensions"}),
    "StatefulSet": frozenset({"apps"}),
    "DaemonSet": frozenset({"apps", "extensions"}),
    "ReplicaSet": frozenset({"apps", "extensions"}),
    "Job": frozenset({"batch"}),
    "CronJob": frozenset({"batch"}),
    "Pod": frozenset({"core"}),
}
CONTAINER_LISTS = (("containers", "container"), ("initContainers", "init container"))

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_ZERO_QUANTITY = re.compile(r"^0+(\.0*)?[a-zA-Z]*$")


# ---------------------------------------------------------------------------------------------------------------------
# Reading the properties (dicts and lists in tests, read-only Mapping/Sequence proxies under the policy server)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, str | bytes) else ()


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def parse_type(resource_type: str) -> tuple[str, str] | None:
    """`kubernetes:apps/v1:Deployment` → ("apps", "Deployment"); None for anything but a Kubernetes object."""
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
        return None
    group = parts[1].rsplit("/", 1)[0]
    return group, parts[2]


def kind_of(resource_type: str) -> str | None:
    parsed = parse_type(resource_type)
    return parsed[1] if parsed else None


def namespace_of(props: Mapping[str, Any]) -> str:
    """The object's namespace; an object without one lands in the provider's default namespace, `default`."""
    return _text(_mapping(props.get("metadata")).get("namespace")) or "default"


def describe(kind: str, props: Mapping[str, Any], resource_name: str) -> str:
    """`Deployment aim/aim-engine (Pulumi resource aim-engine-deployment)`: how violation messages name a resource."""
    metadata = _mapping(props.get("metadata"))
    name = _text(metadata.get("name")) or resource_name
    namespace = _text(metadata.get("namespace"))
    shown = f"{namespace}/{name}" if namespace else name
    return f"{kind} {shown} (Pulumi resource {resource_name})"


@dataclass(frozen=True)
class Container:
    """One container of a pod spec, with the word the messages use for its list."""

    role: str
    name: str
    spec: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.role} '{self.name}'"

    def resources(self, field: str) -> Mapping[str, Any]:
        return _mapping(_mapping(self.spec.get("resources")).get(field))


@dataclass(frozen=True)
class Workload:
    """A Kubernetes object that runs pods: its kind, labels (object and pod template) and pod spec."""

    kind: str
    title: str
    labels: Mapping[str, str]
    pod_spec: Mapping[str, Any]

    @property
    def is_aim(self) -> bool:
        """Part of AIM: labelled `app.kubernetes.io/part-of: aim`, or carrying a serving recipe."""
        return self.labels.get(PART_OF_LABEL) == PART_OF_AIM or self.has_recipe

    @property
    def has_recipe(self) -> bool:
        return bool(_text(self.labels.get(RECIPE_LABEL)))

    def containers(self) -> Iterator[Container]:
        for field, role in CONTAINER_LISTS:
            for index, spec in enumerate(_sequence(self.pod_spec.get(field))):
                spec = _mapping(spec)
                yield Container(role, _text(spec.get("name")) or f"#{index}", spec)


def _labels(metadata: Any) -> dict[str, str]:
    return {str(k): v for k, v in _mapping(_mapping(metadata).get("labels")).items() if isinstance(v, str)}


def workload(resource_type: str, props: Mapping[str, Any], resource_name: str) -> Workload | None:
    """The workload view of a resource, or None when it does not run pods."""
    parsed = parse_type(resource_type)
    if parsed is None or parsed[0] not in WORKLOAD_GROUPS.get(parsed[1], ()):
        return None
    kind = parsed[1]
    spec = _mapping(props.get("spec"))
    if kind == "Pod":
        template: Mapping[str, Any] = {"metadata": props.get("metadata"), "spec": spec}
    elif kind == "CronJob":
        template = _mapping(_mapping(_mapping(spec.get("jobTemplate")).get("spec")).get("template"))
    else:
        template = _mapping(spec.get("template"))
    labels = {**_labels(template.get("metadata")), **_labels(props.get("metadata"))}
    return Workload(kind, describe(kind, props, resource_name), labels, _mapping(template.get("spec")))


# ---------------------------------------------------------------------------------------------------------------------
# Rule 1: images


def image_problem(image: str, *, require_digest: bool) -> str | None:
    """What is wrong with an image reference, or None. `require_digest`: only `…@sha256:<64 hex>` will do."""
    if not image:
        return "has no image"
    name, at, digest = image.partition("@")
    if at:
        if _DIGEST.search(image) is None:
            return f"has a malformed digest '@{digest}' (expected @sha256: and 64 hex digits)"
        return None
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if not tag:
        return "has no tag, so Kubernetes pulls :latest"
    if tag == "latest":
        return "uses the mutable tag :latest"
    if require_digest:
        return f"is pinned only by the tag :{tag}, which can be moved to another image"
    return None


def validate_images(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Rule 1: AIM workloads run digest-pinned images; no workload runs `:latest` or an untagged image."""
    found = workload(args.resource_type, args.props, args.name)
    if found is None:
        return
    strict = found.is_aim
    for container in found.containers():
        image = _text(container.spec.get("image"))
        problem = image_problem(image, require_digest=strict)
        if problem is None:
            continue
        if strict:
            fix = (
                "an AIM workload must run an image pinned by digest, `registry/repository@sha256:<digest>`: with "
                "aim:buildImage true the stack runs the pushed image's repo digest; with aim:buildImage false set "
                "aim:image to the digest reference (`docker buildx imagetools inspect <image>` prints it)"
            )
        else:
            fix = "pin an explicit version tag, or better a digest (`repository@sha256:<digest>`)"
        report_violation(f"{found.title}: {container.label} image '{image}' {problem}; {fix}.", None)


# ---------------------------------------------------------------------------------------------------------------------
# Rule 2: CPU and memory limits


def _is_set(quantity: Any) -> bool:
    if isinstance(quantity, bool) or quantity is None:
        return False
    if isinstance(quantity, int | float):
        return quantity > 0
    text = _text(quantity)
    return bool(text) and _ZERO_QUANTITY.match(text) is None


def validate_limits(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Rule 2: every container and init container of every workload limits its CPU and memory."""
    found = workload(args.resource_type, args.props, args.name)
    if found is None:
        return
    for container in found.containers():
        limits = container.resources("limits")
        missing = [f"resources.limits.{key}" for key in ("cpu", "memory") if not _is_set(limits.get(key))]
        if missing:
            report_violation(
                f"{found.title}: {container.label} has no {' and no '.join(missing)}; set a non-zero "
                "resources.limits.cpu and resources.limits.memory on every container and init container, so one pod "
                "cannot starve the GPU node's other pods.",
                None,
            )


# ---------------------------------------------------------------------------------------------------------------------
# Rule 3: GPUs


def gpu_count(quantity: Any) -> int | None:
    """A whole number of GPUs from a quantity (1, 1.0, "1"), or None when it is not one."""
    if isinstance(quantity, bool) or quantity is None:
        return None
    if isinstance(quantity, int):
        return quantity
    if isinstance(quantity, float):
        return int(quantity) if quantity.is_integer() else None
    text = _text(quantity)
    return int(text) if text.isdigit() else None


def validate_gpus(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Rule 3: amd.com/gpu request equals limit; a recipe-labelled Deployment requests GPUs."""
    found = workload(args.resource_type, args.props, args.name)
    if found is None:
        return
    requested = 0
    for container in found.containers():
        requests, limits = container.resources("requests"), container.resources("limits")
        if GPU_RESOURCE not in requests and GPU_RESOURCE not in limits:
            continue
        request, limit = requests.get(GPU_RESOURCE), limits.get(GPU_RESOURCE)
        counts = gpu_count(request), gpu_count(limit)
        if request is None or limit is None or None in counts or counts[0] != counts[1]:
            report_violation(
                f"{found.title}: {container.label} has {GPU_RESOURCE} request {request!r} and limit {limit!r}; set "
                f"resources.requests and resources.limits {GPU_RESOURCE} to the same whole number (GPUs are not "
                "shared or overcommitted, and a request that differs from the limit is refused or misleads the "
                "scheduler).",
                None,
            )
        if container.role == "container":
            requested += counts[0] or 0
    if found.kind == "Deployment" and found.has_recipe and requested == 0:
        report_violation(
            f"{found.title}: it carries {RECIPE_LABEL}={found.labels[RECIPE_LABEL]} but no container requests "
            f"{GPU_RESOURCE}; set resources.requests and resources.limits {GPU_RESOURCE} on the serving container to "
            "the recipe's GPU count (tensor × pipeline parallel size), or the pod is scheduled without GPUs.",
            None,
        )


# ---------------------------------------------------------------------------------------------------------------------
# Rule 4 (stack): a NetworkPolicy in the AIM namespace


def validate_network_policy(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Rule 4: the namespace of every recipe-labelled Deployment has a NetworkPolicy declared by the stack."""
    protected = {
        namespace_of(resource.props)
        for resource in args.resources
        if kind_of(resource.resource_type) == "NetworkPolicy"
    }
    for resource in args.resources:
        found = workload(resource.resource_type, resource.props, resource.name)
        if found is None or found.kind != "Deployment" or not found.has_recipe:
            continue
        namespace = namespace_of(resource.props)
        if namespace in protected:
            continue
        report_violation(
            f"{found.title}: its namespace '{namespace}' has no NetworkPolicy in this stack; declare a "
            f"networking.k8s.io/v1 NetworkPolicy in '{namespace}' that admits the API port only from "
            "aim:apiAllowedCidrs / aim:apiAllowedNamespaces (and the metrics scraper), so the model server is not "
            "reachable from every pod in the cluster.",
            resource.urn,
        )


# ---------------------------------------------------------------------------------------------------------------------
# Rule 5: LoadBalancer source ranges


def source_range_problem(cidr: Any) -> str | None:
    """What is wrong with one loadBalancerSourceRanges entry, or None."""
    text = _text(cidr)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return f"'{cidr}' is not a CIDR"
    if network.prefixlen == 0:
        return f"'{text}' admits every address"
    return None


def validate_load_balancer(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Rule 5: a LoadBalancer Service lists its client networks, none of them 0.0.0.0/0 or ::/0."""
    if parse_type(args.resource_type) != ("core", "Service"):
        return
    spec = _mapping(args.props.get("spec"))
    if spec.get("type") != "LoadBalancer":
        return
    title = describe("Service", args.props, args.name)
    fix = (
        "list the client networks (CIDRs, never 0.0.0.0/0 or ::/0) in spec.loadBalancerSourceRanges; the AIM stack "
        "takes them from aim:apiAllowedCidrs"
    )
    ranges = _sequence(spec.get("loadBalancerSourceRanges"))
    if not ranges:
        report_violation(
            f"{title}: a LoadBalancer without loadBalancerSourceRanges is open to the internet; {fix}.", None
        )
        return
    problems = [p for p in (source_range_problem(cidr) for cidr in ranges) if p]
    if problems:
        report_violation(f"{title}: loadBalancerSourceRanges: {'; '.join(problems)}; {fix}.", None)


# ---------------------------------------------------------------------------------------------------------------------
# The policies

MANDATORY = EnforcementLevel.MANDATORY

IMAGES_PINNED = ResourceValidationPolicy(
    name="aim-images-pinned",
    description=(
        "Workload images are pinned: every container and init container of an AIM workload (labelled "
        f"{PART_OF_LABEL}: {PART_OF_AIM} or carrying {RECIPE_LABEL}) runs an image by digest (@sha256:); no other "
        "workload runs :latest or an untagged image."
    ),
    validate=validate_images,
    enforcement_level=MANDATORY,
    severity=Severity.HIGH,
    remediation_steps="Reference images as registry/repository@sha256:<digest> (AIM) or by a version tag (others).",
)

CONTAINER_LIMITS = ResourceValidationPolicy(
    name="aim-container-limits",
    description="Every container and init container of every workload sets resources.limits.cpu and .memory.",
    validate=validate_limits,
    enforcement_level=MANDATORY,
    severity=Severity.MEDIUM,
    remediation_steps="Add resources.limits.cpu and resources.limits.memory to each container and init container.",
)

GPU_REQUESTS = ResourceValidationPolicy(
    name="aim-gpu-request-equals-limit",
    description=(
        f"A container that requests or limits {GPU_RESOURCE} sets request == limit (a whole number), and a Deployment "
        f"carrying {RECIPE_LABEL} requests {GPU_RESOURCE}."
    ),
    validate=validate_gpus,
    enforcement_level=MANDATORY,
    severity=Severity.HIGH,
    remediation_steps=f"Set resources.requests and resources.limits {GPU_RESOURCE} to the recipe's GPU count.",
)

NETWORK_POLICY = StackValidationPolicy(
    name="aim-namespace-network-policy",
    description=(
        f"The AIM namespace (the namespace of the Deployment carrying {RECIPE_LABEL}) has a NetworkPolicy declared "
        "by the stack."
    ),
    validate=validate_network_policy,
    enforcement_level=MANDATORY,
    severity=Severity.HIGH,
    remediation_steps="Declare a NetworkPolicy in the AIM namespace that admits the API port from the allowed clients.",
)

LOAD_BALANCER_RANGES = ResourceValidationPolicy(
    name="aim-loadbalancer-source-ranges",
    description=(
        "A Service of type LoadBalancer sets a non-empty spec.loadBalancerSourceRanges without 0.0.0.0/0 or ::/0."
    ),
    validate=validate_load_balancer,
    enforcement_level=MANDATORY,
    severity=Severity.CRITICAL,
    remediation_steps="Set aim:apiAllowedCidrs to the client networks; the Service copies them into its ranges.",
)

#: Every policy of the pack, in the order `pulumi preview` lists them.
POLICIES: list[Policy] = [IMAGES_PINNED, CONTAINER_LIMITS, GPU_REQUESTS, NETWORK_POLICY, LOAD_BALANCER_RANGES]
