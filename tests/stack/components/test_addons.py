"""ClusterAddons under the mock runtime: it declares exactly its install plan, as children, on the given provider.

What the plan holds (pins, order, chart values, manifests) is checked without Pulumi in test_addon_builders.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from aim_infra.stack.components.addons import KSM_POD_LABELS
from aim_infra.stack.components.kube import type_token
from aim_infra.stack.manifests.addon_plan import AddonPlan, ClusterAddonsArgs, install_plan, resolve
from aim_infra.stack.plan import Declared, PlanResult, run_stack
from tests.stack.components.test_addon_builders import ALL_OFF, ALL_ON

ROOT = Path(__file__).resolve().parents[3]
COMPONENT = "aim:infra:ClusterAddons"
RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
PROVIDER = "pulumi:providers:kubernetes"
SECRET = "kubernetes:core/v1:Secret"
PASSWORD = "random:index/randomPassword:RandomPassword"
PROGRAM = '''"""Test program: one Kubernetes provider and one ClusterAddons, nothing else."""
import json
import sys

sys.path.insert(0, {root!r})

import pulumi
import pulumi_kubernetes as k8s

from aim_infra.stack.components.addons import ClusterAddons, ClusterAddonsArgs

provider = k8s.Provider("k8s")
addons = ClusterAddons(
    "addons", ClusterAddonsArgs(**json.loads({args!r})), opts=pulumi.ResourceOptions(provider=provider)
)
pulumi.export("provider_id", provider.id)
pulumi.export("storage_class_name", addons.storage_class_name)
pulumi.export("monitoring_namespace", addons.monitoring_namespace)
pulumi.export("monitoring_release_name", addons.monitoring_release_name)
pulumi.export("release_keys", sorted(addons.releases))
pulumi.export("ready", [resource.urn for resource in addons.ready])
'''


def run_addons(tmp_path: Path, **args: Any) -> PlanResult:
    """A fresh mock run of a one-component program with these ClusterAddonsArgs."""
    program = tmp_path / "program"
    program.mkdir(exist_ok=True)
    (program / "__main__.py").write_text(PROGRAM.format(root=str(ROOT), args=json.dumps(args)))
    result = run_stack("test", project_dir=program, config={})
    assert result.error is None, result.error
    return result


def component(result: PlanResult) -> Declared:
    [found] = result.of_type(COMPONENT)
    return found


def children(result: PlanResult) -> list[Declared]:
    """Every resource whose parent chain reaches the component."""
    root = component(result).urn
    found = []
    for resource in result.resources:
        parent = resource.parent
        while parent and parent != root:
            above = result.by_urn(parent)
            parent = above.parent if above else ""
        if parent == root:
            found.append(resource)
    return found


def releases(result: PlanResult) -> dict[str, Declared]:
    return {r.inputs["name"]: r for r in result.of_type(RELEASE)}


def manifest(resource: Declared) -> dict[str, Any]:
    """The Kubernetes object as the provider would send it: the recorded inputs (apiVersion, kind, metadata, ...)."""
    return {key: value for key, value in resource.inputs.items() if not key.startswith("__")}


@pytest.fixture
def everything(tmp_path: Path) -> PlanResult:
    return run_addons(tmp_path, **ALL_ON, kubelet_insecure_tls=True)


# --- structure: component, parents, provider -------------------------------------------------------------------


def test_component_type_parents_and_provider(everything: PlanResult) -> None:
    addons = component(everything)
    assert addons.name == "addons" and not addons.custom
    owned = children(everything)
    declared = [r for r in everything.resources if r.type not in (COMPONENT, PROVIDER)]
    assert {r.urn for r in declared} == {r.urn for r in owned}, "every resource is a child of the component"
    assert all(r.parent == addons.urn for r in owned), "children are direct children"
    assert all(r.name.startswith("addons-") for r in owned), "child names derive from the component name"
    [provider] = everything.of_type(PROVIDER)
    assert provider.name == "k8s"
    reference = f"{provider.urn}::{everything.outputs['provider_id']}"
    kubernetes = [r for r in owned if r.custom and r.type.startswith("kubernetes:")]
    # Everything but the generated Grafana password (a random-provider resource) is a Kubernetes object.
    assert {r.type for r in owned if r not in kubernetes} == {PASSWORD}
    assert all(r.provider == reference for r in kubernetes), {r.name: r.provider for r in kubernetes}


def test_public_attributes(everything: PlanResult) -> None:
    outputs = everything.outputs
    assert outputs["storage_class_name"] == "local-path"
    assert outputs["monitoring_namespace"] == "monitoring"
    assert outputs["monitoring_release_name"] == "kube-prometheus-stack"
    assert outputs["release_keys"] == [
        "amd_gpu_plugin",
        "calico",
        "device_metrics_exporter",
        "metrics_server",
        "monitoring",
    ]
    ready = set(outputs["ready"])
    gpu = releases(everything)["amd-gpu"].urn
    storage = everything.named("kubernetes:storage.k8s.io/v1:StorageClass", "addons-local-path-storage-class").urn
    assert {gpu, storage} <= ready


# --- the plan, declared -------------------------------------------------------------------------------------------

#: The Pulumi type each kind of planned child is declared as (objects: by their apiVersion and kind).
KIND_TYPES = {"release": RELEASE, "password": PASSWORD}
OWNED_BY = {"aim.amd.com/owned-by": "aim/test"}


@pytest.mark.parametrize("flags", [ALL_ON, {**ALL_ON, "calico": False, "monitoring": False}], ids=["all", "some"])
def test_declares_exactly_the_install_plan(tmp_path: Path, flags: dict[str, bool]) -> None:
    """Every planned child, and nothing else, with the plan's inputs (plus the ownership annotation every object gets)
    and exactly the dependencies the plan names: what test_addon_builders checks on the plan is what is declared."""
    result = run_addons(tmp_path, **flags, kubelet_insecure_tls=True)
    plan: AddonPlan = install_plan(
        ClusterAddonsArgs(**flags, kubelet_insecure_tls=True), stack="aim/test", pod_labels=KSM_POD_LABELS
    )
    urns = {}
    for planned in plan.children:
        body = resolve(planned.body, lambda key: f"plan-generated-addons-{key}")  # the mock's generated password
        kind = KIND_TYPES.get(planned.kind) or type_token(body["apiVersion"], body["kind"])
        urns[planned.key] = result.named(kind, f"addons-{planned.key}").urn
    assert {r.urn for r in children(result)} == set(urns.values())
    for planned in plan.children:
        declared = result.by_urn(urns[planned.key])
        assert declared is not None
        body = resolve(planned.body, lambda key: f"plan-generated-addons-{key}")
        if planned.kind == "object":
            metadata = {**body["metadata"], "annotations": {**body["metadata"].get("annotations", {}), **OWNED_BY}}
            body = {**body, "metadata": metadata}
        elif planned.kind == "release":
            body = {**body, "compat": "true"}  # what the generated Release class always sends
        assert manifest(declared) == body, planned.key
        # A generated password is an Output input: Pulumi adds its child to the dependencies too.
        generated: list[str] = []
        resolve(planned.body, generated.append)
        expected = {urns[key] for key in (*planned.after, *generated)}
        assert sorted(declared.dependencies) == sorted(expected), planned.key
    assert result.outputs["release_keys"] == sorted(plan.releases)
    assert result.outputs["ready"] == [urns[key] for key in plan.ready]


def test_kube_state_metrics_exports_the_engine_pod_labels(everything: PlanResult) -> None:
    values = releases(everything)["kube-prometheus-stack"].inputs["values"]
    assert values["kube-state-metrics"]["metricLabelsAllowlist"] == [f"pods=[{','.join(KSM_POD_LABELS)}]"]
    assert "aim.amd.com/recipe" in KSM_POD_LABELS


# --- toggles --------------------------------------------------------------------------------------------------


def test_all_off_declares_nothing(tmp_path: Path) -> None:
    result = run_addons(tmp_path, **ALL_OFF)
    assert children(result) == []
    assert result.outputs["storage_class_name"] is None
    assert result.outputs["monitoring_namespace"] is None
    assert result.outputs["monitoring_release_name"] is None
    assert result.outputs["release_keys"] == []
    assert result.outputs["ready"] == []


ALONE = {
    "calico": {(NAMESPACE, "tigera-operator"), (RELEASE, "tigera-operator")},
    "metrics_server": {(RELEASE, "metrics-server")},
    "amd_gpu_plugin": {(NAMESPACE, "kube-amd-gpu"), (RELEASE, "amd-gpu")},
    "monitoring": {
        (NAMESPACE, "monitoring"),
        (RELEASE, "kube-prometheus-stack"),
        (SECRET, "grafana-admin"),
        (PASSWORD, "addons-grafana-admin-password"),
    },
    "device_metrics_exporter": {(NAMESPACE, "kube-amd-gpu"), (RELEASE, "device-metrics-exporter")},
    "local_path": {
        (NAMESPACE, "local-path-storage"),
        ("kubernetes:core/v1:ServiceAccount", "local-path-provisioner"),
        ("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", "local-path-provisioner"),
        ("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", "local-path-provisioner"),
        ("kubernetes:rbac.authorization.k8s.io/v1:Role", "local-path-provisioner"),
        ("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "local-path-provisioner"),
        ("kubernetes:core/v1:ConfigMap", "local-path-config"),
        ("kubernetes:apps/v1:Deployment", "local-path-provisioner"),
        ("kubernetes:storage.k8s.io/v1:StorageClass", "local-path"),
    },
}


def kubernetes_name(resource: Declared) -> str:
    if resource.type == PASSWORD:
        return resource.name
    return resource.inputs["name"] if resource.type == RELEASE else resource.inputs["metadata"]["name"]


@pytest.mark.parametrize("addon", sorted(ALONE))
def test_each_addon_alone_declares_only_its_own(tmp_path: Path, addon: str) -> None:
    result = run_addons(tmp_path, **{**ALL_OFF, addon: True})
    assert {(r.type, kubernetes_name(r)) for r in children(result)} == ALONE[addon]
    assert (result.outputs["storage_class_name"] == "local-path") is (addon == "local_path")
    assert (result.outputs["monitoring_namespace"] == "monitoring") is (addon == "monitoring")


# --- secrets --------------------------------------------------------------------------------------------------

CREDENTIAL_KEY = re.compile(r"password|passwd|token|apikey|api_key|secretkey|credential", re.IGNORECASE)


def keys_of(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            yield where
            yield from keys_of(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from keys_of(item, f"{path}[{index}]")


def test_grafana_admin_only_through_a_secret_and_no_credentials_in_values(everything: PlanResult) -> None:
    [secret] = [r for r in everything.resources if r.type == SECRET]
    assert secret.inputs["metadata"] == {
        "name": "grafana-admin",
        "namespace": "monitoring",
        "labels": secret.inputs["metadata"]["labels"],
        "annotations": {"aim.amd.com/owned-by": "aim/test"},
    }
    assert set(secret.inputs["stringData"]) == {"admin-user", "admin-password"}
    assert secret.options["additional_secret_outputs"] == ["data", "stringData"]
    monitoring = releases(everything)["kube-prometheus-stack"]
    assert secret.urn in monitoring.dependencies, "Grafana's Secret exists before the chart installs Grafana"
    for release in everything.of_type(RELEASE):
        values = release.inputs.get("values") or {}
        # The key *names* of the Secret Grafana reads are references, not credentials.
        references = {"grafana.admin.existingSecret", "grafana.admin.userKey", "grafana.admin.passwordKey"}
        bad = [
            k
            for k in keys_of(values)
            if k not in references and (CREDENTIAL_KEY.search(k.rsplit(".", 1)[-1]) or k.endswith(".secret"))
        ]
        assert not bad, f"{release.name}: credential-like keys in Helm values: {bad}"
        text = json.dumps(values).lower().replace('"existingsecret": "grafana-admin"', "")
        assert "secret" not in text, release.name
