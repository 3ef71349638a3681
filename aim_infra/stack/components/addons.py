"""Cluster add-ons in one component: Calico, metrics-server, local-path storage, AMD GPU plugin, Prometheus stack."""

from __future__ import annotations

import copy
import ipaddress
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi
import yaml
from pulumi import ResourceOptions

from aim_infra.stack.components.host import stack_id
from aim_infra.stack.components.kube import HelmRelease, KubernetesObject

if TYPE_CHECKING:
    from aim_infra.stack.settings import Settings


#: The day every pin below was last checked upstream (with the search tool's repository snapshots).
PINS_CHECKED_ON = "2026-12-05"


@dataclass(frozen=True)
class PinEvidence:
    """Where a pin was seen to exist upstream, and when: a chart repository's index or a release tag."""

    url: str
    checked_on: str = PINS_CHECKED_ON


@dataclass(frozen=True)
class ChartPin:
    """One Helm chart at one version from one repository, installed under a fixed release name."""

    chart: str
    version: str
    repo: str
    release_name: str
    namespace: str
    timeout_seconds: int
    evidence: PinEvidence


# v3.32.2 does not exist: v3.32.1 is the newest v3.32 tag (projectcalico/calico, tag v3.32.1 of 2026-06-24, whose
# charts/tigera-operator/values.yaml is the one in shared/charts). Calico's chart index is not on GitHub.
CALICO = ChartPin(
    chart="tigera-operator",
    version="v3.32.1",  # the `v` is part of the chart version
    repo="https://docs.tigera.io/calico/charts",
    release_name="tigera-operator",
    namespace="tigera-operator",
    timeout_seconds=900,
    evidence=PinEvidence("https://github.com/projectcalico/calico/releases/tag/v3.32.1"),
)
# Entry 3.13.1 in the repository's index (gh-pages), tag metrics-server-helm-chart-3.13.1.
METRICS_SERVER = ChartPin(
    chart="metrics-server",
    version="3.13.1",
    repo="https://kubernetes-sigs.github.io/metrics-server/",
    release_name="metrics-server",
    namespace="kube-system",  # the API aggregation add-on lives with the control plane; the stack does not own it
    timeout_seconds=600,
    evidence=PinEvidence("https://github.com/kubernetes-sigs/metrics-server/blob/gh-pages/index.yaml"),
)
# Entry 0.21.0 in the index the Helm repository serves (branch helm-chart-release), tag amd-gpu-helm-0.21.0.
AMD_GPU = ChartPin(
    chart="amd-gpu",
    version="0.21.0",
    repo="https://rocm.github.io/k8s-device-plugin/",
    release_name="amd-gpu",
    namespace="kube-amd-gpu",
    timeout_seconds=600,
    evidence=PinEvidence("https://github.com/ROCm/k8s-device-plugin/blob/helm-chart-release/index.yaml"),
)
# Tag kube-prometheus-stack-88.5.3 (its values.yaml is the one in shared/charts); the gh-pages index is too large
# for the snapshot, the tag is what the release workflow publishes from.
KUBE_PROMETHEUS_STACK = ChartPin(
    chart="kube-prometheus-stack",
    version="88.5.3",
    repo="https://prometheus-community.github.io/helm-charts",
    release_name="kube-prometheus-stack",
    namespace="monitoring",
    timeout_seconds=900,
    evidence=PinEvidence(
        "https://github.com/prometheus-community/helm-charts/releases/tag/kube-prometheus-stack-88.5.3"
    ),
)
#: AMD's GPU metrics exporter. v1.5.4 does not exist and v1.5.2 is only named in the main branch's docs: v1.5.1 is
#: the newest entry of the Helm repository's index (gh-pages) and the newest tag. Its values are not in
#: shared/charts: the keys set below (serviceMonitor.enabled/interval/labels, tolerations, affinity) are those of
#: helm-charts/values.yaml at tag v1.5.1.
DEVICE_METRICS_EXPORTER = ChartPin(
    chart="device-metrics-exporter-charts",
    version="v1.5.1",
    repo="https://rocm.github.io/device-metrics-exporter",
    release_name="device-metrics-exporter",
    namespace="kube-amd-gpu",
    timeout_seconds=600,
    evidence=PinEvidence("https://github.com/ROCm/device-metrics-exporter/blob/gh-pages/index.yaml"),
)
GRAFANA_ADMIN_SECRET = "grafana-admin"
#: Pod labels kube-state-metrics exports on kube_pod_labels, so vLLM series join to their recipe (monitoring/names.py).
KSM_POD_LABELS = ("aim.amd.com/recipe", "aim.amd.com/model", "aim.amd.com/gpu", "app.kubernetes.io/instance")
CHARTS: dict[str, ChartPin] = {
    "calico": CALICO,
    "metrics_server": METRICS_SERVER,
    "amd_gpu_plugin": AMD_GPU,
    "monitoring": KUBE_PROMETHEUS_STACK,
}
ALL_CHARTS: dict[str, ChartPin] = {**CHARTS, "device_metrics_exporter": DEVICE_METRICS_EXPORTER}

LOCAL_PATH_VERSION = "v0.0.37"  # tag v0.0.37; its deploy/local-path-storage.yaml runs this image
LOCAL_PATH_IMAGE = f"rancher/local-path-provisioner:{LOCAL_PATH_VERSION}"
LOCAL_PATH_HELPER_IMAGE = "busybox:1.37.0"  # still listed ("Tags: 1.37.0, 1.37") by library/busybox
#: Evidence for every image tag this module pins.
IMAGE_PINS: dict[str, PinEvidence] = {
    LOCAL_PATH_IMAGE: PinEvidence(
        f"https://github.com/rancher/local-path-provisioner/releases/tag/{LOCAL_PATH_VERSION}"
    ),
    LOCAL_PATH_HELPER_IMAGE: PinEvidence(
        "https://github.com/docker-library/official-images/blob/master/library/busybox"
    ),
}
LOCAL_PATH_NAMESPACE = "local-path-storage"
LOCAL_PATH_NAME = "local-path-provisioner"
LOCAL_PATH_CONFIG_MAP = "local-path-config"
LOCAL_PATH_STORAGE_CLASS = "local-path"
LOCAL_PATH_PROVISIONER = "rancher.io/local-path"
LOCAL_PATH_DATA_DIR = "/opt/local-path-provisioner"
LOCAL_PATH_CONFIG_DIR = "/etc/config/"
LOCAL_PATH_HEALTH_PORT = 8080

#: Pod Security admission level for namespaces whose pods need host access (hostPath, hostNetwork, privileged):
#: explicit, so a cluster-wide `baseline` default does not silently reject them.
PRIVILEGED_NAMESPACE = {"pod-security.kubernetes.io/enforce": "privileged"}
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "aim-cluster-addons"}


@dataclass(frozen=True)
class ClusterAddonsArgs:
    """Which add-ons to install. `monitoring_values` is deep-merged over the kube-prometheus-stack values we set."""

    calico: bool = False
    pod_cidr: str = "192.168.0.0/16"
    metrics_server: bool = True
    kubelet_insecure_tls: bool = False
    local_path: bool = False
    amd_gpu_plugin: bool = True
    monitoring: bool = True
    monitoring_values: dict[str, Any] = field(default_factory=dict)
    device_metrics_exporter: bool = False
    #: Scrape kube-controller-manager, kube-scheduler, etcd and kube-proxy (and keep their default rules): only for a
    #: cluster that serves their metrics on node addresses. See `control_plane_metrics_reachable`.
    control_plane_metrics: bool = False
    #: Grafana's admin password (a secret Output); None = generate one (pulumi_random) when monitoring is on.
    grafana_admin_password: Any = None

    def __post_init__(self) -> None:
        if self.calico:
            # Calico would otherwise accept the pool and fail inside the cluster, long after `pulumi up` returned.
            ipaddress.ip_network(self.pod_cidr, strict=True)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        monitoring_values: Mapping[str, Any] | None = None,
        grafana_admin_password: Any = None,
    ) -> ClusterAddonsArgs:
        return cls(
            calico=settings.calico,
            pod_cidr=settings.pod_cidr,
            metrics_server=settings.metrics_server,
            kubelet_insecure_tls=settings.kubelet_insecure_tls,
            local_path=settings.local_path,
            amd_gpu_plugin=settings.amd_gpu_plugin,
            monitoring=settings.monitoring,
            monitoring_values=dict(monitoring_values or {}),
            device_metrics_exporter=settings.device_metrics_exporter,
            control_plane_metrics=control_plane_metrics_reachable(settings.cluster_bootstrap),
            grafana_admin_password=grafana_admin_password,
        )


def control_plane_metrics_reachable(cluster_bootstrap: str) -> bool:
    """Whether Prometheus can reach the control-plane components' metrics, by how the cluster was made.

    kubeadm binds kube-controller-manager, kube-scheduler, etcd's metrics and kube-proxy's metrics to 127.0.0.1:
    scraped from a pod they are down, and `TargetDown` plus `etcdInsufficientMembers` (critical) fire forever.
    Opening them (bind 0.0.0.0 in the kubeadm config) would widen what the node exposes, so we do not.
    Any other cluster ("none": the kubeconfig's) is unknown to the stack: managed clusters (EKS, GKE, AKS) hide these
    components entirely (`KubeControllerManagerDown` and `KubeSchedulerDown` would fire) and self-built ones mostly
    keep kubeadm's loopback defaults; a false alarm that never clears costs more than the control-plane panels.
    So off in both modes; a program that knows its cluster exposes them sets `control_plane_metrics=True`."""
    return {"kubeadm": False, "none": False}[cluster_bootstrap]


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` over `base`, recursively for mappings (as Helm merges values); lists and scalars are replaced."""
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def calico_values(pod_cidr: str) -> dict[str, Any]:
    """tigera-operator values: one IPv4/IPv6 pool for the pod CIDR kubeadm was given."""
    return {
        "installation": {
            "calicoNetwork": {
                "ipPools": [
                    {
                        "cidr": pod_cidr,
                        # Encapsulate only across subnets: nodes on one L2 segment talk natively (no VXLAN overhead
                        # on GPU-node traffic), and VXLAN needs no BGP peering with the network.
                        "encapsulation": "VXLANCrossSubnet",
                        "natOutgoing": "Enabled",
                        "nodeSelector": "all()",
                    }
                ]
            }
        }
    }


def metrics_server_values(kubelet_insecure_tls: bool) -> dict[str, Any]:
    """metrics-server values: skip kubelet certificate checks only when asked (kubeadm's self-signed kubelet certs)."""
    return {"args": ["--kubelet-insecure-tls"]} if kubelet_insecure_tls else {}


def amd_gpu_values() -> dict[str, Any]:
    """amd-gpu values: the device plugin plus the node labeller (off by default) that publishes GPU model labels."""
    return {
        "labeller": {"enabled": True},
        # The chart's own toleration, plus the taint GPU nodes usually carry so only GPU workloads land there:
        # the plugin must run exactly on those nodes.
        "tolerations": [
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
            {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        ],
    }


#: kube-prometheus-stack's control-plane scrapes (top-level chart keys) and the `defaultRules.rules` groups that alert
#: on or record from each (templates/prometheus/rules-1.14 of chart 88.5.3 gate each group on both).
CONTROL_PLANE_SCRAPES: dict[str, tuple[str, ...]] = {
    "kubeControllerManager": ("kubeControllerManager",),
    "kubeScheduler": ("kubeSchedulerAlerting", "kubeSchedulerRecording"),
    "kubeEtcd": ("etcd",),
    "kubeProxy": ("kubeProxy",),
}


def control_plane_values(scrape: bool) -> dict[str, Any]:
    """Nothing when the control plane is scraped; otherwise its ServiceMonitors, Services and rule groups off."""
    if scrape:
        return {}
    values: dict[str, Any] = {key: {"enabled": False} for key in CONTROL_PLANE_SCRAPES}
    groups = [group for groups in CONTROL_PLANE_SCRAPES.values() for group in groups]
    values["defaultRules"] = {"rules": {group: False for group in groups}}
    return values


def monitoring_values(extra: Mapping[str, Any] | None = None, control_plane_metrics: bool = False) -> dict[str, Any]:
    """kube-prometheus-stack values: pick up every ServiceMonitor/PodMonitor/PrometheusRule, load labelled dashboards
    from the monitoring namespace only, scrape the control plane only where it is reachable.

    No credentials here: values end up in plain state. Grafana's admin secret is wired by reference
    (`grafana.admin.existingSecret`) through `extra`."""
    # Grafana's sidecars read only the monitoring namespace (the chart's default is ALL, with a ClusterRole to list
    # and read every Secret in the cluster): namespaced RBAC gives them a Role there, and ConfigMaps are all they
    # load (our dashboards, the chart's dashboards and its Prometheus datasource are ConfigMaps in that namespace).
    own_namespace = [KUBE_PROMETHEUS_STACK.namespace]
    base: dict[str, Any] = {
        # kube_pod_labels carries these pod labels, so recording rules can join vLLM series to their recipe.
        "kube-state-metrics": {"metricLabelsAllowlist": [f"pods=[{','.join(KSM_POD_LABELS)}]"]},
        "prometheus": {
            "prometheusSpec": {
                # false: an empty selector selects every object, not only those labelled `release: <release name>`.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
            }
        },
        "grafana": {
            # The admin password comes from a Secret the stack creates (never from values: they sit in plain state).
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "rbac": {"namespaced": True},
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": "grafana_dashboard",
                    "labelValue": "1",
                    "searchNamespace": own_namespace,
                    "resource": "configmap",
                },
                "datasources": {"searchNamespace": own_namespace, "resource": "configmap"},
            },
        },
        **control_plane_values(control_plane_metrics),
    }
    return deep_merge(base, extra or {})


def device_metrics_exporter_values() -> dict[str, Any]:
    """device-metrics-exporter values: a ServiceMonitor for kube-prometheus-stack, only on AMD GPU nodes."""
    return {
        # The chart labels its ServiceMonitor `release: prometheus-operator` unless given labels: carry our stack's
        # release, which a Prometheus with `serviceMonitorSelectorNilUsesHelmValues: true` selects on.
        "serviceMonitor": {
            "enabled": True,
            "interval": "15s",
            "labels": {"release": KUBE_PROMETHEUS_STACK.release_name},
        },
        "tolerations": [{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    # The node labeller sets amd.com/gpu.family on every AMD GPU node.
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "amd.com/gpu.family", "operator": "Exists"}]}]
                }
            }
        },
    }


def local_path_config(stack: str) -> dict[str, str]:
    """The ConfigMap data the provisioner reads: config.json, the helper pod template and its two scripts.

    `stack` (`<project>/<stack>`) goes into the marker setup writes beside each volume it creates,
    `<volume dir>.aim-stack.json`: kubeadm-reset.sh removes a leftover volume directory only with that proof."""
    config = {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [LOCAL_PATH_DATA_DIR]}]}
    # The provisioner runs `/bin/sh /script/setup` (or teardown) in the helper pod with VOL_DIR (the volume
    # directory as mounted in the pod), VOL_MODE (Filesystem or Block), VOL_SIZE_BYTES, and VOL_USER / VOL_GROUP /
    # VOL_PERM (empty unless the StorageClass sets userPattern / groupPattern / permPattern).
    setup = "\n".join(
        [
            "#!/bin/sh",
            "set -eu",
            "# A host directory cannot back a raw block device.",
            'if [ "${VOL_MODE:-Filesystem}" != "Filesystem" ]; then',
            '  echo "local-path: volume mode ${VOL_MODE} is not supported" >&2',
            "  exit 1",
            "fi",
            'mkdir -p "$VOL_DIR"',
            "# Owner only by default, never world-writable: the engine and the model downloader run as root (uid 0,",
            "# the owner: no capability needed) and are the only writers; any other host user or non-root pod could",
            "# otherwise plant code in the model cache (trust-remote-code) or read gated weights. A workload that",
            "# needs other rights sets permPattern / userPattern / groupPattern on its own StorageClass.",
            'chmod "${VOL_PERM:-0700}" "$VOL_DIR"',
            'if [ -n "${VOL_USER:-}" ] && [ -n "${VOL_GROUP:-}" ]; then chown "$VOL_USER:$VOL_GROUP" "$VOL_DIR";',
            'elif [ -n "${VOL_USER:-}" ]; then chown "$VOL_USER" "$VOL_DIR";',
            'elif [ -n "${VOL_GROUP:-}" ]; then chgrp "$VOL_GROUP" "$VOL_DIR"; fi',
            "# Proof of ownership for the host cleanup, beside the volume (not in it: the workload never sees it).",
            'marker="$VOL_DIR.aim-stack.json"',
            'printf \'{\\n  "createdBy": "local-path setup",\\n  "stack": "%s",\\n  "volume": "%s",\\n'
            '  "createdAt": "%s"\\n}\\n\' \\',
            f'  {shlex.quote(stack)} "${{VOL_DIR##*/}}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$marker.tmp"',
            'mv -f "$marker.tmp" "$marker"',
            "",
        ]
    )
    teardown = "\n".join(
        [
            "#!/bin/sh",
            "set -eu",
            "# VOL_DIR is always <data mount>/<volume dir>; refuse anything shorter rather than wipe a whole tree.",
            'case "${VOL_DIR:-}" in',
            "  /?*/?*) ;;",
            "  *) echo \"local-path: refusing to remove '${VOL_DIR:-}'\" >&2; exit 1 ;;",
            "esac",
            'rm -rf "$VOL_DIR"',
            'rm -f "$VOL_DIR.aim-stack.json"',
            "",
        ]
    )
    # The template the provisioner copies for every helper pod. It adds the name suffix, namespace, node,
    # service account, restart policy, command, env, the host data volume and the script volume itself; the
    # container must be called `helper-pod` (its log is copied into the provisioner's log under that name).
    helper_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            # Helper pods free disk too (teardown): they must still schedule on a node under disk pressure.
            "priorityClassName": "system-node-critical",
            "tolerations": [{"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}],
            # They run under the provisioner's service account but never call the API.
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "helper-pod",
                    "image": LOCAL_PATH_HELPER_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    # Root inside the pod is needed to create and remove directories on the host path.
                    "securityContext": {"allowPrivilegeEscalation": False},
                }
            ],
        },
    }
    return {
        "config.json": json.dumps(config, indent=2),
        "setup": setup,
        "teardown": teardown,
        "helperPod.yaml": yaml.safe_dump(helper_pod, sort_keys=False),
    }


def _rule(api_group: str, resources: Sequence[str], verbs: Sequence[str]) -> dict[str, list[str]]:
    """One RBAC PolicyRule."""
    return {"apiGroups": [api_group], "resources": list(resources), "verbs": list(verbs)}


# What local-path-provisioner v0.0.37 calls, cluster-wide (its controller library watches every namespace).
LOCAL_PATH_CLUSTER_RULES = [
    # The claim informer lists/watches PVCs; `update` only when the scheduler's selected node has gone: the
    # controller removes `volume.kubernetes.io/selected-node` so the claim is scheduled again.
    _rule("", ["persistentvolumeclaims"], ["list", "watch", "update"]),
    # The volume informer; create the PV after the setup pod ran, delete it after teardown, patch to drop a
    # stale provisioner finalizer. The readiness probe lists PVs too.
    _rule("", ["persistentvolumes"], ["list", "watch", "create", "patch", "delete"]),
    # The class informer: which claims are ours (provisioner name) and the class parameters/reclaim policy.
    _rule("storage.k8s.io", ["storageclasses"], ["list", "watch"]),
    # The selected node (its hostname label becomes the PV's node affinity), and before teardown whether the
    # node still exists. No node informer is started, so no list/watch.
    _rule("", ["nodes"], ["get"]),
    # Provisioning events on claims (any namespace) and volumes; the event recorder creates and patches them.
    _rule("", ["events"], ["create", "patch"]),
]
# What it calls in its own namespace only.
LOCAL_PATH_NAMESPACE_RULES = [
    # Helper pods: create one per setup/teardown, poll it with get until it succeeded, delete it; the readiness
    # probe lists pods. No watch, no update.
    _rule("", ["pods"], ["create", "get", "list", "delete"]),
    # The helper pod's output is copied into the provisioner's log.
    _rule("", ["pods/log"], ["get"]),
    # At start it reads helperPod.yaml from the ConfigMap (no --helper-pod-file); the readiness probe lists them.
    _rule("", ["configmaps"], ["get", "list"]),
]


class ClusterAddons(pulumi.ComponentResource):
    """The cluster's add-ons, each toggled by its args flag; Calico (when on) goes first, everything else after it.

    Public attributes: `releases` (keys: calico, metrics_server, amd_gpu_plugin, monitoring — only those on),
    `ready` (what workloads should depend on), `storage_class_name`, `monitoring_namespace`,
    `monitoring_release_name`. The Kubernetes provider comes through `opts` and is inherited by every child."""

    releases: dict[str, HelmRelease]
    namespaces: dict[str, KubernetesObject]
    ready: list[pulumi.Resource]
    storage_class: KubernetesObject | None
    storage_class_name: str | None
    monitoring_namespace: str | None
    monitoring_release_name: str | None

    def __init__(self, name: str, args: ClusterAddonsArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:ClusterAddons", name, None, opts)
        self._name = name
        self.releases = {}
        self.namespaces = {}
        self.ready = []
        self.storage_class = None
        self.storage_class_name = None
        self.monitoring_namespace = None
        self.monitoring_release_name = None

        # Pods of every other add-on need the pod network Calico brings: they wait for its release.
        first: list[pulumi.Resource] = []
        if args.calico:
            namespace = self._namespace("calico", CALICO.namespace, PRIVILEGED_NAMESPACE)  # operator: hostNetwork
            calico = self._release("calico", CALICO, calico_values(args.pod_cidr), [namespace])
            first = [calico]
            self.ready.append(calico)

        if args.metrics_server:
            self._release("metrics_server", METRICS_SERVER, metrics_server_values(args.kubelet_insecure_tls), first)

        if args.local_path:
            self.storage_class = self._local_path(first)
            self.storage_class_name = LOCAL_PATH_STORAGE_CLASS
            self.ready.append(self.storage_class)

        if args.amd_gpu_plugin:
            # Device plugin socket (hostPath) and the privileged labeller.
            namespace = self._namespace("amd_gpu_plugin", AMD_GPU.namespace, PRIVILEGED_NAMESPACE)
            gpu = self._release("amd_gpu_plugin", AMD_GPU, amd_gpu_values(), [namespace, *first])
            self.ready.append(gpu)

        monitoring: HelmRelease | None = None
        if args.monitoring:
            # node-exporter uses hostNetwork, hostPID and hostPath.
            namespace = self._namespace("monitoring", KUBE_PROMETHEUS_STACK.namespace, PRIVILEGED_NAMESPACE)
            admin = self._grafana_admin(args.grafana_admin_password, namespace)
            monitoring = self._release(
                "monitoring",
                KUBE_PROMETHEUS_STACK,
                monitoring_values(args.monitoring_values, args.control_plane_metrics),
                [namespace, admin, *first],
            )
            self.monitoring_namespace = KUBE_PROMETHEUS_STACK.namespace
            self.monitoring_release_name = KUBE_PROMETHEUS_STACK.release_name

        if args.device_metrics_exporter:
            namespace = self.namespaces.get("amd_gpu_plugin") or self._namespace(
                "amd_gpu_plugin", DEVICE_METRICS_EXPORTER.namespace, PRIVILEGED_NAMESPACE
            )
            # Its ServiceMonitor needs the CRD kube-prometheus-stack installs.
            after = [namespace, *first, *([monitoring] if monitoring else [])]
            self._release("device_metrics_exporter", DEVICE_METRICS_EXPORTER, device_metrics_exporter_values(), after)

        self.register_outputs(
            {
                "release_names": {key: ALL_CHARTS[key].release_name for key in self.releases},
                "storage_class_name": self.storage_class_name,
                "monitoring_namespace": self.monitoring_namespace,
                "monitoring_release_name": self.monitoring_release_name,
            }
        )

    def _grafana_admin(self, password: Any, namespace: KubernetesObject) -> KubernetesObject:
        """The Secret Grafana reads its admin login from (`grafana.admin.existingSecret`): the configured password,
        or one generated once and kept in Pulumi state as a secret."""
        if password is None:
            import pulumi_random  # only needed (and imported) when the password is generated

            generated = pulumi_random.RandomPassword(
                f"{self._name}-grafana-admin-password", length=24, special=False, opts=self._child()
            )
            password = generated.result
        return KubernetesObject(
            f"{self._name}-grafana-admin",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": GRAFANA_ADMIN_SECRET,
                    "namespace": KUBE_PROMETHEUS_STACK.namespace,
                    "labels": dict(MANAGED_BY),
                },
                "type": "Opaque",
                "stringData": {"admin-user": "admin", "admin-password": password},
            },
            opts=self._child([namespace]),
        )

    def _child(self, depends_on: Sequence[pulumi.Resource] = ()) -> ResourceOptions:
        return ResourceOptions(parent=self, depends_on=list(depends_on))

    def _namespace(
        self, key: str, namespace: str, labels: Mapping[str, str], depends_on: Sequence[pulumi.Resource] = ()
    ) -> KubernetesObject:
        # The stack owns every namespace it installs into (Helm never creates one): destroy removes them cleanly.
        resource = KubernetesObject(
            f"{self._name}-{key.replace('_', '-')}-ns",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {**MANAGED_BY, **labels}},
            },
            opts=self._child(depends_on),
        )
        self.namespaces[key] = resource
        return resource

    def _release(
        self, key: str, pin: ChartPin, values: Mapping[str, Any], depends_on: Sequence[pulumi.Resource]
    ) -> HelmRelease:
        # Every release is awaited (skipAwait: false): each waits only for its own workloads, which can all become
        # ready on their own once the pod network is up (they wait for Calico when we install it), and later
        # resources rely on that (CRDs of kube-prometheus-stack, `amd.com/gpu` capacity). atomic and cleanupOnFail
        # false: a slow start must not uninstall what is already running.
        release = HelmRelease(
            f"{self._name}-{key.replace('_', '-')}",
            {
                "name": pin.release_name,
                "namespace": pin.namespace,
                "chart": pin.chart,
                "version": pin.version,
                "repositoryOpts": {"repo": pin.repo},
                "values": dict(values),
                "timeout": pin.timeout_seconds,
                "atomic": False,
                "cleanupOnFail": False,
                "skipAwait": False,
                "createNamespace": False,
            },
            opts=self._child(depends_on),
        )
        self.releases[key] = release
        return release

    def _local_path(self, first: Sequence[pulumi.Resource]) -> KubernetesObject:
        """local-path-provisioner, declared object by object (it has no Helm repository)."""
        prefix = f"{self._name}-local-path"
        labels = {
            **MANAGED_BY,
            "app.kubernetes.io/name": LOCAL_PATH_NAME,
            "app.kubernetes.io/version": LOCAL_PATH_VERSION,
        }
        selector = {"app.kubernetes.io/name": LOCAL_PATH_NAME}

        # Helper pods mount host directories.
        namespace = self._namespace("local_path", LOCAL_PATH_NAMESPACE, PRIVILEGED_NAMESPACE, first)

        def meta(name: str, namespaced: bool = True) -> dict[str, Any]:
            return {"name": name, **({"namespace": LOCAL_PATH_NAMESPACE} if namespaced else {}), "labels": labels}

        rbac = "rbac.authorization.k8s.io/v1"
        account = KubernetesObject(
            f"{prefix}-service-account",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(LOCAL_PATH_NAME)},
            opts=self._child([namespace]),
        )
        subject = {"kind": "ServiceAccount", "name": LOCAL_PATH_NAME, "namespace": LOCAL_PATH_NAMESPACE}
        cluster_role = KubernetesObject(
            f"{prefix}-cluster-role",
            {
                "apiVersion": rbac,
                "kind": "ClusterRole",
                "metadata": meta(LOCAL_PATH_NAME, namespaced=False),
                "rules": LOCAL_PATH_CLUSTER_RULES,
            },
            opts=self._child(),
        )
        cluster_binding = KubernetesObject(
            f"{prefix}-cluster-role-binding",
            {
                "apiVersion": rbac,
                "kind": "ClusterRoleBinding",
                "metadata": meta(LOCAL_PATH_NAME, namespaced=False),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": LOCAL_PATH_NAME},
                "subjects": [subject],
            },
            opts=self._child([cluster_role, account]),
        )
        role = KubernetesObject(
            f"{prefix}-role",
            {
                "apiVersion": rbac,
                "kind": "Role",
                "metadata": meta(LOCAL_PATH_NAME),
                "rules": LOCAL_PATH_NAMESPACE_RULES,
            },
            opts=self._child([namespace]),
        )
        binding = KubernetesObject(
            f"{prefix}-role-binding",
            {
                "apiVersion": rbac,
                "kind": "RoleBinding",
                "metadata": meta(LOCAL_PATH_NAME),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": LOCAL_PATH_NAME},
                "subjects": [subject],
            },
            opts=self._child([role, account]),
        )
        config = KubernetesObject(
            f"{prefix}-config",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": meta(LOCAL_PATH_CONFIG_MAP),
                "data": local_path_config(stack_id()),
            },
            opts=self._child([namespace]),
        )
        deployment = self._local_path_deployment(
            prefix, meta(LOCAL_PATH_NAME), labels, selector, [account, binding, cluster_binding, config, *first]
        )
        # The class comes last: a workload that depends on it finds a running provisioner behind it.
        return KubernetesObject(
            f"{prefix}-storage-class",
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": LOCAL_PATH_STORAGE_CLASS,
                    "labels": labels,
                    # Node-local, RWO-only storage must never catch claims that name no class.
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "false"},
                },
                "provisioner": LOCAL_PATH_PROVISIONER,
                # Bind when the pod is scheduled: the volume is created on the node the pod landed on.
                "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Delete",
            },
            opts=self._child([deployment]),
        )

    def _local_path_deployment(
        self,
        prefix: str,
        metadata: Mapping[str, Any],
        labels: Mapping[str, str],
        selector: Mapping[str, str],
        depends_on: Sequence[pulumi.Resource],
    ) -> KubernetesObject:
        health = {"path": "/health", "port": "health"}
        container = {
            "name": LOCAL_PATH_NAME,
            "image": LOCAL_PATH_IMAGE,
            "imagePullPolicy": "IfNotPresent",
            # The image is `scratch` with the binary and a CMD, no entrypoint: name the binary.
            "command": ["/usr/bin/local-path-provisioner"],
            "args": [
                "start",
                "--config",
                f"{LOCAL_PATH_CONFIG_DIR}config.json",
                "--configmap-name",
                LOCAL_PATH_CONFIG_MAP,
                "--service-account-name",
                LOCAL_PATH_NAME,
                "--provisioner-name",
                LOCAL_PATH_PROVISIONER,
            ],
            "env": [
                # Where helper pods are created and the ConfigMap is read.
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                # Set: the provisioner re-reads helperPod.yaml from here every 30 s (config.json is re-read anyway).
                {"name": "CONFIG_MOUNT_PATH", "value": LOCAL_PATH_CONFIG_DIR},
                {"name": "HEALTH_PORT", "value": str(LOCAL_PATH_HEALTH_PORT)},
            ],
            "ports": [{"name": "health", "containerPort": LOCAL_PATH_HEALTH_PORT, "protocol": "TCP"}],
            "startupProbe": {"httpGet": health, "periodSeconds": 5, "failureThreshold": 12},
            "livenessProbe": {"httpGet": health, "periodSeconds": 10},
            # /ready lists configmaps, pods, PVCs, PVs and storage classes: it proves the RBAC works.
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "health"}, "periodSeconds": 5},
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "config-volume", "mountPath": LOCAL_PATH_CONFIG_DIR, "readOnly": True}],
        }
        return KubernetesObject(
            f"{prefix}-provisioner",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": dict(metadata),
                "spec": {
                    "replicas": 1,
                    # No leader election in this provisioner: never run an old and a new pod side by side.
                    "strategy": {"type": "Recreate"},
                    "selector": {"matchLabels": dict(selector)},
                    "template": {
                        "metadata": {"labels": dict(labels)},
                        "spec": {
                            "serviceAccountName": LOCAL_PATH_NAME,
                            # The provisioner only talks to the API server; the host work happens in helper pods.
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": 65534,
                                "runAsGroup": 65534,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [container],
                            "volumes": [{"name": "config-volume", "configMap": {"name": LOCAL_PATH_CONFIG_MAP}}],
                        },
                    },
                },
            },
            opts=self._child(depends_on),
        )
