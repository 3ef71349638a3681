"""The engine's planning constants in one place: overheads, the concurrency floor and the roofline's reference load."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Assumptions(BaseModel):
    """Numbers the fit check and the estimate rest on. Each is a deliberate, documented simplification
    (README: "The estimate's assumptions"); change them here, never inline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- memory -------------------------------------------------------------------------------------------------
    runtime_overhead_gib: float = Field(
        default=1.5, description="HIP context, PyTorch allocator slack and vLLM runtime per GPU, before any batch."
    )
    graph_overhead_gib: float = Field(default=1.0, description="HIP graph capture pool (absent with --enforce-eager).")
    collective_overhead_gib: float = Field(default=0.5, description="RCCL buffers per GPU when TP × PP > 1.")
    activation_hidden_factor: float = Field(
        default=12.0, description="Bytes of transient activations per token per hidden unit in one forward pass."
    )
    sampler_logit_copies: float = Field(default=2.0, description="fp32 logit buffers the sampler holds at peak.")

    # --- the fit rule -------------------------------------------------------------------------------------------
    min_concurrent_sequences: int = Field(
        default=8, description="KV must hold one max_model_len sequence plus this many minus one typical requests."
    )
    typical_request_tokens: int = Field(default=2048, description="Prompt + output of a typical chat request.")

    # --- the roofline estimate ----------------------------------------------------------------------------------
    reference_batch: int = Field(default=256, description="Concurrent sequences a throughput deployment runs at.")
    reference_context_tokens: int = Field(default=1536, description="Mean context length during decode.")
    reference_prompt_tokens: int = Field(default=2048, description="Prompt length the time-to-first-token uses.")
    reference_output_tokens: int = Field(
        default=256, description="Tokens a reference request generates: latency ranks by its end-to-end time."
    )
    hbm_efficiency: float = Field(default=0.75, description="Share of peak HBM bandwidth a decode step reaches.")
    compute_efficiency: float = Field(default=0.45, description="Share of peak matrix TFLOPS prefill reaches.")
    allreduce_latency_us: float = Field(default=12.0, description="Fixed cost of one tensor-parallel all-reduce.")
    step_overhead_ms: float = Field(default=1.5, description="Scheduler, sampler and launch cost per decode step.")

    # --- ranking ------------------------------------------------------------------------------------------------
    metric_match_bonus: float = Field(default=0.05, description="Edge for a recipe tuned for the requested metric.")
    validated_bonus: float = Field(default=0.02, description="Edge for a recipe its publisher validated.")


DEFAULT_ASSUMPTIONS = Assumptions()
