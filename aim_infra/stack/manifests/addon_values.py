"""What each add-on chart is told: its Helm values, and the helm.sh/v3 Release installing it at its pinned version."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from aim_infra.stack.manifests.addon_objects import (
    GRAFANA_ADMIN_PASSWORD_KEY,
    GRAFANA_ADMIN_SECRET,
    GRAFANA_ADMIN_USER_KEY,
)
from aim_infra.stack.manifests.addon_pins import KUBE_PROMETHEUS_STACK, ChartPin


def release_spec(pin: ChartPin, values: Mapping[str, Any]) -> dict[str, Any]:
    """The Release inputs of one pinned chart, in the namespace the stack declares for it.

    Every release is awaited (skipAwait: false): each waits only for its own workloads, which can all become ready on
    their own once the pod network is up (they wait for Calico when we install it), and later resources rely on that
    (CRDs of kube-prometheus-stack, `amd.com/gpu` capacity). atomic and cleanupOnFail false: a slow start must not
    uninstall what is already running."""
    return {
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
    }


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


def monitoring_values(
    extra: Mapping[str, Any] | None, control_plane_metrics: bool, pod_labels: Sequence[str]
) -> dict[str, Any]:
    """kube-prometheus-stack values: pick up every ServiceMonitor/PodMonitor/PrometheusRule, load labelled dashboards
    from the monitoring namespace only, scrape the control plane only where it is reachable, and export `pod_labels`
    on kube_pod_labels (so recording rules can join vLLM series to their recipe).

    No credentials here: values end up in plain state. Grafana's admin secret is wired by reference
    (`grafana.admin.existingSecret`); `extra` is deep-merged over all of it."""
    # Grafana's sidecars read only the monitoring namespace (the chart's default is ALL, with a ClusterRole to list
    # and read every Secret in the cluster): namespaced RBAC gives them a Role there, and ConfigMaps are all they
    # load (our dashboards, the chart's dashboards and its Prometheus datasource are ConfigMaps in that namespace).
    own_namespace = [KUBE_PROMETHEUS_STACK.namespace]
    base: dict[str, Any] = {
        "kube-state-metrics": {"metricLabelsAllowlist": [f"pods=[{','.join(pod_labels)}]"]},
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
            "admin": {
                "existingSecret": GRAFANA_ADMIN_SECRET,
                "userKey": GRAFANA_ADMIN_USER_KEY,
                "passwordKey": GRAFANA_ADMIN_PASSWORD_KEY,
            },
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


#: Requests and limits of each KEDA pod (the keys of chart 2.20.2's `resources`): the chart's documented defaults,
#: stated here so that a chart upgrade changing them shows in our diff. Each pod watches a few ScaledObjects and
#: answers the HPA's metric reads; 100m / 100Mi is what KEDA's operations guide sizes for that.
KEDA_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    pod: {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"cpu": "1", "memory": "1000Mi"}}
    for pod in ("operator", "metricServer", "webhooks")
}


def keda_values(watch_namespaces: Sequence[str], monitoring: bool) -> dict[str, Any]:
    """keda values (chart 2.20.2): its CRDs (templates, so `helm upgrade` updates them too), and no more cluster-wide
    power than scaling our models needs.

    - watchNamespace: the operator watches only the models' namespaces, and the chart then binds its ClusterRole
      there by RoleBindings instead of one ClusterRoleBinding.
    - rbac.enabledCustomScaledRefKinds off: the chart's default adds get/update of `*/scale` and get of every
      resource in every API group; Deployments (all we scale) are in its fixed rules.
    - permissions.*.restrict.secret: we use no TriggerAuthentication (Prometheus is read in-cluster without
      credentials), so neither the operator nor the metrics server may list Secrets outside KEDA's namespace.
    - The operator's own metrics (scaler errors, the metric values it read) are exported, with a ServiceMonitor for
      kube-prometheus-stack when monitoring is installed (it brings the CRD).
    - image.pullPolicy IfNotPresent: the image tag is the chart's pinned appVersion, so a restart needs no registry
      (the chart's default is Always)."""
    if not watch_namespaces:
        raise ValueError("KEDA must watch at least the namespace of the models it scales")
    return {
        "crds": {"install": True},
        "watchNamespace": ",".join(sorted(set(watch_namespaces))),
        "rbac": {"enabledCustomScaledRefKinds": False},
        "permissions": {
            "operator": {"restrict": {"secret": True}},
            "metricServer": {"restrict": {"secret": True}},
        },
        "image": {"pullPolicy": "IfNotPresent"},
        "resources": copy.deepcopy(KEDA_RESOURCES),
        "prometheus": {
            "operator": {
                "enabled": True,
                "serviceMonitor": {
                    "enabled": monitoring,
                    # Selected by a Prometheus that keeps kube-prometheus-stack's `release: <release>` selector.
                    "additionalLabels": {"release": KUBE_PROMETHEUS_STACK.release_name},
                },
            }
        },
    }


#: The HTTP add-on's interceptor replicas: two, so a restart or a node drain never leaves the scale-to-zero models
#: unreachable (the chart's PodDisruptionBudget lets one go at a time), and up to four under load (its own ScaledObject
#: adds one per 200 requests pending). The chart's 3–50 is sized for a shared web cluster, not a few models.
HTTP_ADDON_INTERCEPTOR_REPLICAS = {"min": 2, "max": 4}
#: The external scaler KEDA asks whether a route has requests: two replicas for the same reason (chart default 3).
HTTP_ADDON_SCALER_REPLICAS = 2
#: A request in flight through the interceptor gets what it gets on the engine and the router (their
#: terminationGracePeriodSeconds, 120 s): the chart's 30 s drain would cut a streamed answer when an interceptor pod is
#: replaced. The listener closes after shutdownDelay, in-flight requests get drainTimeout, and the chart requires
#: terminationGracePeriodSeconds ≥ the two together.
HTTP_ADDON_SHUTDOWN_DELAY = "5s"
HTTP_ADDON_DRAIN_TIMEOUT = "110s"
HTTP_ADDON_TERMINATION_GRACE_SECONDS = 120
#: Requests and limits of the HTTP add-on's pods (the keys of chart 0.15.0's `<component>.resources`). The scaler: the
#: chart's own figures, stated so that a chart upgrade changing them shows in our diff. The interceptor: every answer
#: it relays holds a 32 KiB copy buffer (interceptor/handler/bufferpool.go) plus its two connections, and an LLM
#: endpoint holds hundreds of long streams at once (a cold start holds requests too, each until the model is ready),
#: so its memory limit is 256 Mi instead of the chart's 64 Mi, which is sized for short web requests.
HTTP_ADDON_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "scaler": {"requests": {"cpu": "250m", "memory": "20Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}},
    "interceptor": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
}
#: The labels chart 0.15.0 puts on the interceptor's pods (templates/interceptor/deployment.yaml and the matchLabels
#: of templates/_helpers.tpl), less the version labels: what a NetworkPolicy selects the interceptor by.
HTTP_ADDON_INTERCEPTOR_LABELS = {
    "app.kubernetes.io/component": "interceptor",
    "app.kubernetes.io/name": "http-add-on",
    "app.kubernetes.io/part-of": "keda-add-ons-http",
}


def http_addon_interceptor_labels(release_name: str) -> dict[str, str]:
    """The interceptor pods' labels, with the release's instance label (another install of the chart has another)."""
    return {**HTTP_ADDON_INTERCEPTOR_LABELS, "app.kubernetes.io/instance": release_name}


def http_addon_values(release_name: str) -> dict[str, Any]:
    """keda-add-ons-http values (chart 0.15.0): its CRDs (templates, like KEDA's), the interceptor and the scaler
    sized for a few models on a small cluster, and no operator.

    - operator.replicas 0: the chart then installs neither the operator nor its ClusterRole, which may create and
      delete ScaledObjects in every namespace. We write each model's ScaledObject ourselves; the operator exists to
      write them for the deprecated HTTPScaledObject, and its InterceptorRoute controller only sets a Ready condition
      that nothing reads (operator/controllers/http/interceptorroute_controller.go calls itself a placeholder). So
      `kubectl get interceptorroute` shows no READY value.
    - The interceptor (Services, EndpointSlices, InterceptorRoutes) and the scaler (EndpointSlices,
      InterceptorRoutes) still read cluster-wide, get/list/watch only: the chart binds them ClusterRoles and has no
      value that narrows those.
    - The interceptor spreads its replicas over nodes where it can (ScheduleAnyway: one node is still a cluster).
    - No global timeouts: each model's InterceptorRoute sets its own (autoscaling.interceptor_route).
    - pullPolicy IfNotPresent: the image tags are the chart's appVersion, so a restart needs no registry (the chart's
      default is Always)."""
    interceptor_pods = {"matchLabels": http_addon_interceptor_labels(release_name)}
    return {
        "crds": {"install": True},
        "operator": {"replicas": 0},
        "scaler": {
            "replicas": HTTP_ADDON_SCALER_REPLICAS,
            "pullPolicy": "IfNotPresent",
            "resources": copy.deepcopy(HTTP_ADDON_RESOURCES["scaler"]),
        },
        "interceptor": {
            "pullPolicy": "IfNotPresent",
            "replicas": dict(HTTP_ADDON_INTERCEPTOR_REPLICAS),
            "shutdownDelay": HTTP_ADDON_SHUTDOWN_DELAY,
            "drainTimeout": HTTP_ADDON_DRAIN_TIMEOUT,
            "terminationGracePeriodSeconds": HTTP_ADDON_TERMINATION_GRACE_SECONDS,
            "resources": copy.deepcopy(HTTP_ADDON_RESOURCES["interceptor"]),
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": interceptor_pods,
                }
            ],
        },
    }
