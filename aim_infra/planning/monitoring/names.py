"""The names monitoring shares between rules, alerts, dashboards and the stack: series, labels, pod labels."""

from __future__ import annotations

from aim_infra.common.contract import RECIPE_POD_LABELS

#: Pod labels (set by the AimEngine component) that kube-state-metrics exports on `kube_pod_labels`, so vLLM series
#: can be joined to the recipe that produced them. kube-state-metrics turns `aim.amd.com/recipe` into
#: `label_aim_amd_com_recipe`.
POD_LABELS = RECIPE_POD_LABELS
KSM_LABEL = {label: "label_" + label.replace(".", "_").replace("/", "_").replace("-", "_") for label in POD_LABELS}

#: Labels every `aim:` series carries (besides what a rule adds): where it runs and which recipe it serves.
RECIPE_LABELS = ("namespace", "recipe", "model", "gpu")

#: Recording rules (series names) the dashboards and alerts use.
POD_RECIPE_INFO = "aim:pod_recipe:info"  # 1 per (namespace, pod) with recipe, model, gpu
GENERATION_TOKENS_RATE = "aim:generation_tokens:rate5m"  # tokens/s generated, per recipe
PROMPT_TOKENS_RATE = "aim:prompt_tokens:rate5m"  # prompt tokens/s processed, per recipe
REQUESTS_RATE = "aim:requests:rate5m"  # finished requests/s, per recipe
HTTP_ERROR_RATIO = "aim:http_errors:ratio5m"  # share of API responses with a 5xx status, per recipe
TTFT_P50 = "aim:time_to_first_token_seconds:p50"
TTFT_P95 = "aim:time_to_first_token_seconds:p95"
ITL_P50 = "aim:inter_token_latency_seconds:p50"
ITL_P95 = "aim:inter_token_latency_seconds:p95"
E2E_P95 = "aim:e2e_request_latency_seconds:p95"
KV_CACHE_USAGE = "aim:kv_cache_usage:max"  # 0-1, the fullest replica of the recipe
REQUESTS_WAITING = "aim:num_requests_waiting:sum"
REQUESTS_RUNNING = "aim:num_requests_running:sum"
PREEMPTIONS_RATE = "aim:num_preemptions:rate5m"
GPUS_IN_USE = "aim:gpus_in_use:sum"  # amd.com/gpu requested by the recipe's running pods
#: The decision's estimate (recipes/performance.py, calibrated and ranged, at the stack's workload) as constant series,
#: for measured-against-range panels and the throughput alert. Totals are all replicas together.
ESTIMATE_OUTPUT_TOKENS = "aim:recipe_estimate:output_tokens_per_second"
ESTIMATE_OUTPUT_TOKENS_LOW = "aim:recipe_estimate:output_tokens_per_second:low"
ESTIMATE_OUTPUT_TOKENS_HIGH = "aim:recipe_estimate:output_tokens_per_second:high"
ESTIMATE_TTFT_P95 = "aim:recipe_estimate:ttft_p95_seconds"
ESTIMATE_TTFT_P95_LOW = "aim:recipe_estimate:ttft_p95_seconds:low"
ESTIMATE_TTFT_P95_HIGH = "aim:recipe_estimate:ttft_p95_seconds:high"
ESTIMATE_TPOT_P95 = "aim:recipe_estimate:tpot_p95_seconds"
ESTIMATE_TPOT_P95_LOW = "aim:recipe_estimate:tpot_p95_seconds:low"
ESTIMATE_TPOT_P95_HIGH = "aim:recipe_estimate:tpot_p95_seconds:high"
#: One replica's decode step with n running sequences takes about base + n × per_sequence seconds.
ESTIMATE_STEP_BASE = "aim:recipe_estimate:step_base_seconds"
ESTIMATE_STEP_PER_SEQUENCE = "aim:recipe_estimate:step_per_sequence_seconds"
ESTIMATE_THROUGHPUT_LOW_RATIO = "aim:recipe_estimate:throughput_low_ratio"  # calibration's low end / point estimate
#: The workload's estimated rate over the pure-decode step rate at the same running count (<= 1: prefill steps and
#: scheduling take the rest), so that at the workload's own load the step model gives the estimate itself.
ESTIMATE_WORKLOAD_FACTOR = "aim:recipe_estimate:workload_factor"
ESTIMATE_MAX_RUNNING = "aim:recipe_estimate:max_running_sequences"  # per replica
ESTIMATE_INFO = "aim:recipe_estimate:info"  # 1, with the calibration version and whether the GPU family was fitted
#: The low end of the estimate at the load each pod is running now (from the step model), summed over the pods.
ESTIMATE_AT_LOAD_LOW = "aim:recipe_estimate:output_tokens_per_second:at_load_low"
RECIPE_REPLICAS = "aim:recipe:replicas"

#: AMD device-metrics-exporter series (ROCm/device-metrics-exporter docs/configuration/metricslist.md: the metric
#: list's names, lower-cased on the wire; labels gpu_id, hostname, and pod/namespace/container of the workload that
#: holds the GPU when the exporter runs in Kubernetes).
GPU_GFX_ACTIVITY = "gpu_gfx_activity"  # 0-100 %
GPU_USED_VRAM = "gpu_used_vram"  # MB
GPU_TOTAL_VRAM = "gpu_total_vram"  # MB
GPU_POWER = "gpu_power_usage"  # W
GPU_JUNCTION_TEMPERATURE = "gpu_junction_temperature"  # °C (MI3xx)
