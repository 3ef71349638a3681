"""Prometheus rules of the AIM Engine: `aim:` recording rules, the recipe's estimates as series, and the alerts."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from aim_infra.common.contract import ENGINE_CONTAINER, GPU_LABEL, MODEL_LABEL, RECIPE_LABEL
from aim_infra.planning.monitoring import names

Rule = dict[str, Any]
Group = dict[str, Any]

RATE_WINDOW = "5m"
#: kube-state-metrics spells an extended resource with every character outside [a-zA-Z0-9_] replaced by `_`
#: (internal/store: sanitizeLabelName), unit `integer`: `amd.com/gpu` becomes `resource="amd_com_gpu"`.
GPU_RESOURCE = "amd_com_gpu"

_RECIPE_BY = ", ".join(names.RECIPE_LABELS)  # namespace, recipe, model, gpu
_FRIENDLY = ("recipe", "model", "gpu")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def label_value(text: str) -> str:
    """A Kubernetes label value, exactly as the AimEngine component writes its pod labels (engine.label_value):
    the estimate series must carry the same recipe/model values as the measured ones."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:63]
    return cleaned.strip("_.-") or "none"


# ------------------------------------------------------------------------------------------------ recording rules


def _ksm_label(pod_label: str) -> str:
    return names.KSM_LABEL[pod_label]


def _with_recipe(expr: str) -> str:
    """Attach recipe, model and gpu to a per-pod series (the ServiceMonitor gives scraped series namespace/pod)."""
    return f"{expr}\n  * on (namespace, pod) group_left ({', '.join(_FRIENDLY)}) {names.POD_RECIPE_INFO}"


def _per_recipe(aggregation: str, expr: str) -> str:
    return f"{aggregation} by ({_RECIPE_BY}) (\n  {_with_recipe(expr)}\n)"


def _rate(series: str) -> str:
    return f"rate({series}[{RATE_WINDOW}])"


def _quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (le, {_RECIPE_BY}) (\n  {_with_recipe(_rate(histogram + '_bucket'))}\n))"


def pod_recipe_info_expr() -> str:
    """1 per (namespace, pod) of an AIM engine pod, with its recipe, model and GPU as friendly labels. `max by`
    also folds the duplicates two kube-state-metrics replicas (or a restart) would produce."""
    recipe = _ksm_label(RECIPE_LABEL)
    model = _ksm_label(MODEL_LABEL)
    gpu = _ksm_label(GPU_LABEL)
    inner = f'kube_pod_labels{{{recipe}!=""}}'
    for friendly, source in (("recipe", recipe), ("model", model), ("gpu", gpu)):
        inner = f'label_replace({inner}, "{friendly}", "$1", "{source}", "(.*)")'
    return f"max by (namespace, pod, {', '.join(_FRIENDLY)}) (\n  {inner}\n)"


def recording_groups() -> list[Group]:
    """The `aim:` series every dashboard and alert reads: vLLM series summed (or maxed) per recipe. One group, so
    the info series is evaluated before the rules that join on it."""
    http = "http_requests_total"
    http_all = _per_recipe("sum", _rate(http))
    http_5xx = _per_recipe("sum", _rate(f'{http}{{status="5xx"}}'))
    gpu_requests = (
        f'(max by (namespace, pod, container) (kube_pod_container_resource_requests{{resource="{GPU_RESOURCE}"}})'
        '\n    and on (namespace, pod) (kube_pod_status_phase{phase="Running"} == 1))'
    )
    rules: list[Rule] = [
        {"record": names.POD_RECIPE_INFO, "expr": pod_recipe_info_expr()},
        {"record": names.GENERATION_TOKENS_RATE, "expr": _per_recipe("sum", _rate("vllm:generation_tokens_total"))},
        {"record": names.PROMPT_TOKENS_RATE, "expr": _per_recipe("sum", _rate("vllm:prompt_tokens_total"))},
        {"record": names.REQUESTS_RATE, "expr": _per_recipe("sum", _rate("vllm:request_success_total"))},
        # vLLM's OpenAI server instruments its FastAPI app with prometheus-fastapi-instrumentator
        # (vllm/entrypoints/serve/instrumentator/metrics.py: `Instrumentator(excluded_handlers=["/metrics",
        # "/health", ...]).add().instrument(app)`), whose default metric is the counter `http_requests_total` with
        # labels handler, method and status; `should_group_status_codes` defaults to True, so status is "2xx",
        # "4xx", "5xx". The instrumentator creates a status series on its first response of that class: with no
        # 5xx yet the ratio is 0, not absent.
        {"record": names.HTTP_ERROR_RATIO, "expr": f"(\n{http_5xx}\n  or\n{http_all} * 0\n)\n/\n{http_all}"},
        {"record": names.TTFT_P50, "expr": _quantile(0.5, "vllm:time_to_first_token_seconds")},
        {"record": names.TTFT_P95, "expr": _quantile(0.95, "vllm:time_to_first_token_seconds")},
        {"record": names.ITL_P50, "expr": _quantile(0.5, "vllm:inter_token_latency_seconds")},
        {"record": names.ITL_P95, "expr": _quantile(0.95, "vllm:inter_token_latency_seconds")},
        {"record": names.E2E_P95, "expr": _quantile(0.95, "vllm:e2e_request_latency_seconds")},
        {"record": names.KV_CACHE_USAGE, "expr": _per_recipe("max", "vllm:kv_cache_usage_perc")},
        {"record": names.REQUESTS_WAITING, "expr": _per_recipe("sum", "vllm:num_requests_waiting")},
        {"record": names.REQUESTS_RUNNING, "expr": _per_recipe("sum", "vllm:num_requests_running")},
        {"record": names.PREEMPTIONS_RATE, "expr": _per_recipe("sum", _rate("vllm:num_preemptions_total"))},
        {"record": names.GPUS_IN_USE, "expr": _per_recipe("sum", gpu_requests)},
    ]
    return [{"name": "aim.recording", "rules": rules}]


# ------------------------------------------------------------------------------------------------ estimates


def _number(value: float) -> str:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"estimate value {value!r} is not a finite number")
    return format(number, ".10g")


def recipe_labels(decision_summary: Mapping[str, Any], namespace: str) -> dict[str, str]:
    """The labels the measured `aim:` series of this decision carry (from the pod labels the engine writes)."""
    return {
        "namespace": namespace,
        "recipe": label_value(str(decision_summary["recipe_id"])),
        "model": label_value(str(decision_summary["model"])),
        "gpu": label_value(str(decision_summary["gpu"])),
    }


def decode_rate(running: float, step_base_seconds: float, step_per_sequence_seconds: float) -> float:
    """Tokens/s one replica generates with `running` sequences on the estimate's decode step line: each step takes
    base + running × per_sequence seconds and yields one token per sequence."""
    return running / (step_base_seconds + running * step_per_sequence_seconds)


def workload_factor(estimate: Mapping[str, Any]) -> float:
    """The estimate's rate at its workload over the pure-decode step rate at the running count that workload keeps
    per replica (Little's law: requests/s × mean end-to-end latency, capped at the running limit). Below 1 because
    prefill steps share the GPU with decodes; scaling the step line by it makes the expected rate at the workload's
    own load equal the estimate (and its low end the range's low end). 1 when the estimate has no load to read."""
    per_replica = estimate["per_replica"]
    replicas = int(estimate["layout"]["replicas"])
    in_flight = float(estimate["requests_per_s"]) * float(estimate["e2e_latency_s"]) / replicas
    running = min(in_flight, float(per_replica["max_running_sequences"]))
    if running <= 0 or float(estimate["output_tokens_per_s"]) <= 0:
        return 1.0
    base, slope = float(per_replica["step_base_ms"]) / 1000, float(per_replica["step_per_sequence_ms"]) / 1000
    decode = replicas * decode_rate(running, base, slope)
    # Never above 1: the step line already is the decode-only ceiling at that running count.
    return min(float(estimate["output_tokens_per_s"]) / decode, 1.0)


def _range(estimate: Mapping[str, Any], key: str, scale: float = 1.0) -> tuple[float, float, float]:
    """(point, low, high) of one ranged figure of the estimate, times `scale`."""
    low, high = estimate["range"][key]
    return float(estimate[key]) * scale, float(low) * scale, float(high) * scale


def model_series_labels(decision_summary: Mapping[str, Any]) -> dict[str, str]:
    """The labels that tell one model's `aim:` series from another's in a namespace several models share
    (aim:models): its recipe and its model, as the engine writes them on its pods."""
    return {
        "recipe": label_value(str(decision_summary["recipe_id"])),
        "model": label_value(str(decision_summary["model"])),
    }


def _matchers(labels: Mapping[str, str]) -> str:
    return "".join(f', {key}="{value}"' for key, value in labels.items())


def _checked_step_and_band(estimate: Mapping[str, Any], replicas: int) -> tuple[float, float, float]:
    """(step base s, per-sequence s, low throughput ratio) of an estimate made for `replicas`, or ValueError."""
    planned = int(estimate["layout"]["replicas"])
    if planned != replicas:
        raise ValueError(f"replicas {replicas}: the decision's estimate is for {planned} (use Selector.with_replicas)")
    per_replica = estimate["per_replica"]
    base = float(per_replica["step_base_ms"]) / 1000
    slope = float(per_replica["step_per_sequence_ms"]) / 1000
    if not (base > 0 and slope >= 0):
        raise ValueError(
            f"estimate step_base_ms {per_replica['step_base_ms']!r}, step_per_sequence_ms "
            f"{per_replica['step_per_sequence_ms']!r}: expected base > 0 and per sequence >= 0"
        )
    calibration = estimate["calibration"]
    low_ratio = float(calibration["throughput_band"][0])
    if not low_ratio > 0:
        raise ValueError(f"estimate calibration throughput_band {calibration['throughput_band']!r}: expected low > 0")
    return base, slope, low_ratio


def estimate_group(
    decision_summary: Mapping[str, Any], namespace: str, replicas: int, *, deployment: str | None = None
) -> Group:
    """The decision's estimate (`PerformanceEstimate.as_json()`: at the stack's workload, all replicas, with the
    calibration's range) as constant series labelled like the measured ones, for measured-against-range panels, and
    the low end of the estimate at the load the pods are running now, for the throughput alert.
    `decision_summary` is `Decision.summary()`. With `deployment` (several engines in one namespace), the group is
    named after it and its at-load rule reads only this decision's recipe and model, so each model's group records
    its own series and none records another's."""
    _dns_label(namespace, "namespace")
    if deployment is not None:
        _dns_label(deployment, "deployment")
    if replicas < 1:
        raise ValueError(f"replicas {replicas}: expected at least 1")
    estimate = decision_summary["estimate"]
    per_replica, calibration = estimate["per_replica"], estimate["calibration"]
    base, slope, low_ratio = _checked_step_and_band(estimate, replicas)
    output = _range(estimate, "output_tokens_per_s")
    ttft = _range(estimate, "ttft_p95_ms", 1 / 1000)
    tpot = _range(estimate, "tpot_p95_ms", 1 / 1000)
    values = (
        (names.ESTIMATE_OUTPUT_TOKENS, output[0]),
        (names.ESTIMATE_OUTPUT_TOKENS_LOW, output[1]),
        (names.ESTIMATE_OUTPUT_TOKENS_HIGH, output[2]),
        (names.ESTIMATE_TTFT_P95, ttft[0]),
        (names.ESTIMATE_TTFT_P95_LOW, ttft[1]),
        (names.ESTIMATE_TTFT_P95_HIGH, ttft[2]),
        (names.ESTIMATE_TPOT_P95, tpot[0]),
        (names.ESTIMATE_TPOT_P95_LOW, tpot[1]),
        (names.ESTIMATE_TPOT_P95_HIGH, tpot[2]),
        (names.ESTIMATE_STEP_BASE, base),
        (names.ESTIMATE_STEP_PER_SEQUENCE, slope),
        (names.ESTIMATE_THROUGHPUT_LOW_RATIO, low_ratio),
        (names.ESTIMATE_WORKLOAD_FACTOR, workload_factor(estimate)),
        (names.ESTIMATE_MAX_RUNNING, float(per_replica["max_running_sequences"])),
        (names.RECIPE_REPLICAS, float(replicas)),
    )
    labels = recipe_labels(decision_summary, namespace)
    rules: list[Rule] = [
        {"record": record, "expr": f"vector({_number(value)})", "labels": dict(labels)} for record, value in values
    ]
    info = {
        **labels,
        "calibration": str(calibration["version"]),
        "calibrated": "true" if calibration["calibrated"] else "false",
    }
    rules.append({"record": names.ESTIMATE_INFO, "expr": "vector(1)", "labels": info})
    # Last: rules of a group run in order, so it reads this evaluation's constants.
    in_ns = f'namespace="{namespace}"'
    if deployment is None:
        rules.append({"record": names.ESTIMATE_AT_LOAD_LOW, "expr": at_load_low_expr(in_ns)})
        return {"name": f"aim.estimate.{namespace}", "rules": rules}
    model = model_series_labels(decision_summary)
    # The labels repeat what the matchers already yield; they tell promtool (and readers) that each model's group
    # records a series of its own rather than the same record twice.
    scoped = {"record": names.ESTIMATE_AT_LOAD_LOW, "expr": at_load_low_expr(in_ns, in_ns + _matchers(model))}
    rules.append({**scoped, "labels": model})
    return {"name": f"aim.estimate.{namespace}.{deployment}", "rules": rules}


def at_load_low_expr(in_ns: str, series: str | None = None) -> str:
    """The low end of the estimate at the load each engine pod runs now, summed per recipe:
    Σ over pods of n / (base + n × per_sequence) × workload_factor × throughput_low_ratio, n = the pod's running
    requests. Per pod, not the recipe's mean per replica: the rate is concave in n, so a mean over unevenly loaded
    replicas would expect more than they can give and page on a load balancer's skew.
    `in_ns` selects the namespace's vLLM series; `series` (default `in_ns`) selects the `aim:` series of the recipes
    to record it for: with the recipe and model matchers, only the pods of that model count."""
    aim = in_ns if series is None else series
    on = f"on ({_RECIPE_BY}) group_left ()"
    running = (
        f"(vllm:num_requests_running{{{in_ns}}}\n"
        f"      * on (namespace, pod) group_left ({', '.join(_FRIENDLY)}) {names.POD_RECIPE_INFO}{{{aim}}})"
    )
    step = (
        f"({running}\n    * {on} {names.ESTIMATE_STEP_PER_SEQUENCE}{{{aim}}}\n"
        f"    + {on} {names.ESTIMATE_STEP_BASE}{{{aim}}})"
    )
    per_recipe = f"sum by ({_RECIPE_BY}) (\n    {running}\n  /\n    {step}\n)"
    return (
        f"{per_recipe}\n* on ({_RECIPE_BY}) {names.ESTIMATE_WORKLOAD_FACTOR}{{{aim}}}\n"
        f"* on ({_RECIPE_BY}) {names.ESTIMATE_THROUGHPUT_LOW_RATIO}{{{aim}}}"
    )


# ------------------------------------------------------------------------------------------------ alerts


@dataclass(frozen=True)
class AlertThresholds:
    """What counts as trouble for one recipe."""

    ttft_p95_seconds: float
    queue_depth: int
    kv_cache_usage: float  # 0-1
    throughput_fraction: float  # of the estimate's low end at the observed load
    gpu_memory_usage: float  # 0-1 of the device's VRAM


def default_thresholds(metric: str) -> AlertThresholds:
    """Thresholds for a recipe optimised for `metric` (latency or throughput)."""
    if metric == "latency":
        # A latency recipe promises interactive answers: small batches, more tensor parallelism, prefill rarely
        # waits. A p95 above a second means users wait visibly, the recipe is missing its goal.
        ttft = 1.0
    elif metric == "throughput":
        # A throughput recipe packs hundreds of sequences per step; chunked prefill shares every step with their
        # decodes and new requests queue for a slot, so seconds to first token are normal at full load. Five seconds
        # at p95 is where chat clients feel it and it no longer comes from batching alone.
        ttft = 5.0
    else:
        raise ValueError(f"metric {metric!r}: expected latency or throughput")
    return AlertThresholds(
        ttft_p95_seconds=ttft,
        queue_depth=32,  # a few waiting requests are normal at a full batch; 32 for 5 minutes is a backlog
        kv_cache_usage=0.9,  # vLLM preempts once it is full: at 90% one burst of long requests gets there
        # Of the LOW end of the calibrated estimate at the observed load, which already holds the model's error (the
        # worst under-prediction the calibration saw): 30 % below that is a degraded engine, not a model miss, and
        # leaves room for what the step line does not see (prompts unlike the workload's, rate() on bursty load).
        throughput_fraction=0.7,
        # vLLM allocates --gpu-memory-utilization (0.9) of HBM up front: 0.9 is the healthy steady state. 0.97 leaves
        # the runtime ~6 GiB of a MI300X before an out-of-memory error.
        gpu_memory_usage=0.97,
    )


def _dns_label(value: str, what: str) -> str:
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(f"{what} {value!r}: expected a DNS label (lower-case letters, digits, '-')")
    return value


def _label(name: str) -> str:
    return "{{ $labels." + name + " }}"


def _printf(fmt: str) -> str:
    return '{{ printf "' + fmt + '" $value }}'


PERCENT_VALUE = "{{ $value | humanizePercentage }}"
#: The page holding the runbooks, relative to the repository root (its "Runbooks" section).
RUNBOOK_PAGE = "docs/monitoring.md"
#: Each alert's `runbook` annotation: the page and the anchor of the alert's runbook heading there.
RUNBOOKS = {
    alert: f"{RUNBOOK_PAGE}#{anchor}"
    for alert, anchor in {
        "AimEngineDown": "aim-engine-down",
        "AimEngineNotReady": "aim-engine-not-ready",
        "AimModelLoadTooSlow": "aim-model-load-too-slow",
        "AimEngineRestarting": "aim-engine-restarting",
        "AimQueueDepthHigh": "aim-queue-depth-high",
        "AimKvCacheNearlyFull": "aim-kv-cache-nearly-full",
        "AimTimeToFirstTokenHigh": "aim-time-to-first-token-high",
        "AimThroughputBelowEstimate": "aim-throughput-below-estimate",
        "AimPreempting": "aim-preempting",
        "AimGpuMemoryNearlyFull": "aim-gpu-memory-nearly-full",
        "AimGpuLost": "aim-gpu-lost",
    }.items()
}


def _alert(name: str, expr: str, for_: str | None, severity: str, summary: str, description: str) -> Rule:
    rule: Rule = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": description, "runbook": RUNBOOKS[name]}
    return rule


def _pct(value: float) -> str:
    return f"{value * 100:g}%"


@dataclass(frozen=True)
class _Scope:
    """The selectors and texts every alert of one engine Deployment shares."""

    ns: str
    budget: int
    thresholds: AlertThresholds
    in_ns: str
    series: str  # selects this engine's `aim:` series: the namespace, and its recipe and model when it shares it
    pods: str
    by_pod: str
    recipe: str
    initialized: str
    starting: str
    available: str
    wanted: str
    where_dep: str


def _check_series(series: Mapping[str, str]) -> None:
    for key, value in series.items():
        if key not in _FRIENDLY or not value or '"' in value or "\\" in value:
            raise ValueError(f"series label {key}={value!r}: expected one of {', '.join(_FRIENDLY)} with a label value")


def alert_group(
    *,
    namespace: str,
    deployment: str,
    startup_budget_seconds: int,
    thresholds: AlertThresholds,
    series: Mapping[str, str] | None = None,
) -> Group:
    """Alerts for the engine `deployment` in `namespace` (its pods are `<deployment>-<hash>-<id>`), with the
    start-up budget of its decision (engine.startup_budget_seconds) and the recipe's thresholds.
    `series` (model_series_labels) when several engines share the namespace: the alerts on `aim:` series then read
    only this engine's recipe and model (another model's queue is not this one's alert, nor fired twice), and the
    group is named after the deployment so that every engine's group has a name of its own."""
    ns = _dns_label(namespace, "namespace")
    dep = _dns_label(deployment, "deployment")
    budget = int(startup_budget_seconds)
    if budget <= 0:
        raise ValueError(f"startup budget {startup_budget_seconds}: expected seconds > 0")
    in_ns = f'namespace="{ns}"'
    _check_series(series or {})
    pods = f'{in_ns}, pod=~"{dep}-[a-z0-9]+-[a-z0-9]+"'
    by_pod = "namespace, pod"
    recipe = f"{_label('recipe')} ({_label('model')} on {_label('gpu')}) in {_label('namespace')}"

    # A pod counts as starting while it is not Ready yet within the start-up budget counted from the end of its init
    # containers (kube_pod_status_initialized_time; the pod's start time where that is missing). Down/not-ready alerts
    # wait while one is: a Recreate rollout takes the single replica down for the whole load. The model download is
    # no part of this: it runs in a Job of its own (components/model_download.py) that completes before Pulumi creates
    # or changes the Deployment, so an engine pod never waits for the network.
    initialized = (
        f"(max by ({by_pod}) (kube_pod_status_initialized_time{{{pods}}})"
        f" or max by ({by_pod}) (kube_pod_start_time{{{pods}}}))"
    )
    ready_now = f'(max by ({by_pod}) (kube_pod_status_ready{{{pods}, condition="true"}}) == 1)'
    starting = f"count by (namespace) (\n    (time() - {initialized}) <= {budget} unless on ({by_pod}) {ready_now}\n  )"
    deployment_sel = f'{in_ns}, deployment="{dep}"'
    scope = _Scope(
        ns=ns,
        budget=budget,
        thresholds=thresholds,
        in_ns=in_ns,
        series=in_ns + _matchers(series or {}),
        pods=pods,
        by_pod=by_pod,
        recipe=recipe,
        initialized=initialized,
        starting=starting,
        available=f"max by (namespace, deployment) (kube_deployment_status_replicas_available{{{deployment_sel}}})",
        wanted=f"max by (namespace, deployment) (kube_deployment_spec_replicas{{{deployment_sel}}})",
        where_dep=f"{_label('namespace')}/{_label('deployment')}",
    )
    alerts = [*_availability_alerts(scope), *_serving_alerts(scope), *_gpu_alerts(scope)]
    if series is None:
        return {"name": f"aim.alerts.{ns}", "rules": alerts}
    # Every engine's group holds the same alerts: the deployment label says whose alert fired (Alertmanager can
    # route per model on it) and keeps one model's alert from looking like another's, e.g. a lost GPU on a node that
    # runs pods of both.
    for alert in alerts:
        alert["labels"]["deployment"] = dep
    return {"name": f"aim.alerts.{ns}.{dep}", "rules": alerts}


def _availability_alerts(s: _Scope) -> list[Rule]:
    """Down, not ready, too slow to load, restarting: is the engine serving at all?"""
    return [
        _alert(
            "AimEngineDown",
            f"({s.available} == 0)\nunless on (namespace)\n  {s.starting}",
            "5m",
            "critical",
            "The AIM engine has no available replica: its OpenAI API is down.",
            f"Deployment {s.where_dep} has had no available replica for 5 minutes, and no replica is loading the "
            f"model within its {s.budget} s start-up budget.",
        ),
        _alert(
            "AimEngineNotReady",
            f"({s.available} < {s.wanted})\nunless on (namespace)\n  {s.starting}",
            "10m",
            "warning",
            "The AIM engine runs fewer available replicas than it should.",
            f"Deployment {s.where_dep} has had only {_printf('%.0f')} available replica(s), fewer than its spec, for "
            "10 minutes, with none of the missing ones starting up.",
        ),
        _alert(
            "AimModelLoadTooSlow",
            f"((time() - {s.initialized}) > {s.budget})\n"
            f"and on ({s.by_pod}) (max by ({s.by_pod}) "
            f'(max_over_time(kube_pod_status_ready{{{s.pods}, condition="true"}}[{s.budget}s])) == 0)',
            "2m",
            "warning",
            "An AIM engine pod is taking longer than its start-up budget to become Ready.",
            f"Pod {_label('namespace')}/{_label('pod')} has not been Ready for {_printf('%.0f')} s since its init "
            f"containers finished; the start-up budget (weights load plus engine start) is {s.budget} s.",
        ),
        _alert(
            "AimEngineRestarting",
            f"max by ({s.by_pod}, container) (increase(kube_pod_container_status_restarts_total"
            f'{{{s.pods}, container="{ENGINE_CONTAINER}"}}[15m])) > 0',
            None,
            "warning",
            "The vLLM container of an AIM engine pod restarted.",
            f"Container {_label('container')} of pod {_label('namespace')}/{_label('pod')} restarted "
            f"{_printf('%.0f')} time(s) in the last 15 minutes.",
        ),
    ]


def _serving_alerts(s: _Scope) -> list[Rule]:
    """Queueing, KV cache, latency, throughput against the estimate, preemptions: is it serving well?"""
    return [
        _alert(
            "AimQueueDepthHigh",
            f"{names.REQUESTS_WAITING}{{{s.series}}} > {s.thresholds.queue_depth}",
            "5m",
            "warning",
            "Requests are queueing in front of the AIM engine.",
            f"{_printf('%.0f')} requests have been waiting for a batch slot of recipe {s.recipe} for 5 minutes "
            f"(threshold {s.thresholds.queue_depth}).",
        ),
        _alert(
            "AimKvCacheNearlyFull",
            f"{names.KV_CACHE_USAGE}{{{s.series}}} > {_number(s.thresholds.kv_cache_usage)}",
            "10m",
            "warning",
            "The KV cache of an AIM engine replica is nearly full.",
            f"The fullest replica of recipe {s.recipe} has used {PERCENT_VALUE} of its KV cache for 10 minutes "
            f"(threshold {_pct(s.thresholds.kv_cache_usage)}): new requests wait and running ones get preempted.",
        ),
        _alert(
            "AimTimeToFirstTokenHigh",
            f"{names.TTFT_P95}{{{s.series}}} > {_number(s.thresholds.ttft_p95_seconds)}",
            "10m",
            "warning",
            "Time to first token of the AIM engine is above its target.",
            f"p95 time to first token of recipe {s.recipe} has been {_printf('%.2f')} s for 10 minutes "
            f"(threshold {_number(s.thresholds.ttft_p95_seconds)} s).",
        ),
        _alert(
            "AimThroughputBelowEstimate",
            _throughput_expr(s.series, s.thresholds.throughput_fraction),
            "15m",
            "warning",
            "The AIM engine generates fewer tokens than the low end of its recipe's estimate at the load it runs.",
            f"Recipe {s.recipe} has generated {_printf('%.0f')} tokens/s for 15 minutes while serving requests, less "
            f"than {_pct(s.thresholds.throughput_fraction)} of the low end of its calibrated estimate at the load it "
            f"ran ({names.ESTIMATE_AT_LOAD_LOW}, averaged over {RATE_WINDOW}).",
        ),
        _alert(
            "AimPreempting",
            f"{names.PREEMPTIONS_RATE}{{{s.series}}} > 0",
            "15m",
            "warning",
            "vLLM keeps preempting requests of the AIM engine.",
            f"Recipe {s.recipe} has preempted {_printf('%.2f')} requests/s for 15 minutes: the KV cache is too small "
            "for this load, and preempted requests are recomputed.",
        ),
    ]


def _gpu_alerts(s: _Scope) -> list[Rule]:
    """GPU memory and lost GPUs (device-metrics-exporter and node capacity)."""
    return [
        _alert(
            "AimGpuMemoryNearlyFull",
            _gpu_memory_expr(s.ns, s.pods, s.thresholds.gpu_memory_usage),
            "10m",
            "warning",
            "A GPU of the AIM engine is nearly out of memory.",
            f"GPU {_label('gpu_id')} on {_label('hostname')}, held by pod {_label('namespace')}/{_label('pod')}, has "
            f"{PERCENT_VALUE} of its VRAM in use for 10 minutes (threshold {_pct(s.thresholds.gpu_memory_usage)}; vLLM "
            "reserves 90% by design).",
        ),
        _alert(
            "AimGpuLost",
            _gpu_lost_expr(s.pods),
            "5m",
            "critical",
            "A node running the AIM engine lost a GPU.",
            f"Node {_label('node')}, which runs AIM engine pods of {_label('namespace')}, offers {_printf('%.0f')} "
            "amd.com/gpu fewer than it has (capacity above allocatable) or than an hour ago.",
        ),
    ]


def _throughput_expr(series: str, fraction: float) -> str:
    """Measured tokens/s below `fraction` of the estimate's low end at the observed load, while busy. Both sides are
    5-minute averages. The expected side averages the recorded rate, not the running count: the rate is concave in
    the count, so the rate at a mean count over-expects bursty traffic (10 % of the time at 320 running yields a
    tenth of the rate at 320, far below the rate at 32)."""
    on = f"on ({_RECIPE_BY})"
    expected = f"avg_over_time({names.ESTIMATE_AT_LOAD_LOW}{{{series}}}[{RATE_WINDOW}])"
    running = f"avg_over_time({names.REQUESTS_RUNNING}{{{series}}}[{RATE_WINDOW}])"
    return (
        f"(\n  {names.GENERATION_TOKENS_RATE}{{{series}}}\n  < {on}\n  {_number(fraction)} * {expected}\n)\n"
        f"and {on}\n({running} > 0)"
    )


def _gpu_memory_expr(ns: str, pods: str, usage: float) -> str:
    """VRAM in use per GPU held by an engine pod. The exporter labels a GPU with the pod/namespace of the workload
    holding it; scraped without honorLabels those arrive as exported_pod/exported_namespace: accept both."""
    exported = pods.replace("namespace=", "exported_namespace=").replace("pod=~", "exported_pod=~")
    renamed = (
        f'label_replace(label_replace({names.GPU_USED_VRAM}{{{exported}}}, "namespace", "$1", "exported_namespace", '
        f'"(.*)"), "pod", "$1", "exported_pod", "(.*)")'
    )
    used = (
        f"max by (namespace, pod, hostname, gpu_id) (\n    {names.GPU_USED_VRAM}{{{pods}}}\n    or\n    {renamed}\n  )"
    )
    total = f"max by (hostname, gpu_id) ({names.GPU_TOTAL_VRAM})"
    return f"(\n  {used}\n  / on (hostname, gpu_id) group_left ()\n  {total}\n) > {_number(usage)}"


def _gpu_lost_expr(pods: str) -> str:
    """GPUs missing on a node that runs engine pods: the device plugin reports an unhealthy device by lowering
    allocatable below capacity; a device that vanished lowers both, so compare with allocatable an hour ago too."""
    selector = f'{{resource="{GPU_RESOURCE}"}}'
    capacity = f"max by (node) (kube_node_status_capacity{selector})"
    allocatable = f"max by (node) (kube_node_status_allocatable{selector})"
    before = f"max by (node) (max_over_time(kube_node_status_allocatable{selector}[1h]))"
    return (
        f"(\n  ({capacity} - {allocatable} > 0)\n  or\n  ({before} - {allocatable} > 0)\n)\n"
        f"* on (node) group_left (namespace)\nmax by (node, namespace) (kube_pod_info{{{pods}}})"
    )


# ------------------------------------------------------------------------------------------------ collisions

#: An equality matcher on one of the labels every `aim:` series carries (not `=~`, `!=`, nor `model_name=`).
_PINNING_MATCHER = re.compile(r"\b(" + "|".join(names.RECIPE_LABELS) + r')="([^"]*)"')


def pinned_labels(rule: Rule) -> dict[str, str]:
    """The `aim:` labels (namespace, recipe, model, gpu) a recording rule's every output series has one known value
    of: its static `labels`, and each of those labels that its expression matches with `=` on a single value
    (these rules aggregate `by (namespace, recipe, model, gpu)`, so a matched value is the output's value)."""
    matched: dict[str, set[str]] = {}
    for key, value in _PINNING_MATCHER.findall(str(rule["expr"])):
        matched.setdefault(key, set()).add(value)
    pinned = {key: values.pop() for key, values in matched.items() if len(values) == 1}
    pinned.update({key: str(value) for key, value in rule.get("labels", {}).items() if key in names.RECIPE_LABELS})
    return pinned


def recording_collisions(groups: Sequence[Group]) -> list[str]:
    """Pairs of recording rules that may record the same series with the same labels: Prometheus keeps one of the two
    samples and warns, so a panel or alert would read another model's numbers. Two rules of one record name are apart
    only when some `aim:` label is pinned (pinned_labels) to different values in each; a rule that pins nothing must
    be the only one of its name. Empty when no two rules can collide."""
    by_record: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for group in groups:
        for rule in group["rules"]:
            if "record" in rule:
                by_record.setdefault(rule["record"], []).append((group["name"], pinned_labels(rule)))
    problems = []
    for record, recorded in by_record.items():
        for index, (group_name, pinned) in enumerate(recorded):
            for other_group, other in recorded[index + 1 :]:
                if not any(key in other and other[key] != value for key, value in pinned.items()):
                    problems.append(
                        f"{record}: groups {group_name} ({pinned or 'any labels'}) and {other_group} "
                        f"({other or 'any labels'}) may record the same series"
                    )
    return problems


# ------------------------------------------------------------------------------------------------ rule file


class _RuleDumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, so the file reads like hand-written PromQL."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RuleDumper.add_representer(str, _represent_str)


def rule_file(groups: Sequence[Group]) -> str:
    """A plain Prometheus rules file (what `promtool check rules` reads; a PrometheusRule's `spec` is the same)."""
    return yaml.dump({"groups": list(groups)}, Dumper=_RuleDumper, sort_keys=False, allow_unicode=True, width=120)
