"""Several models behind one endpoint (aim:models): every model's engine, gate, policies, monitoring, autoscaling and
smoke test from the joint plan, and one router in front of them all.

__main__.py declares the objects every stack shares (cluster, ownership gate, add-ons, image, admission policy) and
hands over here when aim:models is set; the single-model program does not pass through this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from aim_infra.planning.packing import JointPlan, ModelPlan
from aim_infra.stack.components.addons import ClusterAddons
from aim_infra.stack.components.engine import (
    API_PORT,
    METRICS_PORT,
    AimEngine,
    AimEngineArgs,
    decision_hash,
    startup_budget_seconds,
)
from aim_infra.stack.components.gpu_gate import GpuGate, GpuGateArgs
from aim_infra.stack.components.kube import KubernetesObject
from aim_infra.stack.components.monitoring import Monitoring, MonitoringArgs
from aim_infra.stack.components.network_policy import EngineNetworkPolicy, EngineNetworkPolicyArgs
from aim_infra.stack.components.router import ModelRouter, ModelRouterArgs
from aim_infra.stack.components.smoke_test import SmokeTest, SmokeTestArgs
from aim_infra.stack.decide import ROUTER_NAME, alert_thresholds
from aim_infra.stack.manifests.autoscaling import prometheus_address, scaled_object, target_concurrency
from aim_infra.stack.settings import ModelSpec, StackConfig


@dataclass
class ServedModel:
    """One model as declared: its entry, its plan and its engine (and its ScaledObject when it autoscales)."""

    spec: ModelSpec
    plan: ModelPlan
    engine: AimEngine
    scaled_object: KubernetesObject | None


@dataclass
class ServedModels:
    models: list[ServedModel]
    router: ModelRouter

    @property
    def api_key(self) -> pulumi.Output[str]:
        """The one API key of every model (the first engine's: configured or generated), a secret Output."""
        return self.models[0].engine.api_key


@dataclass(frozen=True)
class _Stack:
    """What every model's objects are declared with: the stack's config and the objects __main__ declared first."""

    config: StackConfig
    gpu_labels_seen: bool
    image: pulumi.Input[str]
    addons: ClusterAddons
    admission: pulumi.Resource | None
    kubeconfig: pulumi.Input[str] | None
    kubernetes: pulumi.ResourceOptions

    @property
    def monitoring_namespace(self) -> str | None:
        return (self.addons.monitoring_namespace or "monitoring") if self.config.settings.monitoring else None


def declare_models(
    stack: StackConfig,
    plan: JointPlan,
    *,
    gpu_labels_seen: bool,
    image: pulumi.Input[str],
    addons: ClusterAddons,
    admission: pulumi.Resource | None,
    kubeconfig: pulumi.Input[str] | None,
    kubernetes: pulumi.ResourceOptions,
) -> ServedModels:
    """Every model of the joint plan, in aim:models order, then the router. The first model's engine declares the
    namespace and generates the API key when none is configured; the others share both, so one key opens every
    model through the router."""
    shared = _Stack(stack, gpu_labels_seen, image, addons, admission, kubeconfig, kubernetes)
    served: list[ServedModel] = []
    for spec, planned in zip(stack.settings.models, plan.models, strict=True):
        served.append(_declare_model(shared, spec, planned, served[0].engine if served else None))
    router = _declare_router(shared, served[0].engine)
    if stack.settings.smoke_test:
        for model in served:
            _smoke_test(shared, model, router)
    return ServedModels(served, router)


def autoscales(spec: ModelSpec, planned: ModelPlan) -> bool:
    """KEDA scales the model: it has replica bounds and the GPUs left room between them (bounds the plan had to
    narrow to one count, e.g. 1–2 on a node with room for 1, are a fixed count: no ScaledObject that cannot act)."""
    return spec.autoscaled and planned.min_replicas < planned.max_replicas


def _declare_model(shared: _Stack, spec: ModelSpec, planned: ModelPlan, first: AimEngine | None) -> ServedModel:
    """One model: its GPU gate, engine, NetworkPolicies, monitoring and (with replica bounds) ScaledObject."""
    s, addons, decision = shared.config.settings, shared.addons, planned.decision
    gate = GpuGate(
        f"{spec.name}-gpu-ready",
        GpuGateArgs(
            gpu=decision.gpu.name,
            count=decision.recipe.gpu_count,
            replicas=planned.replicas,
            one_node=s.cache_access_mode == "ReadWriteOnce",
            kube_context=shared.config.kube_context,
            kubeconfig=shared.kubeconfig,
            depends_on=addons.ready,
        ),
    )
    engine = _engine(shared, spec, planned, first, gate)
    # No client reaches an engine directly (no allow-list): the router's policy admits the router to them.
    EngineNetworkPolicy(
        f"{spec.name}-network",
        EngineNetworkPolicyArgs(
            namespace=s.namespace,
            pod_selector=engine.selector_labels,
            api_port=API_PORT,
            metrics_port=METRICS_PORT,
            download_pod_selector=engine.model_download.pod_selector,
            cluster_cidrs=[s.pod_cidr],
            monitoring_namespace=shared.monitoring_namespace,
            air_gapped=s.air_gapped,
            depends_on=[engine.namespace],
        ),
        opts=shared.kubernetes,
    )
    if s.monitoring:
        _monitoring(shared, spec, planned, engine, shared_parts=first is None)
    return ServedModel(spec, planned, engine, _scaled_object(shared.config, spec, planned, engine, addons))


def _engine(shared: _Stack, spec: ModelSpec, planned: ModelPlan, first: AimEngine | None, gate: GpuGate) -> AimEngine:
    """The model's engine: its own cache, download Job and Deployment; the first engine's namespace and API key."""
    s, addons, decision = shared.config.settings, shared.addons, planned.decision
    return AimEngine(
        spec.name,
        AimEngineArgs(
            decision=decision,
            image=shared.image,
            namespace=s.namespace,
            model_id=spec.model,
            model_revision=spec.model_revision_or_none,
            replicas=planned.replicas,
            # The router is the one endpoint: the engines are reached only inside the cluster.
            service_type="ClusterIP",
            cache_size=None if s.cache_size == "auto" else s.cache_size,
            storage_class=s.storage_class or addons.storage_class_name,
            cache_access_mode=s.cache_access_mode,
            retain_model_cache=s.keeps_model_cache,
            render_group_id=s.render_group_id,
            require_gpu_labels=shared.gpu_labels_seen or s.amd_gpu_plugin,
            hf_token=shared.config.hf_token,
            api_key=shared.config.api_key if first is None else first.api_key,
            api_proxy_image=s.api_proxy_image,
            shared_namespace=None if first is None else first.namespace,
            autoscaled=autoscales(spec, planned),
            depends_on=[*addons.ready, gate, *([shared.admission] if shared.admission else [])],
        ),
        opts=shared.kubernetes,
    )


def _monitoring(
    shared: _Stack, spec: ModelSpec, planned: ModelPlan, engine: AimEngine, *, shared_parts: bool
) -> Monitoring:
    """The model's ServiceMonitor (KEDA reads its metrics from Prometheus), estimate series and alerts, each reading
    only this model's series; the namespace-wide recording rules and the per-model dashboards with the first model
    only (`shared_parts`)."""
    s, addons, decision = shared.config.settings, shared.addons, planned.decision
    return Monitoring(
        f"{spec.name}-monitoring",
        MonitoringArgs(
            namespace=s.namespace,
            engine_name=spec.name,
            selector_labels=engine.selector_labels,
            monitoring_namespace=shared.monitoring_namespace or "monitoring",
            release_name=addons.monitoring_release_name or "kube-prometheus-stack",
            decision_summary=decision.summary(),
            replicas=planned.replicas,
            startup_budget_seconds=startup_budget_seconds(decision),
            thresholds=alert_thresholds(s, decision),
            shared=shared_parts,
            per_model=True,
            depends_on=[addons.releases["monitoring"], engine.namespace],
        ),
        opts=shared.kubernetes,
    )


def _declare_router(shared: _Stack, key_owner: AimEngine) -> ModelRouter:
    """The one endpoint: the stack's service type, port and client allow-lists, the models' API key."""
    s = shared.config.settings
    return ModelRouter(
        ROUTER_NAME,
        ModelRouterArgs(
            namespace=s.namespace,
            api_key=key_owner.api_key,
            api_proxy_image=s.api_proxy_image,
            service_type=s.service_type,
            node_port=s.node_port,
            allowed_cidrs=s.api_allowed_cidrs,
            allowed_namespaces=s.api_allowed_namespaces,
            monitoring_namespace=shared.monitoring_namespace,
            depends_on=[key_owner.namespace],
        ),
        opts=shared.kubernetes,
    )


def _smoke_test(shared: _Stack, model: ServedModel, router: ModelRouter) -> SmokeTest:
    """One chat completion for the model through the router, as clients reach it."""
    decision = model.plan.decision
    return SmokeTest(
        f"{model.spec.name}-smoke-test",
        SmokeTestArgs(
            namespace=shared.config.settings.namespace,
            service=ROUTER_NAME,
            service_port=API_PORT,
            model_id=model.spec.model,
            recipe_id=decision.recipe.id,
            decision_hash=decision_hash(decision, ""),
            image=shared.image,
            api_key_secret=router.api_key_secret_ref,
            kube_context=shared.config.kube_context,
            kubeconfig=shared.kubeconfig,
            depends_on=[model.engine, router],
        ),
    )


def _scaled_object(
    stack: StackConfig, spec: ModelSpec, planned: ModelPlan, engine: AimEngine, addons: ClusterAddons
) -> KubernetesObject | None:
    """KEDA's ScaledObject for a model with replica bounds: between its min and the replicas whose GPUs the plan
    reserved, on the requests one replica sustains within its SLO (the performance model's target)."""
    if not autoscales(spec, planned):
        return None
    s = stack.settings
    decision = planned.decision
    manifest = scaled_object(
        namespace=s.namespace,
        name=spec.name,
        deployment=spec.name,  # the engine's Deployment is named after it (EngineNames.workload)
        served_model_name=spec.model,  # vLLM's --served-model-name: its metrics' model_name label
        min_replicas=planned.min_replicas,
        max_replicas=planned.max_replicas,
        reserved_replicas=planned.replicas + len(planned.reserved),
        target=target_concurrency(decision.estimate),
        startup_budget_seconds=startup_budget_seconds(decision),
        prometheus=prometheus_address(
            addons.monitoring_release_name or "kube-prometheus-stack", addons.monitoring_namespace or "monitoring"
        ),
        labels=engine.labels,
    )
    # The CRD comes with the KEDA release; the Deployment it scales must exist first.
    after: list[Any] = [addons.releases["keda"], engine.deployment]
    return KubernetesObject(
        f"{spec.name}-scaled-object",
        manifest,
        opts=pulumi.ResourceOptions(parent=engine, depends_on=after),
    )


def model_exports(models: ServedModels) -> dict[str, dict[str, Any]]:
    """Stack output `models`: per model, what it serves as (the OpenAI `model` field), its recipe and replicas."""
    return {
        m.spec.name: {
            "model": m.spec.model,
            "recipe": m.plan.decision.recipe.id,
            "gpus": m.plan.gpus,
            "replicas": m.plan.replicas,
            "minReplicas": m.plan.min_replicas,
            "maxReplicas": m.plan.max_replicas,
            "autoscaled": autoscales(m.spec, m.plan),
            "placement": list(m.plan.placement),
        }
        for m in models.models
    }
