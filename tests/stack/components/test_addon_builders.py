"""The cluster add-ons' pure builders, called directly, without Pulumi.

Pins and their evidence, Helm values against each pinned chart's values.yaml, manifests against the Kubernetes 1.30
schemas (kubernetes-validate --strict), and the install plan: order, toggles, clusterBootstrap modes, monitoring."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from aim_infra.stack.manifests import addon_pins
from aim_infra.stack.manifests.addon_objects import LOCAL_PATH_CONFIG_MAP, local_path_config
from aim_infra.stack.manifests.addon_pins import (
    ALL_CHARTS,
    AMD_GPU,
    CALICO,
    DEVICE_METRICS_EXPORTER,
    IMAGE_PINS,
    KUBE_PROMETHEUS_STACK,
    LOCAL_PATH_HELPER_IMAGE,
    LOCAL_PATH_IMAGE,
    METRICS_SERVER,
    ChartPin,
    PinEvidence,
)
from aim_infra.stack.manifests.addon_plan import (
    AddonPlan,
    ClusterAddonsArgs,
    GeneratedPassword,
    PlannedChild,
    control_plane_metrics_reachable,
    install_plan,
    resolve,
)
from aim_infra.stack.manifests.addon_values import CONTROL_PLANE_SCRAPES, deep_merge, monitoring_values
from aim_infra.stack.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
# CI checks the project out next to `shared/`; so does the workspace (<checkout>/../shared/charts).
CHARTS_DIR = ROOT.parent / "shared" / "charts"
KUBERNETES_VERSION = "1.30"
STACK = "aim/test"
POD_LABELS = ("aim.amd.com/recipe", "app.kubernetes.io/instance")
ALL_OFF = {
    "calico": False,
    "metrics_server": False,
    "local_path": False,
    "amd_gpu_plugin": False,
    "monitoring": False,
    "device_metrics_exporter": False,
}
ALL_ON = {key: True for key in ALL_OFF}


def plan_of(**args: Any) -> AddonPlan:
    return install_plan(ClusterAddonsArgs(**args), stack=STACK, pod_labels=POD_LABELS)


def child(plan: AddonPlan, key: str) -> PlannedChild:
    [found] = [c for c in plan.children if c.key == key]
    return found


def release_values(plan: AddonPlan, chart: str) -> dict[str, Any]:
    return dict(child(plan, plan.releases[chart]).body["values"])


@pytest.fixture
def everything() -> AddonPlan:
    return plan_of(**ALL_ON, kubelet_insecure_tls=True, keda=True, keda_namespaces=("aim",), keda_http=True)


def test_the_builders_and_this_test_load_no_pulumi() -> None:
    """What this file checks runs without the Pulumi SDK: importing it (and so every builder) loads no pulumi module."""
    code = "import sys, tests.stack.components.test_addon_builders; print([m for m in sys.modules if 'pulumi' in m])"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


# --- pins: versions and their upstream evidence -------------------------------------------------------------------


@pytest.mark.parametrize("pin", list(ALL_CHARTS.values()), ids=lambda p: p.chart)
def test_release_is_pinned(everything: AddonPlan, pin: ChartPin) -> None:
    [key] = [key for key, chart in ALL_CHARTS.items() if chart is pin]
    spec = child(everything, everything.releases[key]).body
    assert spec["name"] == pin.release_name
    assert spec["chart"] == pin.chart
    assert spec["version"] == pin.version
    assert spec["repositoryOpts"] == {"repo": pin.repo}
    assert spec["namespace"] == pin.namespace
    assert spec["createNamespace"] is False
    assert spec["atomic"] is False
    assert spec["cleanupOnFail"] is False
    assert spec["skipAwait"] is False
    assert spec["timeout"] >= 600


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
    pins = {name: value for name, value in vars(addon_pins).items() if isinstance(value, ChartPin)}
    assert set(pins.values()) == set(ALL_CHARTS.values()), "every ChartPin is installed (and so checked here)"
    for name, pin in pins.items():
        assert_evidence(name, pin.evidence)
        # A tag page must be the pinned version's own; an index file lists every version.
        if "/releases/tag/" in pin.evidence.url:
            assert pin.evidence.url.endswith(pin.version), name
        assert pin.version != "latest" and re.fullmatch(r"v?\d+\.\d+\.\d+", pin.version), name


def test_every_image_pin_carries_its_upstream_evidence(everything: AddonPlan) -> None:
    constants = {value for name, value in vars(addon_pins).items() if name.endswith("_IMAGE")}
    assert constants == set(IMAGE_PINS)
    for image, evidence in IMAGE_PINS.items():
        assert_evidence(image, evidence)
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest" and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), image
        if "/releases/tag/" in evidence.url:
            assert evidence.url.endswith(tag), image
    # Every image the add-ons declare themselves (not through a chart) is one of them.
    declared = set()
    for body in (resolve(c.body, str) for c in everything.children):  # releases' values too
        declared |= set(re.findall(r'"image": "([^"]+)"', json.dumps(body)))
        for data in (body.get("data") or {}).values():
            declared |= set(re.findall(r"image: (\S+)", data))
    assert declared == set(IMAGE_PINS), declared


# --- install order and toggles ------------------------------------------------------------------------------------

LOCAL_PATH_KEYS = [
    "local-path-ns",
    "local-path-service-account",
    "local-path-cluster-role",
    "local-path-cluster-role-binding",
    "local-path-role",
    "local-path-role-binding",
    "local-path-config",
    "local-path-provisioner",
    "local-path-storage-class",
]


def test_install_order_and_what_waits_for_what(everything: AddonPlan) -> None:
    assert {c.key: list(c.after) for c in everything.children} == {
        "calico-ns": [],
        "calico": ["calico-ns"],
        "metrics-server": ["calico"],
        "local-path-ns": ["calico"],
        "local-path-service-account": ["local-path-ns"],
        "local-path-cluster-role": [],
        "local-path-cluster-role-binding": ["local-path-cluster-role", "local-path-service-account"],
        "local-path-role": ["local-path-ns"],
        "local-path-role-binding": ["local-path-role", "local-path-service-account"],
        "local-path-config": ["local-path-ns"],
        "local-path-provisioner": [
            "local-path-service-account",
            "local-path-role-binding",
            "local-path-cluster-role-binding",
            "local-path-config",
            "calico",
        ],
        # The class is offered only once the provisioner runs.
        "local-path-storage-class": ["local-path-provisioner"],
        "amd-gpu-plugin-ns": [],
        "amd-gpu-plugin": ["amd-gpu-plugin-ns", "calico"],
        "monitoring-ns": [],
        "grafana-admin-password": [],
        # Grafana's Secret exists before the chart installs Grafana.
        "grafana-admin": ["monitoring-ns"],
        "monitoring": ["monitoring-ns", "grafana-admin", "calico"],
        # The exporter's ServiceMonitor needs kube-prometheus-stack's CRDs; it shares the device plugin's namespace.
        "device-metrics-exporter": ["amd-gpu-plugin-ns", "calico", "monitoring"],
        # KEDA's ServiceMonitor needs those CRDs too, and its ScaledObjects read that Prometheus.
        "keda-ns": [],
        "keda": ["keda-ns", "calico", "monitoring"],
        # The HTTP add-on's interceptor is scaled by a ScaledObject of its own: KEDA's CRD comes first.
        "keda-http": ["keda-ns", "calico", "keda"],
    }
    # Install order is the list's: Calico first, each child after everything it waits for.
    keys = [c.key for c in everything.children]
    assert keys[:2] == ["calico-ns", "calico"]
    assert all(set(c.after) <= set(keys[: keys.index(c.key)]) for c in everything.children)
    assert everything.ready == ["calico", "local-path-storage-class", "amd-gpu-plugin"]
    assert everything.releases == {
        "calico": "calico",
        "metrics_server": "metrics-server",
        "amd_gpu_plugin": "amd-gpu-plugin",
        "monitoring": "monitoring",
        "device_metrics_exporter": "device-metrics-exporter",
        "keda": "keda",
        "keda_http": "keda-http",
    }
    assert everything.release_names == {key: pin.release_name for key, pin in ALL_CHARTS.items()}


def test_calico_goes_first_and_each_release_waits_for_its_namespace(everything: AddonPlan) -> None:
    releases = {key: child(everything, c) for key, c in everything.releases.items()}
    calico = releases.pop("calico")
    assert calico.after == (everything.namespaces["calico"],)
    for release in releases.values():
        assert "calico" in release.after, release.key
    namespaces = {child(everything, key).body["metadata"]["name"]: key for key in everything.namespaces.values()}
    for release in [*releases.values(), calico]:
        if release.body["namespace"] != "kube-system":  # not ours to declare
            assert namespaces[release.body["namespace"]] in release.after, release.key
    assert "calico" in child(everything, "local-path-provisioner").after
    assert "kube-system" not in namespaces


def test_without_calico_nothing_waits_for_it() -> None:
    plan = plan_of(**{**ALL_ON, "calico": False})
    assert "calico" not in plan.releases and "calico" not in plan.ready
    assert child(plan, "metrics-server").after == ()
    assert not any("calico" in c.after or "calico-ns" in c.after for c in plan.children)


def test_a_planned_child_waits_only_for_children_planned_before_it() -> None:
    plan = AddonPlan()
    plan.add("a", "object", {})
    with pytest.raises(ValueError):
        plan.add("b", "object", {}, after=["c"])
    with pytest.raises(ValueError):
        plan.add("a", "object", {})


def test_all_off_plans_nothing() -> None:
    plan = plan_of(**ALL_OFF)
    assert plan == AddonPlan()


ALONE = {
    "calico": ["calico-ns", "calico"],
    "metrics_server": ["metrics-server"],
    "amd_gpu_plugin": ["amd-gpu-plugin-ns", "amd-gpu-plugin"],
    "monitoring": ["monitoring-ns", "grafana-admin-password", "grafana-admin", "monitoring"],
    "device_metrics_exporter": ["amd-gpu-plugin-ns", "device-metrics-exporter"],
    "local_path": LOCAL_PATH_KEYS,
}


@pytest.mark.parametrize("addon", sorted(ALONE))
def test_each_addon_alone_plans_only_its_own(addon: str) -> None:
    plan = plan_of(**{**ALL_OFF, addon: True})
    assert [c.key for c in plan.children] == ALONE[addon]
    assert (plan.storage_class_name == "local-path") is (addon == "local_path")
    assert (plan.monitoring_namespace == "monitoring") is (addon == "monitoring")
    assert (plan.monitoring_release_name == "kube-prometheus-stack") is (addon == "monitoring")


def test_keda_alone_plans_its_namespace_and_release_watching_the_models_namespaces() -> None:
    plan = plan_of(**ALL_OFF, keda=True, keda_namespaces=("aim-models", "aim-models", "other"))
    assert [c.key for c in plan.children] == ["keda-ns", "keda"]
    assert child(plan, "keda").after == ("keda-ns",)
    values = release_values(plan, "keda")
    assert values["watchNamespace"] == "aim-models,other"
    assert values["prometheus"]["operator"]["serviceMonitor"]["enabled"] is False  # no monitoring, no CRD for it
    kubernetes_validate.validate(dict(child(plan, "keda-ns").body), KUBERNETES_VERSION, strict=True)
    with pytest.raises(ValueError, match="at least the namespace"):
        plan_of(**ALL_OFF, keda=True)


def test_keda_comes_only_with_a_model_that_autoscales() -> None:
    single = Settings()
    assert (ClusterAddonsArgs.from_settings(single).keda, ClusterAddonsArgs.from_settings(single).keda_namespaces) == (
        False,
        (),
    )
    chat = {"name": "chat", "model": "Qwen/Qwen3-8B"}
    fixed = Settings(namespace="aim-models", models=[{**chat, "replicas": 2}])
    assert ClusterAddonsArgs.from_settings(fixed).keda is False
    ranged = Settings(namespace="aim-models", models=[{**chat, "replicas": {"min": 1, "max": 2}}])
    args = ClusterAddonsArgs.from_settings(ranged)
    assert (args.keda, args.keda_namespaces, args.keda_http) == (True, ("aim-models",), False)


def test_the_http_add_on_comes_only_with_a_model_that_scales_to_zero_and_after_keda() -> None:
    chat = {"name": "chat", "model": "Qwen/Qwen3-8B", "replicas": {"min": 1, "max": 2}}
    cold = {"name": "small", "model": "Qwen/Qwen3-0.6B", "replicas": {"min": 0, "max": 2}, "scaleToZero": True}
    args = ClusterAddonsArgs.from_settings(Settings(namespace="aim-models", models=[chat, cold]))
    assert (args.keda, args.keda_namespaces, args.keda_http) == (True, ("aim-models",), True)
    plan = install_plan(args, stack=STACK, pod_labels=POD_LABELS)
    keys = [c.key for c in plan.children]
    assert keys.index("keda-http") > keys.index("keda")
    spec = child(plan, "keda-http").body
    assert (spec["name"], spec["namespace"], spec["chart"], spec["version"]) == (
        "keda-add-ons-http",
        "keda",
        "keda-add-ons-http",
        "0.15.0",
    )
    # KEDA also watches its own namespace then: the chart's interceptor is scaled by a ScaledObject there.
    assert release_values(plan, "keda")["watchNamespace"] == "aim-models,keda"
    without = install_plan(ClusterAddonsArgs.from_settings(Settings(namespace="aim-models", models=[chat])), STACK, ())
    assert "keda_http" not in without.releases
    assert release_values(without, "keda")["watchNamespace"] == "aim-models"
    with pytest.raises(ValueError, match="needs KEDA"):
        ClusterAddonsArgs(keda_http=True)


def test_monitoring_off_plans_none_of_it_and_the_exporter_waits_only_for_its_namespace() -> None:
    on, off = plan_of(**ALL_ON), plan_of(**{**ALL_ON, "monitoring": False})
    assert [c.key for c in on.children if c not in off.children] == [
        "monitoring-ns",
        "grafana-admin-password",
        "grafana-admin",
        "monitoring",
        "device-metrics-exporter",  # without `monitoring` in its `after`
    ]
    assert child(off, "device-metrics-exporter").after == ("amd-gpu-plugin-ns", "calico")
    assert (off.monitoring_namespace, off.monitoring_release_name) == (None, None)
    assert "monitoring" not in off.releases


def test_grafana_password_is_generated_unless_configured() -> None:
    generated = plan_of(**{**ALL_OFF, "monitoring": True})
    password = child(generated, "grafana-admin-password")
    assert (password.kind, password.body) == ("password", {"length": 24, "special": False})
    secret = child(generated, "grafana-admin").body
    assert secret["stringData"] == {"admin-user": "admin", "admin-password": GeneratedPassword(password.key)}
    configured = plan_of(**{**ALL_OFF, "monitoring": True}, grafana_admin_password="from-config")
    assert [c.key for c in configured.children] == ["monitoring-ns", "grafana-admin", "monitoring"]
    assert child(configured, "grafana-admin").body["stringData"]["admin-password"] == "from-config"
    # The generated value takes the stand-in's place once the password child is declared.
    assert resolve(secret, {password.key: "generated"}.__getitem__)["stringData"]["admin-password"] == "generated"
    assert resolve({"a": [GeneratedPassword("p"), 1]}, str.upper) == {"a": ["P", 1]}


def test_the_cluster_bootstrap_mode_changes_nothing_but_what_the_settings_switch() -> None:
    # kubeadm binds them to 127.0.0.1; an unknown cluster is treated alike (control_plane_metrics_reachable).
    assert control_plane_metrics_reachable("kubeadm") is False
    assert control_plane_metrics_reachable("none") is False
    flags = {"calico": True, "localPath": True, "kubeletInsecureTls": True}
    kubeadm = ClusterAddonsArgs.from_settings(Settings(clusterBootstrap="kubeadm", **flags))
    assert kubeadm.control_plane_metrics is False
    none = ClusterAddonsArgs.from_settings(Settings(clusterBootstrap="none", **flags))
    assert kubeadm == none
    plan = install_plan(kubeadm, stack=STACK, pod_labels=POD_LABELS)
    assert plan == install_plan(none, stack=STACK, pod_labels=POD_LABELS)
    # What a fresh kubeadm cluster needs (settings refuse kubeadm without them): the pod network first, a class.
    assert plan.children[1].key == "calico" and plan.storage_class_name == "local-path"
    # An existing cluster with the defaults: no pod network and no StorageClass of ours.
    existing = install_plan(ClusterAddonsArgs.from_settings(Settings()), stack=STACK, pod_labels=POD_LABELS)
    assert [c.key for c in existing.children] == [
        "metrics-server",
        "amd-gpu-plugin-ns",
        "amd-gpu-plugin",
        "monitoring-ns",
        "grafana-admin-password",
        "grafana-admin",
        "monitoring",
    ]
    assert existing.storage_class_name is None and existing.ready == ["amd-gpu-plugin"]


def test_args_default_to_the_settings_defaults() -> None:
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
        "keda": False,  # one model at a fixed count: nothing to autoscale
        "keda_namespaces": (),
        "keda_http": False,  # nothing scales to zero
    }
    assert asdict(ClusterAddonsArgs()) == asdict(ClusterAddonsArgs.from_settings(defaults))


def test_a_bad_pod_cidr_fails_before_any_resource() -> None:
    with pytest.raises(ValueError):
        ClusterAddonsArgs(calico=True, pod_cidr="10.244.0.1/16")


# --- chart values: every key exists in the pinned chart's values.yaml ---------------------------------------------

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


def test_every_values_key_exists_in_the_pinned_chart(everything: AddonPlan) -> None:
    for key, pin in ALL_CHARTS.items():
        if pin in (addon_pins.KEDA, addon_pins.KEDA_HTTP_ADDON):  # test_autoscaling_builders checks their keys
            continue
        values = release_values(everything, key)
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


@pytest.mark.parametrize("insecure", [True, False])
def test_kubelet_insecure_tls_only_when_asked(insecure: bool) -> None:
    values = release_values(
        plan_of(**{**ALL_OFF, "metrics_server": True, "kubelet_insecure_tls": insecure}), "metrics_server"
    )
    if insecure:
        assert values["args"] == ["--kubelet-insecure-tls"]
    else:
        assert "--kubelet-insecure-tls" not in json.dumps(values)


def test_calico_pool_uses_the_pod_cidr() -> None:
    values = release_values(plan_of(**{**ALL_OFF, "calico": True, "pod_cidr": "10.244.0.0/16"}), "calico")
    [pool] = values["installation"]["calicoNetwork"]["ipPools"]
    assert pool == {
        "cidr": "10.244.0.0/16",
        "encapsulation": "VXLANCrossSubnet",
        "natOutgoing": "Enabled",
        "nodeSelector": "all()",
    }


def test_monitoring_values_are_merged_over_ours() -> None:
    extra = {
        "grafana": {"admin": {"existingSecret": "grafana-admin"}, "sidecar": {"dashboards": {"labelValue": "yes"}}},
        "kube-state-metrics": {"metricLabelsAllowlist": ["pods=[app.kubernetes.io/name]"]},
    }
    values = release_values(plan_of(**{**ALL_OFF, "monitoring": True, "monitoring_values": extra}), "monitoring")
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


def test_kube_state_metrics_exports_the_pod_labels_it_is_given() -> None:
    values = monitoring_values(None, control_plane_metrics=False, pod_labels=("a.example/x", "b.example/y"))
    assert values["kube-state-metrics"]["metricLabelsAllowlist"] == ["pods=[a.example/x,b.example/y]"]


def test_deep_merge_replaces_lists_and_keeps_the_base() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    merged = deep_merge(base, {"a": {"c": [3]}, "e": 2})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


@pytest.mark.parametrize("scrape", [False, True])
def test_control_plane_scrapes_and_their_rules_follow_the_switch(scrape: bool) -> None:
    values = release_values(plan_of(**{**ALL_OFF, "monitoring": True, "control_plane_metrics": scrape}), "monitoring")
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


def test_grafana_sidecars_read_only_the_monitoring_namespace(everything: AddonPlan) -> None:
    grafana = release_values(everything, "monitoring")["grafana"]
    assert grafana["rbac"]["namespaced"] is True, "a Role in its namespace, no ClusterRole over every Secret"
    assert not grafana["rbac"].get("namespaces") and not grafana["rbac"].get("extraClusterRoleRules")
    for sidecar in ("dashboards", "datasources"):
        assert grafana["sidecar"][sidecar]["searchNamespace"] == ["monitoring"], sidecar
        assert grafana["sidecar"][sidecar]["resource"] == "configmap", sidecar
    assert "ALL" not in json.dumps(grafana)


def test_exporter_service_monitor_is_selected_by_the_stacks_prometheus(everything: AddonPlan) -> None:
    exporter = release_values(everything, "device_metrics_exporter")["serviceMonitor"]
    monitoring = child(everything, everything.releases["monitoring"]).body
    # Replaces the chart's default `release: prometheus-operator` label.
    assert exporter["enabled"] is True and exporter["labels"] == {"release": "kube-prometheus-stack"}
    spec = monitoring["values"]["prometheus"]["prometheusSpec"]
    # The selector the chart renders: serviceMonitorSelector if set, else `release: <release>` when
    # serviceMonitorSelectorNilUsesHelmValues, else everything. The exporter's labels satisfy each case we set.
    selector = spec.get("serviceMonitorSelector") or (
        {"matchLabels": {"release": monitoring["name"]}}
        if spec.get("serviceMonitorSelectorNilUsesHelmValues", True)
        else {}
    )
    assert selector.get("matchLabels", {}).items() <= exporter["labels"].items()
    helm_selector = {"release": monitoring["name"]}
    assert helm_selector.items() <= exporter["labels"].items(), "selected even if the Helm-values selector is used"


# --- manifests: valid Kubernetes, and what the local-path provisioner reads ---------------------------------------


def objects(plan: AddonPlan) -> list[dict[str, Any]]:
    """The plain manifests of a plan, the generated password standing in as a string (as it is once declared)."""
    return [resolve(c.body, lambda key: f"generated-{key}") for c in plan.children if c.kind == "object"]


@pytest.mark.parametrize("addon", ["all", *sorted(ALONE)])
def test_every_planned_object_is_valid_kubernetes(addon: str) -> None:
    plan = plan_of(**ALL_ON) if addon == "all" else plan_of(**{**ALL_OFF, addon: True})
    manifests = objects(plan)
    assert manifests or addon == "metrics_server"
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_local_path_objects_are_valid_kubernetes(everything: AddonPlan) -> None:
    local_path = [child(everything, key) for key in LOCAL_PATH_KEYS]
    assert all(c.kind == "object" for c in local_path)
    for planned in local_path:
        kubernetes_validate.validate(dict(planned.body), KUBERNETES_VERSION, strict=True)
    helper_pod = yaml.safe_load(child(everything, "local-path-config").body["data"]["helperPod.yaml"])
    kubernetes_validate.validate(helper_pod, KUBERNETES_VERSION, strict=True)


def test_local_path_config_is_what_the_provisioner_reads(everything: AddonPlan) -> None:
    config_map = child(everything, "local-path-config").body
    assert config_map["metadata"]["name"] == LOCAL_PATH_CONFIG_MAP == "local-path-config"
    data = config_map["data"]
    assert data == local_path_config(STACK)
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


def test_local_path_deployment_runs_the_pinned_provisioner(everything: AddonPlan) -> None:
    deployment = child(everything, "local-path-provisioner").body
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


def test_storage_class_is_wait_for_first_consumer_and_not_default(everything: AddonPlan) -> None:
    storage_class = child(everything, "local-path-storage-class")
    assert everything.storage_class == storage_class.key and everything.storage_class_name == "local-path"
    body = storage_class.body
    assert body["metadata"]["name"] == "local-path"
    assert body["provisioner"] == "rancher.io/local-path"
    assert body["volumeBindingMode"] == "WaitForFirstConsumer"
    assert body["reclaimPolicy"] == "Delete"
    annotations = body["metadata"].get("annotations") or {}
    assert annotations.get("storageclass.kubernetes.io/is-default-class", "false") == "false"
    assert annotations.get("storageclass.beta.kubernetes.io/is-default-class", "false") == "false"
    assert storage_class.after == ("local-path-provisioner",), "the class is offered only once the provisioner runs"


def test_local_path_rbac_is_least_privilege(everything: AddonPlan) -> None:
    cluster_role = child(everything, "local-path-cluster-role").body
    role = child(everything, "local-path-role").body

    def grants(body: Mapping[str, Any]) -> dict[tuple[str, str], set[str]]:
        found: dict[tuple[str, str], set[str]] = {}
        for rule in body["rules"]:
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
    assert role["metadata"]["namespace"] == "local-path-storage"
    for key, role_kind in (("local-path-cluster-role-binding", "ClusterRole"), ("local-path-role-binding", "Role")):
        binding = child(everything, key).body
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": "local-path-provisioner",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "local-path-provisioner", "namespace": "local-path-storage"}
        ]


def test_setup_and_teardown_scripts_work(tmp_path: Path) -> None:
    """Run the scripts as the helper pod would (sh, the env the provisioner sets) against a temporary data dir."""
    data = local_path_config(STACK)
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
