"""AimEngine: namespace, secrets, recipe ConfigMap, model cache, model download, the vLLM Deployment and Service."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml

from aim_infra.planning.explain import explain_decision
from aim_infra.planning.selection import Decision
from aim_infra.stack.components import api_proxy
from aim_infra.stack.components.kube import KubernetesObject
from aim_infra.stack.components.model_download import MODEL_CACHE_LABEL, ModelDownload, ModelDownloadArgs

GIB = 2**30
API_PORT = 8000  # the API proxy's port (the Service's); vLLM itself listens on 127.0.0.1:api_proxy.VLLM_INTERNAL_PORT
METRICS_PORT = api_proxy.METRICS_PORT  # the proxy's /metrics-only listener (named `metrics`), for Prometheus
MODELS_MOUNT = "/models"
#: Compile and kernel caches (vLLM, torch.compile/Inductor, Triton, MIOpen) on the model cache volume, one folder per
#: GPU type, mounted read-write here while the weights stay read-only under MODELS_MOUNT (see `compile_cache_env`).
COMPILE_CACHE_MOUNT = "/compile-cache"
COMPILE_CACHE_DIR = ".compile-cache"
VIDEO_GROUP_ID = 44  # the `video` group owns /dev/kfd on ROCm hosts
GPU_TOLERATION = {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
# Planning assumptions for time budgets (documented in README "Timeouts").
LOAD_BYTES_PER_SECOND = 200e6  # weights read from the cache volume into GPU memory
DOWNLOAD_BYTES_PER_SECOND = 50e6  # a conservative Hub download rate
ENGINE_STARTUP_SECONDS = 600  # compile, HIP graph capture, AITER warm-up
PROBE_PERIOD_SECONDS = 10
VLLM_CONTAINER = "vllm"  # the engine container's name
#: Label on every recipe-built object; the recipe admission policy checks only Deployments that carry it.
RECIPE_LABEL = "aim.amd.com/recipe"
#: The decision's layout on the Deployment itself, so the admission policy can compare the spec against it.
GPU_COUNT_ANNOTATION = "aim.amd.com/gpu-count"
TENSOR_PARALLEL_ANNOTATION = "aim.amd.com/tensor-parallel-size"
PIPELINE_PARALLEL_ANNOTATION = "aim.amd.com/pipeline-parallel-size"
#: Pod Security Admission for the AIM namespace: enforce baseline (the engine meets it), warn and audit against
#: restricted, which the engine does not meet only because it runs as root (see `_pod_template`).
POD_SECURITY_VERSION = "v1.30"
POD_SECURITY_LABELS = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/enforce-version": POD_SECURITY_VERSION,
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": POD_SECURITY_VERSION,
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/audit-version": POD_SECURITY_VERSION,
}


#: The data key of the API key Secret: vLLM reads the key from the environment variable of this name.
API_KEY_DATA_KEY = "VLLM_API_KEY"


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
    depends_on: list[pulumi.Resource] = field(default_factory=list)


def label_value(text: str) -> str:
    """A Kubernetes label value (≤ 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:63]
    return cleaned.strip("_.-") or "none"


def model_directory(model_id: str, revision: str | None) -> str:
    """Where the model lives in the cache volume: one folder per model and revision."""
    folder = model_id.replace("/", "--")
    return f"{MODELS_MOUNT}/{folder}" + (f"@{label_value(revision)}" if revision else "")


def cache_quantity(decision: Decision) -> str:
    """Checkpoint bytes plus 15 % and 10 GiB of headroom (tokenizer, partial downloads, a second revision's delta)."""
    return f"{math.ceil(decision.model.checkpoint_bytes * 1.15 / GIB) + 10}Gi"


def startup_budget_seconds(decision: Decision) -> int:
    """How long vLLM may take from container start to a healthy /health: weights load plus engine start-up."""
    load = decision.model.checkpoint_bytes / LOAD_BYTES_PER_SECOND
    return int(math.ceil((ENGINE_STARTUP_SECONDS + load) / PROBE_PERIOD_SECONDS) * PROBE_PERIOD_SECONDS)


#: Scheduling and image pull of one new pod (a ROCm vLLM image is tens of GB on a node that lacks it).
POD_START_SLACK_SECONDS = 600


def rolls_pod_by_pod(replicas: int) -> bool:
    """Several replicas roll one pod at a time (the others keep serving); a single replica is replaced in place."""
    return replicas > 1


def deployment_strategy(replicas: int) -> dict[str, Any]:
    """RollingUpdate with maxSurge 0 and maxUnavailable 1 for several replicas: a pod's GPUs are freed before its
    successor asks for them, so a rollout needs no spare GPUs and never leaves fewer than replicas - 1 serving (a
    failed new pod stalls the rollout there). One replica keeps Recreate: a surge pod would need a second set of GPUs
    the node may not have, so a change to the pod means downtime for one start-up budget."""
    if rolls_pod_by_pod(replicas):
        return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    return {"type": "Recreate"}


def progress_deadline_seconds(decision: Decision) -> int:
    """The Deployment's progressDeadlineSeconds: one pod's start-up budget plus scheduling and pull. Kubernetes' default
    (600 s) is shorter than most start-up budgets, so a healthy rollout would be reported as failed
    (ProgressDeadlineExceeded, which also ends Pulumi's wait); every pod that becomes ready restarts the clock."""
    return startup_budget_seconds(decision) + POD_START_SLACK_SECONDS


def rollout_timeout_seconds(decision: Decision, replicas: int = 1) -> int:
    """What `pulumi up` waits for the Deployment: the download Job has already finished (the Deployment depends on
    it); a rolling update replaces the pods one after another, so each replica gets one progress deadline."""
    steps = replicas if rolls_pod_by_pod(replicas) else 1
    return steps * progress_deadline_seconds(decision)


def cache_affinity(pvc_name: str, access_mode: str) -> dict[str, Any] | None:
    """For a ReadWriteOnce model cache: a required podAffinity that keeps every pod mounting it (labelled
    `aim.amd.com/model-cache: <pvc>`: the engine pods and the download Job's) on one node, where the volume can be
    attached. The first such pod matches its own term, so it may land anywhere. Other access modes need none:
    ReadWriteMany/ReadOnlyMany attach anywhere, and ReadWriteOncePod admits one pod at a time (settings refuse it with
    several replicas)."""
    if access_mode != "ReadWriteOnce":
        return None
    term = {"labelSelector": {"matchLabels": {MODEL_CACHE_LABEL: pvc_name}}, "topologyKey": "kubernetes.io/hostname"}
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def compile_cache_env() -> list[dict[str, str]]:
    """Point every compile/kernel cache the engine writes at COMPILE_CACHE_MOUNT, so a restarted pod loads what an
    earlier one compiled: vLLM's torch.compile artifacts (VLLM_CACHE_ROOT/torch_compile_cache), Inductor's and Triton's
    kernels, MIOpen's tuning database and kernel binaries. Each library keys its entries by its own version and inputs,
    so a new image never reads a stale entry. AITER is left alone on purpose: with AITER_JIT_DIR set it imports its
    modules only from there, so the modules the image ships prebuilt in its package directory would all be rebuilt."""
    return [
        {"name": "VLLM_CACHE_ROOT", "value": f"{COMPILE_CACHE_MOUNT}/vllm"},
        {"name": "TORCHINDUCTOR_CACHE_DIR", "value": f"{COMPILE_CACHE_MOUNT}/inductor"},
        {"name": "TRITON_CACHE_DIR", "value": f"{COMPILE_CACHE_MOUNT}/triton"},
        {"name": "MIOPEN_USER_DB_PATH", "value": f"{COMPILE_CACHE_MOUNT}/miopen/db"},
        {"name": "MIOPEN_CUSTOM_CACHE_DIR", "value": f"{COMPILE_CACHE_MOUNT}/miopen/cache"},
    ]


def shm_gib(decision: Decision) -> int:
    """/dev/shm for RCCL and vLLM's worker IPC: grows with the GPUs one replica spans."""
    return max(8, 4 * decision.recipe.gpu_count)


def pod_resources(decision: Decision) -> dict[str, dict[str, str]]:
    """CPU and memory sized from the layout: host memory stages weights while loading and backs /dev/shm."""
    gpus = decision.recipe.gpu_count
    cpu_request = 4 + 2 * gpus
    memory_request = 16 + 8 * gpus + shm_gib(decision)
    return {
        "requests": {"cpu": str(cpu_request), "memory": f"{memory_request}Gi", "amd.com/gpu": str(gpus)},
        "limits": {"cpu": str(2 * cpu_request), "memory": f"{2 * memory_request}Gi", "amd.com/gpu": str(gpus)},
    }


def download_timeout_seconds(decision: Decision) -> int:
    """What `pulumi up` waits for the model download Job: the checkpoint at a conservative rate plus 10 minutes."""
    return int(decision.model.checkpoint_bytes / DOWNLOAD_BYTES_PER_SECOND + 600)


def decision_hash(decision: Decision, image: str) -> str:
    summary = {k: v for k, v in decision.summary().items() if k not in ("candidates", "notes", "estimate")}
    return hashlib.sha256(json.dumps([summary, image], sort_keys=True).encode()).hexdigest()[:16]


class AimEngine(pulumi.ComponentResource):
    """The inference workload for one decision. The Kubernetes provider comes in through `opts`."""

    namespace: KubernetesObject
    deployment: KubernetesObject
    service: KubernetesObject
    config_map: KubernetesObject
    model_cache: KubernetesObject
    selector_labels: dict[str, str]
    labels: dict[str, str]
    api_key_secret_ref: str
    #: The API key (configured or generated), a secret Output: export it only as a secret.
    api_key: pulumi.Output[str]
    model_download: ModelDownload

    def __init__(self, name: str, args: AimEngineArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:AimEngine", name, None, opts)
        decision, recipe = args.decision, args.decision.recipe
        ns = args.namespace
        self.selector_labels = {"app.kubernetes.io/name": "aim-engine", "app.kubernetes.io/instance": name}
        # Recipe, model and GPU are labels for people and dashboards, never part of the selector (a changed selector
        # would replace the Deployment).
        self.labels = {
            **self.selector_labels,
            "app.kubernetes.io/component": "inference",
            "app.kubernetes.io/part-of": "aim",
            "app.kubernetes.io/managed-by": "pulumi",
            RECIPE_LABEL: label_value(recipe.id),
            "aim.amd.com/model": label_value(args.model_id),
            "aim.amd.com/gpu": decision.gpu.name,
        }
        self.namespace = KubernetesObject(
            f"{name}-namespace",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "aim", **POD_SECURITY_LABELS}},
            },
            # Deleting a namespace deletes everything in it, so a kept model cache needs its namespace kept too;
            # Pulumi still deletes every other object in it one by one, and the provider adopts both on the next up.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_model_cache),
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])

        # No Role or RoleBinding, on purpose: neither the downloader nor vLLM talks to the Kubernetes API (the recipe
        # reaches the pod as arguments and environment, the token as a Secret reference), so the service account has
        # no permissions and its token is never mounted.
        self.service_account = KubernetesObject(
            f"{name}-sa",
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": ns, "labels": self.labels},
                "automountServiceAccountToken": False,
            },
            opts=in_ns,
        )
        self.hf_token_secret = self._secret(name, "hf-token", "HF_TOKEN", args.hf_token, ns, in_ns)
        api_key = args.api_key
        if api_key is None:  # closed by default: a key generated once and kept in Pulumi state as a secret
            import pulumi_random  # only needed (and imported) when the key is generated

            api_key = pulumi_random.RandomPassword(
                f"{name}-api-key-value", length=40, special=False, opts=pulumi.ResourceOptions(parent=self)
            ).result
        self.api_key = pulumi.Output.secret(api_key)
        self.api_key_secret = self._secret(name, "api-key", API_KEY_DATA_KEY, self.api_key, ns, in_ns)
        #: "<Secret>:<data key>" of the API key, for steps that read it from the cluster (the smoke test).
        self.api_key_secret_ref = f"{name}-api-key:{API_KEY_DATA_KEY}"

        self.config_map = KubernetesObject(
            f"{name}-recipe",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{name}-recipe", "namespace": ns, "labels": self.labels},
                "data": {
                    "recipe.yaml": yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False),
                    "decision.json": json.dumps(decision.summary(), indent=2, sort_keys=True),
                    "explanation.txt": explain_decision(decision),
                },
            },
            opts=in_ns,
        )

        self.model_cache = KubernetesObject(
            f"{name}-model-cache",
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": f"{name}-model-cache",
                    "namespace": ns,
                    "labels": self.labels,
                    # WaitForFirstConsumer classes bind only when the pod is scheduled: waiting here would deadlock.
                    "annotations": SKIP_AWAIT,
                },
                "spec": {
                    "accessModes": [args.cache_access_mode],
                    "resources": {"requests": {"storage": args.cache_size or cache_quantity(decision)}},
                    **({"storageClassName": args.storage_class} if args.storage_class else {}),
                },
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.namespace, *args.depends_on], retain_on_delete=args.retain_model_cache
            ),
        )

        model_dir = model_directory(args.model_id, args.model_revision)
        # The model download runs as a Job of its own: it is the only pod with egress (the Hub), the engine has none.
        self.model_download = ModelDownload(
            f"{name}-download",
            ModelDownloadArgs(
                namespace=ns,
                image=args.image,
                model_id=args.model_id,
                model_revision=args.model_revision,
                model_dir=model_dir,
                models_mount=MODELS_MOUNT,
                pvc_name=f"{name}-model-cache",
                service_account=name,
                timeout_seconds=download_timeout_seconds(decision),
                hf_token_secret=f"{name}-hf-token" if self.hf_token_secret is not None else None,
                affinity=cache_affinity(f"{name}-model-cache", args.cache_access_mode),
                tolerations=[GPU_TOLERATION],
                depends_on=[
                    self.model_cache,
                    self.service_account,
                    *([self.hf_token_secret] if self.hf_token_secret is not None else []),
                    *args.depends_on,
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        proxy_conf = api_proxy.proxy_config(api_port=API_PORT, metrics_port=METRICS_PORT)
        self.proxy_config_map = KubernetesObject(
            f"{name}-api-proxy",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{name}-api-proxy", "namespace": ns, "labels": self.labels},
                "data": {api_proxy.CONFIG_FILE: proxy_conf},
            },
            opts=in_ns,
        )
        self.deployment = KubernetesObject(
            f"{name}-deployment",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": self.labels,
                    # What the recipe admission policy compares the container spec against.
                    "annotations": {
                        GPU_COUNT_ANNOTATION: str(recipe.gpu_count),
                        TENSOR_PARALLEL_ANNOTATION: str(recipe.tensor_parallel_size),
                        PIPELINE_PARALLEL_ANNOTATION: str(recipe.pipeline_parallel_size),
                    },
                },
                "spec": {
                    "replicas": args.replicas,
                    "strategy": deployment_strategy(args.replicas),
                    "progressDeadlineSeconds": progress_deadline_seconds(decision),
                    "selector": {"matchLabels": self.selector_labels},
                    "template": pulumi.Output.from_input(args.image).apply(
                        lambda image: self._pod_template(name, args, model_dir, image, proxy_conf)
                    ),
                },
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    self.config_map,
                    self.proxy_config_map,
                    self.model_cache,
                    self.model_download,
                    self.service_account,
                    *args.depends_on,
                ],
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{rollout_timeout_seconds(decision, args.replicas)}s",
                    update=f"{rollout_timeout_seconds(decision, args.replicas)}s",
                ),
            ),
        )

        service_port: dict[str, Any] = {"name": "http", "port": API_PORT, "targetPort": "http", "protocol": "TCP"}
        if args.service_type == "NodePort" and args.node_port:
            service_port["nodePort"] = args.node_port
        service_spec: dict[str, Any] = {
            "type": args.service_type,
            "selector": self.selector_labels,
            "ports": [service_port],
        }
        if args.service_type == "LoadBalancer":
            # The cloud load balancer drops other sources before they reach a node (settings refuse 0.0.0.0/0 here).
            service_spec["loadBalancerSourceRanges"] = list(args.api_allowed_cidrs)
        self.service = KubernetesObject(
            f"{name}-service",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "labels": self.labels, "annotations": SKIP_AWAIT},
                "spec": service_spec,
            },
            opts=in_ns,
        )
        # /metrics on a ClusterIP Service of its own: never on the API's NodePort or load balancer.
        self.metrics_service = KubernetesObject(
            f"{name}-metrics-service",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": f"{name}-metrics",
                    "namespace": ns,
                    "labels": self.labels,
                    "annotations": SKIP_AWAIT,
                },
                "spec": {
                    "type": "ClusterIP",
                    "selector": self.selector_labels,
                    "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
                },
            },
            opts=in_ns,
        )
        if args.replicas > 1:
            self.disruption_budget = KubernetesObject(
                f"{name}-pdb",
                {
                    "apiVersion": "policy/v1",
                    "kind": "PodDisruptionBudget",
                    "metadata": {"name": name, "namespace": ns, "labels": self.labels},
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": self.selector_labels}},
                },
                opts=in_ns,
            )
        self.register_outputs({"namespace": ns, "deployment": name, "service": name})

    def _secret(
        self,
        name: str,
        suffix: str,
        key: str,
        value: pulumi.Input[str] | None,
        namespace: str,
        opts: pulumi.ResourceOptions,
    ) -> KubernetesObject | None:
        if value is None:
            return None
        return KubernetesObject(
            f"{name}-{suffix}",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{name}-{suffix}", "namespace": namespace, "labels": self.labels},
                "type": "Opaque",
                "stringData": {key: value},
            },
            opts=opts,
        )

    def _pod_template(
        self, name: str, args: AimEngineArgs, model_dir: str, image: str, proxy_conf: str
    ) -> dict[str, Any]:
        decision, recipe = args.decision, args.decision.recipe
        startup = startup_budget_seconds(decision)
        api_env = [
            {
                "name": "VLLM_API_KEY",
                "valueFrom": {"secretKeyRef": {"name": f"{name}-api-key", "key": API_KEY_DATA_KEY}},
            }
        ]
        cache_mount = {"name": "model-cache", "mountPath": MODELS_MOUNT}
        # Through the proxy (vLLM listens on 127.0.0.1 only): a port number, since a named port resolves only among
        # the probed container's own ports.
        health = {"httpGet": {"path": "/health", "port": API_PORT}}
        # Least privilege for the vllm container: no capabilities at all (ROCm needs none: the device plugin injects
        # /dev/kfd and /dev/dri/renderD*, reachable through the video/render groups below), no privilege escalation,
        # and the runtime's default seccomp profile (set for the pod).
        #
        # It still runs as root, the image's user: the ROCm vLLM image is built for root (AITER compiles its JIT
        # kernels into its own package directory under site-packages, Triton/MIOpen/torch.compile caches go under
        # $HOME=/root), and the model cache holds root-owned files from earlier runs while fsGroup is not applied to
        # hostPath-backed volumes such as local-path's (so the download Job runs as root too). Root without any
        # capability cannot bypass file permissions (no CAP_DAC_OVERRIDE), load modules or touch devices it was not
        # given. PSA therefore warns/audits against `restricted` and enforces `baseline` for the namespace.
        dropped = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        pvc_name = f"{name}-model-cache"
        return {
            "metadata": {
                # The cache label is what cache_affinity matches: every pod that mounts the cache carries it.
                "labels": {**self.labels, MODEL_CACHE_LABEL: pvc_name},
                "annotations": {
                    "aim.amd.com/decision-hash": decision_hash(decision, image),
                    "aim.amd.com/model-id": args.model_id,
                    "aim.amd.com/recipe-id": recipe.id,
                    # The proxy reads its config only at start: a changed config rolls the pods.
                    "aim.amd.com/api-proxy-config-hash": hashlib.sha256(proxy_conf.encode()).hexdigest()[:16],
                },
            },
            "spec": {
                "serviceAccountName": name,
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 120,  # let in-flight requests finish
                "securityContext": {
                    "supplementalGroups": [VIDEO_GROUP_ID, args.render_group_id],
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "affinity": {**self._gpu_affinity(args), **(cache_affinity(pvc_name, args.cache_access_mode) or {})},
                "tolerations": [{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "containers": [
                    {
                        "name": "vllm",  # = VLLM_CONTAINER (the alerts and the admission policy name it)
                        "image": image,
                        # Writable root filesystem: vLLM, Triton, MIOpen and torch.compile write caches under $HOME,
                        # and AITER builds JIT kernels into its package directory; an emptyDir over that directory
                        # would hide the kernels the image ships prebuilt.
                        "securityContext": {**dropped, "readOnlyRootFilesystem": False},
                        "args": [
                            "vllm",
                            "serve",
                            model_dir,
                            f"--served-model-name={args.model_id}",
                            # Only the proxy in this pod reaches vLLM: its non-/v1 routes are not guarded by the key.
                            "--host=127.0.0.1",
                            f"--port={api_proxy.VLLM_INTERNAL_PORT}",
                            *decision.vllm_args,
                        ],
                        "env": [
                            {"name": "AIM_GPU", "value": decision.gpu.name},
                            {"name": "AIM_GPU_COUNT", "value": str(recipe.gpu_count)},
                            {"name": "AIM_MODEL_DIR", "value": model_dir},
                            # The preflight checks the download marker is for this model and revision.
                            {"name": "AIM_MODEL", "value": args.model_id},
                            *(
                                [{"name": "AIM_MODEL_REVISION", "value": args.model_revision}]
                                if args.model_revision
                                else []
                            ),
                            # The download Job already fetched the model; the pod has no egress at all.
                            {"name": "HF_HUB_OFFLINE", "value": "1"},
                            {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
                            # vLLM's usage statistics (vllm/envs.py: either switch set to 1 turns them off).
                            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
                            {"name": "DO_NOT_TRACK", "value": "1"},
                            *({"name": k, "value": v} for k, v in sorted(decision.env.items())),
                            *compile_cache_env(),
                            *api_env,
                        ],
                        "resources": pod_resources(decision),
                        "volumeMounts": [
                            {**cache_mount, "readOnly": True},
                            # The same volume a second time, read-write but only its compile-cache folder (created by
                            # the kubelet on first use): the weights stay read-only for vLLM, the caches persist.
                            {
                                "name": "model-cache",
                                "mountPath": COMPILE_CACHE_MOUNT,
                                "subPath": f"{COMPILE_CACHE_DIR}/{decision.gpu.name}",
                            },
                            {"name": "dshm", "mountPath": "/dev/shm"},
                        ],
                        "startupProbe": {
                            **health,
                            "periodSeconds": PROBE_PERIOD_SECONDS,
                            "timeoutSeconds": 5,
                            "failureThreshold": startup // PROBE_PERIOD_SECONDS,
                        },
                        "readinessProbe": {
                            **health,
                            "periodSeconds": 10,
                            "timeoutSeconds": 5,
                            "failureThreshold": 3,
                        },
                        # Patient: a busy engine answers /health late; restarting it would drop every request.
                        "livenessProbe": {
                            **health,
                            "periodSeconds": 30,
                            "timeoutSeconds": 10,
                            "failureThreshold": 6,
                        },
                    },
                    api_proxy.proxy_container(
                        image=args.api_proxy_image,
                        config_map_volume="api-proxy-config",
                        api_port=API_PORT,
                        metrics_port=METRICS_PORT,
                    ),
                ],
                "volumes": [
                    {"name": "model-cache", "persistentVolumeClaim": {"claimName": pvc_name}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib(decision)}Gi"}},
                    *api_proxy.proxy_volumes("api-proxy-config", f"{name}-api-proxy"),
                ],
            },
        }

    @staticmethod
    def _gpu_affinity(args: AimEngineArgs) -> dict[str, Any]:
        """Schedule on nodes with this GPU type. Required when the node labeller's labels are known to exist (the
        stack installs the labeller, or the GPU type was read from them); otherwise only preferred, so a cluster
        without the labeller still schedules on `amd.com/gpu` capacity."""
        term = {
            "matchExpressions": [
                {"key": "amd.com/gpu.device-id", "operator": "In", "values": list(args.decision.gpu.pci_device_ids)}
            ]
        }
        if args.require_gpu_labels:
            return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
        return {
            "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": term}]}
        }
