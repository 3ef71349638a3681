"""Evaluate exactly one deployment layout at one workload, without choosing: the `estimate` command's engine."""

from __future__ import annotations

from dataclasses import dataclass

from aim_infra.common.errors import AimError
from aim_infra.planning.compat import format_problem, parallelism_problem
from aim_infra.planning.fit import Layout, fit_on
from aim_infra.planning.hardware import GpuSpec
from aim_infra.planning.model_profile import ModelProfile
from aim_infra.planning.performance import PerformanceEstimate, estimate_performance
from aim_infra.planning.precision import ON_THE_FLY
from aim_infra.planning.vllm_rules import load_vllm_rules
from aim_infra.planning.workload import Workload

HALF = ("bf16", "fp16")


@dataclass(frozen=True, slots=True, kw_only=True)
class LayoutRequest:
    """A layout as the command line states it; unset scheduler limits take vLLM's defaults for the device."""

    gpu_count: int
    tensor_parallel_size: int
    pipeline_parallel_size: int = 1
    precision: str = "auto"
    kv_cache_dtype: str = "auto"
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None


def evaluate_layout(
    profile: ModelProfile, gpu: GpuSpec, request: LayoutRequest, workload: Workload
) -> PerformanceEstimate:
    """replicas = gpu_count / (TP × PP), load spread evenly; one AimError line when the layout cannot serve."""
    tp, pp = request.tensor_parallel_size, request.pipeline_parallel_size
    per_replica = tp * pp
    if request.gpu_count % per_replica:
        raise AimError(
            f"--gpu-count {request.gpu_count} is not a multiple of TP × PP = {tp} × {pp} = {per_replica}: "
            "replicas must be whole"
        )
    precision = profile.checkpoint_precision if request.precision == "auto" else request.precision
    quantization = None
    if profile.checkpoint_precision in HALF and precision in ON_THE_FLY:
        quantization = ON_THE_FLY[precision][0]
    problem = format_problem(profile, gpu, precision, request.kv_cache_dtype, quantization) or parallelism_problem(
        profile, gpu, tp
    )
    if problem:
        raise AimError(f"{profile.id} on {gpu.name} with TP {tp}: {problem}")
    needed = workload.input_tokens + workload.output_tokens
    length = request.max_model_len or needed
    if length > profile.max_context:
        raise AimError(
            f"{workload.input_tokens} + {workload.output_tokens} tokens per request exceed the context of {profile.id} "
            f"({profile.max_context})"
        )
    defaults = load_vllm_rules().engine_defaults
    layout = Layout(
        tensor_parallel_size=tp,
        pipeline_parallel_size=pp,
        precision=precision,
        kv_cache_dtype=request.kv_cache_dtype,
        max_model_len=length,
        max_num_seqs=request.max_num_seqs or defaults.max_num_seqs(gpu.memory_gib),
        max_num_batched_tokens=request.max_num_batched_tokens or defaults.max_num_batched_tokens(gpu.memory_gib),
    )
    fit = fit_on(profile, gpu, layout)
    if not fit.fits:
        raise AimError(f"TP {tp} × PP {pp} of {profile.id} in {precision} does not fit {gpu.name}: {fit.reason}")
    return estimate_performance(profile, gpu, layout, fit, workload, request.gpu_count // per_replica)


def describe_estimate(estimate: PerformanceEstimate) -> str:
    """The human-readable form of `estimate` (the `--json` form is `estimate.as_json()`)."""
    r = estimate.ranges
    cal = estimate.calibration
    rows = [
        ("output tok/s (all replicas)", estimate.output_tokens_per_s, r["output_tokens_per_s"], ",.0f"),
        ("TTFT mean (ms)", estimate.ttft_ms, r["ttft_ms"], ",.0f"),
        ("TTFT p95 (ms)", estimate.ttft_p95_ms, r["ttft_p95_ms"], ",.0f"),
        ("TPOT mean (ms)", estimate.tpot_ms, r["tpot_ms"], ",.1f"),
        ("TPOT p95 (ms)", estimate.tpot_p95_ms, r["tpot_p95_ms"], ",.1f"),
        ("request latency (s)", estimate.e2e_latency_s, r["e2e_latency_s"], ",.2f"),
    ]
    lines = [
        f"layout     {estimate.replicas} replica(s) × TP {estimate.tensor_parallel_size} × PP "
        f"{estimate.pipeline_parallel_size} on {estimate.gpu_count} × {estimate.gpu}, {estimate.precision} weights "
        f"(compute {estimate.compute_precision}), KV {estimate.kv_cache_dtype}, max-num-seqs {estimate.max_num_seqs}, "
        f"max-num-batched-tokens {estimate.max_num_batched_tokens}",
        f"workload   {estimate.workload.describe()}",
        f"memory     weights {estimate.weights_gib_per_gpu:.1f} GiB, KV cache {estimate.kv_cache_gib_per_gpu:.1f} GiB "
        f"per GPU: {estimate.kv_capacity_sequences} requests of this length per replica",
        "",
        f"{'FIGURE':30}{'ESTIMATE':>12}   RANGE (low–high)",
    ]
    for label, value, (low, high), fmt in rows:
        lines.append(f"{label:30}{format(value, fmt):>12}   {format(low, fmt)}–{format(high, fmt)}")
    lines += [
        "",
        f"at full load ~{estimate.saturation_output_tokens_per_s:,.0f} output tok/s "
        f"({estimate.max_running_per_replica} running sequences per replica)",
    ]
    if estimate.cost_per_million_output_tokens is not None:
        lines.append(f"cost ~{estimate.cost_per_million_output_tokens:.3g} per 1M output tokens")
    if estimate.slo_violations:
        lines.append(f"SLO missed: {'; '.join(estimate.slo_violations)}")
    basis = "calibrated" if cal["calibrated"] else "UNCALIBRATED for this GPU family"
    lines.append(
        f"estimated, not measured ({basis}, {cal['version']}; fitted on {cal['fitted_on']}); "
        f"range = the model's 10th–90th percentile error on those measurements"
    )
    if "note" in cal:
        lines.append(f"note: {cal['note']}")
    return "\n".join(lines)
