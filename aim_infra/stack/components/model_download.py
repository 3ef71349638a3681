"""ModelDownload: a Kubernetes Job that fills the model cache volume, so the serving pods need no network at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from aim_infra.stack.components.kube import KubernetesObject
from aim_infra.stack.manifests.model_download import (
    download_container,
    download_job,
    download_pod_template,
    job_name,
    pod_labels,
    pod_selector,
)


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
    #: engine_pod.cache_affinity for the cache's access mode: on ReadWriteOnce the Job lands on the engine pods' node.
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    #: The pods' instance label (their NetworkPolicy selects on it); None = the component's name. A model's LoRA
    #: adapters share the model's, so the one download policy covers their Jobs too.
    instance: str | None = None
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class ModelDownload(pulumi.ComponentResource):
    """One Job per model and revision. Pulumi waits for it to complete (the provider's Job await), and the engine's
    Deployment depends on it."""

    job: KubernetesObject
    job_name: str
    pod_selector: dict[str, str]

    def __init__(self, name: str, args: ModelDownloadArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:ModelDownload", name, None, opts)
        instance = args.instance or name
        self.job_name = job_name(instance, args.model_id, args.model_revision)
        self.pod_selector = pod_selector(instance)
        labels = {**args.labels, **pod_labels(instance, args.pvc_name)}
        # The pod template waits for the image (the engine's, built and pushed by the stack or configured).
        template = pulumi.Output.from_input(args.image).apply(lambda image: self._pod_template(args, labels, image))
        self.job = KubernetesObject(
            f"{name}-job",
            download_job(name=self.job_name, namespace=args.namespace, labels=labels, template=template),
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
        container = download_container(
            image=image,
            model_id=args.model_id,
            model_dir=args.model_dir,
            revision=args.model_revision,
            models_mount=args.models_mount,
            hf_token_secret=args.hf_token_secret,
        )
        return download_pod_template(
            labels=labels,
            container=container,
            pvc_name=args.pvc_name,
            service_account=args.service_account,
            affinity=args.affinity,
            tolerations=args.tolerations,
        )
