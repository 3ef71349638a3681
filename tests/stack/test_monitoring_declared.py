"""What the program declares for monitoring: ServiceMonitor, PrometheusRule (promtool-checked), dashboards."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from aim_infra.planning.monitoring import dashboards
from aim_infra.planning.monitoring import rules as rule_builders
from aim_infra.stack.plan import Declared, PlanResult, run_stack
from tests.planning.monitoring.support import tool

SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
RELEASE = "kubernetes:helm.sh/v3:Release"


def rule(result: PlanResult) -> Declared:
    [found] = result.of_type(PROMETHEUS_RULE)
    return found


def test_service_monitor_scrapes_the_engine_service_after_the_crds_exist(dev: PlanResult) -> None:
    [monitor] = dev.of_type(SERVICE_MONITOR)
    # The API proxy's metrics-only listener, on a ClusterIP Service of its own.
    service = dev.named("kubernetes:core/v1:Service", "aim-engine-metrics-service").inputs
    spec = monitor.inputs["spec"]
    assert spec["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert service["spec"]["ports"][0]["name"] == "metrics" and service["spec"]["type"] == "ClusterIP"
    selected = spec["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    release = dev.named(RELEASE, "addons-monitoring")
    monitoring = next(r for r in dev.resources if r.type == "aim:infra:Monitoring")
    assert release.urn in monitoring.dependencies or release.urn in monitor.dependencies


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_declared_rule_groups_pass_promtool(stack: str, dev: PlanResult, prod: PlanResult, tmp_path: Path) -> None:
    result = {"dev": dev, "prod": prod}[stack]
    groups = rule(result).inputs["spec"]["groups"]
    names = [g["name"] for g in groups]
    assert names[0] == "aim.recording" and any(n.startswith("aim.estimate") for n in names)
    assert any(n.startswith("aim.alerts") for n in names)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    check = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_estimates_become_series_with_the_decisions_numbers(dev: PlanResult) -> None:
    groups = rule(dev).inputs["spec"]["groups"]
    estimate = next(g for g in groups if g["name"].startswith("aim.estimate"))
    by_name = {r["record"]: r for r in estimate["rules"]}
    estimate = dev.outputs["recipe"]["estimate"]

    def value(record: str) -> float:
        return float(by_name[record]["expr"].removeprefix("vector(").removesuffix(")"))

    low, high = estimate["range"]["output_tokens_per_s"]
    assert value("aim:recipe_estimate:output_tokens_per_second:low") == pytest.approx(low)
    assert value("aim:recipe_estimate:output_tokens_per_second:high") == pytest.approx(high)
    assert value("aim:recipe_estimate:tpot_p95_seconds:high") == pytest.approx(
        estimate["range"]["tpot_p95_ms"][1] / 1e3
    )
    assert value("aim:recipe_estimate:step_base_seconds") == pytest.approx(
        estimate["per_replica"]["step_base_ms"] / 1e3
    )
    assert value("aim:recipe_estimate:throughput_low_ratio") == pytest.approx(
        estimate["calibration"]["throughput_band"][0]
    )
    assert value("aim:recipe:replicas") == estimate["layout"]["replicas"]
    low_series = by_name["aim:recipe_estimate:output_tokens_per_second:low"]
    assert low_series["labels"]["recipe"] == dev.outputs["recipe"]["recipe_id"]
    assert not [name for name in by_name if "decode_tokens" in name or "single_stream" in name]


def test_the_throughput_alert_follows_the_configured_fraction_of_the_low_end_at_load() -> None:
    result = run_stack("dev", {"aim:alertThroughputFraction": "0.55"})
    assert result.error is None, result.error
    alerts = {r["alert"]: r for g in rule(result).inputs["spec"]["groups"] for r in g["rules"] if "alert" in r}
    expr = alerts["AimThroughputBelowEstimate"]["expr"]
    assert "0.55 * avg_over_time(aim:recipe_estimate:output_tokens_per_second:at_load_low" in expr
    assert "saturation" not in expr


def test_alert_thresholds_come_from_config() -> None:
    result = run_stack("dev", {"aim:alertQueueDepth": "7", "aim:alertTtftP95Seconds": "2.5"})
    assert result.error is None, result.error
    alerts = {r["alert"]: r for g in rule(result).inputs["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert "> 7" in alerts["AimQueueDepthHigh"]["expr"]
    assert "> 2.5" in alerts["AimTimeToFirstTokenHigh"]["expr"]
    for alert in alerts.values():
        assert {"summary", "description", "runbook"} <= set(alert["annotations"])


def test_dashboards_ship_as_sidecar_configmaps(dev: PlanResult) -> None:
    dashboards = [r for r in dev.of_type(CONFIG_MAP) if r.inputs["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == 2
    titles = set()
    for resource in dashboards:
        assert resource.inputs["metadata"]["namespace"] == "monitoring"
        [(key, text)] = resource.inputs["data"].items()
        model = json.loads(text)
        assert key.endswith(".json") and model["uid"] and model["panels"]
        titles.add(model["title"])
    assert titles == {"AIM Engine / Recipe performance", "AIM Engine / vLLM serving"}


def test_monitoring_off_declares_none_of_it() -> None:
    result = run_stack("dev", {"aim:monitoring": "false"})
    assert result.error is None, result.error
    assert not result.of_type(SERVICE_MONITOR) and not result.of_type(PROMETHEUS_RULE)
    assert not [r for r in result.of_type(RELEASE) if r.inputs["chart"] == "kube-prometheus-stack"]
    assert "grafana" not in result.outputs["verify"]


def test_device_metrics_exporter_is_optional_and_pinned(dev: PlanResult) -> None:
    [exporter] = [r for r in dev.of_type(RELEASE) if r.inputs["chart"] == "device-metrics-exporter-charts"]
    assert exporter.inputs["version"] == "v1.5.1"
    assert exporter.inputs["values"]["serviceMonitor"]["enabled"] is True
    # Labelled for this stack's kube-prometheus-stack release, not the chart's default `release: prometheus-operator`.
    release = dev.named(RELEASE, "addons-monitoring").inputs["name"]
    assert exporter.inputs["values"]["serviceMonitor"]["labels"] == {"release": release}
    assert dev.named(RELEASE, "addons-monitoring").urn in exporter.dependencies
    without = run_stack("dev", {"aim:deviceMetricsExporter": "false"})
    assert not [r for r in without.of_type(RELEASE) if r.inputs["chart"] == "device-metrics-exporter-charts"]


def test_grafana_and_prometheus_are_reachable_from_the_exports(dev: PlanResult) -> None:
    verify = dev.outputs["verify"]
    assert "port-forward svc/kube-prometheus-stack-grafana 3000:80" in verify["grafana"]
    assert "port-forward svc/kube-prometheus-stack-prometheus 9090:9090" in verify["prometheus"]
    values = dev.named(RELEASE, "addons-monitoring").inputs["values"]
    assert values["grafana"]["admin"]["existingSecret"] == "grafana-admin"
    assert "adminPassword" not in values["grafana"]
    allow = values["kube-state-metrics"]["metricLabelsAllowlist"]
    assert allow == ["pods=[aim.amd.com/recipe,aim.amd.com/model,aim.amd.com/gpu,app.kubernetes.io/instance]"]


CONTROL_PLANE = ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy")
CONTROL_PLANE_RULES = ("kubeControllerManager", "kubeSchedulerAlerting", "kubeSchedulerRecording", "etcd", "kubeProxy")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_control_plane_scrapes_and_rules_are_off(stack: str, dev: PlanResult, prod: PlanResult) -> None:
    """dev is kubeadm: these components listen on 127.0.0.1 only, so TargetDown and etcdInsufficientMembers would
    fire forever. prod is a cluster the stack did not make (clusterBootstrap none): off too, by choice (README)."""
    result = {"dev": dev, "prod": prod}[stack]
    values = result.named(RELEASE, "addons-monitoring").inputs["values"]
    for key in CONTROL_PLANE:
        assert values[key]["enabled"] is False, key
    rules = values["defaultRules"]["rules"]
    assert {group: rules[group] for group in CONTROL_PLANE_RULES} == dict.fromkeys(CONTROL_PLANE_RULES, False)
    # Everything else keeps the chart's defaults: TargetDown (group `general`) still guards every other target.
    assert set(rules) == set(CONTROL_PLANE_RULES)


def test_grafana_reads_dashboards_only_where_we_put_them(dev: PlanResult) -> None:
    grafana = dev.named(RELEASE, "addons-monitoring").inputs["values"]["grafana"]
    assert grafana["rbac"]["namespaced"] is True
    searched = grafana["sidecar"]["dashboards"]["searchNamespace"]
    assert grafana["sidecar"]["datasources"]["searchNamespace"] == searched == ["monitoring"]
    dashboards = [r for r in dev.of_type(CONFIG_MAP) if r.inputs["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert dashboards and {r.inputs["metadata"]["namespace"] for r in dashboards} == set(searched)
    assert dev.named(RELEASE, "addons-monitoring").inputs["namespace"] in searched


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_single_model_stack_declares_the_one_model_rules_and_dashboards(
    stack: str, dev: PlanResult, prod: PlanResult
) -> None:
    """One engine per namespace: the groups are named after the namespace alone, the at-load rule and the alerts read
    the whole namespace, no rule records a series another records, and the dashboards have no per-model rows."""
    result = {"dev": dev, "prod": prod}[stack]
    groups = rule(result).inputs["spec"]["groups"]
    namespace = rule(result).inputs["metadata"]["namespace"]
    assert [g["name"] for g in groups] == ["aim.recording", f"aim.estimate.{namespace}", f"aim.alerts.{namespace}"]
    at_load = groups[1]["rules"][-1]
    assert "labels" not in at_load and at_load["expr"] == rule_builders.at_load_low_expr(f'namespace="{namespace}"')
    assert all(set(r["labels"]) == {"severity"} for r in groups[2]["rules"])
    assert rule_builders.recording_collisions(groups) == []
    for resource in result.of_type(CONFIG_MAP):
        if resource.inputs["metadata"]["labels"].get("grafana_dashboard") == "1":
            [(key, text)] = resource.inputs["data"].items()
            assert text == dashboards.dashboard_json(key) != dashboards.dashboard_json(key, per_model=True)
