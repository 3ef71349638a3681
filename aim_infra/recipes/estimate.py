"""Roofline performance estimate of a layout: decode tokens/s from HBM bandwidth, time to first token from compute."""

from __future__ import annotations

from dataclasses import dataclass

from .assumptions import DEFAULT_ASSUMPTIONS, Assumptions
from .fit import Fit, Layout, kv_bytes_per_sequence, serving_weight_bytes
from .hardware import GpuSpec
from .model_profile import ModelProfile


@dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    """Estimated, not measured: an order-of-magnitude figure used to rank candidates (README explains the model)."""

    weights_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    max_concurrent_sequences: int
    batch: int
    decode_tokens_per_s: float
    decode_tokens_per_s_per_gpu: float
    single_stream_tokens_per_s: float
    ttft_ms: float
    request_latency_ms: float


def weight_bytes_read_per_step(profile: ModelProfile, precision: str, batch: int) -> float:
    """Weights a decode step streams from HBM for the whole model: all of a dense model; for MoE the shared part
    plus the experts at least one sequence in the batch routes to (uniform routing assumed)."""
    total = serving_weight_bytes(profile, precision) or 0.0
    if not profile.is_moe:
        return total
    expert_share = profile.expert_params / profile.params_total
    touched = 1 - (1 - profile.experts_per_token / profile.num_experts) ** batch
    return total * (1 - expert_share) + total * expert_share * touched


def decode_step_seconds(
    profile: ModelProfile, gpu: GpuSpec, layout: Layout, batch: int, assumptions: Assumptions
) -> float:
    """One decode step of `batch` sequences: the slower of memory traffic and compute, plus TP collectives and a
    fixed per-step cost. Pipeline stages run one after another for one batch."""
    gpus = layout.gpu_count
    tp = layout.tensor_parallel_size
    weights = weight_bytes_read_per_step(profile, layout.precision, batch) / gpus
    kv = batch * kv_bytes_per_sequence(profile, layout, assumptions.reference_context_tokens)
    bandwidth = gpu.bandwidth_tbps * 1e12 * assumptions.hbm_efficiency
    memory_time = (weights + kv) * layout.pipeline_parallel_size / bandwidth
    flops = 2 * profile.params_active * batch / tp
    compute_time = flops / (gpu.tflops(layout.precision) * 1e12 * assumptions.compute_efficiency)
    collectives = 0.0
    if tp > 1:
        message = batch * profile.hidden_size * 2
        per_allreduce = assumptions.allreduce_latency_us * 1e-6 + message * 2 * (tp - 1) / tp / (gpu.xgmi_gbps * 1e9)
        collectives = 2 * profile.num_layers * per_allreduce
    return max(memory_time, compute_time) + collectives + assumptions.step_overhead_ms * 1e-3


def estimate(
    profile: ModelProfile,
    gpu: GpuSpec,
    layout: Layout,
    fit: Fit,
    assumptions: Assumptions = DEFAULT_ASSUMPTIONS,
) -> Estimate:
    """Decode throughput at the reference batch (capped by what the KV cache and max-num-seqs allow), single-stream
    decode speed, time to first token for the reference prompt, and the end-to-end time of one reference request
    (that prompt, then the reference output tokens) on an otherwise idle replica."""
    batch = max(1, min(assumptions.reference_batch, fit.max_concurrent_sequences, layout.max_num_seqs))
    step = decode_step_seconds(profile, gpu, layout, batch, assumptions)
    # With pipeline parallelism, stages work on different micro-batches at once.
    per_replica = batch / step * layout.pipeline_parallel_size
    single = 1 / decode_step_seconds(profile, gpu, layout, 1, assumptions)
    prompt = min(assumptions.reference_prompt_tokens, layout.max_model_len)
    prefill_flops = 2 * profile.params_active * prompt / layout.tensor_parallel_size
    prefill = prefill_flops / (gpu.tflops(layout.precision) * 1e12 * assumptions.compute_efficiency)
    prefill += decode_step_seconds(profile, gpu, layout, 1, assumptions)
    return Estimate(
        weights_gib_per_gpu=round(fit.weights_gib_per_gpu, 2),
        kv_cache_gib_per_gpu=round(fit.kv_cache_gib_per_gpu, 2),
        max_concurrent_sequences=fit.max_concurrent_sequences,
        batch=batch,
        decode_tokens_per_s=round(per_replica, 1),
        decode_tokens_per_s_per_gpu=round(per_replica / layout.gpu_count, 1),
        single_stream_tokens_per_s=round(single, 1),
        ttft_ms=round(prefill * 1e3, 1),
        request_latency_ms=round((prefill + assumptions.reference_output_tokens / single) * 1e3, 1),
    )
