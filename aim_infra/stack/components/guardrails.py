"""RecipeAdmission: a ValidatingAdmissionPolicy (CEL) that admits an AIM Deployment only if it matches its recipe."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pulumi

from aim_infra.common.contract import (
    ENGINE_CONTAINER,
    GPU_COUNT_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PART_OF,
    PART_OF_LABEL,
    PIPELINE_PARALLEL_ANNOTATION,
    RECIPE_LABEL,
    TENSOR_PARALLEL_ANNOTATION,
)
from aim_infra.common.image_ref import ImageRef
from aim_infra.stack.components.kube import KubernetesObject

ADMISSION_API = "admissionregistration.k8s.io/v1"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server
#: A repository as the settings admit it (lower case, host[:port]/path); nothing in it needs escaping in a CEL string.
REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._/-][a-z0-9]+)*)*$")
#: A tag as the OCI distribution spec defines it, written without backslashes (they would need escaping twice).
TAG = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
DIGEST = "@sha256:[0-9a-f]{64}$"


@dataclass(frozen=True)
class RecipeAdmissionArgs:
    namespace: str  # the AIM namespace: the only one the binding selects
    image_repository: str  # where every container image must come from, e.g. localhost:5000/aim-engine
    #: Exact references also admitted besides that repository (the digest-pinned API proxy sidecar).
    allowed_images: list[str] = field(default_factory=list)
    depends_on: list[pulumi.Resource] = field(default_factory=list)  # the namespace


def image_repository(reference: str) -> str:
    """The repository part of an image reference: `reg:5000/team/aim:1.0@sha256:…` → `reg:5000/team/aim`."""
    return ImageRef.parse(reference).repository


def _quote(text: str) -> str:
    """A single-quoted CEL string literal for text without quotes or backslashes."""
    if "'" in text or "\\" in text:
        raise ValueError(f"{text!r}: not a plain CEL string")
    return f"'{text}'"


def _annotation(key: str) -> str:
    return (
        f"has(object.metadata.annotations) && {_quote(key)} in object.metadata.annotations"
        f" ? object.metadata.annotations[{_quote(key)}] : ''"
    )


def _flag_check(variable: str, flag: str, short: str) -> tuple[str, str]:
    """Exactly one argument sets the flag (any spelling vLLM accepts: dashes or underscores, an abbreviation, the short
    form) and it is `--flag=<annotation>`: a second, overriding copy or the two-token form is refused."""
    spelling = flag.removeprefix("--").rsplit("-", 1)[0].replace("-", "[-_]")  # tensor[-_]parallel
    sets_it = f"a.matches('^(--{spelling}|{short}(=|$))')"
    expected = f"{_quote(flag + '=')} + variables.{variable}"
    expression = (
        f"variables.vllm.all(c, has(c.args) && c.args.exists_one(a, {sets_it}) && c.args.exists(a, a == {expected}))"
    )
    message = (
        f"'the {ENGINE_CONTAINER} container must set {flag} exactly once, as ' + {expected}"
        " + ' (the recipe annotation)'"
    )
    return expression, message


WHOLE_NUMBER = "^[1-9][0-9]*$"
#: The three layout annotations as CEL strings ('' when missing).
LAYOUT_VARIABLES = "[variables.gpuCount, variables.tensorParallel, variables.pipelineParallel]"


def _variables() -> list[dict[str, str]]:
    """The annotations the engine writes (its layout), the engine container, and every container and init container."""
    return [
        {"name": "gpuCount", "expression": _annotation(GPU_COUNT_ANNOTATION)},
        {"name": "tensorParallel", "expression": _annotation(TENSOR_PARALLEL_ANNOTATION)},
        {"name": "pipelineParallel", "expression": _annotation(PIPELINE_PARALLEL_ANNOTATION)},
        {
            "name": "vllm",
            "expression": f"object.spec.template.spec.containers.filter(c, c.name == {_quote(ENGINE_CONTAINER)})",
        },
        {
            "name": "containers",
            "expression": "object.spec.template.spec.containers + (has(object.spec.template.spec.initContainers)"
            " ? object.spec.template.spec.initContainers : [])",
        },
    ]


def _layout_validations() -> list[dict[str, str]]:
    """The engine container runs the recipe's layout: its GPU limit and parallelism flags match the annotations."""
    tp_check, tp_message = _flag_check("tensorParallel", "--tensor-parallel-size", "-tp")
    pp_check, pp_message = _flag_check("pipelineParallel", "--pipeline-parallel-size", "-pp")
    gpu_limit = (
        "has(c.resources) && has(c.resources.limits) && 'amd.com/gpu' in c.resources.limits"
        " && string(c.resources.limits['amd.com/gpu']) == variables.gpuCount"
    )
    return [
        {
            "expression": f"{LAYOUT_VARIABLES}.all(v, v.matches('{WHOLE_NUMBER}'))",
            "message": f"a Deployment labelled {RECIPE_LABEL} needs the annotations {GPU_COUNT_ANNOTATION}, "
            f"{TENSOR_PARALLEL_ANNOTATION} and {PIPELINE_PARALLEL_ANNOTATION}, each a whole number",
            "reason": "Invalid",
        },
        {
            "expression": f"size(variables.vllm) == 1 && variables.vllm.all(c, {gpu_limit})",
            "messageExpression": "size(variables.vllm) != 1"
            f" ? 'expected exactly one container named {ENGINE_CONTAINER}, found ' + string(size(variables.vllm))"
            f" : 'the {ENGINE_CONTAINER} container must limit amd.com/gpu to ' + variables.gpuCount"
            f" + ' (annotation {GPU_COUNT_ANNOTATION}), it limits it to '"
            " + (has(variables.vllm[0].resources.limits) && 'amd.com/gpu' in variables.vllm[0].resources.limits"
            " ? string(variables.vllm[0].resources.limits['amd.com/gpu']) : 'nothing')",
            "message": f"the {ENGINE_CONTAINER} container's amd.com/gpu limit must equal the annotation "
            f"{GPU_COUNT_ANNOTATION}",
            "reason": "Invalid",
        },
        {"expression": tp_check, "messageExpression": tp_message, "reason": "Invalid"},
        {"expression": pp_check, "messageExpression": pp_message, "reason": "Invalid"},
        {
            # && short-circuits past an error, so a missing annotation reads as a failed check, not an error.
            "expression": f"{LAYOUT_VARIABLES}.all(v, v.matches('{WHOLE_NUMBER}'))"
            " && int(variables.tensorParallel) * int(variables.pipelineParallel) == int(variables.gpuCount)",
            "messageExpression": "'tensor-parallel-size ' + variables.tensorParallel"
            " + ' x pipeline-parallel-size ' + variables.pipelineParallel"
            " + ' must equal the GPU count ' + variables.gpuCount",
            "reason": "Invalid",
        },
    ]


def _image_validations(repository: str, allowed_images: list[str] | tuple[str, ...]) -> list[dict[str, str]]:
    """Every container's image is pinned by digest and comes from the repository (or is one of `allowed_images`)."""
    # `.` is the only character of a repository that means something in a regular expression.
    # The repository, then at most a tag, then the digest or the end (the digest has a check of its own).
    repository_pattern = "^" + repository.replace(".", "[.]") + f"(:{TAG})?(@|$)"
    from_repository = " || ".join(
        [f"c.image.matches({_quote(repository_pattern)})", *(f"c.image == {_quote(i)}" for i in allowed_images)]
    )
    allowed_text = repository + "".join(f" or is exactly {i}" for i in allowed_images)
    return [
        {
            "expression": f"variables.containers.all(c, c.image.matches('{DIGEST}'))",
            "messageExpression": "'image ' + variables.containers"
            f".filter(c, !c.image.matches('{DIGEST}'))[0].image"
            " + ' is not pinned by digest (@sha256:<64 hex>); reference the pushed image by its digest'",
            "reason": "Invalid",
        },
        {
            "expression": f"variables.containers.all(c, {from_repository})",
            "messageExpression": f"'image ' + variables.containers.filter(c, !({from_repository}))[0].image"
            f" + ' does not come from {allowed_text}'",
            "reason": "Invalid",
        },
    ]


def _limits_validation() -> dict[str, str]:
    """Every container limits its CPU and memory."""
    limited = (
        "has(c.resources) && has(c.resources.limits) && 'cpu' in c.resources.limits && 'memory' in c.resources.limits"
    )
    return {
        "expression": f"variables.containers.all(c, {limited})",
        "messageExpression": f"'container ' + variables.containers.filter(c, !({limited}))[0].name"
        " + ' needs resources.limits with cpu and memory'",
        "reason": "Invalid",
    }


def policy_spec(repository: str, allowed_images: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The ValidatingAdmissionPolicy's spec: which requests it sees, its variables and validations (CEL).

    Only functions of the CEL standard library are used (no Kubernetes extension such as `join` or `quantity`), so the
    tests evaluate every expression with cel-python. A quantity reaches CEL as its canonical string (`"8"`).

    `allowed_images` are admitted as exactly these references (each pinned by digest), wherever they come from."""
    if not REPOSITORY.fullmatch(repository):
        raise ValueError(f"{repository!r} is not an image repository such as registry.example.com/team/aim-engine")
    for reference in allowed_images:
        if not re.search(DIGEST, reference) or not REPOSITORY.fullmatch(image_repository(reference)):
            raise ValueError(f"{reference!r} is not a digest-pinned image reference such as repo:tag@sha256:<64 hex>")
    return {
        # Nothing else in the cluster is ever blocked: the policy sees only CREATE/UPDATE of apps/v1 Deployments (not
        # their scale or status subresources), the binding narrows that to the AIM namespace, and the match condition
        # to Deployments labelled with a recipe. Failing closed (Fail) is therefore safe: an expression error can
        # only hold back an AIM Deployment, which is exactly what should not roll out unchecked.
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": ["apps"],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["deployments"],
                }
            ]
        },
        "matchConditions": [
            {
                "name": "recipe-labelled",
                "expression": f"has(object.metadata.labels) && {_quote(RECIPE_LABEL)} in object.metadata.labels",
            }
        ],
        "variables": _variables(),
        "validations": [
            *_layout_validations(),
            *_image_validations(repository, allowed_images),
            _limits_validation(),
        ],
    }


class RecipeAdmission(pulumi.ComponentResource):
    """The policy and its binding to the AIM namespace. The Kubernetes provider comes in through `opts`."""

    policy: KubernetesObject
    binding: KubernetesObject
    policy_name: str

    def __init__(self, name: str, args: RecipeAdmissionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:RecipeAdmission", name, None, opts)
        # Cluster-scoped: the namespace in the name keeps two stacks in one cluster apart.
        self.policy_name = f"aim-recipe-{args.namespace}"
        labels = {PART_OF_LABEL: PART_OF, MANAGED_BY_LABEL: MANAGED_BY}
        self.policy = KubernetesObject(
            f"{name}-policy",
            {
                "apiVersion": ADMISSION_API,
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": self.policy_name, "labels": labels},
                "spec": policy_spec(args.image_repository, args.allowed_images),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        self.binding = KubernetesObject(
            f"{name}-binding",
            {
                "apiVersion": ADMISSION_API,
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": self.policy_name, "labels": labels},
                "spec": {
                    "policyName": self.policy_name,
                    "validationActions": ["Deny"],
                    "matchResources": {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: args.namespace}}},
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.policy, *args.depends_on]),
        )
        self.register_outputs({"policy": self.policy_name})
