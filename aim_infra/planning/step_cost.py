"""What one vLLM engine step costs on one replica: memory traffic, compute, collectives and fixed costs, added."""

from __future__ import annotations

from dataclasses import dataclass

from aim_infra.planning.fit import Layout, activation_precision, kv_bytes_per_sequence, serving_weight_bytes
from aim_infra.planning.hardware import GpuSpec
from aim_infra.planning.model_profile import ModelProfile
from aim_infra.planning.performance_data import PerformanceData, StepConstants


@dataclass(frozen=True, slots=True)
class StepCost:
    """A replica's step-time function, prepared once per (model, GPU, layout, workload).

    A step runs `decodes` sequences one token each plus `prefill_tokens` prompt tokens (chunked prefill), over
    `context_tokens` of KV in all. Its time is the sum, not the maximum, of: the weights it touches and the KV it
    reads at the achieved bandwidth; its matrix FLOPs at the achieved efficiency; attention FLOPs; the TP
    all-reduces; a per-sequence cost; and a fixed per-step and per-layer cost. Measured decode steps on MI300X do not
    overlap these (the marginal cost of a sequence is far above the roofline), so adding them is what fits.
    """

    fixed_s: float
    per_sequence_s: float
    weight_bytes_dense: float  # per GPU, read every step
    weight_bytes_experts: float  # per GPU, all routed experts
    expert_fraction_per_token: float  # k / E (0 for dense)
    bandwidth: float  # bytes/s achieved
    kv_bytes_per_context_token: float  # per GPU, at the workload's mean context (windows applied)
    linear_s_per_token: float  # dense GEMMs per token
    expert_s_per_token: float  # routed-expert GEMMs per token
    attention_s_per_token_context: float  # per token per context token it attends to
    attention_window_factor: float  # share of context the attention reads (local windows)
    allreduce_s: float  # per all-reduce, latency part
    allreduce_s_per_token: float  # per all-reduce, per token in the step
    allreduces: int  # per step
    pipeline_stages: int
    pipeline_hop_s: float

    def weights_read(self, tokens: float) -> float:
        """Weight bytes a step over `tokens` tokens streams: dense part always; routed experts that ≥ 1 token uses
        (uniform routing)."""
        if self.expert_fraction_per_token == 0 or tokens <= 0:
            return self.weight_bytes_dense + (self.weight_bytes_experts if tokens > 0 else 0.0)
        touched = 1.0 - (1.0 - self.expert_fraction_per_token) ** tokens
        return self.weight_bytes_dense + self.weight_bytes_experts * touched

    def seconds(
        self, decodes: float, prefill_tokens: float, context_tokens: float, prefill_attention: float = 0.0
    ) -> float:
        """One step: `context_tokens` = KV tokens the decodes attend to (their current lengths summed);
        `prefill_attention` = Σ chunk × (prefix + chunk / 2) over the prefill chunks in the step."""
        tokens = decodes + prefill_tokens
        if tokens <= 0:
            return 0.0
        sequences = decodes + (1 if prefill_tokens > 0 else 0)
        memory = (self.weights_read(tokens) + context_tokens * self.kv_bytes_per_context_token) / self.bandwidth
        compute = tokens * (self.linear_s_per_token + self.expert_s_per_token)
        attention = (context_tokens + prefill_attention) * self.attention_window_factor
        attention *= self.attention_s_per_token_context
        comm = self.allreduces * (self.allreduce_s + tokens * self.allreduce_s_per_token)
        hops = (self.pipeline_stages - 1) * self.pipeline_hop_s
        return self.fixed_s + sequences * self.per_sequence_s + memory + compute + attention + comm + hops


# Long: the step-time formula derived in one place, one physical term per paragraph; split, its terms would lose the
# shared per-GPU quantities they are built from.
def step_cost(
    profile: ModelProfile,
    gpu: GpuSpec,
    layout: Layout,
    constants: StepConstants,
    data: PerformanceData,
    mean_context: int,
) -> StepCost:
    """Prepare the step-time function of one replica of `layout`. With pipeline parallelism a step passes the PP
    stages one after another, each on TP GPUs, so per-step work is the whole model over TP GPUs plus the hand-offs;
    the stages' concurrency (PP micro-batches in flight) is the simulator's business, not the step's."""
    tp, pp = layout.tensor_parallel_size, layout.pipeline_parallel_size
    gpus = tp
    compute_format = data.compute_format(layout.precision, profile.quant_method, gpu.arch)
    peak = gpu.tflops(compute_format) * 1e12
    bf16_peak = gpu.tflops("bf16") * 1e12

    total_bytes = serving_weight_bytes(profile, layout.precision) or 0.0
    expert_share = profile.expert_params / profile.params_total if profile.is_moe else 0.0
    expert_bytes = total_bytes * expert_share
    dense_bytes = total_bytes - expert_bytes
    fraction = profile.experts_per_token / profile.num_experts if profile.is_moe and expert_share else 0.0

    # FLOPs per token: 2 per active weight, minus the embedding lookup (a gather, no matmul).
    embedding = profile.vocab_size * profile.hidden_size
    active_experts = profile.expert_params * fraction
    dense_params = max(profile.params_active - active_experts - embedding, 0.0)
    linear = 2 * dense_params / gpus / (peak * constants.gemm_efficiency)
    expert = 2 * active_experts / gpus / (peak * constants.gemm_efficiency * constants.moe_gemm_efficiency)

    # Attention: QKᵀ and AV, 4 FLOPs per head dimension per attended token per layer (MLA: over the latent).
    width = profile.mla.latent_elements if profile.mla else profile.head_dim
    attention = 4 * profile.num_attention_heads * width * profile.num_layers / gpus
    attention /= bf16_peak * constants.attention_efficiency

    context = max(mean_context, 1)
    # kv_bytes_per_sequence is per GPU of one stage; a step passes every stage, so count them all.
    kv_per_token = kv_bytes_per_sequence(profile, layout, context) * pp / context
    window_factor = _window_factor(profile, context)

    moe_layers = profile.num_layers if profile.is_moe else 0
    fixed = constants.step_fixed_ms * 1e-3
    fixed += (profile.num_layers * constants.layer_us + moe_layers * constants.moe_layer_us) * 1e-6
    allreduces = 2 * profile.num_layers if tp > 1 else 0
    activation_bytes = profile.hidden_size * (2 if activation_precision(profile) in ("bf16", "fp16") else 4)
    link = gpu.xgmi_gbps * 1e9 * constants.xgmi_efficiency
    per_token_comm = activation_bytes * 2 * (tp - 1) / tp / link if tp > 1 else 0.0
    return StepCost(
        fixed_s=fixed,
        per_sequence_s=constants.sequence_us * 1e-6,
        weight_bytes_dense=dense_bytes / gpus,
        weight_bytes_experts=expert_bytes / gpus,
        expert_fraction_per_token=fraction,
        bandwidth=gpu.bandwidth_tbps * 1e12 * constants.hbm_efficiency,
        kv_bytes_per_context_token=kv_per_token,
        linear_s_per_token=linear,
        expert_s_per_token=expert,
        attention_s_per_token_context=attention,
        attention_window_factor=window_factor,
        allreduce_s=constants.allreduce_us * 1e-6,
        allreduce_s_per_token=per_token_comm,
        allreduces=allreduces,
        pipeline_stages=pp,
        pipeline_hop_s=data.pipeline_hop_us * 1e-6,
    )


def _window_factor(profile: ModelProfile, context: int) -> float:
    """Share of the context an average layer attends to: local (sliding/chunked) layers stop at their window."""
    local = profile.local_attention
    if local is None:
        return 1.0
    full_layers = profile.num_layers - local.layers
    kept = full_layers * context + local.layers * min(context, local.window)
    return kept / (profile.num_layers * context)
