"""The cluster add-ons' install plan: every child ClusterAddons declares, in install order, with what it waits for.

From which add-ons are on (ClusterAddonsArgs) to a list of plain manifests, Helm release specs and generated
passwords; ClusterAddons (stack/components/addons.py) declares exactly this list and nothing else."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aim_infra.stack.manifests.addon_objects import (
    LOCAL_PATH_NAMESPACE,
    LOCAL_PATH_STORAGE_CLASS,
    PRIVILEGED_NAMESPACE,
    grafana_admin_secret,
    local_path_cluster_role,
    local_path_cluster_role_binding,
    local_path_config_map,
    local_path_deployment,
    local_path_role,
    local_path_role_binding,
    local_path_service_account,
    local_path_storage_class,
    namespace,
)
from aim_infra.stack.manifests.addon_pins import (
    ALL_CHARTS,
    AMD_GPU,
    CALICO,
    DEVICE_METRICS_EXPORTER,
    KEDA,
    KEDA_HTTP_ADDON,
    KUBE_PROMETHEUS_STACK,
    METRICS_SERVER,
    ChartPin,
)
from aim_infra.stack.manifests.addon_values import (
    amd_gpu_values,
    calico_values,
    device_metrics_exporter_values,
    http_addon_values,
    keda_values,
    metrics_server_values,
    monitoring_values,
    release_spec,
)

if TYPE_CHECKING:
    from aim_infra.stack.settings import Settings


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
    #: KEDA, when some model autoscales between replica bounds (aim:models); it watches `keda_namespaces` only.
    keda: bool = False
    keda_namespaces: tuple[str, ...] = ()
    #: KEDA's HTTP add-on, when some model scales to zero: its interceptor holds requests while the model wakes.
    keda_http: bool = False

    def __post_init__(self) -> None:
        if self.keda_http and not self.keda:
            # The add-on's interceptor is scaled by a ScaledObject, and a model at zero replicas is woken by one.
            raise ValueError("the KEDA HTTP add-on needs KEDA: a model that scales to zero autoscales")
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
        keda = any(model.autoscaled for model in settings.models)  # KEDA scales the models with replica bounds
        keda_http = any(model.scale_to_zero for model in settings.models)  # and wakes those at zero replicas
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
            keda=keda,
            keda_namespaces=(settings.namespace,) if keda else (),
            keda_http=keda_http,
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


@dataclass(frozen=True)
class GeneratedPassword:
    """Stands, inside a planned manifest, for the password the planned `password` child `key` generates: the value
    exists only once that child is declared (its `result`, a secret Output)."""

    key: str


#: `object`: a Kubernetes manifest; `release`: a helm.sh/v3 Release spec; `password`: a generated password's settings
#: (pulumi_random.RandomPassword arguments).
Kind = Literal["object", "release", "password"]


@dataclass(frozen=True)
class PlannedChild:
    """One child of ClusterAddons: its name (`<component name>-<key>`), what it is, and the children it waits for."""

    key: str
    kind: Kind
    body: Mapping[str, Any]
    after: tuple[str, ...] = ()


@dataclass
class AddonPlan:
    """Every child in install order (each one's `after` names only children before it), and which of them the rest
    of the stack uses."""

    children: list[PlannedChild] = field(default_factory=list)
    #: Chart key (ALL_CHARTS) → the child that installs it, in install order.
    releases: dict[str, str] = field(default_factory=dict)
    #: Add-on key → the child that declares its namespace.
    namespaces: dict[str, str] = field(default_factory=dict)
    #: What workloads should depend on: the pod network, the StorageClass, the GPU device plugin (those on).
    ready: list[str] = field(default_factory=list)
    storage_class: str | None = None
    storage_class_name: str | None = None
    monitoring_namespace: str | None = None
    monitoring_release_name: str | None = None

    @property
    def release_names(self) -> dict[str, str]:
        return {key: ALL_CHARTS[key].release_name for key in self.releases}

    def add(self, key: str, kind: Kind, body: Mapping[str, Any], after: Sequence[str] = ()) -> str:
        known = {child.key for child in self.children}
        if key in known or not set(after) <= known:
            raise ValueError(f"{key}: planned twice, or after a child not planned before it ({list(after)})")
        self.children.append(PlannedChild(key, kind, body, tuple(after)))
        return key

    def namespace(self, addon: str, name: str, labels: Mapping[str, str], after: Sequence[str] = ()) -> str:
        self.namespaces[addon] = self.add(f"{_dashed(addon)}-ns", "object", namespace(name, labels), after)
        return self.namespaces[addon]

    def release(self, chart: str, pin: ChartPin, values: Mapping[str, Any], after: Sequence[str]) -> str:
        self.releases[chart] = self.add(_dashed(chart), "release", release_spec(pin, values), after)
        return self.releases[chart]


def _dashed(key: str) -> str:
    return key.replace("_", "-")


def install_plan(args: ClusterAddonsArgs, stack: str, pod_labels: Sequence[str]) -> AddonPlan:
    """What ClusterAddons installs, in order: Calico first (every other add-on's pods need its pod network, so they
    wait for its release), then metrics-server, local-path-provisioner, the AMD GPU device plugin, kube-prometheus-
    stack, device-metrics-exporter, KEDA and its HTTP add-on, each only when on. `stack` (`<project>/<stack>`) goes
    into local-path's ownership markers; `pod_labels` are the pod labels kube-state-metrics exports."""
    plan = AddonPlan()
    first: tuple[str, ...] = ()
    if args.calico:
        calico_ns = plan.namespace("calico", CALICO.namespace, PRIVILEGED_NAMESPACE)  # the operator: hostNetwork
        first = (plan.release("calico", CALICO, calico_values(args.pod_cidr), after=[calico_ns]),)
        plan.ready.extend(first)

    if args.metrics_server:
        plan.release("metrics_server", METRICS_SERVER, metrics_server_values(args.kubelet_insecure_tls), after=first)

    if args.local_path:
        plan.storage_class = _local_path(plan, stack, first)
        plan.storage_class_name = LOCAL_PATH_STORAGE_CLASS
        plan.ready.append(plan.storage_class)

    if args.amd_gpu_plugin:
        # Device plugin socket (hostPath) and the privileged labeller.
        gpu_ns = plan.namespace("amd_gpu_plugin", AMD_GPU.namespace, PRIVILEGED_NAMESPACE)
        plan.ready.append(plan.release("amd_gpu_plugin", AMD_GPU, amd_gpu_values(), after=[gpu_ns, *first]))

    monitoring: tuple[str, ...] = ()
    if args.monitoring:
        # node-exporter uses hostNetwork, hostPID and hostPath.
        monitoring_ns = plan.namespace("monitoring", KUBE_PROMETHEUS_STACK.namespace, PRIVILEGED_NAMESPACE)
        admin = _grafana_admin(plan, args.grafana_admin_password, monitoring_ns)
        values = monitoring_values(args.monitoring_values, args.control_plane_metrics, pod_labels)
        monitoring = (plan.release("monitoring", KUBE_PROMETHEUS_STACK, values, after=[monitoring_ns, admin, *first]),)
        plan.monitoring_namespace = KUBE_PROMETHEUS_STACK.namespace
        plan.monitoring_release_name = KUBE_PROMETHEUS_STACK.release_name

    if args.device_metrics_exporter:
        # The device plugin's namespace when it is installed too (the same namespace name).
        exporter_ns = plan.namespaces.get("amd_gpu_plugin") or plan.namespace(
            "amd_gpu_plugin", DEVICE_METRICS_EXPORTER.namespace, PRIVILEGED_NAMESPACE
        )
        # Its ServiceMonitor needs the CRD kube-prometheus-stack installs.
        after = [exporter_ns, *first, *monitoring]
        plan.release("device_metrics_exporter", DEVICE_METRICS_EXPORTER, device_metrics_exporter_values(), after)

    if args.keda:
        # Its pods need no host access: the cluster's default Pod Security level applies. Its ServiceMonitor needs
        # the CRD kube-prometheus-stack installs, and its ScaledObjects read that Prometheus.
        keda_ns = plan.namespace("keda", KEDA.namespace, {})
        # The HTTP add-on's interceptor Deployment has no replica count of its own: its ScaledObject, in KEDA's
        # namespace, sets it, so KEDA watches that namespace too.
        watched = (*args.keda_namespaces, KEDA_HTTP_ADDON.namespace) if args.keda_http else args.keda_namespaces
        values = keda_values(watched, monitoring=args.monitoring)
        keda = plan.release("keda", KEDA, values, after=[keda_ns, *first, *monitoring])
        if args.keda_http:
            # After KEDA: the chart declares that ScaledObject, whose CRD comes with KEDA's release.
            addon = http_addon_values(KEDA_HTTP_ADDON.release_name)
            plan.release("keda_http", KEDA_HTTP_ADDON, addon, after=[keda_ns, *first, keda])
    return plan


def _grafana_admin(plan: AddonPlan, password: Any, namespace_key: str) -> str:
    """The Secret Grafana reads its admin login from (`grafana.admin.existingSecret`): the configured password, or
    one generated once and kept in Pulumi state as a secret."""
    if password is None:
        password = GeneratedPassword(plan.add("grafana-admin-password", "password", {"length": 24, "special": False}))
    secret = grafana_admin_secret(KUBE_PROMETHEUS_STACK.namespace, password)
    return plan.add("grafana-admin", "object", secret, after=[namespace_key])


def _local_path(plan: AddonPlan, stack: str, first: Sequence[str]) -> str:
    """local-path-provisioner, object by object; returns its StorageClass's child."""
    # Helper pods mount host directories.
    local_ns = plan.namespace("local_path", LOCAL_PATH_NAMESPACE, PRIVILEGED_NAMESPACE, after=first)
    account = plan.add("local-path-service-account", "object", local_path_service_account(), after=[local_ns])
    cluster_role = plan.add("local-path-cluster-role", "object", local_path_cluster_role())
    cluster_binding = plan.add(
        "local-path-cluster-role-binding", "object", local_path_cluster_role_binding(), after=[cluster_role, account]
    )
    role = plan.add("local-path-role", "object", local_path_role(), after=[local_ns])
    binding = plan.add("local-path-role-binding", "object", local_path_role_binding(), after=[role, account])
    config = plan.add("local-path-config", "object", local_path_config_map(stack), after=[local_ns])
    deployment = plan.add(
        "local-path-provisioner",
        "object",
        local_path_deployment(),
        after=[account, binding, cluster_binding, config, *first],
    )
    # The class comes last: a workload that depends on it finds a running provisioner behind it.
    return plan.add("local-path-storage-class", "object", local_path_storage_class(), after=[deployment])


def resolve(value: Any, password: Callable[[str], Any]) -> Any:
    """`value` with every GeneratedPassword replaced by `password(<its key>)` (the declared child's result)."""
    if isinstance(value, GeneratedPassword):
        return password(value.key)
    if isinstance(value, Mapping):
        return {key: resolve(item, password) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, password) for item in value]
    return value
