"""KubernetesObject and HelmRelease send exactly what pulumi_kubernetes' generated classes send.

Each real stack runs under mocks. Then one program per stack declares every Kubernetes object it recorded again, with
the generated class (`pulumi_kubernetes.apps.v1.Deployment`, `pulumi_kubernetes.helm.v3.Release`, ...), under the same
name, parent, provider and options, from the recorded wire manifest; the two RegisterResource requests must agree on
everything but the dependency URNs and the source position: type token, inputs as sent (secret envelopes included),
which properties were sent, version and plugin URL, aliases, additional secret outputs, timeouts and the other options.
(Dependency URNs come from `opts` and from Outputs in the inputs, which both kinds of class hand to
`pulumi.CustomResource` untouched; the component and stack tests assert them.)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes
import pytest
from google.protobuf import json_format

from aim_infra.stack import pulumi_internals
from aim_infra.stack.components.kube import ALIASES, HelmRelease, KubernetesObject, type_token
from aim_infra.stack.plan import PlanResult, run_stack

ROOT = Path(__file__).resolve().parents[3]
PROVIDER = "pulumi:providers:kubernetes"
# Request fields that legitimately differ between two programs declaring the same object.
NOT_COMPARED = ("sourcePosition", "stackTrace", "dependencies", "propertyDependencies")

STACKS = {
    "dev": ("dev", {}),
    "prod": ("prod", {"aim:hfToken": "x", "aim:apiKey": "y"}),
    # 8 GPUs of one model fit 8 single-GPU replicas: the engine adds a PodDisruptionBudget.
    "dev-replicas": ("dev", {"aim:gpuCount": "8"}),
    # Several models: the router's kinds and KEDA's ScaledObject (a CRD: apiextensions.CustomResource).
    "multi": ("multi", {}),
}

GENERATED_PROGRAM = '''"""Test program: recorded Kubernetes objects declared again with the generated classes."""
import json
import sys
from pathlib import Path

sys.path.insert(0, {root!r})

from tests.stack.components.test_kube import declare_with_generated_classes

declare_with_generated_classes(json.loads((Path(__file__).parent / "recorded.json").read_text()))
'''

GENERIC_PROGRAM = '''"""Test program: a catalogue of objects the stacks do not declare, with the generic classes."""
import json
import sys
from pathlib import Path

sys.path.insert(0, {root!r})

from tests.stack.components.test_kube import declare_catalogue

declare_catalogue(json.loads((Path(__file__).parent / "catalogue.json").read_text()))
'''


# --- capturing the raw requests ---------------------------------------------------------------------------------


@contextmanager
def raw_requests() -> Iterator[dict[str, dict[str, Any]]]:
    """Every RegisterResourceRequest the mock monitor receives, by URN, as its protobuf JSON form."""
    captured: dict[str, dict[str, Any]] = {}
    monitor = pulumi_internals.mock_monitor_class()
    original = monitor.RegisterResource

    def register(self: Any, request: Any) -> Any:
        response = original(self, request)
        captured[response.urn] = json_format.MessageToDict(request)
        return response

    monitor.RegisterResource = register
    try:
        yield captured
    finally:
        monitor.RegisterResource = original


def run_captured(stack: str, **kwargs: Any) -> tuple[PlanResult, dict[str, dict[str, Any]]]:
    with raw_requests() as captured:
        result = run_stack(stack, **kwargs)
    assert result.error is None, result.error
    return result, captured


def is_kubernetes_object(type_: str) -> bool:
    return type_.startswith("kubernetes:")


def comparable(request: dict[str, Any]) -> dict[str, Any]:
    """The request without what differs between programs; which properties were sent stays (their keys)."""
    kept = {k: v for k, v in request.items() if k not in NOT_COMPARED}
    kept["sentProperties"] = sorted(request.get("propertyDependencies", {}))
    return kept


# --- the generated classes --------------------------------------------------------------------------------------


def generated_class(token: str) -> type[pulumi.CustomResource]:
    """`kubernetes:apps/v1:Deployment` → pulumi_kubernetes.apps.v1.Deployment (groups by their first label; helm.sh →
    helm); `kubernetes:monitoring.coreos.com/v1:ServiceMonitor` (no such module) → apiextensions.CustomResource."""
    _, api_version, kind = token.split(":")
    group, version = api_version.split("/")
    module = getattr(pulumi_kubernetes, group.split(".")[0], None)
    if module is None:
        return pulumi_kubernetes.apiextensions.CustomResource
    return getattr(getattr(module, version), kind)


def args_class(cls: type) -> type:
    module = sys.modules[cls.__module__]
    return getattr(module, f"{cls.__name__}InitArgs", None) or getattr(module, f"{cls.__name__}Args")


def generated_kwargs(cls: type, manifest: dict[str, Any]) -> dict[str, Any]:
    """The generated class's keyword arguments for a wire manifest: top-level names through the class's own
    py→wire name table; nested values stay camelCase plain dicts (serialised unchanged, see
    test_generated_classes_send_camel_case_dicts_unchanged). apiVersion and kind are the class's own."""
    if cls is pulumi_kubernetes.apiextensions.CustomResource:
        return {
            "api_version": manifest["apiVersion"],
            "kind": manifest["kind"],
            **{key: value for key, value in manifest.items() if key not in ("apiVersion", "kind")},
        }
    to_py = {wire: py for py, wire in pulumi_internals.input_property_names(args_class(cls)).items()}
    fixed = ("apiVersion", "kind")  # set by the class itself (the comparison checks they come out the same)
    unknown = sorted(set(manifest) - set(to_py) - set(fixed))
    assert not unknown, f"{cls.__name__} has no input named {unknown}"
    return {to_py[key]: value for key, value in manifest.items() if key not in fixed}


def from_wire(value: Any) -> Any:
    """A wire value as a program would pass it: secret envelopes become secret Outputs, integral numbers ints."""
    if isinstance(value, dict):
        if pulumi_internals.is_secret_envelope(value):
            return pulumi.Output.secret(from_wire(value["value"]))
        return {key: from_wire(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_wire(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def options_from_request(request: dict[str, Any], **extra: Any) -> pulumi.ResourceOptions:
    """The user-facing options the request carries (as the program set them, presence included)."""
    timeouts = request.get("customTimeouts")
    return pulumi.ResourceOptions(
        protect=request.get("protect"),
        retain_on_delete=request.get("retainOnDelete"),
        delete_before_replace=request.get("deleteBeforeReplace") if request.get("deleteBeforeReplaceDefined") else None,
        ignore_changes=request.get("ignoreChanges"),
        replace_on_changes=request.get("replaceOnChanges"),
        custom_timeouts=pulumi.CustomTimeouts(**{k: v or None for k, v in timeouts.items()}) if timeouts else None,
        **extra,
    )


def declare_with_generated_classes(recorded: dict[str, dict[str, Any]]) -> None:
    """Re-declare every recorded Kubernetes object with its generated class. `recorded` maps URN → request for the
    objects and for everything they hang off (components, the provider), which are re-created by type and name."""
    created: dict[str, pulumi.Resource] = {}

    def resource(urn: str) -> pulumi.Resource | None:
        if urn not in recorded:
            return None  # the stack itself
        if urn in created:
            return created[urn]
        request = recorded[urn]
        parent = resource(request.get("parent", ""))
        if request["type"] == PROVIDER:
            created[urn] = pulumi_kubernetes.Provider(request["name"], opts=pulumi.ResourceOptions(parent=parent))
        elif not request.get("custom"):
            providers = [resource(ref.rsplit("::", 1)[0]) for ref in request.get("providers", {}).values()]
            created[urn] = pulumi.ComponentResource(
                request["type"], request["name"], None, pulumi.ResourceOptions(parent=parent, providers=providers)
            )
        else:
            cls = generated_class(request["type"])
            provider = resource(request["provider"].rsplit("::", 1)[0]) if request.get("provider") else None
            opts = options_from_request(request, parent=parent, provider=provider)
            created[urn] = cls(request["name"], opts=opts, **generated_kwargs(cls, from_wire(request["object"])))
        return created[urn]

    for urn, request in recorded.items():
        if is_kubernetes_object(request["type"]):
            resource(urn)


def compare(stack: str, result: PlanResult, original: dict[str, dict[str, Any]], tmp_path: Path) -> list[str]:
    """Declare the original's Kubernetes objects with the generated classes; every difference, one line each, in the
    raw requests and in what the plan recorded (type, inputs, options, parent, provider)."""
    original = {urn: r for urn, r in original.items() if r["type"] != "pulumi:pulumi:Stack"}
    objects = {urn: r for urn, r in original.items() if is_kubernetes_object(r["type"])}
    needed = dict(objects)
    for request in objects.values():  # parents and providers, up to the stack
        for urn in (request.get("parent", ""), request.get("provider", "").rsplit("::", 1)[0]):
            while urn in original and urn not in needed:
                needed[urn] = original[urn]
                for ref in original[urn].get("providers", {}).values():
                    needed.setdefault(ref.rsplit("::", 1)[0], original[ref.rsplit("::", 1)[0]])
                urn = original[urn].get("parent", "")
    program = tmp_path / stack
    program.mkdir()
    (program / "recorded.json").write_text(json.dumps(needed))
    (program / "__main__.py").write_text(GENERATED_PROGRAM.format(root=str(ROOT)))
    generated_result, generated = run_captured(stack, project_dir=program, config={})

    differences = []
    for urn, request in objects.items():
        if urn not in generated:
            differences.append(f"{urn}: the generated class registered no such resource")
            continue
        differences += [f"{urn}: {line}" for line in diff(comparable(request), comparable(generated[urn]))]
        ours, theirs = (plan.by_urn(urn) for plan in (result, generated_result))
        assert ours is not None and theirs is not None, urn
        recorded = [(field, getattr(ours, field), getattr(theirs, field)) for field in PLAN_FIELDS]
        differences += [f"{urn}: plan {line}" for field, a, b in recorded for line in diff(a, b, field)]
    return differences


PLAN_FIELDS = ("type", "name", "parent", "provider", "custom", "inputs", "options")


MISSING = "<absent>"


def diff(ours: Any, theirs: Any, path: str = "") -> Iterator[str]:
    """Where two wire values differ, one `path: ours != generated` line per difference."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            yield from diff(ours.get(key, MISSING), theirs.get(key, MISSING), f"{path}.{key}" if path else key)
    elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
            yield from diff(mine, other, f"{path}[{index}]")
    elif ours != theirs:
        yield f"{path}: ours {ours!r} != generated {theirs!r}"


# --- the stacks, object by object ---------------------------------------------------------------------------------


Run = tuple[str, PlanResult, dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    """Each stack once under mocks: (stack name, plan, raw requests by URN)."""
    return {key: (stack, *run_captured(stack, overrides=overrides)) for key, (stack, overrides) in STACKS.items()}


@pytest.mark.parametrize("key", sorted(STACKS))
def test_every_kubernetes_object_is_what_the_generated_class_sends(
    runs: dict[str, Run], key: str, tmp_path: Path
) -> None:
    stack, result, captured = runs[key]
    kinds = {r.type for r in result.resources if is_kubernetes_object(r.type)}
    assert {"kubernetes:apps/v1:Deployment", "kubernetes:helm.sh/v3:Release", "kubernetes:core/v1:Namespace"} <= kinds
    objects = [r for r in result.resources if is_kubernetes_object(r.type)]
    assert {r.urn for r in objects} <= set(captured)
    differences = compare(stack, result, captured, tmp_path)
    assert not differences, "\n".join(differences)


def test_the_stacks_cover_every_kind_we_declare(runs: dict[str, Run]) -> None:
    """The comparison above sees Secrets (prod), the PodDisruptionBudget (replicas > 1) and the ScaledObject (multi)
    as well."""
    seen = {r.type for _, result, _ in runs.values() for r in result.resources if is_kubernetes_object(r.type)}
    assert seen == {
        "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy",
        "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:batch/v1:Job",
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:core/v1:Namespace",
        "kubernetes:core/v1:PersistentVolumeClaim",
        "kubernetes:core/v1:Secret",
        "kubernetes:core/v1:Service",
        "kubernetes:core/v1:ServiceAccount",
        "kubernetes:helm.sh/v3:Release",
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
        "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
        "kubernetes:monitoring.coreos.com/v1:ServiceMonitor",
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "kubernetes:policy/v1:PodDisruptionBudget",
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
        "kubernetes:rbac.authorization.k8s.io/v1:Role",
        "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
        "kubernetes:storage.k8s.io/v1:StorageClass",
    }


@pytest.mark.parametrize("key", sorted(STACKS))
def test_the_plan_records_version_and_secret_outputs(runs: dict[str, Run], key: str) -> None:
    _, result, _ = runs[key]
    for resource in result.resources:
        if is_kubernetes_object(resource.type):
            assert resource.options["version"] == metadata.version("pulumi_kubernetes"), resource.urn
            secret = resource.type == "kubernetes:core/v1:Secret"
            assert resource.options["additional_secret_outputs"] == (["data", "stringData"] if secret else [])


# --- objects the stacks do not declare (yet) ----------------------------------------------------------------------

CATALOGUE: list[dict[str, Any]] = [
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "registry-auth", "namespace": "aim"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "e30="},
    },
    {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "cache", "namespace": "aim"},
        "spec": {
            "serviceName": "cache",
            "selector": {"matchLabels": {"app": "cache"}},
            "template": {
                "metadata": {"labels": {"app": "cache"}},
                "spec": {
                    "containers": [
                        {
                            "name": "cache",
                            "image": "busybox:1.37.0",
                            "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5},
                        }
                    ]
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
        },
    },
    {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "aim"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"hostNetwork": True, "containers": [{"name": "agent", "image": "busybox:1.37.0"}]},
            },
        },
    },
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "aim-policy"},
        "webhooks": [
            {
                "name": "aim.amd.com",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "clientConfig": {"service": {"name": "policy", "namespace": "aim", "path": "/validate"}},
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["deployments"],
                    }
                ],
            }
        ],
    },
    {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "aim-engine", "namespace": "aim", "labels": {"release": "kube-prometheus-stack"}},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "aim-engine"}},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    },
    {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "only-monitoring", "namespace": "aim"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}
            ],
        },
    },
]
RELEASE_SPEC = {
    "name": "extra",
    "chart": "extra",
    "version": "1.2.3",
    "namespace": "aim",
    "repositoryOpts": {"repo": "https://charts.example.com", "username": "u"},
    "values": {"some_key": {"nested_value": 1}, "camelKey": [1, 2]},
    "timeout": 300,
    "maxHistory": 5,
    "disableCRDHooks": True,
    "waitForJobs": True,
    "skipCrds": False,
}


def declare_catalogue(catalogue: dict[str, Any]) -> None:
    provider = pulumi_kubernetes.Provider("kubernetes")
    for index, manifest in enumerate(catalogue["objects"]):
        KubernetesObject(f"object-{index}", manifest, opts=pulumi.ResourceOptions(provider=provider))
    HelmRelease("release", catalogue["release"], opts=pulumi.ResourceOptions(provider=provider))


def test_other_kinds_and_release_fields_are_what_the_generated_classes_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kind joins the stack together with its alias entry (test_the_alias_table_holds_exactly_the_declared_kinds
    # insists): give the catalogue's kinds theirs, as that change would.
    for manifest in CATALOGUE:
        token = type_token(manifest["apiVersion"], manifest["kind"])
        if token not in ALIASES:
            monkeypatch.setitem(ALIASES, token, generated_aliases(token))
    program = tmp_path / "catalogue"
    program.mkdir()
    (program / "catalogue.json").write_text(json.dumps({"objects": CATALOGUE, "release": RELEASE_SPEC}))
    (program / "__main__.py").write_text(GENERIC_PROGRAM.format(root=str(ROOT)))
    result, captured = run_captured("test", project_dir=program, config={})
    assert len([r for r in captured.values() if is_kubernetes_object(r["type"])]) == len(CATALOGUE) + 1
    differences = compare("test", result, captured, tmp_path)
    assert not differences, "\n".join(differences)


# --- pieces -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_version", "kind", "token"),
    [
        ("v1", "Namespace", "kubernetes:core/v1:Namespace"),
        ("apps/v1", "Deployment", "kubernetes:apps/v1:Deployment"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"),
        ("storage.k8s.io/v1", "StorageClass", "kubernetes:storage.k8s.io/v1:StorageClass"),
        ("policy/v1", "PodDisruptionBudget", "kubernetes:policy/v1:PodDisruptionBudget"),
        (
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            "kubernetes:admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration",
        ),
        ("monitoring.coreos.com/v1", "ServiceMonitor", "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"),
    ],
)
def test_type_token(api_version: str, kind: str, token: str) -> None:
    assert type_token(api_version, kind) == token
    cls = generated_class(token)
    if cls is pulumi_kubernetes.apiextensions.CustomResource:
        assert api_version.split("/")[0] == "monitoring.coreos.com"  # a CRD: no generated class, token by formula
    else:
        assert f"'{token}'" in Path(sys.modules[cls.__module__].__file__ or "").read_text(), cls


def generated_aliases(token: str) -> tuple[str, ...]:
    """The aliases the generated class of `token` declares, in its order, read from its source; () for a CRD's kind
    (no generated class: apiextensions.CustomResource declares none for it)."""
    cls = generated_class(token)
    if cls is pulumi_kubernetes.apiextensions.CustomResource:
        return ()
    text = Path(sys.modules[cls.__module__].__file__ or "").read_text()
    declared = re.search(r"super\(\w+, __self__\).__init__\(\s*'([^']+)'", text)
    assert declared is not None and declared.group(1) == token, f"{cls} does not declare {token}"
    return tuple(re.findall(r'pulumi\.Alias\(type_="([^"]+)"\)', text))


def test_aliases_are_the_generated_classes_aliases() -> None:
    """Every entry of the alias table holds exactly the aliases its generated class declares, in the class's order
    (none for a class that declares none)."""
    assert generated_aliases("kubernetes:apps/v1:Deployment")  # the reading above still finds aliases
    assert {token: generated_aliases(token) for token in ALIASES} == ALIASES


#: The stacks of this project: every Pulumi.<stack>.yaml at its root.
STACK_FILES = sorted(path.name.removeprefix("Pulumi.").removesuffix(".yaml") for path in ROOT.glob("Pulumi.*.yaml"))


def test_the_alias_table_holds_exactly_the_declared_kinds() -> None:
    """The table covers every Kubernetes type any stack declares (a new kind comes with its aliases) and nothing else
    (no dead entries): each stack file's stack runs as `python -m aim_infra plan --stack <name>` runs it."""
    assert {"dev", "prod"} <= set(STACK_FILES)
    declared: set[str] = set()
    for stack in STACK_FILES:
        result = run_stack(stack)
        assert result.error is None, f"{stack}: {result.error}"
        declared |= {r.type for r in result.resources if is_kubernetes_object(r.type)}
    missing, dead = sorted(declared - set(ALIASES)), sorted(set(ALIASES) - declared)
    assert not missing, f"kube.ALIASES lacks {missing}: add each with the aliases its generated class declares"
    assert not dead, f"kube.ALIASES lists {dead}, which no stack declares: drop them"


def test_generated_classes_send_camel_case_dicts_unchanged(tmp_path: Path) -> None:
    """The route the comparison takes: nested plain dicts with camelCase keys reach the wire as they are, the same as
    the typed *Args classes with snake_case names (so the comparison passes the manifest through untouched)."""
    program = tmp_path / "dicts"
    program.mkdir()
    (program / "__main__.py").write_text(
        "import pulumi_kubernetes as k8s\n"
        "k8s.core.v1.Pod('typed', spec=k8s.core.v1.PodSpecArgs(service_account_name='a', containers=["
        "k8s.core.v1.ContainerArgs(name='c', image_pull_policy='Never', security_context="
        "k8s.core.v1.SecurityContextArgs(run_as_non_root=True))]))\n"
        "k8s.core.v1.Pod('plain', spec={'serviceAccountName': 'a', 'containers': [{'name': 'c', "
        "'imagePullPolicy': 'Never', 'securityContext': {'runAsNonRoot': True}}]})\n"
    )
    result, captured = run_captured("test", project_dir=program, config={})
    typed, plain = (result.named("kubernetes:core/v1:Pod", name) for name in ("typed", "plain"))
    assert typed.inputs == plain.inputs
    assert typed.inputs["spec"]["containers"][0]["securityContext"] == {"runAsNonRoot": True}
    assert captured[typed.urn]["object"] == captured[plain.urn]["object"]


def test_a_manifest_needs_api_version_and_kind() -> None:
    with pytest.raises(ValueError, match="apiVersion and kind"):
        KubernetesObject("x", {"kind": "Namespace"})
    with pytest.raises(ValueError, match="repositoryOpts"):
        HelmRelease("x", {"name": "a", "chart": "a", "version": "1", "namespace": "n"})
