"""What the engine needs to know about a model: size, checkpoint format and attention shape, as a validated profile."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aim_infra.common.errors import AimError
from aim_infra.planning.paths import MODELS_FILE
from aim_infra.planning.precision import BYTES_PER_ELEMENT, Precision
from aim_infra.planning.yamlio import load_model


class MlaDims(BaseModel):
    """Multi-head latent attention (DeepSeek-V3/R1, Kimi-K2): one compressed latent per token per layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kv_lora_rank: int = Field(gt=0)
    qk_rope_head_dim: int = Field(ge=0)

    @property
    def latent_elements(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim


class LocalAttention(BaseModel):
    """Layers that attend only to a window (sliding) or a chunk (chunked) of recent tokens, so keep at most `window`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sliding", "chunked"]
    window: int = Field(gt=0, description="Tokens a local layer keeps per sequence.")
    layers: int = Field(gt=0, description="How many of the model's layers are local; the rest attend to everything.")


class ModelProfile(BaseModel):
    """Architecture and checkpoint facts of one model, from its config.json and safetensors totals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="Hugging Face repo id, or the local directory it was read from.")
    aliases: list[str] = Field(default_factory=list)
    architecture: str = Field(min_length=1, description="config.json `architectures[0]`.")
    params_total: int = Field(gt=0)
    params_active: int = Field(gt=0, description="Parameters used per token (equals total for dense models).")
    num_experts: int = Field(default=0, ge=0, description="Routed experts per MoE layer (0 for dense).")
    experts_per_token: int = Field(default=0, ge=0)
    checkpoint_precision: Precision = Field(description="Format of the bulk of the weights as stored.")
    quant_method: str | None = Field(default=None, description="config.json quantization_config.quant_method.")
    checkpoint_bytes: int = Field(gt=0, description="Bytes of all safetensors weights (the serving footprint).")
    kv_cache_scales: bool = Field(default=False, description="The checkpoint ships calibrated fp8 KV-cache scales.")
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0, description="Dense MLP width (expert width for MoE-only models).")
    vocab_size: int = Field(gt=0)
    tied_embeddings: bool = False
    num_attention_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    mla: MlaDims | None = None
    local_attention: LocalAttention | None = None
    max_context: int = Field(gt=0, description="config.json max_position_embeddings (or the model's stated limit).")
    gated: bool = Field(default=False, description="The Hub repo needs an accepted licence and HF_TOKEN.")
    provenance: str = Field(default="", description="Where these numbers were taken from.")

    @model_validator(mode="after")
    def _consistent(self) -> ModelProfile:
        if self.params_active > self.params_total:
            raise ValueError("params_active cannot exceed params_total")
        if bool(self.num_experts) != bool(self.experts_per_token):
            raise ValueError("num_experts and experts_per_token are both set (MoE) or both 0 (dense)")
        if self.experts_per_token > self.num_experts:
            raise ValueError("experts_per_token cannot exceed num_experts")
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError("num_attention_heads must be a multiple of num_kv_heads")
        if self.local_attention and self.local_attention.layers > self.num_layers:
            raise ValueError("local_attention.layers cannot exceed num_layers")
        return self

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def embedding_params(self) -> int:
        """Input embedding plus (when untied) the LM head: the weights vLLM keeps in bf16 when quantising on the fly."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def expert_params(self) -> int:
        """Routed-expert parameters, derived from total/active: active = shared + experts × k/E."""
        if not self.is_moe or self.num_experts == self.experts_per_token:
            return 0
        routed_share = 1 - self.experts_per_token / self.num_experts
        return round((self.params_total - self.params_active) / routed_share)

    @property
    def bytes_per_param(self) -> float:
        return self.checkpoint_bytes / self.params_total

    def short(self) -> str:
        kind = (
            f"MoE {self.params_active / 1e9:.1f}B active of {self.params_total / 1e9:.0f}B"
            if self.is_moe
            else (f"{self.params_total / 1e9:.1f}B dense")
        )
        attention = "MLA" if self.mla else f"{self.num_attention_heads}q/{self.num_kv_heads}kv heads"
        return f"{self.id} ({kind}, {self.checkpoint_precision}, {self.checkpoint_bytes / 2**30:.0f} GiB, {attention})"


class ModelCatalogue(BaseModel):
    """The bundled model facts, so preview is offline and deterministic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[ModelProfile] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ModelCatalogue:
        seen: set[str] = set()
        for profile in self.models:
            for key in (profile.id, *profile.aliases):
                if key.lower() in seen:
                    raise ValueError(f"model id or alias {key!r} is listed twice")
                seen.add(key.lower())
        return self

    def find(self, model_id: str) -> ModelProfile | None:
        wanted = model_id.strip().lower()
        for profile in self.models:
            if wanted == profile.id.lower() or wanted in (a.lower() for a in profile.aliases):
                return profile
        return None

    def get(self, model_id: str) -> ModelProfile:
        profile = self.find(model_id)
        if profile is None:
            raise AimError(f"model {model_id!r} is not in the bundled model catalogue ({MODELS_FILE.name})")
        return profile


@cache
def load_model_catalogue(path: Path = MODELS_FILE) -> ModelCatalogue:
    """Load and validate the bundled model catalogue (cached per process)."""
    return load_model(path, ModelCatalogue)


def bytes_for(params: int, precision: str) -> float:
    return params * BYTES_PER_ELEMENT[precision]
