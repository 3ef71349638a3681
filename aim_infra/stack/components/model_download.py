"""ModelDownload: a Kubernetes Job that fills the model cache volume, so the serving pods need no network at all."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pulumi

from aim_infra.stack.components.kube import KubernetesObject

#: The pod label the download NetworkPolicy selects (the only pods of the namespace with egress).
COMPONENT = "model-download"
CONTAINER = "model-download"
#: Pod label naming the model cache PVC a pod mounts; engine.cache_affinity keeps such pods on one node for RWO.
MODEL_CACHE_LABEL = "aim.amd.com/model-cache"
#: A failed download is retried this often (a new container in the same pod) before the Job, and `pulumi up`, fail.
BACKOFF_LIMIT = 4


def job_suffix(model_id: str, revision: str | None) -> str:
    """A short hash of model and revision: a new model or revision is a new Job (a Job's pod template is immutable)."""
    return hashlib.sha256(f"{model_id}@{revision or ''}".encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ModelDownloadArgs:
    namespace: str
    image: pulumi.Input[str]
    model_id: str
    model_dir: str
    models_mount: str
    pvc_name: str
    service_account: str
    timeout_seconds: int
    model_revision: str | None = None
    hf_token_secret: str | None = None  # the Secret holding HF_TOKEN, when one is configured
    #: engine.cache_affinity for the cache's access mode: on ReadWriteOnce the Job lands on the engine pods' node.
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    depends_on: list[pulumi.Resource] = field(default_factory=list)


def pod_selector(instance: str) -> dict[str, str]:
    """What selects the download pods (the download NetworkPolicy): never the engine's selector labels, so the
    Service and PDB never count them."""
    return {"app.kubernetes.io/name": "aim-model-download", "app.kubernetes.io/instance": instance}


def pod_labels(instance: str, pvc_name: str) -> dict[str, str]:
    return {
        **pod_selector(instance),
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/part-of": "aim",
        MODEL_CACHE_LABEL: pvc_name,
    }


class ModelDownload(pulumi.ComponentResource):
    """One Job per model and revision. Pulumi waits for it to complete (the provider's Job await), and the engine's
    Deployment depends on it. `ttlSecondsAfterFinished` stays unset: a garbage-collected Job would read as deleted to
    Pulumi and be created again on the next `up`."""

    job: KubernetesObject
    job_name: str
    pod_selector: dict[str, str]

    def __init__(self, name: str, args: ModelDownloadArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:ModelDownload", name, None, opts)
        self.job_name = f"{name}-{job_suffix(args.model_id, args.model_revision)}"
        self.pod_selector = pod_selector(name)
        labels = {**args.labels, **pod_labels(name, args.pvc_name)}
        self.job = KubernetesObject(
            f"{name}-job",
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": self.job_name,
                    "namespace": args.namespace,
                    "labels": labels,
                    # A Job that failed on an earlier `up` is replaced (run again) instead of awaited forever.
                    "annotations": {"pulumi.com/replaceUnready": "true"},
                },
                "spec": {
                    "backoffLimit": BACKOFF_LIMIT,
                    "template": pulumi.Output.from_input(args.image).apply(
                        lambda image: self._pod_template(args, labels, image)
                    ),
                },
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.depends_on),
                delete_before_replace=True,  # the name is fixed per model: the old Job goes first
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{args.timeout_seconds}s", update=f"{args.timeout_seconds}s"
                ),
            ),
        )
        self.register_outputs({"job": self.job_name})

    @staticmethod
    def _pod_template(args: ModelDownloadArgs, labels: dict[str, str], image: str) -> dict[str, Any]:
        command = ["python3", "-m", "aim_infra.pod.download", "--model", args.model_id, "--dest", args.model_dir]
        if args.model_revision:
            command += ["--revision", args.model_revision]
        token_env = []
        if args.hf_token_secret:
            token_env = [
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": args.hf_token_secret, "key": "HF_TOKEN"}}}
            ]
        spec: dict[str, Any] = {
            "restartPolicy": "OnFailure",  # retries stay on the node (and volume) the first attempt got
            "serviceAccountName": args.service_account,
            "automountServiceAccountToken": False,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": CONTAINER,
                    "image": image,
                    "command": command,
                    "env": [
                        {"name": "HF_HOME", "value": f"{args.models_mount}/.hf-home"},
                        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
                        *token_env,
                    ],
                    # As the former init container: root (the cache holds root-owned files from earlier runs and
                    # local-path volumes ignore fsGroup) but without any capability, and a read-only root
                    # filesystem: it writes only to the cache volume (HF_HOME is on it) and /tmp.
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                    "volumeMounts": [
                        {"name": "model-cache", "mountPath": args.models_mount},
                        {"name": "download-tmp", "mountPath": "/tmp"},
                    ],
                    "resources": {
                        "requests": {"cpu": "1", "memory": "2Gi"},
                        "limits": {"cpu": "4", "memory": "8Gi"},
                    },
                }
            ],
            "volumes": [
                {"name": "model-cache", "persistentVolumeClaim": {"claimName": args.pvc_name}},
                {"name": "download-tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            ],
        }
        if args.affinity:
            spec["affinity"] = args.affinity
        if args.tolerations:
            spec["tolerations"] = list(args.tolerations)
        return {"metadata": {"labels": labels}, "spec": spec}
