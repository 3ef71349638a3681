"""The model download Job as a plain manifest: its labels, name, pod template (image resolved) and Job spec."""

from __future__ import annotations

import hashlib
from typing import Any

from aim_infra.common import contract

CONTAINER = "model-download"
#: A failed download is retried this often (a new container in the same pod) before the Job, and `pulumi up`, fail.
BACKOFF_LIMIT = 4


def job_suffix(model_id: str, revision: str | None) -> str:
    """A short hash of model and revision: a new model or revision is a new Job (a Job's pod template is immutable)."""
    return hashlib.sha256(f"{model_id}@{revision or ''}".encode()).hexdigest()[:8]


def job_name(instance: str, model_id: str, revision: str | None) -> str:
    """The Job's name: fixed per model and revision, so a new one replaces the old (delete before replace)."""
    return f"{instance}-{job_suffix(model_id, revision)}"


def pod_selector(instance: str) -> dict[str, str]:
    """What selects the download pods (the download NetworkPolicy): never the engine's selector labels, so the
    Service and PDB never count them."""
    return {contract.NAME_LABEL: contract.DOWNLOAD_APP_NAME, contract.INSTANCE_LABEL: instance}


def pod_labels(instance: str, pvc_name: str) -> dict[str, str]:
    return {
        **pod_selector(instance),
        contract.COMPONENT_LABEL: contract.DOWNLOAD_COMPONENT,
        contract.PART_OF_LABEL: contract.PART_OF,
        contract.MODEL_CACHE_LABEL: pvc_name,
    }


def download_command(model_id: str, model_dir: str, revision: str | None) -> list[str]:
    """The pod program (run by module name in the AIM image) that fills `model_dir` on the cache volume."""
    command = ["python3", "-m", "aim_infra.pod.download", "--model", model_id, "--dest", model_dir]
    if revision:
        command += ["--revision", revision]
    return command


def download_container(
    *, image: str, model_id: str, model_dir: str, revision: str | None, models_mount: str, hf_token_secret: str | None
) -> dict[str, Any]:
    token_env = []
    if hf_token_secret:
        token_env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": hf_token_secret, "key": "HF_TOKEN"}}}]
    return {
        "name": CONTAINER,
        "image": image,
        "command": download_command(model_id, model_dir, revision),
        "env": [
            {"name": "HF_HOME", "value": f"{models_mount}/.hf-home"},
            {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
            *token_env,
        ],
        # As the former init container: root (the cache holds root-owned files from earlier runs and local-path
        # volumes ignore fsGroup) but without any capability, and a read-only root filesystem: it writes only to the
        # cache volume (HF_HOME is on it) and /tmp.
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": [
            {"name": "model-cache", "mountPath": models_mount},
            {"name": "download-tmp", "mountPath": "/tmp"},
        ],
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "4", "memory": "8Gi"},
        },
    }


def download_pod_template(
    *,
    labels: dict[str, str],
    container: dict[str, Any],
    pvc_name: str,
    service_account: str,
    affinity: dict[str, Any] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "OnFailure",  # retries stay on the node (and volume) the first attempt got
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": pvc_name}},
            {"name": "download-tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
    }
    if affinity:
        spec["affinity"] = affinity
    if tolerations:
        spec["tolerations"] = list(tolerations)
    return {"metadata": {"labels": labels}, "spec": spec}


def download_job(*, name: str, namespace: str, labels: dict[str, str], template: Any) -> dict[str, Any]:
    """The Job; `template` is the pod template or an opaque value that resolves to it (it waits for the image).
    `ttlSecondsAfterFinished` stays unset: a garbage-collected Job would read as deleted to Pulumi and be created
    again on the next `up`."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            # A Job that failed on an earlier `up` is replaced (run again) instead of awaited forever.
            "annotations": {"pulumi.com/replaceUnready": "true"},
        },
        "spec": {"backoffLimit": BACKOFF_LIMIT, "template": template},
    }
