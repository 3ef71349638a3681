"""The memory fit's planning constants in one place: runtime overheads and the concurrency floor."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Assumptions(BaseModel):
    """Numbers the memory fit rests on. Each is a deliberate, documented simplification (docs/recipes.md: "Memory fit");
    change them here, never inline. The performance model's constants are calibrated data: recipes/performance.yaml."""

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


DEFAULT_ASSUMPTIONS = Assumptions()
