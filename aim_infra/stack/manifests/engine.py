"""The AimEngine's objects other than its pod, as plain manifests: names, labels, Deployment, Services, config, cache.

Also the namespace, the service account, the Secrets and the disruption budget. The pod is engine_pod's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from aim_infra.common import contract
from aim_infra.planning.explain import explain_decision
from aim_infra.planning.selection import Decision
from aim_infra.stack.components import api_proxy
from aim_infra.stack.manifests.sizing import cache_quantity, deployment_strategy, progress_deadline_seconds

SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
#: The data key of the API key Secret: vLLM reads the key from the environment variable of this name.
API_KEY_DATA_KEY = "VLLM_API_KEY"
HF_TOKEN_DATA_KEY = "HF_TOKEN"
#: Pod Security Admission for the AIM namespace: enforce baseline (the engine meets it), warn and audit against
#: restricted, which the engine does not meet only because it runs as root (see engine_pod.DROPPED).
POD_SECURITY_VERSION = "v1.30"
POD_SECURITY_LABELS = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/enforce-version": POD_SECURITY_VERSION,
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": POD_SECURITY_VERSION,
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/audit-version": POD_SECURITY_VERSION,
}


def label_value(text: str) -> str:
    """A Kubernetes label value (≤ 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:63]
    return cleaned.strip("_.-") or "none"


@dataclass(frozen=True)
class EngineNames:
    """Where the engine's objects live and every object name derived from the component's name (the instance),
    each spelled once."""

    instance: str
    namespace: str

    @property
    def workload(self) -> str:
        """The Deployment, its Service, the service account and the PDB."""
        return self.instance

    @property
    def model_cache(self) -> str:
        return f"{self.instance}-model-cache"

    @property
    def recipe_config(self) -> str:
        return f"{self.instance}-recipe"

    @property
    def proxy_config(self) -> str:
        return f"{self.instance}-api-proxy"

    @property
    def metrics_service(self) -> str:
        return f"{self.instance}-metrics"

    @property
    def download(self) -> str:
        """The ModelDownload component (its Job's name adds the model's hash)."""
        return f"{self.instance}-download"

    @property
    def api_key_secret(self) -> str:
        return f"{self.instance}-api-key"

    @property
    def hf_token_secret(self) -> str:
        return f"{self.instance}-hf-token"


def selector_labels(instance: str) -> dict[str, str]:
    """The Deployment's selector (also the Services', the PDB's and the API NetworkPolicy's): never changes with the
    recipe, since a changed selector would replace the Deployment."""
    return {contract.NAME_LABEL: contract.ENGINE_APP_NAME, contract.INSTANCE_LABEL: instance}


def engine_labels(instance: str, decision: Decision, model_id: str) -> dict[str, str]:
    """The selector plus recipe, model and GPU: labels for people, dashboards and kube-state-metrics."""
    return {
        **selector_labels(instance),
        contract.COMPONENT_LABEL: contract.ENGINE_COMPONENT,
        contract.PART_OF_LABEL: contract.PART_OF,
        contract.MANAGED_BY_LABEL: contract.MANAGED_BY,
        contract.RECIPE_LABEL: label_value(decision.recipe.id),
        contract.MODEL_LABEL: label_value(model_id),
        contract.GPU_LABEL: decision.gpu.name,
    }


def namespace_manifest(names: EngineNames) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": names.namespace,
            "labels": {contract.PART_OF_LABEL: contract.PART_OF, **POD_SECURITY_LABELS},
        },
    }


def service_account(names: EngineNames, labels: dict[str, str]) -> dict[str, Any]:
    """No Role or RoleBinding, on purpose: neither the downloader nor vLLM talks to the Kubernetes API (the recipe
    reaches the pod as arguments and environment, the token as a Secret reference), so the service account has no
    permissions and its token is never mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": names.workload, "namespace": names.namespace, "labels": labels},
        "automountServiceAccountToken": False,
    }


def secret(names: EngineNames, labels: dict[str, str], name: str, key: str, value: Any) -> dict[str, Any] | None:
    """An Opaque Secret with one key; `value` may be an opaque value that resolves to the text. None: no value."""
    if value is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": names.namespace, "labels": labels},
        "type": "Opaque",
        "stringData": {key: value},
    }


def recipe_config_map(names: EngineNames, labels: dict[str, str], decision: Decision) -> dict[str, Any]:
    """The recipe, the decision and its explanation, for people (`kubectl get configmap …-recipe`)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names.recipe_config, "namespace": names.namespace, "labels": labels},
        "data": {
            "recipe.yaml": yaml.safe_dump(decision.recipe.model_dump(mode="json"), sort_keys=False),
            "decision.json": json.dumps(decision.summary(), indent=2, sort_keys=True),
            "explanation.txt": explain_decision(decision),
        },
    }


def model_cache_claim(
    names: EngineNames,
    labels: dict[str, str],
    decision: Decision,
    *,
    access_mode: str,
    size: str | None,
    storage_class: Any = None,
) -> dict[str, Any]:
    """The model cache PVC: `size` None = from the checkpoint (cache_quantity); `storage_class` may be opaque."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": names.model_cache,
            "namespace": names.namespace,
            "labels": labels,
            # WaitForFirstConsumer classes bind only when the pod is scheduled: waiting here would deadlock.
            "annotations": SKIP_AWAIT,
        },
        "spec": {
            "accessModes": [access_mode],
            "resources": {"requests": {"storage": size or cache_quantity(decision)}},
            **({"storageClassName": storage_class} if storage_class else {}),
        },
    }


def proxy_config_map(names: EngineNames, labels: dict[str, str], config: str) -> dict[str, Any]:
    """The API proxy's nginx.conf (api_proxy.proxy_config), mounted into the sidecar."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names.proxy_config, "namespace": names.namespace, "labels": labels},
        "data": {api_proxy.CONFIG_FILE: config},
    }


def deployment(
    names: EngineNames,
    labels: dict[str, str],
    decision: Decision,
    *,
    replicas: int,
    template: Any,
) -> dict[str, Any]:
    """The Deployment; `template` is the pod template or an opaque value that resolves to it (it waits for the
    image). Its annotations carry the decision's layout, which the recipe admission policy compares the spec to."""
    recipe = decision.recipe
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.workload,
            "namespace": names.namespace,
            "labels": labels,
            "annotations": {
                contract.GPU_COUNT_ANNOTATION: str(recipe.gpu_count),
                contract.TENSOR_PARALLEL_ANNOTATION: str(recipe.tensor_parallel_size),
                contract.PIPELINE_PARALLEL_ANNOTATION: str(recipe.pipeline_parallel_size),
            },
        },
        "spec": {
            "replicas": replicas,
            "strategy": deployment_strategy(replicas),
            "progressDeadlineSeconds": progress_deadline_seconds(decision),
            "selector": {"matchLabels": selector_labels(names.instance)},
            "template": template,
        },
    }


def api_service(
    names: EngineNames,
    labels: dict[str, str],
    *,
    service_type: str,
    node_port: int = 0,
    allowed_cidrs: list[str] | None = None,
) -> dict[str, Any]:
    """The API Service: the proxy's `http` port. A LoadBalancer admits only `allowed_cidrs` (settings refuse
    0.0.0.0/0 there), so the cloud load balancer drops other sources before they reach a node."""
    port: dict[str, Any] = {"name": "http", "port": contract.API_PORT, "targetPort": "http", "protocol": "TCP"}
    if service_type == "NodePort" and node_port:
        port["nodePort"] = node_port
    spec: dict[str, Any] = {"type": service_type, "selector": selector_labels(names.instance), "ports": [port]}
    if service_type == "LoadBalancer":
        spec["loadBalancerSourceRanges"] = list(allowed_cidrs or [])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": names.workload, "namespace": names.namespace, "labels": labels, "annotations": SKIP_AWAIT},
        "spec": spec,
    }


def metrics_service(names: EngineNames, labels: dict[str, str]) -> dict[str, Any]:
    """/metrics on a ClusterIP Service of its own: never on the API's NodePort or load balancer."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.metrics_service,
            "namespace": names.namespace,
            "labels": labels,
            "annotations": SKIP_AWAIT,
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(names.instance),
            "ports": [{"name": "metrics", "port": contract.METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def disruption_budget(names: EngineNames, labels: dict[str, str], replicas: int) -> dict[str, Any] | None:
    """One voluntary eviction at a time for several replicas (as their rolling update); None for a single replica."""
    if replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": names.workload, "namespace": names.namespace, "labels": labels},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(names.instance)}},
    }
