"""The names several rooms must agree on, each spelled once: pod labels, annotation keys, ports, the engine container.

It imports nothing, so every room may read it (planning, stack, host, pod). Each name says who writes it and who reads
it; a change here changes every reader at once. The Pulumi policy pack (policy/aim_policies.py) runs outside this
package with its own copy of RECIPE_LABEL and PART_OF; tests/stack/test_contract.py keeps the copies equal.
"""

# --------------------------------------------------------------------------------------------------- pod labels

#: Well-known Kubernetes label keys the stack sets on its objects.
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
#: The AimEngine's component name (stack/components/engine.py) on every engine object and in the Service, PDB and
#: NetworkPolicy selectors; kube-state-metrics exports it (RECIPE_POD_LABELS) so series join per engine.
INSTANCE_LABEL = "app.kubernetes.io/instance"
#: `app.kubernetes.io/part-of` of every AIM object; the policy pack treats objects carrying it as AIM's.
PART_OF = "aim"
#: `app.kubernetes.io/managed-by` of the objects the stack declares.
MANAGED_BY = "pulumi"
#: `app.kubernetes.io/name` of the engine pods (half of the Deployment's selector, with INSTANCE_LABEL).
ENGINE_APP_NAME = "aim-engine"
#: `app.kubernetes.io/name` of the model download Job's pods: never the engine's, so the Service and PDB never
#: count them; the download NetworkPolicy selects them by it.
DOWNLOAD_APP_NAME = "aim-model-download"
#: `app.kubernetes.io/component` of the engine's and the download's objects.
ENGINE_COMPONENT = "inference"
DOWNLOAD_COMPONENT = "model-download"

#: The recipe, model and GPU an engine pod serves (written by the AimEngine as label values). The recipe admission
#: policy (stack/components/guardrails.py) and the policy pack check only Deployments carrying RECIPE_LABEL.
RECIPE_LABEL = "aim.amd.com/recipe"
MODEL_LABEL = "aim.amd.com/model"
GPU_LABEL = "aim.amd.com/gpu"
#: The pod labels kube-state-metrics exports on `kube_pod_labels` (its allow-list in stack/components/addons.py), so
#: the recording rules (planning/monitoring) join vLLM series to the recipe that produced them.
RECIPE_POD_LABELS = (RECIPE_LABEL, MODEL_LABEL, GPU_LABEL, INSTANCE_LABEL)
#: The model cache PVC a pod mounts (engine and download pods): the cache affinity keeps a ReadWriteOnce volume's
#: pods on one node by it.
MODEL_CACHE_LABEL = "aim.amd.com/model-cache"

# ---------------------------------------------------------------------------------------------- annotation keys

#: The decision's layout on the engine Deployment, which the recipe admission policy compares the spec against.
GPU_COUNT_ANNOTATION = "aim.amd.com/gpu-count"
TENSOR_PARALLEL_ANNOTATION = "aim.amd.com/tensor-parallel-size"
PIPELINE_PARALLEL_ANNOTATION = "aim.amd.com/pipeline-parallel-size"
#: On every object the stack declares (stack/components/ownership_gate.py writes it, host/ownership.py checks it
#: before `pulumi up` adopts an existing object); its value is `project/stack`.
OWNER_ANNOTATION = "aim.amd.com/owned-by"


def owner_value(project: str, stack: str) -> str:
    """The ownership annotation's value for one stack: `project/stack` (both are Pulumi names, so no `/` inside)."""
    return f"{project}/{stack}"


#: On the engine's pod template, for people and `kubectl describe`: what the pod runs. A changed value rolls the pods.
DECISION_HASH_ANNOTATION = "aim.amd.com/decision-hash"
MODEL_ID_ANNOTATION = "aim.amd.com/model-id"
RECIPE_ID_ANNOTATION = "aim.amd.com/recipe-id"
#: The API proxy reads its config only at start: the config's hash on the pod template rolls the pods on a change.
PROXY_CONFIG_HASH_ANNOTATION = "aim.amd.com/api-proxy-config-hash"

# -------------------------------------------------------------------------------------------------------- ports

#: The engine's API: the API proxy sidecar listens here and the Service exposes it (the NetworkPolicy admits it; the
#: smoke test, the live benchmark and host/engine_access.py port-forward to it; the exported endpoint names it).
API_PORT = 8000
#: The API proxy's /metrics-only listener (port name `metrics`), scraped by Prometheus through its own Service.
METRICS_PORT = 9400
#: vLLM listens here on 127.0.0.1 only: nothing outside the pod reaches it except through the proxy.
VLLM_INTERNAL_PORT = 8080

# --------------------------------------------------------------------------------------------------- containers

#: The serving container of the engine pod: the alerts (planning/monitoring/rules.py) select it by name, the recipe
#: admission policy checks its GPU limit and parallelism flags, host programs read its logs (`-c vllm`).
ENGINE_CONTAINER = "vllm"

# ------------------------------------------------------------------------------------------------------- the router

#: `app.kubernetes.io/name` of the model router's pods (stack/manifests/router.py): never the engine's, so the router
#: never discovers itself as an engine and no engine Service, PDB or NetworkPolicy selects it.
ROUTER_APP_NAME = "aim-router"
#: `app.kubernetes.io/component` of the router's objects.
ROUTER_COMPONENT = "router"
#: The router container (the vLLM production-stack router) of the router pod; its logs: `kubectl logs -c router`.
ROUTER_CONTAINER = "router"
#: The router listens here on 127.0.0.1 only, behind the API proxy on API_PORT, as vLLM does on VLLM_INTERNAL_PORT.
ROUTER_INTERNAL_PORT = 8081
#: The label selector the router discovers engines by: every model's engine pods carry ENGINE_APP_NAME (the download
#: Job's pods carry DOWNLOAD_APP_NAME, the router's ROUTER_APP_NAME), whatever their instance.
ENGINE_DISCOVERY_SELECTOR = f"{NAME_LABEL}={ENGINE_APP_NAME}"
