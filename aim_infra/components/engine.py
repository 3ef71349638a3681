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

from ..recipes.explain import explain_decision
from ..recipes.selection import Decision
from .kube import KubernetesObject

GIB = 2**30
API_PORT = 8000
MODELS_MOUNT = "/models"
VIDEO_GROUP_ID = 44  # the `video` group owns /dev/kfd on ROCm hosts
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
    api_key: pulumi.Input[str] | None = None
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


def rollout_timeout_seconds(decision: Decision) -> int:
    """What `pulumi up` waits for the Deployment: download + start-up budget + 10 minutes of scheduling slack."""
    download = decision.model.checkpoint_bytes / DOWNLOAD_BYTES_PER_SECOND
    return int(download + startup_budget_seconds(decision) + 600)


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
    api_key_secret_ref: str | None

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
        self.api_key_secret = self._secret(name, "api-key", API_KEY_DATA_KEY, args.api_key, ns, in_ns)
        #: "<Secret>:<data key>" of the API key, for steps that read it from the cluster (the smoke test).
        self.api_key_secret_ref = f"{name}-api-key:{API_KEY_DATA_KEY}" if self.api_key_secret else None

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
                    "strategy": {"type": "Recreate"},  # GPUs are not free for a surge pod: never old and new at once
                    "selector": {"matchLabels": self.selector_labels},
                    "template": pulumi.Output.from_input(args.image).apply(
                        lambda image: self._pod_template(name, args, model_dir, image)
                    ),
                },
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.config_map, self.model_cache, self.service_account, *args.depends_on],
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{rollout_timeout_seconds(decision)}s", update=f"{rollout_timeout_seconds(decision)}s"
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

    def _pod_template(self, name: str, args: AimEngineArgs, model_dir: str, image: str) -> dict[str, Any]:
        decision, recipe = args.decision, args.decision.recipe
        startup = startup_budget_seconds(decision)
        hf_env = []
        if self.hf_token_secret is not None:
            hf_env = [
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": f"{name}-hf-token", "key": "HF_TOKEN"}}}
            ]
        api_env = []
        if self.api_key_secret is not None:
            api_env = [
                {
                    "name": "VLLM_API_KEY",
                    "valueFrom": {"secretKeyRef": {"name": f"{name}-api-key", "key": API_KEY_DATA_KEY}},
                }
            ]
        download_command = ["python3", "-m", "aim_infra.download", "--model", args.model_id, "--dest", model_dir]
        if args.model_revision:
            download_command += ["--revision", args.model_revision]
        cache_mount = {"name": "model-cache", "mountPath": MODELS_MOUNT}
        health = {"httpGet": {"path": "/health", "port": "http"}}
        # Least privilege for both containers: no capabilities at all (ROCm needs none: the device plugin injects
        # /dev/kfd and /dev/dri/renderD*, reachable through the video/render groups below), no privilege escalation,
        # and the runtime's default seccomp profile (set for the pod).
        #
        # Both still run as root, the image's user: the ROCm vLLM image is built for root (AITER compiles its JIT
        # kernels into its own package directory under site-packages, Triton/MIOpen/torch.compile caches go under
        # $HOME=/root), and the model cache holds root-owned files from earlier runs while fsGroup is not applied to
        # hostPath-backed volumes such as local-path's, so a non-root downloader could not update it. Root without
        # any capability cannot bypass file permissions (no CAP_DAC_OVERRIDE), load modules or touch devices it was
        # not given. PSA therefore warns/audits against `restricted` and enforces `baseline` for the namespace.
        dropped = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        return {
            "metadata": {
                "labels": self.labels,
                "annotations": {
                    "aim.amd.com/decision-hash": decision_hash(decision, image),
                    "aim.amd.com/model-id": args.model_id,
                    "aim.amd.com/recipe-id": recipe.id,
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
                "affinity": self._gpu_affinity(args),
                "tolerations": [{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "initContainers": [
                    {
                        "name": "model-download",
                        "image": image,
                        "command": download_command,
                        "env": [
                            {"name": "HF_HOME", "value": f"{MODELS_MOUNT}/.hf-home"},
                            {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
                            *hf_env,
                        ],
                        # The downloader writes only to the cache volume (HF_HOME is on it) and /tmp: its root
                        # filesystem stays read-only.
                        "securityContext": {**dropped, "readOnlyRootFilesystem": True},
                        "volumeMounts": [cache_mount, {"name": "download-tmp", "mountPath": "/tmp"}],
                        "resources": {
                            "requests": {"cpu": "1", "memory": "2Gi"},
                            "limits": {"cpu": "4", "memory": "8Gi"},
                        },
                    }
                ],
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
                            "--host=0.0.0.0",
                            f"--port={API_PORT}",
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
                            {"name": "HF_HUB_OFFLINE", "value": "1"},  # the init container already downloaded it
                            *({"name": k, "value": v} for k, v in sorted(decision.env.items())),
                            *api_env,
                        ],
                        "ports": [{"name": "http", "containerPort": API_PORT, "protocol": "TCP"}],
                        "resources": pod_resources(decision),
                        "volumeMounts": [
                            {**cache_mount, "readOnly": True},
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
                    }
                ],
                "volumes": [
                    {"name": "model-cache", "persistentVolumeClaim": {"claimName": f"{name}-model-cache"}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib(decision)}Gi"}},
                    {"name": "download-tmp", "emptyDir": {"sizeLimit": "1Gi"}},
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
