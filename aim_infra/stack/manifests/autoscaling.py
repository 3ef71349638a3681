"""Autoscaling one model on vLLM's own signals: its KEDA ScaledObject, the HTTP add-on route for scale-to-zero, and
the per-replica target the performance model implies.

Pure builders: plain inputs in, plain dict manifests out (keda.sh/v1alpha1 and http.keda.sh/v1beta1, as KEDA 2.20.2
and its HTTP add-on 0.15.0 define them, and the v1 Service that names a model's way to the add-on). KEDA turns the
ScaledObject into an HPA that scales the model's Deployment between its bounds on the requests vLLM holds (running +
waiting) and on its KV-cache use, both read from Prometheus. A model that may scale to zero also gets the HTTP
add-on's trigger: a pod that does not exist exports no metrics, so the request that wakes it must be seen in front of
it, by the add-on's interceptor, which holds it until a replica is ready. The interceptor routes by Host only, never
by the OpenAI `model` field, so each such model gets a hostname of its own: an ExternalName Service `<model>-wake`
that resolves to the interceptor, which the router sends the model's requests to.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from aim_infra.common import contract
from aim_infra.common.errors import AimError
from aim_infra.planning.performance import SUSTAINABLE_SHARE, PerformanceEstimate
from aim_infra.stack.manifests.addon_pins import KUBE_PROMETHEUS_STACK
from aim_infra.stack.manifests.sizing import POD_START_SLACK_SECONDS
from aim_infra.stack.settings import DNS_LABEL

KEDA_API_VERSION = "keda.sh/v1alpha1"
HTTP_ADDON_API_VERSION = "http.keda.sh/v1beta1"

#: How often KEDA asks Prometheus (its default is 30 s). Prometheus scrapes vLLM every 15 s, so a shorter poll would
#: read the same sample twice; a longer one delays every scale-up by up to another poll.
POLLING_INTERVAL_SECONDS = 15
#: How long a scale-to-zero model must have been idle before KEDA removes its last replica (KEDA's cooldownPeriod,
#: which applies only to the step to zero). Waking it costs a whole cold start, so half an hour of silence is asked:
#: a team that stops for lunch pays one cold start, a chat that pauses for a few minutes none.
SCALE_TO_ZERO_COOLDOWN_SECONDS = 1800
#: The released ScaledObject CRD bounds both HPA stabilisation windows to 0..3600 s (as does autoscaling/v2).
MAX_STABILIZATION_SECONDS = 3600
#: The HPA's own default scale-down window: never shorter, even for a model that starts in a minute.
MIN_SCALE_DOWN_WINDOW_SECONDS = 300
#: autoscaling/v2 HPAScalingPolicy.periodSeconds must be in 1..1800: the HPA KEDA creates is refused otherwise (the
#: ScaledObject CRD itself does not check it).
MAX_POLICY_PERIOD_SECONDS = 1800
MIN_SCALE_UP_PERIOD_SECONDS = 60
#: How long the fullest replica's KV cache may be used before it alone asks for another replica (see kv_trigger).
KV_CACHE_THRESHOLD = "0.9"
#: How long the HTTP add-on's interceptor waits for a model's response headers once the request is sent. A
#: non-streaming completion sends no header until its last token, and the add-on's default (300 s) would cut every
#: answer longer than five minutes with a 504. One hour covers a 32k-token answer at 100 ms per token; anything
#: longer should stream (a streamed answer sends its headers with the first token).
RESPONSE_HEADER_TIMEOUT_SECONDS = 3600
#: The HTTP add-on's external scaler Service (chart keda-add-ons-http 0.15.0: `<chart>-<scaler.service>`, gRPC 9090).
HTTP_ADDON_SCALER_SERVICE = "keda-add-ons-http-external-scaler"
HTTP_ADDON_SCALER_PORT = 9090
#: The interceptor's proxy Service, which holds and forwards requests (chart 0.15.0: `<chart>-<interceptor.proxy.
#: service>`, interceptor.proxy.port 8080). The chart names both Services after itself, not after the release.
HTTP_ADDON_INTERCEPTOR_SERVICE = "keda-add-ons-http-interceptor-proxy"
HTTP_ADDON_INTERCEPTOR_PORT = 8080
#: The cluster's DNS domain (kubelet --cluster-domain; kubeadm's, k3s', RKE2's and the managed clouds' default). An
#: ExternalName Service is a CNAME, and resolvers never complete a CNAME's target with the pod's search domains, so
#: the interceptor's name must be written out whole.
CLUSTER_DOMAIN = "cluster.local"
#: What a scale-to-zero model's wake Service is named after the model (a model name is at most 40 characters, so the
#: name stays a DNS label).
WAKE_SUFFIX = "-wake"
#: The only requests the interceptor takes for a scale-to-zero model: the OpenAI API. The router also GETs
#: `/metrics` from every backend on each engine-stats poll; that path matches no route, so the interceptor answers it
#: 404 at once, without counting it as a request, and the poll neither wakes the model nor keeps it awake.
WAKE_PATH_PREFIX = "/v1"
#: `app.kubernetes.io/component` of a model's wake Service and InterceptorRoute. Not the engine's labels: the model's
#: ServiceMonitor selects Services by those.
WAKE_COMPONENT = "scale-to-zero"

REQUESTS_TRIGGER = "vllm-requests"
KV_CACHE_TRIGGER = "vllm-kv-cache"
HTTP_TRIGGER = "http-requests"


# --- the target ----------------------------------------------------------------------------------------------------


def in_flight_per_replica(estimate: PerformanceEstimate) -> float:
    """Requests one replica holds (running + waiting) at the estimate's workload, its load spread evenly: the
    clients over the replicas for a closed loop; Little's law (arrival rate × mean end-to-end latency) for an open
    one."""
    workload = estimate.workload
    if workload.concurrency is not None:
        total = float(workload.concurrency)
    else:
        total = float(workload.requests_per_second or 0.0) * estimate.e2e_latency_s
    return total / estimate.replicas


def _slo_shrink(estimate: PerformanceEstimate, per_replica: float) -> float:
    """The requests per replica that bring the missed SLO figures back to their targets, to first order: TPOT p95 on
    the line from the decode step's base (0 requests) through the estimate's (n, TPOT p95); TTFT p95 and the offered
    rate in proportion (target / estimate, sustainable / offered)."""
    workload = estimate.workload
    candidates: list[float] = []
    if workload.ttft_p95_ms is not None and estimate.ttft_p95_ms > workload.ttft_p95_ms:
        candidates.append(per_replica * workload.ttft_p95_ms / estimate.ttft_p95_ms)
    if workload.tpot_p95_ms is not None and estimate.tpot_p95_ms > workload.tpot_p95_ms:
        base = min(estimate.step_base_ms, workload.tpot_p95_ms)  # a target below one step: nothing sustains it
        candidates.append(per_replica * (workload.tpot_p95_ms - base) / (estimate.tpot_p95_ms - base))
    if workload.requests_per_second is not None:
        sustainable = estimate.saturation_output_tokens_per_s * SUSTAINABLE_SHARE / workload.output_tokens
        if workload.requests_per_second > sustainable:
            candidates.append(per_replica * sustainable / workload.requests_per_second)
    return min(candidates) if candidates else per_replica


def target_concurrency(estimate: PerformanceEstimate) -> int:
    """The requests (running + waiting) one replica should hold before the autoscaler adds another: the concurrency
    one replica sustains within the workload's SLO, as the performance model estimates it.

        n = C / R                     closed loop: C clients, R replicas of the estimate
        n = λ × E2E / R               open loop: λ requests/s, E2E the estimated mean latency (Little's law)
        SLO met:     target = ceil(n)     the estimate shows replicas holding that many within the SLO (a closed
                                          loop's even split gives some replicas ceil(n)), and the planned load
                                          never asks for more than the planned replicas
        SLO missed:  target = floor(min over the missed figures of
                         TTFT p95:  n × TTFT target / TTFT estimate
                         TPOT p95:  n × (TPOT target − step base) / (TPOT estimate − step base)   (TPOT grows
                                    linearly with the batch from the decode step's base, as the step line does)
                         rate:      n × sustainable rate / offered rate)
                     a first-order shrink: the autoscaler adds replicas at the planned load
        then clipped to [1, max_running_per_replica]: beyond vLLM's running cap the extra requests only wait, and
        their TTFT grows with no throughput gained; another replica is the remedy.

    Without an SLO (the default workload) every load counts as met: the target is the planned share, capped."""
    per_replica = in_flight_per_replica(estimate)
    if estimate.meets_slo:
        sustained = math.ceil(round(per_replica, 6))  # 21.0000001 from float noise is 21, not 22
    else:
        sustained = math.floor(_slo_shrink(estimate, per_replica))
    return max(1, min(sustained, estimate.max_running_per_replica))


# --- timing ----------------------------------------------------------------------------------------------------------


def scale_up_period_seconds(startup_budget_seconds: int) -> int:
    """The scale-up policy's period: one startup budget (at least a minute, at most the HPA's 1800 s). A replica
    added now serves only after its budget; requests that queue meanwhile are the ones it will take, so counting
    them again within that time would add replicas for a backlog already being answered."""
    return min(MAX_POLICY_PERIOD_SECONDS, max(MIN_SCALE_UP_PERIOD_SECONDS, startup_budget_seconds))


def scale_down_window_seconds(startup_budget_seconds: int) -> int:
    """The scale-down stabilisation window: one startup budget, within 300..3600 s. Removing a replica that is wanted
    back costs a whole startup budget, so a dip shorter than that never removes one (the HPA scales down to the
    highest count it wanted during the window)."""
    return min(MAX_STABILIZATION_SECONDS, max(MIN_SCALE_DOWN_WINDOW_SECONDS, startup_budget_seconds))


def hpa_behavior(startup_budget_seconds: int) -> dict[str, Any]:
    """The HPA's scaling behaviour for one model. Up: no stabilisation (a queue is acted on at the next poll), at
    most doubling within one scale-up period, so a burst gets replicas at once and the next step waits until those
    could be serving: 1 → 8 replicas takes two periods (one replica per period would take six). Down: after the
    window, one replica a minute, so a wrong guess costs one startup budget, not all of them."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": scale_up_period_seconds(startup_budget_seconds)}
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": scale_down_window_seconds(startup_budget_seconds),
            "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    }


def cold_start_seconds(startup_budget_seconds: int) -> int:
    """At most how long a request that arrives while its model is at zero replicas waits for an answer to start:
    KEDA's reaction (one poll at most), scheduling and image pull of the new pod (the slack sizing gives every
    rollout) and the model's startup budget (weights load and engine start). The preview prints it; the interceptor
    waits this long before giving up."""
    if startup_budget_seconds < 1:
        raise AimError(f"startup budget {startup_budget_seconds} s: expected at least 1 second")
    return POLLING_INTERVAL_SECONDS + POD_START_SLACK_SECONDS + startup_budget_seconds


# --- queries -------------------------------------------------------------------------------------------------------


def _promql_string(value: str) -> str:
    """A PromQL double-quoted string: JSON's escapes (backslash, quote, control characters) are the same in PromQL."""
    return json.dumps(value, ensure_ascii=False)


def _vllm_selector(namespace: str, served_model_name: str) -> str:
    """The model's own vLLM series: by namespace and vLLM's `model_name` label (its served model name). The router
    re-exports gauges of the same names labelled `server`, without `model_name`, so they never match."""
    return f"{{namespace={_promql_string(namespace)},model_name={_promql_string(served_model_name)}}}"


def in_flight_query(namespace: str, served_model_name: str) -> str:
    """Requests the model's replicas hold, all together: running plus waiting (an AverageValue trigger divides it by
    the threshold to get the replicas wanted)."""
    selector = _vllm_selector(namespace, served_model_name)
    return f"sum(vllm:num_requests_running{selector}) + sum(vllm:num_requests_waiting{selector})"


def kv_cache_query(namespace: str, served_model_name: str) -> str:
    """The KV-cache use (0..1) of the model's fullest replica."""
    return f"max(vllm:kv_cache_usage_perc{_vllm_selector(namespace, served_model_name)})"


def prometheus_address(
    release_name: str = KUBE_PROMETHEUS_STACK.release_name, namespace: str = KUBE_PROMETHEUS_STACK.namespace
) -> str:
    """kube-prometheus-stack's Prometheus Service (`<release>-prometheus`, port 9090) as KEDA reaches it in-cluster."""
    return f"http://{release_name}-prometheus.{namespace}.svc:9090"


def http_scaler_address(namespace: str) -> str:
    """The HTTP add-on's external scaler (gRPC), as a ScaledObject's `external-push` trigger names it."""
    return f"{HTTP_ADDON_SCALER_SERVICE}.{namespace}:{HTTP_ADDON_SCALER_PORT}"


def interceptor_host(addon_namespace: str, cluster_domain: str = CLUSTER_DOMAIN) -> str:
    """The interceptor proxy's fully qualified Service name: what a wake Service's CNAME points at."""
    return f"{HTTP_ADDON_INTERCEPTOR_SERVICE}.{addon_namespace}.svc.{cluster_domain}"


def wake_service_name(model: str) -> str:
    return f"{model}{WAKE_SUFFIX}"


def wake_host(namespace: str, model: str) -> str:
    """The hostname the router sends a scale-to-zero model's requests to, and its InterceptorRoute matches (the
    interceptor compares the Host header without its port). Resolved from the router's pod, whose search domains
    complete it."""
    return f"{wake_service_name(model)}.{namespace}.svc"


def wake_labels(model: str) -> dict[str, str]:
    """The labels of a model's wake Service and InterceptorRoute: whose they are, never the engine's selector."""
    return {
        contract.INSTANCE_LABEL: model,
        contract.COMPONENT_LABEL: WAKE_COMPONENT,
        contract.PART_OF_LABEL: contract.PART_OF,
        contract.MANAGED_BY_LABEL: contract.MANAGED_BY,
    }


def wake_url(namespace: str, model: str) -> str:
    """A scale-to-zero model's backend URL for the router: its wake hostname, on the interceptor's port."""
    return f"http://{wake_host(namespace, model)}:{HTTP_ADDON_INTERCEPTOR_PORT}"


# --- triggers ------------------------------------------------------------------------------------------------------


def requests_trigger(server: str, namespace: str, served_model_name: str, target: int) -> dict[str, Any]:
    """Replicas wanted = ceil(requests held / target): AverageValue divides the sum by the threshold. Activation
    (the step 0 → 1, which the HPA cannot take) at anything above 0 requests. ignoreNullValues: no pod, no series,
    so an empty answer is 0 requests, not an error (KEDA's default, spelled out because scale-to-zero relies on it).
    Every metadata value is a string: the CRD types metadata as map[string]string."""
    return {
        "type": "prometheus",
        "name": REQUESTS_TRIGGER,
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": server,
            "query": in_flight_query(namespace, served_model_name),
            "threshold": str(target),
            "activationThreshold": "0",
            "ignoreNullValues": "true",
        },
    }


def kv_trigger(server: str, namespace: str, served_model_name: str) -> dict[str, Any]:
    """A second opinion for long requests: few of them can fill a replica's KV cache while the request count is still
    below target, and then vLLM stops admitting and preempts. metricType Value: replicas wanted = ceil(current ×
    fullest use / 0.9). With the HPA's 10 % tolerance that acts once the fullest cache is about 99 % used, i.e.
    exhausted, not merely well used (vLLM fills its cache by design); the HPA takes the highest of its metrics, so
    this one never scales below what the request count asks for."""
    return {
        "type": "prometheus",
        "name": KV_CACHE_TRIGGER,
        "metricType": "Value",
        "metadata": {
            "serverAddress": server,
            "query": kv_cache_query(namespace, served_model_name),
            "threshold": KV_CACHE_THRESHOLD,
            "ignoreNullValues": "true",
        },
    }


def http_trigger(scaler_address: str, route: str) -> dict[str, Any]:
    """The HTTP add-on's trigger: its interceptor counts the model's requests (including those held during a cold
    start) and pushes activity to KEDA, which wakes a model at zero replicas."""
    return {
        "type": "external-push",
        "name": HTTP_TRIGGER,
        "metadata": {"scalerAddress": scaler_address, "interceptorRoute": route},
    }


# --- objects -------------------------------------------------------------------------------------------------------


def _check_labels(*named: tuple[str, str]) -> None:
    for what, value in named:
        if not DNS_LABEL.match(value):
            raise AimError(f"autoscaling: {what} {value!r} is not a DNS-1123 label (a-z, 0-9, '-', at most 63)")


def _check_names(namespace: str, name: str, deployment: str) -> None:
    _check_labels(("namespace", namespace), ("model name", name), ("Deployment", deployment))


def _check_bounds(name: str, min_replicas: int, max_replicas: int, reserved_replicas: int, scale_to_zero: bool) -> None:
    """One AimError line for bounds KEDA or the plan would not honour."""
    if scale_to_zero != (min_replicas == 0):
        raise AimError(
            f"{name}: min replicas {min_replicas} with scale-to-zero {'on' if scale_to_zero else 'off'}: "
            "expected min 0 exactly when scale-to-zero is on"
        )
    if max_replicas < max(1, min_replicas):
        raise AimError(f"{name}: max replicas {max_replicas} is below min {min_replicas}: expected 1 ≤ min ≤ max")
    if max_replicas > reserved_replicas:
        raise AimError(
            f"{name}: max replicas {max_replicas} is above the {reserved_replicas} replicas the plan reserved GPUs "
            f"for: expected at most {reserved_replicas}"
        )


def scaled_object(
    *,
    namespace: str,
    name: str,
    deployment: str,
    served_model_name: str,
    min_replicas: int,
    max_replicas: int,
    reserved_replicas: int,
    target: int,
    startup_budget_seconds: int,
    prometheus: str,
    scale_to_zero: bool = False,
    scaler_address: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The model's ScaledObject: its Deployment between min and max replicas (max never above the replicas whose GPUs
    the plan reserved), on the requests its vLLM replicas hold against `target` per replica and on KV-cache use.

    With `scale_to_zero` (min 0) it also carries the HTTP add-on trigger for the InterceptorRoute of the same name
    (interceptor_route), at `scaler_address`; KEDA removes the last replica after SCALE_TO_ZERO_COOLDOWN_SECONDS
    idle, and not before the first cold start plus that idle time after creation, so `pulumi up` and its smoke test
    find the model running."""
    _check_names(namespace, name, deployment)
    _check_bounds(name, min_replicas, max_replicas, reserved_replicas, scale_to_zero)
    if target < 1:
        raise AimError(f"{name}: target {target} requests per replica: expected at least 1")
    if startup_budget_seconds < 1:
        raise AimError(f"{name}: startup budget {startup_budget_seconds} s: expected at least 1 second")
    triggers = [
        requests_trigger(prometheus, namespace, served_model_name, target),
        kv_trigger(prometheus, namespace, served_model_name),
    ]
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "pollingInterval": POLLING_INTERVAL_SECONDS,
        "minReplicaCount": min_replicas,
        "maxReplicaCount": max_replicas,
    }
    if scale_to_zero:
        if not scaler_address:
            raise AimError(f"{name}: scale-to-zero needs the HTTP add-on's scaler address to wake the model")
        spec["cooldownPeriod"] = SCALE_TO_ZERO_COOLDOWN_SECONDS
        spec["initialCooldownPeriod"] = cold_start_seconds(startup_budget_seconds) + SCALE_TO_ZERO_COOLDOWN_SECONDS
        triggers.append(http_trigger(scaler_address, name))
    spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": hpa_behavior(startup_budget_seconds)}}
    spec["triggers"] = triggers
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": spec,
    }


def interceptor_route(
    *,
    namespace: str,
    name: str,
    service: str,
    port: int,
    hosts: Sequence[str],
    target: int,
    startup_budget_seconds: int,
    paths: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    response_header_timeout_seconds: int = RESPONSE_HEADER_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The HTTP add-on's route to a scale-to-zero model's Service: requests for `hosts` (under the `paths` prefixes,
    when given) go through the interceptor, which holds them while the model wakes (up to cold_start_seconds, then
    gives up) and counts them against the same per-replica `target`. No request deadline: a long completion is bounded
    by the response-header timeout (RESPONSE_HEADER_TIMEOUT_SECONDS) and by the client."""
    _check_names(namespace, name, service)
    if not hosts:
        raise AimError(f"{name}: the interceptor route needs at least one host to route by")
    if not 1 <= port <= 65535:
        raise AimError(f"{name}: port {port}: expected 1..65535")
    if target < 1:
        raise AimError(f"{name}: target {target} requests per replica: expected at least 1")
    if any(not path.startswith("/") for path in paths):
        raise AimError(f"{name}: interceptor route paths {list(paths)}: expected each to start with '/'")
    rule: dict[str, Any] = {"hosts": list(hosts)}
    if paths:
        rule["paths"] = [{"value": path} for path in paths]
    return {
        "apiVersion": HTTP_ADDON_API_VERSION,
        "kind": "InterceptorRoute",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {
            "target": {"service": service, "port": port},
            "rules": [rule],
            "scalingMetric": {"concurrency": {"targetValue": target}},
            "timeouts": {
                "readiness": f"{cold_start_seconds(startup_budget_seconds)}s",
                "responseHeader": f"{response_header_timeout_seconds}s",
            },
        },
    }


def wake_service(
    *, namespace: str, model: str, addon_namespace: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A scale-to-zero model's own name for the interceptor: an ExternalName Service `<model>-wake` in the models'
    namespace, a CNAME to the interceptor's proxy Service. The router reaches the model at wake_url, so the Host
    header the interceptor routes by names the model. The port is informational (an ExternalName Service forwards
    nothing): it is the one wake_url dials."""
    _check_labels(
        ("namespace", namespace), ("wake Service", wake_service_name(model)), ("add-on namespace", addon_namespace)
    )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": wake_service_name(model), "namespace": namespace, "labels": dict(labels or {})},
        "spec": {
            "type": "ExternalName",
            "externalName": interceptor_host(addon_namespace),
            "ports": [{"name": "http", "port": HTTP_ADDON_INTERCEPTOR_PORT, "protocol": "TCP"}],
        },
    }
