"""Pulumi program of the AIM Engine stack: settings → recipe decision → components → exports."""

from pathlib import Path

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s

from aim_infra.common.errors import AimError
from aim_infra.planning.explain import explain_decision
from aim_infra.stack.components.addons import LOCAL_PATH_DATA_DIR, ClusterAddons, ClusterAddonsArgs
from aim_infra.stack.components.benchmark import LiveBenchmark, LiveBenchmarkArgs
from aim_infra.stack.components.bootstrap import ClusterBootstrap, ClusterBootstrapArgs
from aim_infra.stack.components.engine import (
    API_PORT,
    METRICS_PORT,
    AimEngine,
    AimEngineArgs,
    decision_hash,
    startup_budget_seconds,
)
from aim_infra.stack.components.gpu_gate import GpuGate, GpuGateArgs
from aim_infra.stack.components.guardrails import RecipeAdmission, RecipeAdmissionArgs, image_repository
from aim_infra.stack.components.image import AimImage, AimImageArgs
from aim_infra.stack.components.monitoring import Monitoring, MonitoringArgs
from aim_infra.stack.components.network_policy import EngineNetworkPolicy, EngineNetworkPolicyArgs
from aim_infra.stack.components.ownership_gate import OwnershipGate, OwnershipGateArgs
from aim_infra.stack.components.registry import LocalRegistry, LocalRegistryArgs
from aim_infra.stack.components.smoke_test import SmokeTest, SmokeTestArgs
from aim_infra.stack.decide import ROUTER_NAME, alert_thresholds, decide, decide_models, replica_count
from aim_infra.stack.multi_model import autoscales, declare_models, model_exports, served_names
from aim_infra.stack.outputs import (
    decision_log_lines,
    endpoint_url,
    joint_plan_log_lines,
    lifecycle_log_lines,
    router_verification_commands,
    verification_commands,
)
from aim_infra.stack.settings import read_stack_config

ENGINE = "aim-engine"

try:  # every input problem stops here, before any resource, as one line (RunError prints no traceback)
    stack = read_stack_config()
    s = stack.settings
    if s.multi_model:  # aim:models: every model's recipe and replicas planned together on the nodes' GPUs
        joint, gpu_labels_seen = decide_models(s, stack.kube_context)
    else:
        decision, gpu_labels_seen = decide(s, stack.kube_context)
        replicas, decision = replica_count(s, decision)
except AimError as error:
    raise pulumi.RunError(str(error)) from None
if s.multi_model:
    by_name = {planned.name: planned for planned in joint.models}
    scaled = [spec.name for spec in s.models if autoscales(spec, by_name[spec.name])]
    plan_lines = joint_plan_log_lines(joint, autoscaled=scaled)
else:
    plan_lines = decision_log_lines(decision, replicas)
for line in [*plan_lines, *lifecycle_log_lines(stack)]:
    pulumi.log.info(line)

cluster = (
    ClusterBootstrap(
        "cluster",
        ClusterBootstrapArgs(
            pod_cidr=s.pod_cidr,
            kubeconfig_path=str(stack.kubeconfig_path),
            registry_port=s.registry_port if s.pushes_to_local_registry else None,
            reset_on_destroy=s.resets_cluster,
            remove_mirror_on_destroy=not s.keeps_registry_data,
            local_path_dir=LOCAL_PATH_DATA_DIR if s.local_path else None,
            local_path_namespace=s.namespace if s.local_path else None,
        ),
    )
    if s.cluster_bootstrap == "kubeadm"
    else None
)
kubeconfig = cluster.kubeconfig if cluster else None

# upsert: a namespace and model cache kept by `pulumi destroy` (aim:cleanup below all) are taken back by the next up
# instead of failing it with AlreadyExists. Only ever our own: the ownership gate runs before any object and stops
# `pulumi up` when one of the objects declared below exists without this stack's ownership annotation.
ownership = OwnershipGate(
    "ownership",
    OwnershipGateArgs(
        kube_context=stack.kube_context, kubeconfig=kubeconfig, depends_on=[cluster] if cluster is not None else []
    ),
)
kubernetes = pulumi.ResourceOptions(
    provider=k8s.Provider("kubernetes", context=stack.kube_context, kubeconfig=kubeconfig, upsert_existing_objects=True)
)
addons = ClusterAddons(
    "addons",
    ClusterAddonsArgs.from_settings(s, grafana_admin_password=stack.grafana_admin_password),
    opts=kubernetes,
)

image: pulumi.Input[str] = s.image
if s.build_image:
    docker_host = pulumi.ResourceOptions(provider=docker.Provider("docker"))
    registry = (
        LocalRegistry(
            "aim-registry",
            LocalRegistryArgs(
                port=s.registry_port, retain_data=s.keeps_registry_data, keep_image=s.keeps_registry_data
            ),
            docker_host,
        )
        if s.registry
        else None
    )
    context = Path(__file__).resolve().parent
    built = AimImage(
        "aim-image",
        AimImageArgs(
            s.image_repository,
            s.base_image,
            context,
            [registry] if registry else [],
            remove_on_destroy=s.removes_built_images,
            registry_container=registry.container_name if registry else None,
            owns_repository=s.owns_image_repository,
        ),
        opts=docker_host,
    )
    image = built.reference

# The admission policy goes first, so it already guards the engine's very first rollout; its binding selects the
# namespace by name, which need not exist yet.
admission = (
    RecipeAdmission(
        "recipe-admission",
        RecipeAdmissionArgs(
            namespace=s.namespace,
            # The repository the stack pushes to, or the one the configured (digest-pinned) image comes from.
            image_repository=s.image_repository if s.build_image else image_repository(s.image),
            allowed_images=[s.api_proxy_image],  # the API proxy sidecar, exactly as pinned
        ),
        opts=kubernetes,
    )
    if s.admission_policy
    else None
)

if s.multi_model:
    served = declare_models(
        stack,
        joint,
        gpu_labels_seen=gpu_labels_seen,
        image=image,
        addons=addons,
        admission=admission,
        kubeconfig=kubeconfig,
        kubernetes=kubernetes,
    )
    ownership.seal()  # every Kubernetes object is declared above: the gate's list is complete
    pulumi.export("models", model_exports(served))
    pulumi.export("namespace", s.namespace)
    pulumi.export("image", image)
    pulumi.export("apiKey", pulumi.Output.secret(served.api_key))  # `pulumi stack output apiKey --show-secrets`
    pulumi.export("endpoint", endpoint_url(s.service_type, s.node_port, ROUTER_NAME, s.namespace))
    pulumi.export(
        "verify",
        router_verification_commands(
            namespace=s.namespace,
            router=ROUTER_NAME,
            models=served_names(served),
            autoscaled=any(autoscales(m.spec, m.plan) for m in served.models),
            service_type=s.service_type,
            node_port=s.node_port,
            kubeconfig=stack.kubeconfig_path,
        ),
    )
else:
    # Fails `pulumi up` within minutes, saying what the nodes offer, when they cannot give every replica its GPUs.
    gpus = GpuGate(
        "gpu-ready",
        GpuGateArgs(
            gpu=decision.gpu.name,
            count=decision.recipe.gpu_count,
            replicas=replicas,
            one_node=s.cache_access_mode == "ReadWriteOnce",
            kube_context=stack.kube_context,
            kubeconfig=kubeconfig,
            depends_on=addons.ready,
        ),
    )

    engine = AimEngine(
        ENGINE,
        AimEngineArgs(
            decision=decision,
            image=image,
            namespace=s.namespace,
            model_id=s.model,
            model_revision=s.model_revision_or_none,
            replicas=replicas,
            service_type=s.service_type,
            node_port=s.node_port,
            cache_size=None if s.cache_size == "auto" else s.cache_size,
            storage_class=s.storage_class or addons.storage_class_name,
            cache_access_mode=s.cache_access_mode,
            retain_model_cache=s.keeps_model_cache,
            render_group_id=s.render_group_id,
            require_gpu_labels=gpu_labels_seen or s.amd_gpu_plugin,
            hf_token=stack.hf_token,
            api_key=stack.api_key,  # None: the engine generates one
            api_proxy_image=s.api_proxy_image,
            api_allowed_cidrs=s.api_allowed_cidrs,
            depends_on=[*addons.ready, gpus, *([admission] if admission else [])],
        ),
        opts=kubernetes,
    )

    EngineNetworkPolicy(
        "aim-network",
        EngineNetworkPolicyArgs(
            namespace=s.namespace,
            pod_selector=engine.selector_labels,
            api_port=API_PORT,
            metrics_port=METRICS_PORT,
            download_pod_selector=engine.model_download.pod_selector,
            cluster_cidrs=[s.pod_cidr],
            allowed_cidrs=s.api_allowed_cidrs,
            allowed_namespaces=s.api_allowed_namespaces,
            monitoring_namespace=(addons.monitoring_namespace or "monitoring") if s.monitoring else None,
            air_gapped=s.air_gapped,
            depends_on=[engine.namespace],
        ),
        opts=kubernetes,
    )
    if s.monitoring:
        Monitoring(
            "monitoring",
            MonitoringArgs(
                namespace=s.namespace,
                engine_name=ENGINE,
                selector_labels=engine.selector_labels,
                monitoring_namespace=addons.monitoring_namespace or "monitoring",
                release_name=addons.monitoring_release_name or "kube-prometheus-stack",
                decision_summary=decision.summary(),
                replicas=replicas,
                startup_budget_seconds=startup_budget_seconds(decision),
                thresholds=alert_thresholds(s, decision),
                depends_on=[addons.releases["monitoring"], engine.namespace],
            ),
            opts=kubernetes,
        )

    smoke = None
    if s.smoke_test:
        smoke = SmokeTest(
            "smoke-test",
            SmokeTestArgs(
                namespace=s.namespace,
                service=ENGINE,
                service_port=API_PORT,
                model_id=s.model,
                recipe_id=decision.recipe.id,
                decision_hash=decision_hash(decision, ""),
                image=image,
                api_key_secret=engine.api_key_secret_ref,
                kube_context=stack.kube_context,
                kubeconfig=kubeconfig,
                depends_on=[engine],
            ),
        )

    # Measure the live endpoint at the workload the estimate was made for, and export measured beside estimated.
    benchmark = None
    if s.benchmark:
        estimate = decision.summary()["estimate"]
        benchmark = LiveBenchmark(
            "benchmark",
            LiveBenchmarkArgs(
                namespace=s.namespace,
                service=ENGINE,
                service_port=API_PORT,
                model_id=s.model,
                model_revision=s.model_revision_or_none,
                estimate=estimate,
                recipe_id=decision.recipe.id,
                decision_hash=decision_hash(decision, ""),
                image=image,
                workload=estimate["workload"],
                api_key_secret=engine.api_key_secret_ref,
                hf_token_secret=f"{ENGINE}-hf-token:HF_TOKEN" if engine.hf_token_secret else None,
                kube_context=stack.kube_context,
                kubeconfig=kubeconfig,
                depends_on=[engine, *([smoke] if smoke else [])],
            ),
        )

    ownership.seal()  # every Kubernetes object is declared above: the gate's list is complete

    pulumi.export("recipe", {k: v for k, v in decision.summary().items() if k != "candidates"})
    pulumi.export("recipeExplanation", explain_decision(decision))
    pulumi.export("vllmArgs", decision.vllm_args)
    pulumi.export("namespace", s.namespace)
    pulumi.export("image", image)
    pulumi.export("apiKey", pulumi.Output.secret(engine.api_key))  # `pulumi stack output apiKey --show-secrets`
    pulumi.export("endpoint", endpoint_url(s.service_type, s.node_port, ENGINE, s.namespace))
    pulumi.export(
        "verify",
        verification_commands(
            namespace=s.namespace,
            name=ENGINE,
            model_id=s.model,
            service_type=s.service_type,
            node_port=s.node_port,
            api_key=True,  # always one: configured or generated (stack output apiKey)
            download_job=engine.model_download.job_name,
            monitoring=s.monitoring,
            kubeconfig=stack.kubeconfig_path,
        ),
    )
    if benchmark is not None:
        pulumi.export("benchmark", benchmark.result)
