"""Turn a Hugging Face config.json (plus safetensors totals) into a ModelProfile: shape, precision, parameters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aim_infra.common.errors import AimError
from aim_infra.planning.errors import describe_validation_error
from aim_infra.planning.model_profile import LocalAttention, MlaDims, ModelProfile
from aim_infra.planning.precision import BYTES_PER_ELEMENT, Precision


class WeightTotals(BaseModel):
    """What the safetensors files say: stored elements per dtype (empty when only a byte total is known) and bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params_by_dtype: dict[str, int] = Field(default_factory=dict, description="safetensors dtype -> element count.")
    total_bytes: int = Field(ge=0, description="Bytes of all tensors (index total_size or header sum); 0 = unknown.")


#: Defaults of the Transformers config classes for keys their published config.json files leave out
#: (google/gemma-3-*-it only lists what differs from Gemma3TextConfig's defaults).
_MODEL_TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma": {"tie_word_embeddings": True},
    "gemma2": {"tie_word_embeddings": True, "sliding_window_pattern": 2},
    "gemma3_text": {
        "tie_word_embeddings": True,
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
        "sliding_window": 4096,
        "sliding_window_pattern": 6,
    },
}

#: Keys vLLM accepts for the context limit, in its order of preference.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length")

#: config.json `torch_dtype` / `dtype` -> the precision vLLM serves it in (fp32 checkpoints are served in bf16).
_TORCH_DTYPES: dict[str, Precision] = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "bf16",
    "float": "bf16",
}

#: safetensors dtypes of unquantised checkpoints -> the precision they are served in.
_STORED_FLOAT: dict[str, Precision] = {"BF16": "bf16", "F16": "fp16", "F32": "bf16"}

#: Stored dtypes that hold several packed 4/6-bit values (or group scales) per element for packed formats.
_PACKED_INTS = frozenset({"U8", "I8", "U16", "I16"})
_PACKED_WORDS = frozenset({"I32", "U32", "I64", "U64"})
_PACKED_PRECISIONS = frozenset({"int4", "mxfp4", "mxfp6"})
#: Above this share of packed elements the safetensors element counts undercount the parameters (an AWQ 8B model
#: stores ~0.9B int32 words next to ~1.1B fp16 embedding/scale elements), so the architecture estimate is used.
_PACKED_SHARE = 0.05

#: AMD Quark weight dtypes -> precision.
_QUARK_DTYPES: dict[str, Precision] = {
    "fp8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "fp4": "mxfp4",
    "fp4_e2m1": "mxfp4",
    "mxfp4": "mxfp4",
    "mx4": "mxfp4",
    "fp6_e2m3": "mxfp6",
    "fp6_e3m2": "mxfp6",
    "mxfp6": "mxfp6",
    "mx6": "mxfp6",
    "int4": "int4",
    "uint4": "int4",
    "int8": "int8",
    "uint8": "int8",
}

_SUPPORTED_METHODS = "fp8, fbgemm_fp8, compressed-tensors, quark, awq, gptq, mxfp4, modelopt (FP8)"


class _Config:
    """config.json seen as one text model: `text_config` values win over top-level ones, then class defaults."""

    def __init__(self, config: Mapping[str, Any], source: str) -> None:
        text = config.get("text_config")
        self.top: Mapping[str, Any] = config
        self.text: Mapping[str, Any] = text if isinstance(text, Mapping) else {}
        self.source = source
        self.model_type = str(self.text.get("model_type") or config.get("model_type") or "")
        self.defaults = _MODEL_TYPE_DEFAULTS.get(self.model_type, {})

    def lookup(self, *keys: str) -> tuple[str, Any] | None:
        """The first of `keys` with a non-null value (text_config first, then the top level, then class defaults)."""
        for key in keys:
            for layer in (self.text, self.top):
                value = layer.get(key)
                if value is not None:
                    return key, value
        for key in keys:
            if self.defaults.get(key) is not None:
                return key, self.defaults[key]
        return None

    def get(self, *keys: str) -> Any:
        found = self.lookup(*keys)
        return None if found is None else found[1]

    def has(self, key: str) -> bool:
        return self.lookup(key) is not None

    def integer(self, *keys: str, minimum: int = 1) -> int | None:
        """An optional integer key (first of `keys` present); a present but invalid value is an error."""
        found = self.lookup(*keys)
        return None if found is None else self._check_int(found[0], found[1], minimum)

    def require(self, *keys: str, minimum: int = 1) -> int:
        value = self.integer(*keys, minimum=minimum)
        if value is None:
            names = " / ".join(repr(key) for key in keys)
            raise AimError(
                f"{self.source}: config.json has no {names} (looked in text_config and the top level); "
                "the engine needs a Transformers decoder config.json with that key"
            )
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.get(key)
        return default if value is None else bool(value)

    def _check_int(self, key: str, value: Any, minimum: int) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        low, high = _INT_LIMITS.get(key, (minimum, _MAX_CONFIG_INT))
        low = max(low, minimum)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise AimError(f"{self.source}: config.json {key!r} must be an integer from {low} to {high} (got {shown})")
        return value


#: Far beyond any real model, small enough that counting per layer or expert never exhausts memory.
_MAX_CONFIG_INT = 10**9
_INT_LIMITS: dict[str, tuple[int, int]] = {
    "num_hidden_layers": (1, 1024),
    "num_local_experts": (0, 4096),
    "num_experts": (0, 4096),
    "n_routed_experts": (0, 4096),
    # vLLM's context ladder starts at 256 tokens: a shorter context serves nothing useful (and no recipe allows it).
    **{key: (256, 2**30) for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")},
    "max_sequence_length": (256, 2**30),
}


@dataclass(frozen=True)
class _Shape:
    """The numbers the parameter estimate needs, read once from the config."""

    layers: int
    hidden: int
    vocab: int
    tied: bool
    heads: int
    kv_heads: int
    head_dim: int
    dense_width: int | None
    attention_bias: bool
    # multi-head latent attention (DeepSeek-V2/V3, Kimi-K2)
    kv_lora_rank: int
    q_lora_rank: int
    qk_nope: int
    qk_rope: int
    v_head_dim: int
    # mixture of experts
    experts: int
    top_k: int
    expert_width: int
    moe_layers: int
    shared_experts: int
    shared_width: int
    shared_gate: bool


@dataclass(frozen=True)
class _Counts:
    total: int
    active: int
    embeddings: int
    routed_experts: int


def _layer_indices(cfg: _Config, key: str, value: Any) -> set[int]:
    """A list of layer numbers from config.json; anything else is one error line."""
    if isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        return set(value)
    raise AimError(f"{cfg.source}: config.json {key!r} must be a list of layer numbers (got {str(value)[:40]!r})")


def _layer_is_moe(cfg: _Config, layers: int) -> list[bool]:
    """Which decoder layers carry routed experts, from the family-specific keys that say so."""
    explicit = cfg.get("moe_layers")
    if isinstance(explicit, list) and explicit:
        wanted = _layer_indices(cfg, "moe_layers", explicit)
        return [index in wanted for index in range(layers)]
    mlp_only = _layer_indices(cfg, "mlp_only_layers", cfg.get("mlp_only_layers") or [])
    sparse_step = cfg.integer("decoder_sparse_step") or 1
    first_dense = cfg.integer("first_k_dense_replace", minimum=0) or 0
    layer_freq = cfg.integer("moe_layer_freq") or 1
    interleave = cfg.integer("interleave_moe_layer_step") or 1
    return [
        index not in mlp_only
        and (index + 1) % sparse_step == 0
        and index >= first_dense
        and index % layer_freq == 0
        and (index + 1) % interleave == 0
        for index in range(layers)
    ]


# Long: one config.json key (or family of aliases) per line, in the order of the architecture; splitting it would
# scatter the aliases of one model family.
def _read_shape(cfg: _Config) -> _Shape:
    layers = cfg.require("num_hidden_layers")
    hidden = cfg.require("hidden_size")
    vocab = cfg.require("vocab_size")
    heads = cfg.require("num_attention_heads")
    kv_lora_rank = cfg.integer("kv_lora_rank") or 0
    qk_nope = qk_rope = 0
    if kv_lora_rank:
        # MLA: every query head attends to one shared latent, so the cache has no per-head K/V to count.
        qk_nope = cfg.require("qk_nope_head_dim", minimum=0)
        qk_rope = cfg.require("qk_rope_head_dim", minimum=0)
        kv_heads = heads
        head_dim = qk_nope + qk_rope
    else:
        kv_heads = cfg.integer("num_key_value_heads") or heads
        head_dim = cfg.integer("head_dim") or hidden // heads
    experts = cfg.integer("num_local_experts", "num_experts", "n_routed_experts", minimum=0) or 0
    top_k = 0
    if experts:
        top_k = cfg.require("num_experts_per_tok", "experts_per_token")
    moe_flags = _layer_is_moe(cfg, layers) if experts else [False] * layers
    moe_layers = sum(moe_flags)
    expert_width = 0
    if experts:
        expert_width = cfg.integer("moe_intermediate_size") or cfg.require("moe_intermediate_size", "intermediate_size")
    dense_keys = (
        ("intermediate_size_mlp", "intermediate_size")
        if cfg.model_type.startswith("llama4")
        else ("intermediate_size",)
    )
    dense_width = cfg.integer(*dense_keys)
    if moe_layers < layers and dense_width is None:
        cfg.require("intermediate_size")
    shared_experts = cfg.integer("n_shared_experts", "num_shared_experts", minimum=0) or 0
    shared_width = expert_width
    shared_gate = False
    if cfg.integer("shared_expert_intermediate_size"):
        # Qwen2-MoE style: one shared expert of its own width behind a sigmoid gate.
        shared_experts, shared_width, shared_gate = 1, cfg.require("shared_expert_intermediate_size"), True
    elif experts and cfg.model_type.startswith("llama4"):
        shared_experts = 1  # Llama 4: every MoE layer adds one always-on expert of the routed width.
    return _Shape(
        layers=layers,
        hidden=hidden,
        vocab=vocab,
        tied=cfg.flag("tie_word_embeddings"),
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        dense_width=dense_width,
        attention_bias=cfg.flag("attention_bias"),
        kv_lora_rank=kv_lora_rank,
        q_lora_rank=cfg.integer("q_lora_rank") or 0,
        qk_nope=qk_nope,
        qk_rope=qk_rope,
        v_head_dim=cfg.integer("v_head_dim") or qk_nope or head_dim,
        experts=experts,
        top_k=top_k,
        expert_width=expert_width,
        moe_layers=moe_layers,
        shared_experts=shared_experts,
        shared_width=shared_width,
        shared_gate=shared_gate,
    )


def _count(shape: _Shape) -> _Counts:
    """Parameters from the architecture: embeddings, attention, norms, dense MLPs and (routed + shared) experts."""
    h = shape.hidden
    embeddings = shape.vocab * h * (1 if shape.tied else 2)
    if shape.kv_lora_rank:
        q_dim = shape.heads * (shape.qk_nope + shape.qk_rope)
        if shape.q_lora_rank:
            q_proj = h * shape.q_lora_rank + shape.q_lora_rank + shape.q_lora_rank * q_dim
        else:
            q_proj = h * q_dim
        kv_proj = (
            h * (shape.kv_lora_rank + shape.qk_rope)
            + shape.kv_lora_rank
            + shape.kv_lora_rank * shape.heads * (shape.qk_nope + shape.v_head_dim)
        )
        attention = q_proj + kv_proj + shape.heads * shape.v_head_dim * h
    else:
        q_out = shape.heads * shape.head_dim
        kv_out = shape.kv_heads * shape.head_dim
        attention = 2 * h * q_out + 2 * h * kv_out
        if shape.attention_bias:
            attention += q_out + 2 * kv_out + h
    per_layer_common = attention + 2 * h  # attention plus the two RMSNorm weight vectors
    dense_layers = shape.layers - shape.moe_layers
    dense_mlp = 3 * h * (shape.dense_width or 0)
    expert = 3 * h * shape.expert_width
    shared = shape.shared_experts * 3 * h * shape.shared_width + (h if shape.shared_gate else 0)
    router = h * shape.experts
    routed_total = shape.moe_layers * shape.experts * expert
    routed_active = shape.moe_layers * shape.top_k * expert
    base = embeddings + shape.layers * per_layer_common + h + dense_layers * dense_mlp
    base += shape.moe_layers * (shared + router)
    return _Counts(
        total=base + routed_total, active=base + routed_active, embeddings=embeddings, routed_experts=routed_total
    )


def estimate_parameters(config: Mapping[str, Any]) -> tuple[int, int]:
    """(total, active) parameters computed from config.json alone (text model; vision towers are not counted)."""
    counts = _count(_read_shape(_Config(config, "config.json")))
    return counts.total, counts.active


def _local_attention(cfg: _Config, layers: int) -> LocalAttention | None:
    """Sliding-window or chunked layers, from whichever of the family-specific keys the config carries."""
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list) and layer_types:
        kinds = [str(kind) for kind in layer_types[:layers]]
        if kinds.count("chunked_attention"):
            size = cfg.require("attention_chunk_size")
            return LocalAttention(kind="chunked", window=size, layers=kinds.count("chunked_attention"))
        if kinds.count("sliding_attention"):
            size = cfg.require("sliding_window")
            return LocalAttention(kind="sliding", window=size, layers=kinds.count("sliding_attention"))
        return None
    chunk = cfg.integer("attention_chunk_size")
    if chunk:
        # Llama 4: layers that use RoPE attend within chunks; the NoPE layers (every 4th by default) see everything.
        no_rope = cfg.get("no_rope_layers")
        if isinstance(no_rope, list) and no_rope:
            chunked = sum(1 for flag in no_rope[:layers] if flag)
        else:
            interval = cfg.integer("no_rope_layer_interval") or 4
            chunked = layers - layers // interval
        return LocalAttention(kind="chunked", window=chunk, layers=chunked) if chunked else None
    window = cfg.integer("sliding_window")
    if not window:
        return None
    pattern = cfg.integer("sliding_window_pattern", "_sliding_window_pattern")
    if pattern:
        # Gemma 2/3: every `pattern`-th layer is global, the others slide.
        local = layers - layers // pattern
        return LocalAttention(kind="sliding", window=window, layers=local) if local else None
    if cfg.get("use_sliding_window") is False:
        return None  # Qwen2/Qwen3 ship a window but switch it off.
    context = cfg.integer(*_CONTEXT_KEYS)
    if context is not None and window >= context:
        return None
    local = layers
    if cfg.get("use_sliding_window") is True and cfg.has("max_window_layers"):
        local = layers - min(layers, cfg.require("max_window_layers", minimum=0))
    return LocalAttention(kind="sliding", window=window, layers=local) if local else None


@dataclass(frozen=True)
class _Precision:
    precision: Precision
    quant_method: str | None
    kv_cache_scales: bool
    from_fp32: bool


def _bits_precision(bits: Any, method: str, source: str) -> Precision:
    if bits in (4, "4"):
        return "int4"
    if bits in (8, "8"):
        return "int8"
    raise AimError(f"{source}: {method} checkpoint with {bits!r}-bit weights is not supported; use a 4- or 8-bit one")


def _compressed_tensors(quant: Mapping[str, Any], source: str) -> Precision:
    groups = quant.get("config_groups") or {}
    weights = [
        group["weights"]
        for group in (groups.values() if isinstance(groups, Mapping) else [])
        if isinstance(group, Mapping) and isinstance(group.get("weights"), Mapping)
    ]
    if not weights:
        raise AimError(f"{source}: compressed-tensors quantization_config has no config_groups.*.weights")
    weight = weights[0]
    bits, kind = weight.get("num_bits"), str(weight.get("type") or "int")
    fmt = str(quant.get("format") or "")
    if kind == "float" and bits == 8:
        return "fp8"
    if kind == "float" and bits == 4:
        if "nvfp4" in fmt or weight.get("group_size") == 16:
            raise AimError(f"{source}: NVFP4 checkpoints are not served on AMD Instinct; use an MXFP4, FP8 or BF16 one")
        return "mxfp4"
    if kind == "int":
        return _bits_precision(bits, "compressed-tensors", source)
    raise AimError(f"{source}: compressed-tensors {bits}-bit {kind} weights are not supported")


def _quark_weight(quant: Mapping[str, Any]) -> Mapping[str, Any] | None:
    candidates: list[Any] = [(quant.get("global_quant_config") or {}).get("weight")]
    for key in ("layer_type_quant_config", "layer_quant_config"):
        section = quant.get(key)
        if isinstance(section, Mapping):
            candidates.extend(spec.get("weight") for spec in section.values() if isinstance(spec, Mapping))
    for weight in candidates:
        if isinstance(weight, list) and weight:
            weight = weight[0]
        if isinstance(weight, Mapping) and weight.get("dtype"):
            return weight
    return None


def _quark(quant: Mapping[str, Any], source: str) -> Precision:
    weight = _quark_weight(quant)
    if weight is None:
        raise AimError(f"{source}: quark quantization_config names no weight dtype (global_quant_config.weight.dtype)")
    dtype = str(weight["dtype"]).lower()
    precision = _QUARK_DTYPES.get(dtype)
    if precision is None:
        raise AimError(f"{source}: quark weight dtype {dtype!r} is not supported ({', '.join(sorted(_QUARK_DTYPES))})")
    if precision == "mxfp4" and weight.get("group_size") == 16:
        raise AimError(f"{source}: quark fp4 with 16-element groups (NVFP4-style) is not supported; use MXFP4")
    return precision


def _declares_kv_scales(quant: Mapping[str, Any]) -> bool:
    export = quant.get("export")
    return bool(
        quant.get("kv_cache_scheme")
        or quant.get("kv_cache_group")
        or quant.get("kv_cache_quant_config")
        or quant.get("kv_cache_quant_algo")
        or (isinstance(export, Mapping) and export.get("kv_cache_group"))
    )


def _precision(cfg: _Config, weights: WeightTotals | None) -> _Precision:
    source = cfg.source
    quant = (
        cfg.top.get("quantization_config") or cfg.top.get("compression_config") or cfg.text.get("quantization_config")
    )
    if isinstance(quant, Mapping) and quant:
        raw_method = quant.get("quant_method") or ("compressed-tensors" if "config_groups" in quant else None)
        if not raw_method:
            raise AimError(f"{source}: quantization_config has no 'quant_method'")
        method = str(raw_method)
        key = method.lower()
        precision: Precision
        if key in ("fp8", "fbgemm_fp8", "ptpc_fp8"):
            precision = "fp8"
        elif key == "mxfp4":
            precision = "mxfp4"
        elif key in ("awq", "awq_marlin", "gptq", "gptq_marlin", "auto-round", "autoround"):
            precision = _bits_precision(quant.get("bits", quant.get("w_bit")), method, source)
        elif key == "compressed-tensors":
            precision = _compressed_tensors(quant, source)
        elif key == "quark":
            precision = _quark(quant, source)
        elif key == "modelopt" and str(quant.get("quant_algo", "")).upper() == "FP8":
            precision = "fp8"
        else:
            raise AimError(
                f"{source}: quantization method {method!r} is not supported on AMD Instinct by this engine "
                f"(supported: {_SUPPORTED_METHODS}); use a BF16 or one of those checkpoints"
            )
        return _Precision(precision, method, _declares_kv_scales(quant), from_fp32=False)
    dtype = cfg.top.get("torch_dtype") or cfg.top.get("dtype") or cfg.text.get("torch_dtype") or cfg.text.get("dtype")
    if dtype is None and weights and weights.params_by_dtype:
        stored = max(
            (name for name in weights.params_by_dtype if name in _STORED_FLOAT),
            key=lambda name: weights.params_by_dtype[name],
            default=None,
        )
        if stored is not None:
            return _Precision(_STORED_FLOAT[stored], None, False, from_fp32=stored == "F32")
    if dtype is None:
        raise AimError(
            f"{source}: config.json has no 'torch_dtype' (or 'dtype') and no quantization_config, and no safetensors "
            "headers were available to tell the weight format; add torch_dtype to config.json or provide the weights"
        )
    name = str(dtype).removeprefix("torch.").lower()
    if name not in _TORCH_DTYPES:
        raise AimError(f"{source}: config.json torch_dtype {dtype!r} is not one of {', '.join(_TORCH_DTYPES)}")
    return _Precision(_TORCH_DTYPES[name], None, False, from_fp32=name in ("float32", "float"))


def _packed_share(weights: WeightTotals, precision: Precision) -> float:
    packed = _PACKED_WORDS | (_PACKED_INTS if precision in _PACKED_PRECISIONS else frozenset())
    stored = sum(weights.params_by_dtype.values())
    if not stored:
        return 0.0
    return sum(count for name, count in weights.params_by_dtype.items() if name.upper() in packed) / stored


def _parameters(counts: _Counts, weights: WeightTotals | None, precision: Precision) -> tuple[int, int, str]:
    if weights is None or not weights.params_by_dtype:
        return counts.total, counts.active, "parameters estimated from config.json"
    if _packed_share(weights, precision) > _PACKED_SHARE:
        return counts.total, counts.active, "parameters estimated from config.json (safetensors weights are packed)"
    total = sum(weights.params_by_dtype.values())
    if counts.total == counts.active:
        return total, total, "parameters from safetensors headers"
    # MoE: spread what the estimate missed (biases, MTP layers, ...) proportionally over active and inactive weights.
    active = min(total, round(counts.active * total / counts.total))
    return total, active, "parameters from safetensors headers (active share from config.json)"


def _checkpoint_bytes(
    counts: _Counts, params_total: int, weights: WeightTotals | None, precision: _Precision
) -> tuple[int, str]:
    if weights is not None and weights.total_bytes > 0:
        if not precision.from_fp32:
            return weights.total_bytes, "bytes from safetensors"
        f32 = weights.params_by_dtype.get("F32")
        served = weights.total_bytes - 2 * f32 if f32 else weights.total_bytes // 2
        return served, "bytes from safetensors, fp32 weights counted at 2 bytes (vLLM serves them in bf16)"
    half = BYTES_PER_ELEMENT["bf16"]
    if precision.quant_method is None:
        return round(params_total * half), f"bytes estimated as parameters x {half:g}"
    # Quantised checkpoints keep embeddings and LM head (and for MXFP4 MoE everything but the experts) in bf16.
    quantised = (
        counts.routed_experts
        if precision.precision == "mxfp4" and counts.routed_experts
        else (counts.total - counts.embeddings)
    )
    quantised = min(quantised, params_total)
    element = BYTES_PER_ELEMENT[precision.precision]
    estimate = round(quantised * element + (params_total - quantised) * half)
    return estimate, f"bytes estimated ({precision.precision} weights at {element:g} bytes, the rest bf16)"


def _architecture(cfg: _Config) -> str:
    for layer in (cfg.top, cfg.text):
        names = layer.get("architectures")
        if isinstance(names, list) and names and isinstance(names[0], str) and names[0]:
            return names[0]
    raise AimError(f"{cfg.source}: config.json has no 'architectures' list; it is not a Transformers model config")


def profile_from_config(
    config: Mapping[str, Any],
    weights: WeightTotals | None,
    *,
    model_id: str,
    provenance: str,
    gated: bool = False,
) -> ModelProfile:
    """Build a ModelProfile from config.json and (when known) the safetensors totals; `provenance` names the source."""
    if not isinstance(config, Mapping):
        raise AimError(f"{provenance}: config.json is not a JSON object")
    cfg = _Config(config, provenance)
    architecture = _architecture(cfg)
    shape = _read_shape(cfg)
    counts = _count(shape)
    precision = _precision(cfg, weights)
    params_total, params_active, params_note = _parameters(counts, weights, precision.precision)
    checkpoint_bytes, bytes_note = _checkpoint_bytes(counts, params_total, weights, precision)
    mla = MlaDims(kv_lora_rank=shape.kv_lora_rank, qk_rope_head_dim=shape.qk_rope) if shape.kv_lora_rank else None
    width = shape.dense_width if shape.moe_layers < shape.layers and shape.dense_width else shape.expert_width
    try:
        return ModelProfile(
            id=model_id,
            architecture=architecture,
            params_total=params_total,
            params_active=params_active,
            num_experts=shape.experts,
            experts_per_token=shape.top_k,
            checkpoint_precision=precision.precision,
            quant_method=precision.quant_method,
            checkpoint_bytes=checkpoint_bytes,
            kv_cache_scales=precision.kv_cache_scales,
            num_layers=shape.layers,
            hidden_size=shape.hidden,
            intermediate_size=width or shape.dense_width or shape.expert_width,
            vocab_size=shape.vocab,
            tied_embeddings=shape.tied,
            num_attention_heads=shape.heads,
            num_kv_heads=shape.kv_heads,
            head_dim=shape.head_dim,
            mla=mla,
            local_attention=_local_attention(cfg, shape.layers),
            max_context=cfg.require(*_CONTEXT_KEYS),
            gated=gated,
            provenance=f"{provenance}; {params_note}; {bytes_note}",
        )
    except ValidationError as error:
        raise AimError(describe_validation_error(error, f"{provenance}: config.json")) from None
