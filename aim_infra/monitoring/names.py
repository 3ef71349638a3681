"""The names monitoring shares between rules, alerts, dashboards and the stack: series, labels, pod labels."""

from __future__ import annotations

#: Pod labels (set by the AimEngine component) that kube-state-metrics exports on `kube_pod_labels`, so vLLM series
#: can be joined to the recipe that produced them. kube-state-metrics turns `aim.amd.com/recipe` into
#: `label_aim_amd_com_recipe`.
POD_LABELS = ("aim.amd.com/recipe", "aim.amd.com/model", "aim.amd.com/gpu", "app.kubernetes.io/instance")
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
#: The decision's estimates as series (constant recording rules), for estimated-beside-measured panels.
ESTIMATE_DECODE_PER_REPLICA = "aim:recipe_estimate:decode_tokens_per_second"
ESTIMATE_DECODE_TOTAL = "aim:recipe_estimate:decode_tokens_per_second:total"  # × replicas
ESTIMATE_SINGLE_STREAM = "aim:recipe_estimate:single_stream_tokens_per_second"
ESTIMATE_TTFT = "aim:recipe_estimate:ttft_seconds"
ESTIMATE_MAX_CONCURRENCY = "aim:recipe_estimate:max_concurrent_sequences"
RECIPE_REPLICAS = "aim:recipe:replicas"

#: AMD device-metrics-exporter series (ROCm/device-metrics-exporter docs/configuration/metricslist.md: the metric
#: list's names, lower-cased on the wire; labels gpu_id, hostname, and pod/namespace/container of the workload that
#: holds the GPU when the exporter runs in Kubernetes).
GPU_GFX_ACTIVITY = "gpu_gfx_activity"  # 0-100 %
GPU_USED_VRAM = "gpu_used_vram"  # MB
GPU_TOTAL_VRAM = "gpu_total_vram"  # MB
GPU_POWER = "gpu_power_usage"  # W
GPU_JUNCTION_TEMPERATURE = "gpu_junction_temperature"  # °C (MI3xx)
