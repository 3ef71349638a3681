"""ClusterAddons under the mock runtime: pinned charts, order, toggles, provider, valid chart values and manifests."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from aim_infra.stack.components import addons as addons_module
from aim_infra.stack.components.addons import (
    ALL_CHARTS,
    AMD_GPU,
    CALICO,
    CONTROL_PLANE_SCRAPES,
    DEVICE_METRICS_EXPORTER,
    IMAGE_PINS,
    KUBE_PROMETHEUS_STACK,
    LOCAL_PATH_HELPER_IMAGE,
    LOCAL_PATH_IMAGE,
    METRICS_SERVER,
    ChartPin,
    ClusterAddonsArgs,
    PinEvidence,
    control_plane_metrics_reachable,
    deep_merge,
)
from aim_infra.stack.plan import Declared, PlanResult, run_stack

ROOT = Path(__file__).resolve().parents[3]
# CI checks the project out next to `shared/`; so does the workspace (<checkout>/../shared/charts).
CHARTS_DIR = ROOT.parent / "shared" / "charts"
COMPONENT = "aim:infra:ClusterAddons"
RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
PROVIDER = "pulumi:providers:kubernetes"
SECRET = "kubernetes:core/v1:Secret"
PASSWORD = "random:index/randomPassword:RandomPassword"
ALL_OFF = {
    "calico": False,
    "metrics_server": False,
    "local_path": False,
    "amd_gpu_plugin": False,
    "monitoring": False,
    "device_metrics_exporter": False,
}
ALL_ON = {key: True for key in ALL_OFF}

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


def namespace_urn(result: PlanResult, name: str) -> str:
    [found] = [r for r in result.of_type(NAMESPACE) if r.inputs["metadata"]["name"] == name]
    return found.urn


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


# --- releases: pins, namespaces, order ------------------------------------------------------------------------


@pytest.mark.parametrize("pin", list(ALL_CHARTS.values()), ids=lambda p: p.chart)
def test_release_is_pinned(everything: PlanResult, pin: ChartPin) -> None:
    release = releases(everything)[pin.release_name]
    inputs = release.inputs
    assert inputs["chart"] == pin.chart
    assert inputs["version"] == pin.version
    assert inputs["repositoryOpts"] == {"repo": pin.repo}
    assert inputs["namespace"] == pin.namespace
    assert inputs["createNamespace"] is False
    assert inputs["atomic"] is False
    assert inputs["cleanupOnFail"] is False
    assert inputs["skipAwait"] is False
    assert inputs["timeout"] >= 600


def test_pinned_versions_are_the_documented_ones() -> None:
    assert (CALICO.chart, CALICO.version, CALICO.repo) == (
        "tigera-operator",
        "v3.32.1",
        "https://docs.tigera.io/calico/charts",
    )
    assert (METRICS_SERVER.chart, METRICS_SERVER.version, METRICS_SERVER.namespace) == (
        "metrics-server",
        "3.13.1",
        "kube-system",
    )
    assert METRICS_SERVER.repo == "https://kubernetes-sigs.github.io/metrics-server/"
    assert (AMD_GPU.chart, AMD_GPU.version, AMD_GPU.repo) == (
        "amd-gpu",
        "0.21.0",
        "https://rocm.github.io/k8s-device-plugin/",
    )
    assert (KUBE_PROMETHEUS_STACK.chart, KUBE_PROMETHEUS_STACK.version, KUBE_PROMETHEUS_STACK.repo) == (
        "kube-prometheus-stack",
        "88.5.3",
        "https://prometheus-community.github.io/helm-charts",
    )
    assert (DEVICE_METRICS_EXPORTER.chart, DEVICE_METRICS_EXPORTER.version, DEVICE_METRICS_EXPORTER.repo) == (
        "device-metrics-exporter-charts",
        "v1.5.1",
        "https://rocm.github.io/device-metrics-exporter",
    )
    assert LOCAL_PATH_IMAGE == "rancher/local-path-provisioner:v0.0.37"
    assert LOCAL_PATH_HELPER_IMAGE == "busybox:1.37.0"
    assert CALICO.timeout_seconds >= 900 and KUBE_PROMETHEUS_STACK.timeout_seconds >= 900


EVIDENCE_URL = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+/(releases/tag|blob/[\w.-]+)/\S+")


def assert_evidence(what: str, evidence: PinEvidence) -> None:
    assert isinstance(evidence, PinEvidence), f"{what}: no upstream evidence"
    assert EVIDENCE_URL.fullmatch(evidence.url), f"{what}: evidence is not a release tag or a file in a repo"
    assert datetime.date.fromisoformat(evidence.checked_on) <= datetime.date(2026, 12, 5), what


def test_every_chart_pin_carries_its_upstream_evidence() -> None:
    pins = {name: value for name, value in vars(addons_module).items() if isinstance(value, ChartPin)}
    assert set(pins.values()) == set(ALL_CHARTS.values()), "every ChartPin is installed (and so checked here)"
    for name, pin in pins.items():
        assert_evidence(name, pin.evidence)
        # A tag page must be the pinned version's own; an index file lists every version.
        if "/releases/tag/" in pin.evidence.url:
            assert pin.evidence.url.endswith(pin.version), name
        assert pin.version != "latest" and re.fullmatch(r"v?\d+\.\d+\.\d+", pin.version), name


def test_every_image_pin_carries_its_upstream_evidence(everything: PlanResult) -> None:
    constants = {value for name, value in vars(addons_module).items() if name.endswith("_IMAGE")}
    assert constants == set(IMAGE_PINS)
    for image, evidence in IMAGE_PINS.items():
        assert_evidence(image, evidence)
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest" and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), image
        if "/releases/tag/" in evidence.url:
            assert evidence.url.endswith(tag), image
    # Every image the component declares itself (not through a chart) is one of them.
    declared = set()
    for resource in children(everything):
        text = json.dumps(resource.inputs)
        declared |= set(re.findall(r'\\?"image\\?": \\?"([^"\\]+)', text))
        for data in (resource.inputs.get("data") or {}).values():
            declared |= set(re.findall(r"image: (\S+)", data))
    assert declared == set(IMAGE_PINS), declared


def test_calico_goes_first_and_each_release_waits_for_its_namespace(everything: PlanResult) -> None:
    by_name = releases(everything)
    calico = by_name.pop("tigera-operator")
    assert namespace_urn(everything, "tigera-operator") in calico.dependencies
    assert not any(r.urn in calico.dependencies for r in by_name.values())
    for release in by_name.values():
        assert calico.urn in release.dependencies, release.name
    for release in [*by_name.values(), calico]:
        if release.inputs["namespace"] != "kube-system":  # not ours to declare
            assert namespace_urn(everything, release.inputs["namespace"]) in release.dependencies, release.name
    local_path_workload = everything.named("kubernetes:apps/v1:Deployment", "addons-local-path-provisioner")
    assert calico.urn in local_path_workload.dependencies
    assert "kube-system" not in {r.inputs["metadata"]["name"] for r in everything.of_type(NAMESPACE)}


def test_without_calico_nothing_waits_for_it(tmp_path: Path) -> None:
    result = run_addons(tmp_path, **{**ALL_ON, "calico": False})
    assert "tigera-operator" not in releases(result)
    assert releases(result)["metrics-server"].dependencies == []


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


@pytest.mark.parametrize("insecure", [True, False])
def test_kubelet_insecure_tls_only_when_asked(tmp_path: Path, insecure: bool) -> None:
    result = run_addons(tmp_path, **{**ALL_OFF, "metrics_server": True, "kubelet_insecure_tls": insecure})
    values = releases(result)["metrics-server"].inputs.get("values") or {}
    if insecure:
        assert values["args"] == ["--kubelet-insecure-tls"]
    else:
        assert "--kubelet-insecure-tls" not in json.dumps(values)


def test_calico_pool_uses_the_pod_cidr(tmp_path: Path) -> None:
    result = run_addons(tmp_path, **{**ALL_OFF, "calico": True, "pod_cidr": "10.244.0.0/16"})
    [pool] = releases(result)["tigera-operator"].inputs["values"]["installation"]["calicoNetwork"]["ipPools"]
    assert pool == {
        "cidr": "10.244.0.0/16",
        "encapsulation": "VXLANCrossSubnet",
        "natOutgoing": "Enabled",
        "nodeSelector": "all()",
    }


def test_a_bad_pod_cidr_fails_before_any_resource() -> None:
    with pytest.raises(ValueError):
        ClusterAddonsArgs(calico=True, pod_cidr="10.244.0.1/16")


def test_monitoring_values_are_merged_over_ours(tmp_path: Path) -> None:
    extra = {
        "grafana": {"admin": {"existingSecret": "grafana-admin"}, "sidecar": {"dashboards": {"labelValue": "yes"}}},
        "kube-state-metrics": {"metricLabelsAllowlist": ["pods=[app.kubernetes.io/name]"]},
    }
    result = run_addons(tmp_path, **{**ALL_OFF, "monitoring": True, "monitoring_values": extra})
    values = releases(result)["kube-prometheus-stack"].inputs["values"]
    assert values["grafana"]["sidecar"]["dashboards"] == {
        "enabled": True,
        "label": "grafana_dashboard",
        "labelValue": "yes",
        "searchNamespace": ["monitoring"],
        "resource": "configmap",
    }
    assert values["grafana"]["admin"] == {
        "existingSecret": "grafana-admin",
        "userKey": "admin-user",
        "passwordKey": "admin-password",
    }
    assert values["kube-state-metrics"]["metricLabelsAllowlist"] == ["pods=[app.kubernetes.io/name]"]
    assert values["prometheus"]["prometheusSpec"]["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert_values_keys_exist(KUBE_PROMETHEUS_STACK.chart, values)


def test_deep_merge_replaces_lists_and_keeps_the_base() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    merged = deep_merge(base, {"a": {"c": [3]}, "e": 2})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


# --- chart values: every key exists in the pinned chart's values.yaml ------------------------------------------

VALUES_FILES = {
    CALICO.chart: "tigera-operator-v3.32.1.values.yaml",
    METRICS_SERVER.chart: "metrics-server-3.13.1.values.yaml",
    AMD_GPU.chart: "amd-gpu-0.21.0.values.yaml",
    KUBE_PROMETHEUS_STACK.chart: "kube-prometheus-stack-88.5.3.values.yaml",
}
# Subcharts of kube-prometheus-stack: keys under these top-level keys belong to the subchart's own values.yaml.
SUBCHART_FILES = {
    KUBE_PROMETHEUS_STACK.chart: {
        "grafana": "grafana-12.11.1.values.yaml",
        "kube-state-metrics": "kube-state-metrics-8.4.0.values.yaml",
    }
}
# shared/charts holds no values.yaml for device-metrics-exporter. Its key structure, as ROCm/device-metrics-exporter
# helm-charts/values.yaml defines it (read with the search tool's read_file on 2026-12-05); `{}` is free-form there.
UPSTREAM_KEY_STRUCTURES: dict[str, dict[str, Any]] = {
    DEVICE_METRICS_EXPORTER.chart: {
        "platform": "k8s",
        "affinity": {},
        "nodeSelector": {},
        "tolerations": [],
        "podAnnotations": {},
        "kubelet": {"podResourceAPISocketPath": ""},
        "monitor": {"resources": {"gpu": True, "nic": False}},
        "hostNetwork": False,
        "image": {"repository": "", "tag": "", "pullPolicy": "", "pullSecrets": "", "initContainerImage": ""},
        "resources": {"limits": {"cpu": "", "memory": ""}, "requests": {"cpu": "", "memory": ""}},
        "service": {"type": "", "annotations": {}, "ClusterIP": {"port": 0}, "NodePort": {"port": 0, "nodePort": 0}},
        "configMap": "",
        "serviceMonitor": {
            "enabled": False,
            "interval": "",
            "honorLabels": True,
            "honorTimestamps": True,
            "attachMetadata": {"node": False},
            "labels": {},
            "relabelings": [],
            "metricRelabelings": [],
        },
    }
}
# Structures a chart documents only as a commented-out example in its values.yaml: (chart, dotted path).
DOCUMENTED_IN_COMMENTS = {CALICO.chart: ["installation.calicoNetwork"]}


def charts_dir() -> Path:
    if not CHARTS_DIR.is_dir():
        pytest.skip(f"chart values not available: {CHARTS_DIR} is absent (shared/ is expected next to the checkout)")
    return CHARTS_DIR


def commented_block(text: str, dotted: str) -> Any:
    """The YAML a values.yaml shows commented out under `dotted`'s parent, e.g. `  # calicoNetwork:` + lines."""
    *parents, key = dotted.split(".")
    indent = "  " * len(parents)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(rf"{indent}# {re.escape(key)}:\s*", line))
    prefix = f"{indent}# "
    block = [f"{key}:"]
    for line in lines[start + 1 :]:
        if line.startswith(prefix + " "):
            block.append(line[len(prefix) :])
        elif line.strip() in ("", "#", f"{indent}#".strip()):
            continue
        else:
            break
    return yaml.safe_load("\n".join(block))[key]


def reference_values(chart: str) -> dict[str, Any]:
    """The chart's values.yaml, with commented-out documented structures filled in where the chart shows them."""
    if chart in UPSTREAM_KEY_STRUCTURES:
        return UPSTREAM_KEY_STRUCTURES[chart]
    text = (charts_dir() / VALUES_FILES[chart]).read_text()
    tree = yaml.safe_load(text)
    for dotted in DOCUMENTED_IN_COMMENTS.get(chart, []):
        *parents, key = dotted.split(".")
        node = tree
        for part in parents:
            node = node[part]
        assert key not in node, f"{dotted} is a real key now: drop it from DOCUMENTED_IN_COMMENTS"
        node[key] = commented_block(text, dotted)
    return tree


def missing_keys(values: Any, reference: Any, path: str, documented: bool) -> Iterator[str]:
    """Key paths of `values` that `reference` does not have. An empty map in the reference is free-form (labels,
    selectors, resources); lists are Kubernetes objects, walked only inside a structure the chart documents."""
    if isinstance(values, Mapping):
        if reference == {}:
            return
        if not isinstance(reference, Mapping):
            yield f"{path} (the chart has a {type(reference).__name__} here, not a map)"
            return
        for key, value in values.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in reference:
                yield where
            else:
                yield from missing_keys(value, reference[key], where, documented)
    elif isinstance(values, list) and documented and isinstance(reference, list) and reference:
        for index, item in enumerate(values):
            yield from missing_keys(item, reference[0], f"{path}[{index}]", documented)


def unknown_keys(chart: str, values: Mapping[str, Any]) -> list[str]:
    reference = reference_values(chart)
    documented = DOCUMENTED_IN_COMMENTS.get(chart, [])
    subcharts = SUBCHART_FILES.get(chart, {})
    unknown = []
    for key, value in values.items():
        in_comments = any(d == key or d.startswith(f"{key}.") for d in documented)
        missing = set(missing_keys({key: value}, reference, "", in_comments))
        if key in subcharts and missing:
            # A subchart key is valid when the subchart's values.yaml has it (the parent passes it down) or the
            # parent's own section does (the parent's templates read it).
            sub = yaml.safe_load((charts_dir() / subcharts[key]).read_text())
            missing &= {f"{key}.{m}" for m in missing_keys(value, sub, "", False)}
        unknown.extend(sorted(missing))
    return unknown


def assert_values_keys_exist(chart: str, values: Mapping[str, Any]) -> None:
    unknown = unknown_keys(chart, values)
    assert not unknown, f"{chart}: keys not in its values.yaml: {unknown}"


def test_every_values_key_exists_in_the_pinned_chart(everything: PlanResult) -> None:
    by_name = releases(everything)
    for pin in ALL_CHARTS.values():
        values = by_name[pin.release_name].inputs.get("values") or {}
        assert values or pin is METRICS_SERVER, pin.chart
        assert_values_keys_exist(pin.chart, values)


def test_the_values_check_catches_unknown_keys() -> None:
    assert unknown_keys(CALICO.chart, {"installation": {"calicoNetwork": {"ipPools": [{"cidrs": "x"}]}}}) == [
        "installation.calicoNetwork.ipPools[0].cidrs"
    ]
    assert unknown_keys(CALICO.chart, {"installation": {"calicoNetwork": {"ipPool": []}}}) == [
        "installation.calicoNetwork.ipPool"
    ]
    assert unknown_keys(AMD_GPU.chart, {"labeler": {"enabled": True}}) == ["labeler"]
    assert unknown_keys(METRICS_SERVER.chart, {"extraArgs": []}) == ["extraArgs"]
    assert unknown_keys(KUBE_PROMETHEUS_STACK.chart, {"grafana": {"sidecar": {"dashboard": {"enabled": True}}}}) == [
        "grafana.sidecar.dashboard"
    ]
    assert unknown_keys(KUBE_PROMETHEUS_STACK.chart, {"kube-state-metrics": {"metricLabelAllowlist": []}}) == [
        "kube-state-metrics.metricLabelAllowlist"
    ]
    assert unknown_keys(KUBE_PROMETHEUS_STACK.chart, {"prometheus": {"prometheusSpec": {"nope": 1}}}) == [
        "prometheus.prometheusSpec.nope"
    ]
    # Free-form maps and Kubernetes-object lists are open; documented subchart keys pass.
    assert unknown_keys(AMD_GPU.chart, {"lbl": {"resources": {"limits": {"memory": "20Mi"}}}}) == []
    assert unknown_keys(KUBE_PROMETHEUS_STACK.chart, {"grafana": {"admin": {"existingSecret": "x"}}}) == []


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


# --- local-path-provisioner -----------------------------------------------------------------------------------


def local_path_objects(result: PlanResult) -> list[Declared]:
    return [
        r
        for r in children(result)
        if r.type not in (RELEASE, SECRET, PASSWORD)
        and not (r.type == NAMESPACE and r.inputs["metadata"]["name"] != "local-path-storage")
    ]


def test_local_path_objects_are_valid_kubernetes(everything: PlanResult) -> None:
    objects = local_path_objects(everything)
    assert len(objects) == len(ALONE["local_path"])
    for resource in objects:
        kubernetes_validate.validate(manifest(resource), "1.30", strict=True)
    config = everything.named("kubernetes:core/v1:ConfigMap", "addons-local-path-config").inputs["data"]
    helper_pod = yaml.safe_load(config["helperPod.yaml"])
    kubernetes_validate.validate(helper_pod, "1.30", strict=True)


def test_local_path_config_is_what_the_provisioner_reads(everything: PlanResult) -> None:
    config_map = everything.named("kubernetes:core/v1:ConfigMap", "addons-local-path-config").inputs
    assert config_map["metadata"] == {**config_map["metadata"], "name": "local-path-config"}
    data = config_map["data"]
    assert set(data) == {"config.json", "setup", "teardown", "helperPod.yaml"}
    assert json.loads(data["config.json"]) == {
        "nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["/opt/local-path-provisioner"]}]
    }
    pod = yaml.safe_load(data["helperPod.yaml"])
    [container] = pod["spec"]["containers"]
    assert container["name"] == "helper-pod"  # the provisioner copies this container's log by name
    assert container["image"] == "busybox:1.37.0"
    # The provisioner refuses a template that brings volumes, mounts, a node, a service account or privileges.
    assert "volumes" not in pod["spec"] and "volumeMounts" not in container
    assert "nodeName" not in pod["spec"] and "serviceAccountName" not in pod["spec"]
    assert container.get("securityContext", {}).get("privileged") is not True


def test_local_path_deployment_runs_the_pinned_provisioner(everything: PlanResult) -> None:
    deployment = everything.named("kubernetes:apps/v1:Deployment", "addons-local-path-provisioner").inputs
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "rancher/local-path-provisioner:v0.0.37"
    assert container["args"][:3] == ["start", "--config", "/etc/config/config.json"]
    arguments = dict(zip(container["args"][3::2], container["args"][4::2], strict=True))
    assert arguments["--provisioner-name"] == "rancher.io/local-path"
    assert arguments["--configmap-name"] == "local-path-config"
    assert arguments["--service-account-name"] == pod["serviceAccountName"] == "local-path-provisioner"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["CONFIG_MOUNT_PATH"]["value"] == "/etc/config/"
    [mount] = container["volumeMounts"]
    [volume] = pod["volumes"]
    assert mount["mountPath"] == "/etc/config/" and mount["name"] == volume["name"]
    assert volume["configMap"]["name"] == "local-path-config"
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert deployment["metadata"]["namespace"] == "local-path-storage"


def test_storage_class_is_wait_for_first_consumer_and_not_default(everything: PlanResult) -> None:
    storage_class = everything.named("kubernetes:storage.k8s.io/v1:StorageClass", "addons-local-path-storage-class")
    inputs = storage_class.inputs
    assert inputs["metadata"]["name"] == "local-path"
    assert inputs["provisioner"] == "rancher.io/local-path"
    assert inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    assert inputs["reclaimPolicy"] == "Delete"
    annotations = inputs["metadata"].get("annotations") or {}
    assert annotations.get("storageclass.kubernetes.io/is-default-class", "false") == "false"
    assert annotations.get("storageclass.beta.kubernetes.io/is-default-class", "false") == "false"
    deployment = everything.named("kubernetes:apps/v1:Deployment", "addons-local-path-provisioner")
    assert deployment.urn in storage_class.dependencies, "the class is offered only once the provisioner runs"


def test_local_path_rbac_is_least_privilege(everything: PlanResult) -> None:
    cluster_role = everything.named(
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", "addons-local-path-cluster-role"
    )
    role = everything.named("kubernetes:rbac.authorization.k8s.io/v1:Role", "addons-local-path-role")

    def grants(resource: Declared) -> dict[tuple[str, str], set[str]]:
        found: dict[tuple[str, str], set[str]] = {}
        for rule in resource.inputs["rules"]:
            for group in rule["apiGroups"]:
                for kind in rule["resources"]:
                    found.setdefault((group, kind), set()).update(rule["verbs"])
        return found

    assert grants(cluster_role) == {
        ("", "persistentvolumeclaims"): {"list", "watch", "update"},
        ("", "persistentvolumes"): {"list", "watch", "create", "patch", "delete"},
        ("storage.k8s.io", "storageclasses"): {"list", "watch"},
        ("", "nodes"): {"get"},
        ("", "events"): {"create", "patch"},
    }
    assert grants(role) == {
        ("", "pods"): {"create", "get", "list", "delete"},
        ("", "pods/log"): {"get"},
        ("", "configmaps"): {"get", "list"},
    }
    assert role.inputs["metadata"]["namespace"] == "local-path-storage"
    for binding_type, name, role_kind in (
        ("ClusterRoleBinding", "addons-local-path-cluster-role-binding", "ClusterRole"),
        ("RoleBinding", "addons-local-path-role-binding", "Role"),
    ):
        binding = everything.named(f"kubernetes:rbac.authorization.k8s.io/v1:{binding_type}", name).inputs
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": "local-path-provisioner",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "local-path-provisioner", "namespace": "local-path-storage"}
        ]


def test_setup_and_teardown_scripts_work(everything: PlanResult, tmp_path: Path) -> None:
    """Run the scripts as the helper pod would (sh, the env the provisioner sets) against a temporary data dir."""
    data = everything.named("kubernetes:core/v1:ConfigMap", "addons-local-path-config").inputs["data"]
    scripts = tmp_path / "script"
    scripts.mkdir()
    for name in ("setup", "teardown"):
        (scripts / name).write_text(data[name])
    volume = tmp_path / "data" / "pvc-1_default_cache"
    env = {
        **os.environ,
        "VOL_DIR": str(volume),
        "VOL_MODE": "Filesystem",
        "VOL_SIZE_BYTES": "1073741824",
        "VOL_USER": "",
        "VOL_GROUP": "",
        "VOL_PERM": "",
    }
    subprocess.run(["/bin/sh", str(scripts / "setup")], env=env, check=True)
    assert volume.is_dir() and (volume.stat().st_mode & 0o777) == 0o700  # owner (root) only, never world-writable
    (volume / "weights.bin").write_bytes(b"x")
    subprocess.run(["/bin/sh", str(scripts / "teardown")], env=env, check=True)
    assert not volume.exists() and volume.parent.is_dir()
    block = subprocess.run(["/bin/sh", str(scripts / "setup")], env={**env, "VOL_MODE": "Block"}, capture_output=True)
    assert block.returncode != 0 and not volume.exists()
    # Too short to be <data mount>/<volume dir> (none of these exists, so a broken guard would still harm nothing).
    for unsafe in ("", "/aim-no-such-dir", "relative/dir"):
        refused = subprocess.run(["/bin/sh", str(scripts / "teardown")], env={**env, "VOL_DIR": unsafe})
        assert refused.returncode != 0


def test_args_default_to_the_settings_defaults() -> None:
    from aim_infra.stack.settings import Settings

    defaults = Settings()
    assert asdict(ClusterAddonsArgs.from_settings(defaults)) == {
        "calico": defaults.calico,
        "pod_cidr": defaults.pod_cidr,
        "metrics_server": defaults.metrics_server,
        "kubelet_insecure_tls": defaults.kubelet_insecure_tls,
        "local_path": defaults.local_path,
        "amd_gpu_plugin": defaults.amd_gpu_plugin,
        "monitoring": defaults.monitoring,
        "monitoring_values": {},
        "device_metrics_exporter": False,
        "control_plane_metrics": False,
        "grafana_admin_password": None,
    }
    assert asdict(ClusterAddonsArgs()) == asdict(ClusterAddonsArgs.from_settings(defaults))


# --- monitoring: control-plane scrapes, Grafana's reach, the exporter's ServiceMonitor -------------------------


def test_control_plane_is_not_scraped_where_it_is_unreachable() -> None:
    from aim_infra.stack.settings import Settings

    # kubeadm binds them to 127.0.0.1; an unknown cluster is treated alike (addons.control_plane_metrics_reachable).
    assert control_plane_metrics_reachable("kubeadm") is False
    assert control_plane_metrics_reachable("none") is False
    kubeadm = Settings(clusterBootstrap="kubeadm", calico=True, localPath=True, kubeletInsecureTls=True)
    assert ClusterAddonsArgs.from_settings(kubeadm).control_plane_metrics is False


@pytest.mark.parametrize("scrape", [False, True])
def test_control_plane_scrapes_and_their_rules_follow_the_switch(tmp_path: Path, scrape: bool) -> None:
    result = run_addons(tmp_path, **{**ALL_OFF, "monitoring": True, "control_plane_metrics": scrape})
    values = releases(result)["kube-prometheus-stack"].inputs["values"]
    groups = {group for groups in CONTROL_PLANE_SCRAPES.values() for group in groups}
    assert groups == {"kubeControllerManager", "kubeSchedulerAlerting", "kubeSchedulerRecording", "etcd", "kubeProxy"}
    if scrape:
        assert not set(CONTROL_PLANE_SCRAPES) & set(values) and "defaultRules" not in values
    else:
        for key in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
            assert values[key]["enabled"] is False, key
        assert values["defaultRules"]["rules"] == dict.fromkeys(groups, False)
    # The rest of the default rules (TargetDown's `general` among them) stays on.
    assert_values_keys_exist(KUBE_PROMETHEUS_STACK.chart, values)


def test_grafana_sidecars_read_only_the_monitoring_namespace(everything: PlanResult) -> None:
    grafana = releases(everything)["kube-prometheus-stack"].inputs["values"]["grafana"]
    assert grafana["rbac"]["namespaced"] is True, "a Role in its namespace, no ClusterRole over every Secret"
    assert not grafana["rbac"].get("namespaces") and not grafana["rbac"].get("extraClusterRoleRules")
    for sidecar in ("dashboards", "datasources"):
        assert grafana["sidecar"][sidecar]["searchNamespace"] == ["monitoring"], sidecar
        assert grafana["sidecar"][sidecar]["resource"] == "configmap", sidecar
    assert "ALL" not in json.dumps(grafana)


def test_exporter_service_monitor_is_selected_by_the_stacks_prometheus(everything: PlanResult) -> None:
    by_name = releases(everything)
    exporter = by_name["device-metrics-exporter"].inputs["values"]["serviceMonitor"]
    # Replaces the chart's default `release: prometheus-operator` label.
    assert exporter["enabled"] is True and exporter["labels"] == {"release": "kube-prometheus-stack"}
    spec = by_name["kube-prometheus-stack"].inputs["values"]["prometheus"]["prometheusSpec"]
    # The selector the chart renders: serviceMonitorSelector if set, else `release: <release>` when
    # serviceMonitorSelectorNilUsesHelmValues, else everything. The exporter's labels satisfy each case we set.
    selector = spec.get("serviceMonitorSelector") or (
        {"matchLabels": {"release": by_name["kube-prometheus-stack"].inputs["name"]}}
        if spec.get("serviceMonitorSelectorNilUsesHelmValues", True)
        else {}
    )
    assert selector.get("matchLabels", {}).items() <= exporter["labels"].items()
    helm_selector = {"release": by_name["kube-prometheus-stack"].inputs["name"]}
    assert helm_selector.items() <= exporter["labels"].items(), "selected even if the Helm-values selector is used"
