"""Several models behind one endpoint (aim:models): every model's engine, gate, policies, monitoring, autoscaling and
smoke test from the joint plan, and one router in front of them all. A model that scales to zero is reached through
the KEDA HTTP add-on's interceptor (its wake Service and InterceptorRoute), and the router then lists every model
statically (manifests/router.py says why).

__main__.py declares the objects every stack shares (cluster, ownership gate, add-ons, image, admission policy) and
hands over here when aim:models is set; the single-model program does not pass through this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from aim_infra.stack.manifests.addon_pins import KEDA_HTTP_ADDON
from aim_infra.stack.manifests.addon_values import http_addon_interceptor_labels
from aim_infra.stack.manifests.autoscaling import (
    HTTP_ADDON_INTERCEPTOR_PORT,
    WAKE_PATH_PREFIX,
    http_scaler_address,
    interceptor_route,
    prometheus_address,
    scaled_object,
    target_concurrency,
    wake_host,
    wake_labels,
    wake_service,
    wake_url,
)
from aim_infra.stack.manifests.router import Interceptor, StaticBackend, service_url
from aim_infra.stack.settings import ModelSpec, StackConfig


@dataclass
class ServedModel:
    """One model as declared: its entry, its plan and its engine (and its ScaledObject when it autoscales; its wake
    Service and InterceptorRoute when it scales to zero)."""

    spec: ModelSpec
    plan: ModelPlan
    engine: AimEngine
    scaled_object: KubernetesObject | None
    wake: list[KubernetesObject] = field(default_factory=list)


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
    router = _declare_router(shared, served[0].engine, served)
    if stack.settings.smoke_test:
        for model in served:
            # The model itself, then each of its LoRA adapters by name: the router must route every name it serves.
            for served_name in (model.spec.model, *model.spec.lora_modules):
                _smoke_test(shared, model, router, served_name)
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
    wake = _wake(shared, spec, planned, engine) if spec.scale_to_zero else []
    return ServedModel(spec, planned, engine, _scaled_object(shared.config, spec, planned, engine, addons, wake), wake)


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
            lora_modules=spec.lora_modules,
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


def _declare_router(shared: _Stack, key_owner: AimEngine, served: list[ServedModel]) -> ModelRouter:
    """The one endpoint: the stack's service type, port and client allow-lists, the models' API key. When a model
    scales to zero, static discovery of every model and a way to the interceptor (_static_routes)."""
    s = shared.config.settings
    backends, interceptor = _static_routes(s.namespace, served)
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
            static_backends=backends,
            interceptor=interceptor,
            depends_on=[key_owner.namespace],
        ),
        opts=shared.kubernetes,
    )


def _static_routes(namespace: str, served: list[ServedModel]) -> tuple[list[StaticBackend] | None, Interceptor | None]:
    """Nothing (Kubernetes discovery, as with no model at zero) unless some model scales to zero. Then every served
    name with its URL: a warm model's engine Service, a scale-to-zero model's wake hostname (the interceptor); and
    the interceptor the router reaches and that reaches those models' engines."""
    cold = [m.spec.name for m in served if m.spec.scale_to_zero]
    if not cold:
        return None, None
    backends = [
        StaticBackend(
            names=(m.spec.model, *m.spec.lora_modules),  # vLLM serves the model under its Hub id, adapters by name
            url=wake_url(namespace, m.spec.name) if m.spec.scale_to_zero else service_url(m.spec.name, namespace),
        )
        for m in served
    ]
    interceptor = Interceptor(
        namespace=KEDA_HTTP_ADDON.namespace,
        pod_labels=http_addon_interceptor_labels(KEDA_HTTP_ADDON.release_name),
        port=HTTP_ADDON_INTERCEPTOR_PORT,
        engines=tuple(cold),
    )
    return backends, interceptor


def _wake(shared: _Stack, spec: ModelSpec, planned: ModelPlan, engine: AimEngine) -> list[KubernetesObject]:
    """A scale-to-zero model's way in through the HTTP add-on: its wake Service (the hostname the router sends its
    requests to, a CNAME to the interceptor) and its InterceptorRoute from that hostname's OpenAI API to the model's
    Service, holding requests up to its cold start and counting them against the model's per-replica target."""
    s, addons, decision = shared.config.settings, shared.addons, planned.decision
    labels = wake_labels(spec.name)
    service = KubernetesObject(
        f"{spec.name}-wake-service",
        wake_service(namespace=s.namespace, model=spec.name, addon_namespace=KEDA_HTTP_ADDON.namespace, labels=labels),
        opts=pulumi.ResourceOptions(parent=engine, depends_on=[engine.namespace]),
    )
    route = interceptor_route(
        namespace=s.namespace,
        name=spec.name,  # the ScaledObject's trigger names the route by the model's name
        service=spec.name,  # the engine's API Service (EngineNames.workload)
        port=API_PORT,
        hosts=[wake_host(s.namespace, spec.name)],
        paths=[WAKE_PATH_PREFIX],
        target=target_concurrency(decision.estimate),
        startup_budget_seconds=startup_budget_seconds(decision),
        labels=labels,
    )
    # The CRD comes with the add-on's release.
    after: list[Any] = [addons.releases["keda_http"], engine.namespace, engine.service]
    declared = KubernetesObject(
        f"{spec.name}-interceptor-route", route, opts=pulumi.ResourceOptions(parent=engine, depends_on=after)
    )
    return [service, declared]


def _smoke_test(shared: _Stack, model: ServedModel, router: ModelRouter, served_name: str) -> SmokeTest:
    """One chat completion for `served_name` (the model's Hub id or one of its LoRA adapters) through the router, as
    clients reach it."""
    decision = model.plan.decision
    adapter = "" if served_name == model.spec.model else f"-lora-{served_name}"
    return SmokeTest(
        f"{model.spec.name}-smoke-test{adapter}",
        SmokeTestArgs(
            namespace=shared.config.settings.namespace,
            service=ROUTER_NAME,
            service_port=API_PORT,
            model_id=served_name,
            recipe_id=decision.recipe.id,
            decision_hash=decision_hash(decision, ""),
            image=shared.image,
            api_key_secret=router.api_key_secret_ref,
            kube_context=shared.config.kube_context,
            kubeconfig=shared.kubeconfig,
            # A scale-to-zero model is reached through its route: it must exist before the completion is sent.
            depends_on=[model.engine, *model.wake, router],
        ),
    )


def _scaled_object(
    stack: StackConfig,
    spec: ModelSpec,
    planned: ModelPlan,
    engine: AimEngine,
    addons: ClusterAddons,
    wake: list[KubernetesObject],
) -> KubernetesObject | None:
    """KEDA's ScaledObject for a model with replica bounds: between its min and the replicas whose GPUs the plan
    reserved, on the requests one replica sustains within its SLO (the performance model's target). A model that
    scales to zero also has the HTTP add-on's trigger, on its InterceptorRoute (in `wake`)."""
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
        scale_to_zero=spec.scale_to_zero,
        scaler_address=http_scaler_address(KEDA_HTTP_ADDON.namespace) if spec.scale_to_zero else None,
        labels=engine.labels,
    )
    # The CRD comes with the KEDA release; the Deployment it scales must exist first. A scale-to-zero model's trigger
    # asks the add-on's scaler about its route, so both come first too.
    after: list[Any] = [addons.releases["keda"], engine.deployment]
    if spec.scale_to_zero:
        after += [addons.releases["keda_http"], *wake]
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
            # Each adapter is a `model` clients may ask for, served by this model's engines.
            "loraAdapters": {name: source.model for name, source in m.spec.lora_modules.items()},
        }
        for m in models.models
    }


def served_names(models: ServedModels) -> dict[str, str]:
    """Every name clients may put in the OpenAI `model` field, keyed by what the verification commands call it:
    each model's Hub id under its name, each LoRA adapter under `<model>-lora-<adapter>`."""
    names: dict[str, str] = {}
    for m in models.models:
        names[m.spec.name] = m.spec.model
        names.update({f"{m.spec.name}-lora-{adapter}": adapter for adapter in m.spec.lora_modules})
    return names
