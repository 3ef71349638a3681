"""Memory fit: weights, KV cache and runtime overhead per GPU, and whether a layout can serve a context length."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aim_infra.planning.assumptions import DEFAULT_ASSUMPTIONS, Assumptions
from aim_infra.planning.hardware import GpuSpec
from aim_infra.planning.model_profile import ModelProfile
from aim_infra.planning.precision import BYTES_PER_ELEMENT, ON_THE_FLY, kv_element_bytes

GIB = 2**30


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """Everything about a deployment shape that changes memory: parallelism, formats and scheduler limits.
    (A plain dataclass: it is built for every candidate and used as a cache key, so it must be cheap.)"""

    tensor_parallel_size: int
    pipeline_parallel_size: int = 1
    precision: str
    kv_cache_dtype: str = "auto"
    max_model_len: int
    gpu_memory_utilization: float = 0.9
    max_num_seqs: int
    max_num_batched_tokens: int
    enforce_eager: bool = False

    @property
    def gpu_count(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


@dataclass(frozen=True, slots=True, kw_only=True)
class Fit:
    """The memory picture of one layout on one GPU type, per GPU."""

    fits: bool
    reason: str
    weights_gib_per_gpu: float
    overhead_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    kv_bytes_per_token_per_gpu: float
    full_length_sequences: float
    max_concurrent_sequences: int


def serving_weight_bytes(profile: ModelProfile, precision: str) -> float | None:
    """Bytes of weights vLLM holds for the whole model in `precision`; None when it cannot produce that format."""
    stored = profile.checkpoint_precision
    if precision == stored:
        return float(profile.checkpoint_bytes)
    if stored in ("bf16", "fp16") and precision in ("bf16", "fp16"):
        return float(profile.checkpoint_bytes)
    if stored in ("bf16", "fp16") and precision in ON_THE_FLY:
        # On-the-fly quantisation converts the linear layers; embeddings and the LM head stay in 16 bits.
        embedding_bytes = profile.embedding_params * BYTES_PER_ELEMENT[stored]
        linear_bytes = max(profile.checkpoint_bytes - embedding_bytes, 0.0)
        return embedding_bytes + linear_bytes * BYTES_PER_ELEMENT[precision] / BYTES_PER_ELEMENT[stored]
    return None


def activation_precision(profile: ModelProfile) -> str:
    return "fp16" if profile.checkpoint_precision == "fp16" else "bf16"


def kv_bytes_per_token_per_layer(profile: ModelProfile, tensor_parallel_size: int, kv_cache_dtype: str) -> float:
    """KV bytes one token adds to one layer on one GPU.

    GQA/MHA: K and V for the KV heads this rank holds; heads are split by TP and replicated once TP exceeds them.
    MLA: one latent (kv_lora_rank + rope dims), no K/V pair, replicated on every TP rank.
    """
    element = kv_element_bytes(kv_cache_dtype, activation_precision(profile))
    if profile.mla is not None:
        return profile.mla.latent_elements * element
    heads_per_gpu = math.ceil(profile.num_kv_heads / tensor_parallel_size)
    return 2 * heads_per_gpu * profile.head_dim * element


def kv_bytes_per_sequence(profile: ModelProfile, layout: Layout, tokens: int) -> float:
    """KV bytes one sequence of `tokens` occupies on one GPU; local-attention layers keep at most their window."""
    per_layer = kv_bytes_per_token_per_layer(profile, layout.tensor_parallel_size, layout.kv_cache_dtype)
    local = profile.local_attention
    local_layers = local.layers if local else 0
    full_layers = profile.num_layers - local_layers
    kept = full_layers * tokens + (local_layers * min(tokens, local.window) if local else 0)
    return per_layer * kept / layout.pipeline_parallel_size


def overhead_bytes_per_gpu(
    profile: ModelProfile, layout: Layout, assumptions: Assumptions = DEFAULT_ASSUMPTIONS
) -> float:
    """Runtime, graph, collective and peak-activation memory vLLM needs besides weights and KV cache."""
    tp = layout.tensor_parallel_size
    overhead = assumptions.runtime_overhead_gib * GIB
    if not layout.enforce_eager:
        overhead += assumptions.graph_overhead_gib * GIB
    if layout.gpu_count > 1:
        overhead += assumptions.collective_overhead_gib * GIB
    act_bytes = BYTES_PER_ELEMENT[activation_precision(profile)]
    mlp = 2 * profile.intermediate_size / tp * act_bytes
    per_token = profile.hidden_size * assumptions.activation_hidden_factor + mlp
    overhead += layout.max_num_batched_tokens * per_token
    if profile.is_moe:
        # Fused-MoE kernels keep per-(token, expert) intermediate buffers for the whole batch.
        expert_width = max(2 * profile.intermediate_size / tp, profile.hidden_size)
        overhead += layout.max_num_batched_tokens * profile.experts_per_token * expert_width * act_bytes * 2
    # The sampler materialises fp32 logits over the full vocabulary for every running sequence.
    overhead += layout.max_num_seqs * profile.vocab_size * 4 * assumptions.sampler_logit_copies
    return overhead


def fit_on(profile: ModelProfile, gpu: GpuSpec, layout: Layout, assumptions: Assumptions = DEFAULT_ASSUMPTIONS) -> Fit:
    """Whether `layout` serves `profile` on `gpu`: the KV cache left after weights and overhead must hold one
    max_model_len sequence plus (min_concurrent_sequences − 1) typical requests."""
    weights = serving_weight_bytes(profile, layout.precision)
    per_token = kv_bytes_per_token_per_layer(profile, layout.tensor_parallel_size, layout.kv_cache_dtype)
    per_token_all_layers = per_token * profile.num_layers / layout.pipeline_parallel_size
    if weights is None:
        return Fit(
            fits=False,
            reason=f"cannot serve a {profile.checkpoint_precision} checkpoint in {layout.precision}",
            weights_gib_per_gpu=0.0,
            overhead_gib_per_gpu=0.0,
            kv_cache_gib_per_gpu=0.0,
            kv_bytes_per_token_per_gpu=per_token_all_layers,
            full_length_sequences=0.0,
            max_concurrent_sequences=0,
        )
    weights_per_gpu = weights / layout.gpu_count
    overhead = overhead_bytes_per_gpu(profile, layout, assumptions)
    budget = gpu.memory_bytes * layout.gpu_memory_utilization
    kv_budget = budget - weights_per_gpu - overhead
    full_sequence = kv_bytes_per_sequence(profile, layout, layout.max_model_len)
    typical_tokens = min(assumptions.typical_request_tokens, layout.max_model_len)
    typical_sequence = kv_bytes_per_sequence(profile, layout, typical_tokens)
    needed = full_sequence + (assumptions.min_concurrent_sequences - 1) * typical_sequence
    full_length = max(kv_budget, 0.0) / full_sequence
    concurrent = min(layout.max_num_seqs, int(max(kv_budget, 0.0) // typical_sequence))

    def gib(value: float) -> str:
        return f"{value / GIB:.1f} GiB"

    if kv_budget <= 0:
        fits = False
        reason = (
            f"weights {gib(weights_per_gpu)}/GPU + overhead {gib(overhead)} exceed "
            f"{layout.gpu_memory_utilization:g} × {gpu.memory_gib:g} GiB on {gpu.name}"
        )
    elif kv_budget < needed:
        fits = False
        reason = (
            f"KV cache {gib(kv_budget)}/GPU holds {full_length:.2f} × a {layout.max_model_len}-token sequence; needs 1 "
            f"plus {assumptions.min_concurrent_sequences - 1} × {typical_tokens} tokens ({gib(needed)})"
        )
    else:
        fits = True
        reason = (
            f"weights {gib(weights_per_gpu)} + KV {gib(kv_budget)} per GPU: {full_length:.1f} full-length "
            f"sequences, {concurrent} concurrent at {typical_tokens} tokens"
        )
    return Fit(
        fits=fits,
        reason=reason,
        weights_gib_per_gpu=weights_per_gpu / GIB,
        overhead_gib_per_gpu=overhead / GIB,
        kv_cache_gib_per_gpu=max(kv_budget, 0.0) / GIB,
        kv_bytes_per_token_per_gpu=per_token_all_layers,
        full_length_sequences=full_length,
        max_concurrent_sequences=max(concurrent, 0),
    )
