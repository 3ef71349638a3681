"""The AimEngine's pod as plain manifests: the vLLM container, the API proxy sidecar, volumes, affinity, annotations."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aim_infra.common import contract
from aim_infra.planning.selection import Decision
from aim_infra.stack.components import api_proxy
from aim_infra.stack.manifests.engine import API_KEY_DATA_KEY, EngineNames, label_value
from aim_infra.stack.manifests.sizing import PROBE_PERIOD_SECONDS, pod_resources, shm_gib, startup_budget_seconds

MODELS_MOUNT = "/models"
#: Compile and kernel caches (vLLM, torch.compile/Inductor, Triton, MIOpen) on the model cache volume, one folder per
#: GPU type, mounted read-write here while the weights stay read-only under MODELS_MOUNT (see `compile_cache_env`).
COMPILE_CACHE_MOUNT = "/compile-cache"
COMPILE_CACHE_DIR = ".compile-cache"
VIDEO_GROUP_ID = 44  # the `video` group owns /dev/kfd on ROCm hosts
GPU_TOLERATION = {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CACHE_VOLUME = "model-cache"
PROXY_CONFIG_VOLUME = "api-proxy-config"
#: Let in-flight requests finish before the pod is killed.
TERMINATION_GRACE_SECONDS = 120
#: Least privilege for the vllm container: no capabilities at all (ROCm needs none: the device plugin injects
#: /dev/kfd and /dev/dri/renderD*, reachable through the video/render groups of the pod), no privilege escalation,
#: and the runtime's default seccomp profile (set for the pod).
#:
#: It still runs as root, the image's user: the ROCm vLLM image is built for root (AITER compiles its JIT kernels into
#: its own package directory under site-packages, Triton/MIOpen/torch.compile caches go under $HOME=/root), and the
#: model cache holds root-owned files from earlier runs while fsGroup is not applied to hostPath-backed volumes such
#: as local-path's (so the download Job runs as root too). Root without any capability cannot bypass file permissions
#: (no CAP_DAC_OVERRIDE), load modules or touch devices it was not given. PSA therefore warns/audits against
#: `restricted` and enforces `baseline` for the namespace.
DROPPED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def model_directory(model_id: str, revision: str | None) -> str:
    """Where the model lives in the cache volume: one folder per model and revision."""
    folder = model_id.replace("/", "--")
    return f"{MODELS_MOUNT}/{folder}" + (f"@{label_value(revision)}" if revision else "")


def decision_hash(decision: Decision, image: str) -> str:
    """What the engine runs, in 16 hex digits: the decision (without its alternatives and estimate) and the image."""
    summary = {k: v for k, v in decision.summary().items() if k not in ("candidates", "notes", "estimate")}
    return hashlib.sha256(json.dumps([summary, image], sort_keys=True).encode()).hexdigest()[:16]


def cache_affinity(pvc_name: str, access_mode: str) -> dict[str, Any] | None:
    """For a ReadWriteOnce model cache: a required podAffinity that keeps every pod mounting it (labelled
    `aim.amd.com/model-cache: <pvc>`: the engine pods and the download Job's) on one node, where the volume can be
    attached. The first such pod matches its own term, so it may land anywhere. Other access modes need none:
    ReadWriteMany/ReadOnlyMany attach anywhere, and ReadWriteOncePod admits one pod at a time (settings refuse it with
    several replicas)."""
    if access_mode != "ReadWriteOnce":
        return None
    term = {
        "labelSelector": {"matchLabels": {contract.MODEL_CACHE_LABEL: pvc_name}},
        "topologyKey": "kubernetes.io/hostname",
    }
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def gpu_affinity(decision: Decision, require_gpu_labels: bool) -> dict[str, Any]:
    """Schedule on nodes with this GPU type. Required when the node labeller's labels are known to exist (the
    stack installs the labeller, or the GPU type was read from them); otherwise only preferred, so a cluster
    without the labeller still schedules on `amd.com/gpu` capacity."""
    term = {
        "matchExpressions": [
            {"key": "amd.com/gpu.device-id", "operator": "In", "values": list(decision.gpu.pci_device_ids)}
        ]
    }
    if require_gpu_labels:
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": term}]}}


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


def vllm_args(decision: Decision, model_dir: str, model_id: str) -> list[str]:
    return [
        "vllm",
        "serve",
        model_dir,
        f"--served-model-name={model_id}",
        # Only the proxy in this pod reaches vLLM: its non-/v1 routes are not guarded by the key.
        "--host=127.0.0.1",
        f"--port={contract.VLLM_INTERNAL_PORT}",
        *decision.vllm_args,
    ]


def vllm_env(
    decision: Decision, *, model_dir: str, model_id: str, model_revision: str | None, api_key_secret: str
) -> list[dict[str, Any]]:
    revision = [{"name": "AIM_MODEL_REVISION", "value": model_revision}] if model_revision else []
    return [
        {"name": "AIM_GPU", "value": decision.gpu.name},
        {"name": "AIM_GPU_COUNT", "value": str(decision.recipe.gpu_count)},
        {"name": "AIM_MODEL_DIR", "value": model_dir},
        # The preflight checks the download marker is for this model and revision.
        {"name": "AIM_MODEL", "value": model_id},
        *revision,
        # The download Job already fetched the model; the pod has no egress at all.
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
        # vLLM's usage statistics (vllm/envs.py: either switch set to 1 turns them off).
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
        *({"name": k, "value": v} for k, v in sorted(decision.env.items())),
        *compile_cache_env(),
        {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": api_key_secret, "key": API_KEY_DATA_KEY}}},
    ]


def vllm_mounts(decision: Decision) -> list[dict[str, Any]]:
    return [
        {"name": CACHE_VOLUME, "mountPath": MODELS_MOUNT, "readOnly": True},
        # The same volume a second time, read-write but only its compile-cache folder (created by the kubelet on first
        # use): the weights stay read-only for vLLM, the caches persist.
        {
            "name": CACHE_VOLUME,
            "mountPath": COMPILE_CACHE_MOUNT,
            "subPath": f"{COMPILE_CACHE_DIR}/{decision.gpu.name}",
        },
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]


def vllm_probes(decision: Decision) -> dict[str, dict[str, Any]]:
    """Start-up, readiness and liveness, all on /health through the proxy (vLLM listens on 127.0.0.1 only): a port
    number, since a named port resolves only among the probed container's own ports."""
    health = {"httpGet": {"path": "/health", "port": contract.API_PORT}}
    return {
        "startupProbe": {
            **health,
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": startup_budget_seconds(decision) // PROBE_PERIOD_SECONDS,
        },
        "readinessProbe": {**health, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        # Patient: a busy engine answers /health late; restarting it would drop every request.
        "livenessProbe": {**health, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 6},
    }


def vllm_container(
    decision: Decision, *, image: str, model_id: str, model_revision: str | None, api_key_secret: str
) -> dict[str, Any]:
    """The serving container (contract.ENGINE_CONTAINER: the alerts and the admission policy name it)."""
    model_dir = model_directory(model_id, model_revision)
    return {
        "name": contract.ENGINE_CONTAINER,
        "image": image,
        # Writable root filesystem: vLLM, Triton, MIOpen and torch.compile write caches under $HOME, and AITER builds
        # JIT kernels into its package directory; an emptyDir over that directory would hide the kernels the image
        # ships prebuilt.
        "securityContext": {**DROPPED, "readOnlyRootFilesystem": False},
        "args": vllm_args(decision, model_dir, model_id),
        "env": vllm_env(
            decision,
            model_dir=model_dir,
            model_id=model_id,
            model_revision=model_revision,
            api_key_secret=api_key_secret,
        ),
        "resources": pod_resources(decision),
        "volumeMounts": vllm_mounts(decision),
        **vllm_probes(decision),
    }


def proxy_container(image: str) -> dict[str, Any]:
    """The API proxy sidecar in front of vLLM: the API port and the metrics port."""
    return api_proxy.proxy_container(
        image=image,
        config_map_volume=PROXY_CONFIG_VOLUME,
        api_port=contract.API_PORT,
        metrics_port=contract.METRICS_PORT,
    )


def pod_volumes(names: EngineNames, decision: Decision) -> list[dict[str, Any]]:
    return [
        {"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": names.model_cache}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib(decision)}Gi"}},
        *api_proxy.proxy_volumes(PROXY_CONFIG_VOLUME, names.proxy_config),
    ]


def pod_annotations(decision: Decision, *, image: str, model_id: str, proxy_config: str) -> dict[str, str]:
    return {
        contract.DECISION_HASH_ANNOTATION: decision_hash(decision, image),
        contract.MODEL_ID_ANNOTATION: model_id,
        contract.RECIPE_ID_ANNOTATION: decision.recipe.id,
        # The proxy reads its config only at start: a changed config rolls the pods.
        contract.PROXY_CONFIG_HASH_ANNOTATION: hashlib.sha256(proxy_config.encode()).hexdigest()[:16],
    }


def pod_template(
    names: EngineNames,
    labels: dict[str, str],
    decision: Decision,
    *,
    image: str,
    model_id: str,
    model_revision: str | None,
    proxy_image: str,
    proxy_config: str,
    render_group_id: int,
    require_gpu_labels: bool,
    cache_access_mode: str,
) -> dict[str, Any]:
    """The engine pod: vLLM and the API proxy, the cache and /dev/shm volumes, GPU and cache affinity."""
    return {
        "metadata": {
            # The cache label is what cache_affinity matches: every pod that mounts the cache carries it.
            "labels": {**labels, contract.MODEL_CACHE_LABEL: names.model_cache},
            "annotations": pod_annotations(decision, image=image, model_id=model_id, proxy_config=proxy_config),
        },
        "spec": {
            "serviceAccountName": names.workload,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "securityContext": {
                "supplementalGroups": [VIDEO_GROUP_ID, render_group_id],
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "affinity": {
                **gpu_affinity(decision, require_gpu_labels),
                **(cache_affinity(names.model_cache, cache_access_mode) or {}),
            },
            "tolerations": [dict(GPU_TOLERATION)],
            "containers": [
                vllm_container(
                    decision,
                    image=image,
                    model_id=model_id,
                    model_revision=model_revision,
                    api_key_secret=names.api_key_secret,
                ),
                proxy_container(proxy_image),
            ],
            "volumes": pod_volumes(names, decision),
        },
    }
