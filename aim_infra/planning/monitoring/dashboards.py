"""Grafana dashboards of the AIM Engine (recipe performance, vLLM serving): JSON models built from panel specs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aim_infra.planning.monitoring import names

Json = dict[str, Any]

#: Dashboard JSON schema version. 41 is the newest version every Grafana 12 release reads natively (12.0 introduced
#: it); later releases migrate it forward on load, and their migrations (v42: hidden fields also hidden from tooltips,
#: v43: formatTime transformations) touch nothing these dashboards use.
SCHEMA_VERSION = 41
GRID_COLUMNS = 24

#: Every panel and query uses the dashboard's `datasource` variable (kube-prometheus-stack provisions its Prometheus
#: as the default datasource, so the variable starts on it).
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ("aim", "vllm", "amd")

# Grafana unit ids.
SECONDS = "s"
RATIO = "percentunit"  # 0-1 shown as %
PERCENT = "percent"  # 0-100
REQUESTS_PER_SECOND = "reqps"
EVENTS_PER_SECOND = "cps"
TOKENS_PER_SECOND = "suffix: tok/s"
COUNT = "short"
MEBIBYTES = "mbytes"  # the exporter's "MB" is 1024² bytes (amd-smi reports an MI300X as 196,592 MB)

DEVICE_EXPORTER_NOTE = (
    " Needs AMD's device-metrics-exporter add-on (GPU Operator `metricsExporter` or its Helm chart) scraped by"
    " Prometheus; the panel stays empty without it. Series are matched to this recipe's pods through the"
    " exporter's pod/namespace labels (`exported_pod`/`exported_namespace` when the ServiceMonitor does not honour"
    " labels)."
)


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and its legend; `dashed` marks an estimate or a limit, not a measurement."""

    expr: str
    legend: str
    dashed: bool = False


# ---------------------------------------------------------------- panel helpers


def target(query: Query, ref_id: str) -> Json:
    """A Prometheus query of a panel."""
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": query.expr,
        "legendFormat": query.legend,
        "range": True,
        "refId": ref_id,
    }


def _targets(queries: Sequence[Query]) -> list[Json]:
    return [target(query, chr(ord("A") + index)) for index, query in enumerate(queries)]


def _dashed(queries: Sequence[Query]) -> list[Json]:
    """Field overrides that draw the `dashed` queries as dashed lines."""
    return [
        {
            "matcher": {"id": "byFrameRefID", "options": chr(ord("A") + index)},
            "properties": [{"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}}],
        }
        for index, query in enumerate(queries)
        if query.dashed
    ]


def _defaults(unit: str, minimum: float | None, maximum: float | None, decimals: int | None) -> Json:
    defaults: Json = {"unit": unit}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if decimals is not None:
        defaults["decimals"] = decimals
    return defaults


def timeseries(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 12,
    height: int = 8,
    minimum: float | None = None,
    maximum: float | None = None,
    stacked: bool = False,
) -> Json:
    """A time-series panel (id and position are set by the dashboard's layout)."""
    defaults = _defaults(unit, minimum, maximum, None)
    defaults["custom"] = {
        "drawStyle": "line",
        "fillOpacity": 25 if stacked else 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
    }
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": _dashed(queries)},
        "gridPos": {"h": height, "w": width},
        "options": {
            "legend": {
                "calcs": ["lastNotNull", "max"],
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": _targets(queries),
        "title": title,
        "type": "timeseries",
    }


def stat(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 6,
    height: int = 4,
    decimals: int | None = None,
) -> Json:
    """A stat panel showing the last value of each series, with a sparkline."""
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": _defaults(unit, None, None, decimals), "overrides": []},
        "gridPos": {"h": height, "w": width},
        "options": {
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
        },
        "targets": _targets(queries),
        "title": title,
        "type": "stat",
    }


def heatmap(
    title: str,
    description: str,
    unit: str,
    bucket_expr: str,
    *,
    bucket_unit: str = COUNT,
    width: int = 12,
    height: int = 8,
) -> Json:
    """A heatmap of a Prometheus histogram: `bucket_expr` sums `..._bucket` series by `le`; cells are in `unit`."""
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "gridPos": {"h": height, "w": width},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "cellValues": {"unit": unit},
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "legend": {"show": True},
            "tooltip": {"mode": "single", "yHistogram": True},
            "yAxis": {"axisPlacement": "left", "unit": bucket_unit},
        },
        "targets": [{**target(Query(bucket_expr, "{{le}}"), "A"), "format": "heatmap"}],
        "title": title,
        "type": "heatmap",
    }


def row(title: str, *, repeat: str | None = None) -> Json:
    """A full-width row; with `repeat`, Grafana draws it and the panels below it once per value of that variable."""
    panel: Json = {
        "collapsed": False,
        "gridPos": {"h": 1, "w": GRID_COLUMNS},
        "panels": [],
        "title": title,
        "type": "row",
    }
    if repeat is not None:
        panel["repeat"] = repeat
    return panel


# ---------------------------------------------------------------- templating and dashboard


def datasource_variable() -> Json:
    """The `datasource` variable every panel queries through."""
    return {"hide": 0, "label": "Data source", "name": "datasource", "query": "prometheus", "type": "datasource"}


def query_variable(name: str, label: str, definition: str) -> Json:
    """A multi-value query variable with "All" (matching any value) filled from `label_values(...)`."""
    return {
        "allValue": ".*",
        "datasource": DATASOURCE,
        "definition": definition,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "query": {"query": definition, "refId": f"{name}-variable"},
        "refresh": 2,
        "sort": 1,
        "type": "query",
    }


def _layout(panels: Sequence[Json]) -> list[Json]:
    """Number the panels and flow them left to right into the 24-column grid (rows start a new line)."""
    placed: list[Json] = []
    x = y = line_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        width, height = panel["gridPos"]["w"], panel["gridPos"]["h"]
        if x + width > GRID_COLUMNS:
            x, y, line_height = 0, y + line_height, 0
        placed.append({**panel, "gridPos": {"h": height, "w": width, "x": x, "y": y}, "id": panel_id})
        x, line_height = x + width, max(line_height, height)
    return placed


def _dashboard(uid: str, title: str, description: str, variables: Sequence[Json], panels: Sequence[Json]) -> Json:
    return {
        "annotations": {"list": []},
        "description": description,
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [
            {
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
                "tags": ["aim"],
                "title": "AIM dashboards",
                "type": "dashboards",
            }
        ],
        "panels": _layout(panels),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": list(TAGS),
        "templating": {"list": [datasource_variable(), *variables]},
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
    }


# ---------------------------------------------------------------- recipe performance (aim: recording rules)

RECIPE_SELECTOR = '{namespace=~"$namespace", recipe=~"$recipe"}'
#: With several models (aim:models): the models picked too, each repeated row binding one.
MODEL_RECIPE_SELECTOR = '{namespace=~"$namespace", model=~"$model", recipe=~"$recipe"}'


def _recipe(series: str, selector: str) -> str:
    return series + selector


def _gpu(metric: str, selector: str) -> str:
    """`metric` of the device-metrics-exporter, kept for the GPUs held by the selected recipe's pods.

    The exporter labels each GPU with the pod and namespace of the workload holding it; scraped without honorLabels they
    arrive as `exported_pod`/`exported_namespace`, so both spellings are mapped to `pod`/`namespace` before joining with
    `aim:pod_recipe:info` (one series per recipe pod).
    """
    relabelled = (
        f'label_replace(label_replace({metric}, "namespace", "$1", "exported_namespace", "(.+)"),'
        ' "pod", "$1", "exported_pod", "(.+)")'
    )
    return f"({relabelled} * on (namespace, pod) group_left (recipe) {_recipe(names.POD_RECIPE_INFO, selector)})"


BY_NAMESPACE = "{{namespace}}"


def _recipe_capacity_panels(selector: str, repeated: Json) -> list[Json]:
    """What the recipe holds and what the decision estimated for it, below the row that repeats them."""
    return [
        repeated,
        stat(
            "GPUs in use",
            f"amd.com/gpu requested by the recipe's running pods ({names.GPUS_IN_USE}), per namespace.",
            COUNT,
            [Query(f"sum by (namespace) ({_recipe(names.GPUS_IN_USE, selector)})", BY_NAMESPACE)],
            decimals=0,
        ),
        stat(
            "Replicas",
            f"Replicas of the recipe's deployment ({names.RECIPE_REPLICAS}).",
            COUNT,
            [Query(f"sum by (namespace) ({_recipe(names.RECIPE_REPLICAS, selector)})", BY_NAMESPACE)],
            decimals=0,
        ),
        stat(
            "Estimate at the workload (calibrated range)",
            "Output tokens/s of all replicas the recipe decision estimated at the stack's workload: the calibrated"
            f" range's low end, the estimate, and the high end ({names.ESTIMATE_OUTPUT_TOKENS_LOW},"
            f" {names.ESTIMATE_OUTPUT_TOKENS}, {names.ESTIMATE_OUTPUT_TOKENS_HIGH}). The calibration version is on"
            f" {names.ESTIMATE_INFO}.",
            TOKENS_PER_SECOND,
            [
                Query(
                    f"max by (namespace) ({_recipe(names.ESTIMATE_OUTPUT_TOKENS_LOW, selector)})",
                    f"low · {BY_NAMESPACE}",
                ),
                Query(
                    f"max by (namespace) ({_recipe(names.ESTIMATE_OUTPUT_TOKENS, selector)})",
                    f"estimate · {BY_NAMESPACE}",
                ),
                Query(
                    f"max by (namespace) ({_recipe(names.ESTIMATE_OUTPUT_TOKENS_HIGH, selector)})",
                    f"high · {BY_NAMESPACE}",
                ),
            ],
        ),
        stat(
            "Max running sequences per replica (estimate)",
            "How many sequences one replica runs at once at most, as the decision estimated from --max-num-seqs,"
            f" the token budget and the KV cache at the workload's lengths ({names.ESTIMATE_MAX_RUNNING}).",
            COUNT,
            [Query(f"max by (namespace) ({_recipe(names.ESTIMATE_MAX_RUNNING, selector)})", BY_NAMESPACE)],
            decimals=0,
        ),
    ]


def _recipe_throughput_panels(selector: str) -> list[Json]:
    """Measured throughput beside the estimate range."""
    return [
        timeseries(
            "Generation throughput: measured vs estimate (calibrated range)",
            f"Tokens generated per second by all replicas ({names.GENERATION_TOKENS_RATE}) beside the recipe"
            " decision's estimate (calibrated range), dashed: its low and high end at the stack's workload"
            f" ({names.ESTIMATE_OUTPUT_TOKENS_LOW}, {names.ESTIMATE_OUTPUT_TOKENS_HIGH}), and its low end at the"
            f" load the pods actually run ({names.ESTIMATE_AT_LOAD_LOW}, 5-minute average). The workload band holds"
            " only under the workload's load; the at-load line follows the running requests, and the"
            " AimThroughputBelowEstimate alert fires when measured stays below aim:alertThroughputFraction of it.",
            TOKENS_PER_SECOND,
            [
                Query(_recipe(names.GENERATION_TOKENS_RATE, selector), f"measured · {BY_NAMESPACE}"),
                Query(
                    _recipe(names.ESTIMATE_OUTPUT_TOKENS_LOW, selector),
                    f"estimate (calibrated range) low, at the workload · {BY_NAMESPACE}",
                    dashed=True,
                ),
                Query(
                    _recipe(names.ESTIMATE_OUTPUT_TOKENS_HIGH, selector),
                    f"estimate (calibrated range) high, at the workload · {BY_NAMESPACE}",
                    dashed=True,
                ),
                Query(
                    f"avg_over_time({_recipe(names.ESTIMATE_AT_LOAD_LOW, selector)}[5m])",
                    f"estimate (calibrated range) low, at the observed load · {BY_NAMESPACE}",
                    dashed=True,
                ),
            ],
            minimum=0,
        ),
        timeseries(
            "Prompt throughput",
            f"Prompt tokens processed (prefilled) per second by all replicas ({names.PROMPT_TOKENS_RATE}).",
            TOKENS_PER_SECOND,
            [Query(_recipe(names.PROMPT_TOKENS_RATE, selector), BY_NAMESPACE)],
            minimum=0,
        ),
    ]


def _recipe_latency_panels(selector: str) -> list[Json]:
    """TTFT and ITL percentiles beside the estimate range."""
    return [
        timeseries(
            "TTFT p50 / p95 vs estimate p95 (calibrated range)",
            f"Time to first token, median and 95th percentile ({names.TTFT_P50}, {names.TTFT_P95}), beside the"
            " low and high end of the recipe decision's p95 estimate at the stack's workload"
            f" ({names.ESTIMATE_TTFT_P95_LOW}, {names.ESTIMATE_TTFT_P95_HIGH}, dashed). Queueing adds to TTFT: read"
            " it with the queue panel, and expect the band only under the workload's load.",
            SECONDS,
            [
                Query(_recipe(names.TTFT_P50, selector), f"p50 · {BY_NAMESPACE}"),
                Query(_recipe(names.TTFT_P95, selector), f"p95 · {BY_NAMESPACE}"),
                Query(
                    _recipe(names.ESTIMATE_TTFT_P95_LOW, selector),
                    f"estimate (calibrated range) p95 low · {BY_NAMESPACE}",
                    dashed=True,
                ),
                Query(
                    _recipe(names.ESTIMATE_TTFT_P95_HIGH, selector),
                    f"estimate (calibrated range) p95 high · {BY_NAMESPACE}",
                    dashed=True,
                ),
            ],
            minimum=0,
        ),
        timeseries(
            "ITL p50 / p95 vs estimate TPOT p95 (calibrated range)",
            f"Inter-token latency, median and 95th percentile ({names.ITL_P50}, {names.ITL_P95}), beside the low and"
            " high end of the recipe decision's time-per-output-token p95 at the stack's workload"
            f" ({names.ESTIMATE_TPOT_P95_LOW}, {names.ESTIMATE_TPOT_P95_HIGH}, dashed). ITL is per token and TPOT a"
            " request's mean, so their p95s differ somewhat (a prefill stall weighs differently in each): read the"
            " band as the level to expect under the workload's load, not as an exact bound.",
            SECONDS,
            [
                Query(_recipe(names.ITL_P50, selector), f"p50 · {BY_NAMESPACE}"),
                Query(_recipe(names.ITL_P95, selector), f"p95 · {BY_NAMESPACE}"),
                Query(
                    _recipe(names.ESTIMATE_TPOT_P95_LOW, selector),
                    f"estimate (calibrated range) TPOT p95 low · {BY_NAMESPACE}",
                    dashed=True,
                ),
                Query(
                    _recipe(names.ESTIMATE_TPOT_P95_HIGH, selector),
                    f"estimate (calibrated range) TPOT p95 high · {BY_NAMESPACE}",
                    dashed=True,
                ),
            ],
            minimum=0,
        ),
    ]


def _recipe_load_panels(selector: str) -> list[Json]:
    """Queue, KV cache, request rate, errors, preemptions and end-to-end latency."""
    return [
        timeseries(
            "Queue: waiting and running requests",
            f"Requests waiting for a slot ({names.REQUESTS_WAITING}) and being served ({names.REQUESTS_RUNNING}),"
            " summed over replicas. A waiting count that stays above zero means the recipe is saturated.",
            COUNT,
            [
                Query(_recipe(names.REQUESTS_WAITING, selector), f"waiting · {BY_NAMESPACE}"),
                Query(_recipe(names.REQUESTS_RUNNING, selector), f"running · {BY_NAMESPACE}"),
            ],
            minimum=0,
        ),
        timeseries(
            "KV cache usage",
            f"Share of the KV cache in use on the fullest replica ({names.KV_CACHE_USAGE}, 0-1). Near 100 % new"
            " requests wait and running ones get preempted.",
            RATIO,
            [Query(_recipe(names.KV_CACHE_USAGE, selector), BY_NAMESPACE)],
            minimum=0,
            maximum=1,
        ),
        timeseries(
            "Request rate",
            f"Finished requests per second, all replicas ({names.REQUESTS_RATE}).",
            REQUESTS_PER_SECOND,
            [Query(_recipe(names.REQUESTS_RATE, selector), BY_NAMESPACE)],
            width=6,
            minimum=0,
        ),
        timeseries(
            "HTTP error ratio",
            f"Share of API responses with a 5xx status ({names.HTTP_ERROR_RATIO}).",
            RATIO,
            [Query(_recipe(names.HTTP_ERROR_RATIO, selector), BY_NAMESPACE)],
            width=6,
            minimum=0,
        ),
        timeseries(
            "Preemptions",
            f"Sequences preempted per second for lack of KV cache ({names.PREEMPTIONS_RATE}); above zero the"
            " recipe needs more KV cache room or fewer concurrent sequences.",
            EVENTS_PER_SECOND,
            [Query(_recipe(names.PREEMPTIONS_RATE, selector), BY_NAMESPACE)],
            width=6,
            minimum=0,
        ),
        timeseries(
            "End-to-end latency p95",
            f"95th percentile of the whole request's latency ({names.E2E_P95}).",
            SECONDS,
            [Query(_recipe(names.E2E_P95, selector), BY_NAMESPACE)],
            width=6,
            minimum=0,
        ),
    ]


def _recipe_gpu_panels(selector: str) -> list[Json]:
    """GPU utilisation and memory of the recipe pods (device-metrics-exporter)."""
    return [
        timeseries(
            "GPU utilisation",
            f"Graphics-engine activity ({names.GPU_GFX_ACTIVITY}, 0-100 %) averaged over the GPUs of each pod of"
            " the recipe." + DEVICE_EXPORTER_NOTE,
            PERCENT,
            [Query(f"avg by (namespace, pod) {_gpu(names.GPU_GFX_ACTIVITY, selector)}", "{{pod}}")],
            minimum=0,
            maximum=100,
        ),
        timeseries(
            "GPU memory used / total",
            f"VRAM used ({names.GPU_USED_VRAM}) and installed ({names.GPU_TOTAL_VRAM}, dashed) on the GPUs the"
            " recipe's pods hold, summed. vLLM reserves --gpu-memory-utilization of each GPU at start, so used"
            " sits near that share by design. The used figure is not reported on hypervisor (guest VM) hosts."
            + DEVICE_EXPORTER_NOTE,
            MEBIBYTES,
            [
                Query(f"sum by (namespace) {_gpu(names.GPU_USED_VRAM, selector)}", f"used · {BY_NAMESPACE}"),
                Query(
                    f"sum by (namespace) {_gpu(names.GPU_TOTAL_VRAM, selector)}", f"total · {BY_NAMESPACE}", dashed=True
                ),
            ],
            minimum=0,
        ),
    ]


def _recipe_panels(*, per_model: bool) -> list[Json]:
    """The recipe performance dashboard, one repeated row per recipe (per model with `per_model`): capacity,
    throughput, latency, load, GPUs."""
    if per_model:
        selector, repeated = MODEL_RECIPE_SELECTOR, row("Model $model", repeat="model")
    else:
        selector, repeated = RECIPE_SELECTOR, row("Recipe $recipe", repeat="recipe")
    return [
        *_recipe_capacity_panels(selector, repeated),
        *_recipe_throughput_panels(selector),
        *_recipe_latency_panels(selector),
        *_recipe_load_panels(selector),
        *_recipe_gpu_panels(selector),
    ]


def recipe_performance_dashboard(*, per_model: bool = False) -> Json:
    """Per recipe: what the AIM decision estimated beside what the deployment measures (from the `aim:` rules).
    With `per_model` (several models in the stack, aim:models) a `model` variable (multi-value, All) picks the
    models and the rows repeat once per model, so every model of the stack has its own panels."""
    info = names.POD_RECIPE_INFO
    variables = [query_variable("namespace", "Namespace", f"label_values({info}, namespace)")]
    if per_model:
        variables += [
            query_variable("model", "Model", f'label_values({info}{{namespace=~"$namespace"}}, model)'),
            query_variable(
                "recipe", "Recipe", f'label_values({info}{{namespace=~"$namespace", model=~"$model"}}, recipe)'
            ),
        ]
    else:
        variables.append(query_variable("recipe", "Recipe", f'label_values({info}{{namespace=~"$namespace"}}, recipe)'))
    return _dashboard(
        "aim-recipe-performance",
        "AIM Engine / Recipe performance",
        "Each AIM recipe's measured serving performance beside the estimates it was chosen with, from the aim:"
        " recording rules; GPU panels need AMD's device-metrics-exporter.",
        variables,
        _recipe_panels(per_model=per_model),
    )


# ---------------------------------------------------------------- vLLM serving (vLLM V1 metrics)

VLLM_SELECTOR = '{namespace=~"$namespace", model_name=~"$model_name", pod=~"$pod"}'
RATE = "[$__rate_interval]"
BY_MODEL = "model_name"


def _vllm(metric: str) -> str:
    return metric + VLLM_SELECTOR


def _rate(metric: str, by: str = BY_MODEL) -> str:
    return f"sum by ({by}) (rate({_vllm(metric)}{RATE}))"


def _quantile(quantile: float, histogram: str) -> str:
    return f"histogram_quantile({quantile}, sum by (le, {BY_MODEL}) (rate({_vllm(histogram + '_bucket')}{RATE})))"


def _mean(histogram: str) -> str:
    return f"{_rate(histogram + '_sum')} / {_rate(histogram + '_count')}"


def _latency(histogram: str, quantiles: Sequence[float], *, mean: bool = False, what: str = "") -> list[Query]:
    prefix = f"{what} " if what else ""
    queries = [Query(_quantile(q, histogram), f"{prefix}p{round(q * 100)} · {{{{{BY_MODEL}}}}}") for q in quantiles]
    if mean:
        queries.append(Query(_mean(histogram), f"{prefix}mean · {{{{{BY_MODEL}}}}}"))
    return queries


BY_MODEL_NAME = "{{model_name}}"


def _vllm_headline_panels() -> list[Json]:
    """Running and waiting requests, generation rate and the fullest KV cache."""
    return [
        stat(
            "Requests running",
            "Requests in the running batch (vllm:num_requests_running), all selected pods.",
            COUNT,
            [Query(f"sum({_vllm('vllm:num_requests_running')})", "running")],
            decimals=0,
        ),
        stat(
            "Requests waiting",
            "Requests queued for a slot (vllm:num_requests_waiting), all selected pods.",
            COUNT,
            [Query(f"sum({_vllm('vllm:num_requests_waiting')})", "waiting")],
            decimals=0,
        ),
        stat(
            "Generation tokens/s",
            "Tokens generated per second (rate of vllm:generation_tokens_total), all selected pods.",
            TOKENS_PER_SECOND,
            [Query(f"sum(rate({_vllm('vllm:generation_tokens_total')}{RATE}))", "generation")],
        ),
        stat(
            "KV cache usage (fullest pod)",
            "Highest KV cache usage among the selected pods (vllm:kv_cache_usage_perc, 0-1).",
            RATIO,
            [Query(f"max({_vllm('vllm:kv_cache_usage_perc')})", "KV cache")],
        ),
    ]


def _vllm_latency_panels() -> list[Json]:
    """Latency row: end to end, TTFT, ITL, queue, prefill and decode."""
    return [
        row("Latency"),
        timeseries(
            "E2E request latency",
            "Whole-request latency from arrival to the last token: p50, p90, p99 and mean"
            " (vllm:e2e_request_latency_seconds).",
            SECONDS,
            _latency("vllm:e2e_request_latency_seconds", (0.5, 0.9, 0.99), mean=True),
            minimum=0,
        ),
        timeseries(
            "Time to first token (TTFT)",
            "Time from arrival to the first generated token, queueing included: p50, p90, p99 and mean"
            " (vllm:time_to_first_token_seconds).",
            SECONDS,
            _latency("vllm:time_to_first_token_seconds", (0.5, 0.9, 0.99), mean=True),
            minimum=0,
        ),
        timeseries(
            "Inter-token latency (ITL)",
            "Time between consecutive output tokens of a request: p50, p90, p99 and mean"
            " (vllm:inter_token_latency_seconds).",
            SECONDS,
            _latency("vllm:inter_token_latency_seconds", (0.5, 0.9, 0.99), mean=True),
            minimum=0,
        ),
        timeseries(
            "Queue time",
            "Time requests spent waiting before the scheduler first ran them: p50, p95 and mean"
            " (vllm:request_queue_time_seconds).",
            SECONDS,
            _latency("vllm:request_queue_time_seconds", (0.5, 0.95), mean=True),
            minimum=0,
        ),
        timeseries(
            "Prefill and decode time",
            "Time requests spent in prefill (vllm:request_prefill_time_seconds) and in decode"
            " (vllm:request_decode_time_seconds), p50 and p95.",
            SECONDS,
            [
                *_latency("vllm:request_prefill_time_seconds", (0.5, 0.95), what="prefill"),
                *_latency("vllm:request_decode_time_seconds", (0.5, 0.95), what="decode"),
            ],
            width=24,
            minimum=0,
        ),
    ]


def _vllm_throughput_panels() -> list[Json]:
    """Throughput and scheduler row."""
    return [
        row("Throughput and scheduler"),
        timeseries(
            "Token throughput",
            "Prompt tokens prefilled and tokens generated per second (rates of vllm:prompt_tokens_total and"
            " vllm:generation_tokens_total).",
            TOKENS_PER_SECOND,
            [
                Query(_rate("vllm:prompt_tokens_total"), f"prompt · {BY_MODEL_NAME}"),
                Query(_rate("vllm:generation_tokens_total"), f"generation · {BY_MODEL_NAME}"),
            ],
            minimum=0,
        ),
        timeseries(
            "Scheduler state",
            "Requests running in the batch (vllm:num_requests_running) and waiting in the queue"
            " (vllm:num_requests_waiting).",
            COUNT,
            [
                Query(f"sum by ({BY_MODEL}) ({_vllm('vllm:num_requests_running')})", f"running · {BY_MODEL_NAME}"),
                Query(f"sum by ({BY_MODEL}) ({_vllm('vllm:num_requests_waiting')})", f"waiting · {BY_MODEL_NAME}"),
            ],
            minimum=0,
        ),
        timeseries(
            "Finish reasons",
            "Finished requests per second by why they ended: stop, length (hit max_tokens), abort, ..."
            " (vllm:request_success_total by finished_reason).",
            REQUESTS_PER_SECOND,
            [Query(_rate("vllm:request_success_total", "finished_reason"), "{{finished_reason}}")],
            minimum=0,
            stacked=True,
        ),
        timeseries(
            "Preemptions",
            "Sequences preempted per second because the KV cache ran out (rate of vllm:num_preemptions_total).",
            EVENTS_PER_SECOND,
            [Query(_rate("vllm:num_preemptions_total"), BY_MODEL_NAME)],
            minimum=0,
        ),
    ]


def _vllm_cache_panels() -> list[Json]:
    """Caches row: KV cache usage and prefix cache hit rate."""
    return [
        row("Caches"),
        timeseries(
            "KV cache usage",
            "Share of the KV cache in use per pod (vllm:kv_cache_usage_perc, 0-1).",
            RATIO,
            [Query(f"max by (pod) ({_vllm('vllm:kv_cache_usage_perc')})", "{{pod}}")],
            minimum=0,
            maximum=1,
        ),
        timeseries(
            "Prefix cache hit rate",
            "Share of prompt tokens served from the prefix cache: rate of vllm:prefix_cache_hits_total over rate of"
            " vllm:prefix_cache_queries_total.",
            RATIO,
            [
                Query(
                    f"{_rate('vllm:prefix_cache_hits_total')} / {_rate('vllm:prefix_cache_queries_total')}",
                    BY_MODEL_NAME,
                )
            ],
            minimum=0,
            maximum=1,
        ),
    ]


def _vllm_request_shape_panels() -> list[Json]:
    """Request shapes row: prompt and generation length distributions."""
    return [
        row("Request shapes"),
        heatmap(
            "Prompt length distribution",
            "Prompt tokens per finished request: each cell is the rate of requests whose prompt length fell in that"
            " bucket of the vllm:request_prompt_tokens histogram.",
            REQUESTS_PER_SECOND,
            f"sum by (le) (rate({_vllm('vllm:request_prompt_tokens_bucket')}{RATE}))",
        ),
        heatmap(
            "Generation length distribution",
            "Generated tokens per finished request: each cell is the rate of requests whose output length fell in"
            " that bucket of the vllm:request_generation_tokens histogram.",
            REQUESTS_PER_SECOND,
            f"sum by (le) (rate({_vllm('vllm:request_generation_tokens_bucket')}{RATE}))",
        ),
    ]


def _vllm_panels(*, per_model: bool) -> list[Json]:
    """The vLLM serving dashboard: headline stats, then rows for latency, throughput, caches and request shapes.
    With `per_model` the headline stats sit in a row repeated per selected model: a sum over several models' queues
    or token rates says nothing about any of them (the rows below draw one line per model already)."""
    return [
        *([row("Model $model_name", repeat=BY_MODEL)] if per_model else []),
        *_vllm_headline_panels(),
        *_vllm_latency_panels(),
        *_vllm_throughput_panels(),
        *_vllm_cache_panels(),
        *_vllm_request_shape_panels(),
    ]


def vllm_serving_dashboard(*, per_model: bool = False) -> Json:
    """vLLM's own serving metrics (V1 engine names), per model, namespace and pod; `per_model` (several models in
    the stack, aim:models) repeats the headline stats once per selected model."""
    running = "vllm:num_requests_running"
    return _dashboard(
        "aim-vllm-serving",
        "AIM Engine / vLLM serving",
        "vLLM V1 serving metrics of the AIM Engine's model servers: latency, throughput, scheduler, caches and"
        " request shapes.",
        [
            query_variable("namespace", "Namespace", f"label_values({running}, namespace)"),
            query_variable("model_name", "Model", f'label_values({running}{{namespace=~"$namespace"}}, model_name)'),
            query_variable(
                "pod", "Pod", f'label_values({running}{{namespace=~"$namespace", model_name=~"$model_name"}}, pod)'
            ),
        ],
        _vllm_panels(per_model=per_model),
    )


# ---------------------------------------------------------------- the dashboards, by ConfigMap file name


class DashboardBuilder(Protocol):
    """Builds one dashboard; `per_model` for a stack of several models (aim:models)."""

    def __call__(self, *, per_model: bool = False) -> Json: ...


#: File name (a valid ConfigMap key; the Grafana sidecar loads ConfigMaps labelled `grafana_dashboard: "1"`) → builder.
DASHBOARDS: dict[str, DashboardBuilder] = {
    "aim-recipe-performance.json": recipe_performance_dashboard,
    "aim-vllm-serving.json": vllm_serving_dashboard,
}


def dashboard_json(name: str, *, per_model: bool = False) -> str:
    """The dashboard `name` (a key of DASHBOARDS) as compact JSON with sorted keys: the same bytes on every call.
    `per_model`: the variant for several models in one stack (rows repeated per model)."""
    try:
        build = DASHBOARDS[name]
    except KeyError:
        raise KeyError(f"unknown dashboard {name!r}; known: {', '.join(sorted(DASHBOARDS))}") from None
    return json.dumps(build(per_model=per_model), sort_keys=True, separators=(",", ":"))
