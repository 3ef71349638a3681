"""Monitoring: scrape vLLM with a ServiceMonitor, record `aim:` series and alerts, and ship the Grafana dashboards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from aim_infra.common.contract import PART_OF, PART_OF_LABEL
from aim_infra.planning.monitoring.dashboards import DASHBOARDS, dashboard_json
from aim_infra.planning.monitoring.rules import (
    AlertThresholds,
    alert_group,
    estimate_group,
    model_series_labels,
    recording_groups,
)
from aim_infra.stack.components.kube import KubernetesObject

SCRAPE_INTERVAL = "15s"
DASHBOARD_LABEL = {"grafana_dashboard": "1"}  # what kube-prometheus-stack's Grafana sidecar loads


@dataclass(frozen=True)
class MonitoringArgs:
    namespace: str  # the workload's
    engine_name: str  # Deployment and Service name
    selector_labels: dict[str, str]  # the engine Service's labels to select it by
    monitoring_namespace: str
    release_name: str  # kube-prometheus-stack's release (labelled on our objects for selectors that want it)
    decision_summary: dict[str, Any]
    replicas: int
    startup_budget_seconds: int
    thresholds: AlertThresholds
    #: The namespace-wide parts: the recording rules and the dashboards. With several models in one namespace
    #: (aim:models) only the first model's Monitoring declares them; the others add their own ServiceMonitor, estimate
    #: series and alerts.
    shared: bool = True
    #: Several models' engines share the namespace (aim:models): this engine's estimate group and alerts read only its
    #: recipe and model's `aim:` series and are named after it, and the dashboards repeat their rows per model.
    per_model: bool = False
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class Monitoring(pulumi.ComponentResource):
    """Everything Prometheus and Grafana need to watch the engine; the Kubernetes provider comes through `opts`."""

    service_monitor: KubernetesObject
    rules: KubernetesObject
    dashboards: dict[str, KubernetesObject]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:Monitoring", name, None, opts)
        # The CRDs come with the kube-prometheus-stack release: wait for it.
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        labels = {PART_OF_LABEL: PART_OF, "release": args.release_name}

        self.service_monitor = KubernetesObject(
            f"{name}-service-monitor", service_monitor_manifest(args, labels), opts=child
        )
        scope = args.engine_name if args.per_model else None
        groups = [
            *(recording_groups() if args.shared else []),
            estimate_group(args.decision_summary, args.namespace, args.replicas, deployment=scope),
            alert_group(
                namespace=args.namespace,
                deployment=args.engine_name,
                startup_budget_seconds=args.startup_budget_seconds,
                thresholds=args.thresholds,
                series=model_series_labels(args.decision_summary) if args.per_model else None,
            ),
        ]
        self.rules = KubernetesObject(
            f"{name}-rules",
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PrometheusRule",
                "metadata": {"name": args.engine_name, "namespace": args.namespace, "labels": labels},
                "spec": {"groups": groups},
            },
            opts=child,
        )
        self.dashboards = {}
        for file_name in sorted(DASHBOARDS) if args.shared else []:
            stem = file_name.removesuffix(".json")
            self.dashboards[file_name] = KubernetesObject(
                f"{name}-dashboard-{stem}",
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": f"{stem}-dashboard",
                        "namespace": args.monitoring_namespace,
                        "labels": {**labels, **DASHBOARD_LABEL},
                    },
                    "data": {file_name: dashboard_json(file_name, per_model=args.per_model)},
                },
                opts=child,
            )
        self.register_outputs({"dashboards": sorted(self.dashboards), "rule_groups": [g["name"] for g in groups]})


def service_monitor_manifest(args: MonitoringArgs, labels: dict[str, str]) -> dict[str, Any]:
    """Prometheus scrapes the engine's metrics-only listener (the `<engine>-metrics` ClusterIP Service)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": args.engine_name, "namespace": args.namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": dict(args.selector_labels)},
            "namespaceSelector": {"matchNames": [args.namespace]},
            # The operator adds namespace, pod, service and container labels: the rules join on them.
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": SCRAPE_INTERVAL}],
        },
    }
