"""AimEngine: namespace, secrets, recipe ConfigMap, model cache, model download, the vLLM Deployment and Service.

The objects are built by the pure functions of aim_infra.stack.manifests (engine, engine_pod, sizing); this component
only declares them, in dependency order, with their options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi

from aim_infra.common.contract import API_PORT, METRICS_PORT
from aim_infra.planning.selection import Decision
from aim_infra.stack.components import api_proxy
from aim_infra.stack.components.kube import KubernetesObject
from aim_infra.stack.components.model_download import ModelDownload, ModelDownloadArgs
from aim_infra.stack.manifests import engine as objects
from aim_infra.stack.manifests.engine import API_KEY_DATA_KEY, HF_TOKEN_DATA_KEY, EngineNames, label_value
from aim_infra.stack.manifests.engine_pod import (
    GPU_TOLERATION,
    MODELS_MOUNT,
    cache_affinity,
    decision_hash,
    model_directory,
    pod_template,
)
from aim_infra.stack.manifests.sizing import (
    cache_quantity,
    download_timeout_seconds,
    rollout_timeout_seconds,
    startup_budget_seconds,
)
from aim_infra.stack.settings import LoraModule

#: Names other modules read from here: __main__.py (the ports, decision_hash, startup_budget_seconds),
#: stack/decide.py (cache_quantity) and tests/planning/monitoring/support.py (label_value, startup_budget_seconds).
__all__ = [
    "API_PORT",
    "METRICS_PORT",
    "AimEngine",
    "AimEngineArgs",
    "cache_quantity",
    "decision_hash",
    "label_value",
    "startup_budget_seconds",
]


@dataclass(frozen=True)
class AimEngineArgs:
    decision: Decision
    image: pulumi.Input[str]
    namespace: str
    model_id: str
    model_revision: str | None = None
    replicas: int = 1
    service_type: str = "NodePort"
    node_port: int = 0
    cache_size: str | None = None  # a quantity; None = from the model's size
    storage_class: pulumi.Input[str] | None = None
    cache_access_mode: str = "ReadWriteOnce"
    retain_model_cache: bool = True
    render_group_id: int = 110
    require_gpu_labels: bool = False
    hf_token: pulumi.Input[str] | None = None
    #: None = generate one (pulumi_random), kept in state as a secret; the API is never served without a key.
    api_key: pulumi.Input[str] | None = None
    api_proxy_image: str = api_proxy.DEFAULT_PROXY_IMAGE
    #: Client networks a LoadBalancer admits (spec.loadBalancerSourceRanges); ignored for other service types.
    api_allowed_cidrs: list[str] = field(default_factory=list)
    #: The namespace object another engine declared (several models in one namespace): this engine then declares
    #: none of its own; None = declare it (one model per stack).
    shared_namespace: KubernetesObject | None = None
    #: KEDA scales the Deployment (a ScaledObject targets it): `replicas` is only its first size, and Pulumi leaves
    #: spec.replicas to the autoscaler afterwards instead of resetting it on every `up`.
    autoscaled: bool = False
    #: LoRA adapters (name → Hub repository) the engine loads at start: each is downloaded into the model's cache
    #: volume by a Job of its own before the Deployment rolls (the decision already carries their vLLM flags).
    lora_modules: Mapping[str, LoraModule] = field(default_factory=dict)
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class AimEngine(pulumi.ComponentResource):
    """The inference workload for one decision. The Kubernetes provider comes in through `opts`."""

    namespace: KubernetesObject
    deployment: KubernetesObject
    service: KubernetesObject
    config_map: KubernetesObject
    model_cache: KubernetesObject
    hf_token_secret: KubernetesObject | None
    disruption_budget: KubernetesObject | None
    selector_labels: dict[str, str]
    labels: dict[str, str]
    api_key_secret_ref: str
    #: The API key (configured or generated), a secret Output: export it only as a secret.
    api_key: pulumi.Output[str]
    model_download: ModelDownload
    adapter_downloads: list[ModelDownload]

    def __init__(self, name: str, args: AimEngineArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:AimEngine", name, None, opts)
        decision, names = args.decision, EngineNames(name, args.namespace)
        self.selector_labels = objects.selector_labels(name)
        # Recipe, model and GPU are labels for people and dashboards, never part of the selector.
        self.labels = labels = objects.engine_labels(name, decision, args.model_id)
        # Deleting a namespace deletes everything in it, so a kept model cache needs its namespace kept too; Pulumi
        # still deletes every other object in it one by one, and the provider adopts both on the next up.
        retained = pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_model_cache)
        if args.shared_namespace is None:
            self.namespace = KubernetesObject(f"{name}-namespace", objects.namespace_manifest(names), opts=retained)
        else:
            self.namespace = args.shared_namespace
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])
        self.service_account = KubernetesObject(f"{name}-sa", objects.service_account(names, labels), opts=in_ns)
        hf_token = objects.secret(names, labels, names.hf_token_secret, HF_TOKEN_DATA_KEY, args.hf_token)
        self.hf_token_secret = self._optional(names.hf_token_secret, hf_token, in_ns)
        self.api_key = pulumi.Output.secret(self._api_key(name, args.api_key))
        api_key = objects.secret(names, labels, names.api_key_secret, API_KEY_DATA_KEY, self.api_key)
        self.api_key_secret = self._optional(names.api_key_secret, api_key, in_ns)
        #: "<Secret>:<data key>" of the API key, for steps that read it from the cluster (the smoke test).
        self.api_key_secret_ref = f"{names.api_key_secret}:{API_KEY_DATA_KEY}"
        self.config_map = KubernetesObject(
            names.recipe_config, objects.recipe_config_map(names, labels, decision), opts=in_ns
        )
        cache = objects.model_cache_claim(
            names,
            labels,
            decision,
            access_mode=args.cache_access_mode,
            size=args.cache_size,
            storage_class=args.storage_class,
        )
        after_namespace = [self.namespace, *args.depends_on]
        cache_opts = pulumi.ResourceOptions(
            parent=self, depends_on=after_namespace, retain_on_delete=args.retain_model_cache
        )
        self.model_cache = KubernetesObject(names.model_cache, cache, opts=cache_opts)
        # The model download runs as a Job of its own: it is the only pod with egress (the Hub), the engine has none.
        download = self._download_args(names, args)
        self.model_download = ModelDownload(names.download, download, opts=pulumi.ResourceOptions(parent=self))
        self.adapter_downloads = self._adapter_downloads(names, args)
        proxy_config = api_proxy.proxy_config(api_port=API_PORT, metrics_port=METRICS_PORT)
        self.proxy_config_map = KubernetesObject(
            names.proxy_config, objects.proxy_config_map(names, labels, proxy_config), opts=in_ns
        )
        self.deployment = self._deployment(names, args, proxy_config)
        self._services(names, args, in_ns)
        self.register_outputs({"namespace": args.namespace, "deployment": name, "service": name})

    def _services(self, names: EngineNames, args: AimEngineArgs, in_ns: pulumi.ResourceOptions) -> None:
        """The API Service (the stack's service type), the metrics Service and, with several replicas, the PDB."""
        name, labels = names.instance, self.labels
        service = objects.api_service(
            names,
            labels,
            service_type=args.service_type,
            node_port=args.node_port,
            allowed_cidrs=args.api_allowed_cidrs,
        )
        self.service = KubernetesObject(f"{name}-service", service, opts=in_ns)
        metrics = objects.metrics_service(names, labels)
        self.metrics_service = KubernetesObject(f"{name}-metrics-service", metrics, opts=in_ns)
        budget = objects.disruption_budget(names, labels, args.replicas)
        self.disruption_budget = self._optional(f"{name}-pdb", budget, in_ns)

    @staticmethod
    def _optional(
        resource_name: str, manifest: dict[str, Any] | None, opts: pulumi.ResourceOptions
    ) -> KubernetesObject | None:
        """A child object a builder may leave out (None: no such object for these inputs)."""
        return None if manifest is None else KubernetesObject(resource_name, manifest, opts=opts)

    def _api_key(self, name: str, configured: pulumi.Input[str] | None) -> pulumi.Input[str]:
        """The configured key, or one generated once and kept in Pulumi state as a secret (closed by default)."""
        if configured is not None:
            return configured
        import pulumi_random  # only needed (and imported) when the key is generated

        return pulumi_random.RandomPassword(
            f"{name}-api-key-value", length=40, special=False, opts=pulumi.ResourceOptions(parent=self)
        ).result

    def _adapter_downloads(self, names: EngineNames, args: AimEngineArgs) -> list[ModelDownload]:
        """Adapters land next to the model on the same volume, each by a Job of its own (a few MB to a few hundred),
        with the model download's pod labels: its NetworkPolicy covers them."""
        return [
            ModelDownload(
                f"{names.download}-lora-{adapter}",
                replace(
                    self._download_args(names, args, source.model, source.revision_or_none), instance=names.download
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for adapter, source in args.lora_modules.items()
        ]

    def _download_args(
        self, names: EngineNames, args: AimEngineArgs, repo: str | None = None, revision: str | None = None
    ) -> ModelDownloadArgs:
        """The download Job's inputs: the engine's image, cache volume, service account and node (RWO affinity).
        `repo` (and `revision`): a LoRA adapter's repository instead of the model."""
        model_id, model_revision = (repo, revision) if repo else (args.model_id, args.model_revision)
        return ModelDownloadArgs(
            namespace=args.namespace,
            image=args.image,
            model_id=model_id,
            model_revision=model_revision,
            model_dir=model_directory(model_id, model_revision),
            models_mount=MODELS_MOUNT,
            pvc_name=names.model_cache,
            service_account=names.workload,
            timeout_seconds=download_timeout_seconds(args.decision),
            hf_token_secret=names.hf_token_secret if self.hf_token_secret is not None else None,
            affinity=cache_affinity(names.model_cache, args.cache_access_mode),
            tolerations=[GPU_TOLERATION],
            depends_on=[
                self.model_cache,
                self.service_account,
                *([self.hf_token_secret] if self.hf_token_secret is not None else []),
                *args.depends_on,
            ],
        )

    def _deployment(self, names: EngineNames, args: AimEngineArgs, proxy_config: str) -> KubernetesObject:
        """The Deployment, after everything its pods mount or wait for; `pulumi up` waits for its rollout."""
        decision = args.decision
        # The pod template waits for the image: its decision-hash annotation is computed from the image reference.
        template = pulumi.Output.from_input(args.image).apply(
            lambda image: pod_template(
                names,
                self.labels,
                decision,
                image=image,
                model_id=args.model_id,
                model_revision=args.model_revision,
                proxy_image=args.api_proxy_image,
                proxy_config=proxy_config,
                render_group_id=args.render_group_id,
                require_gpu_labels=args.require_gpu_labels,
                cache_access_mode=args.cache_access_mode,
            )
        )
        waits_for = [
            self.config_map,
            self.proxy_config_map,
            self.model_cache,
            self.model_download,
            *self.adapter_downloads,
            self.service_account,
        ]
        rollout = f"{rollout_timeout_seconds(decision, args.replicas)}s"
        return KubernetesObject(
            f"{names.instance}-deployment",
            objects.deployment(names, self.labels, decision, replicas=args.replicas, template=template),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*waits_for, *args.depends_on],
                custom_timeouts=pulumi.CustomTimeouts(create=rollout, update=rollout),
                ignore_changes=["spec.replicas"] if args.autoscaled else None,
            ),
        )
