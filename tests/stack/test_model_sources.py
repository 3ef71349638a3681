"""Model sources: config.json parsing, local folders, the Hub through the real huggingface_hub client, and ordering."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save, save_file

from aim_infra.common.errors import AimError
from aim_infra.planning.model_profile import ModelCatalogue, ModelProfile, load_model_catalogue
from aim_infra.stack.model_sources import (
    WeightTotals,
    estimate_parameters,
    fetch_adapter_config,
    fetch_hub_profile,
    profile_from_config,
    read_local_model,
    resolve_model,
)
from tests.fake_hub import Blob, FakeHub, safetensors_blob

# ---------------------------------------------------------------------------------------------------------------------
# config.json samples, shaped like the published ones

LLAMA_31_8B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_scaling": {"factor": 8.0, "rope_type": "llama3", "original_max_position_embeddings": 8192},
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}

DEEPSEEK_V3: dict[str, Any] = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "num_nextn_predict_layers": 1,
    "vocab_size": 129280,
    "max_position_embeddings": 163840,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    },
}

GPT_OSS_120B: dict[str, Any] = {
    "architectures": ["GptOssForCausalLM"],
    "model_type": "gpt_oss",
    "hidden_size": 2880,
    "intermediate_size": 2880,
    "num_hidden_layers": 36,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "num_local_experts": 128,
    "experts_per_token": 4,
    "attention_bias": True,
    "sliding_window": 128,
    "layer_types": ["sliding_attention", "full_attention"] * 18,
    "vocab_size": 201088,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "quantization_config": {
        "modules_to_not_convert": [
            "model.layers.*.self_attn",
            "model.layers.*.mlp.router",
            "model.embed_tokens",
            "lm_head",
        ],
        "quant_method": "mxfp4",
    },
}

# google/gemma-3-27b-it lists only what differs from Gemma3TextConfig's defaults (no vocab_size, context or pattern).
GEMMA_3_27B: dict[str, Any] = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "model_type": "gemma3",
    "text_config": {
        "head_dim": 128,
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "model_type": "gemma3_text",
        "num_attention_heads": 32,
        "num_hidden_layers": 62,
        "num_key_value_heads": 16,
        "query_pre_attn_scalar": 168,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    },
    "torch_dtype": "bfloat16",
    "vision_config": {"hidden_size": 1152, "num_hidden_layers": 27, "model_type": "siglip_vision_model"},
}

LLAMA_4_SCOUT: dict[str, Any] = {
    "architectures": ["Llama4ForConditionalGeneration"],
    "model_type": "llama4",
    "text_config": {
        "model_type": "llama4_text",
        "attention_chunk_size": 8192,
        "head_dim": 128,
        "hidden_size": 5120,
        "intermediate_size": 8192,
        "intermediate_size_mlp": 16384,
        "interleave_moe_layer_step": 1,
        "max_position_embeddings": 10485760,
        "no_rope_layers": [],
        "num_attention_heads": 40,
        "num_experts_per_tok": 1,
        "num_hidden_layers": 48,
        "num_key_value_heads": 8,
        "num_local_experts": 16,
        "tie_word_embeddings": False,
        "vocab_size": 202048,
    },
    "torch_dtype": "bfloat16",
    "vision_config": {"hidden_size": 1408, "num_hidden_layers": 34},
}

QWEN3_30B_A3B: dict[str, Any] = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "max_position_embeddings": 40960,
    "sliding_window": None,
    "use_sliding_window": False,
    "max_window_layers": 48,
    "vocab_size": 151936,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}

QWEN25_7B_AWQ: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "sliding_window": 131072,
    "use_sliding_window": False,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "quantization_config": {"bits": 4, "group_size": 128, "quant_method": "awq", "version": "gemm", "zero_point": True},
}

QUARK_FP8_KV = {
    "quant_method": "quark",
    "export": {
        "kv_cache_group": ["*k_proj", "*v_proj"],
        "min_kv_scale": 1.0,
        "pack_method": "reorder",
        "weight_format": "real_quantized",
        "weight_merge_groups": None,
    },
    "global_quant_config": {
        "bias": None,
        "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": False},
        "output_tensors": None,
        "weight": {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": False},
    },
    "exclude": ["lm_head"],
    "layer_quant_config": {
        "*k_proj": {"output_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_tensor"}},
        "*v_proj": {"output_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_tensor"}},
    },
}

QUARK_MXFP4 = {
    "quant_method": "quark",
    "export": {"kv_cache_group": [], "pack_method": "reorder", "weight_format": "real_quantized"},
    "global_quant_config": {
        "input_tensors": {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "scale_format": "e8m0"},
        "weight": {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "scale_format": "e8m0"},
        "output_tensors": None,
    },
    "exclude": ["lm_head"],
    "layer_quant_config": {},
}

COMPRESSED_FP8_KV = {
    "quant_method": "compressed-tensors",
    "format": "float-quantized",
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "dynamic": False, "symmetric": True},
            "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True},
        }
    },
    "kv_cache_scheme": {"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": False, "symmetric": True},
    "ignore": ["lm_head"],
}

B = 10**9


def with_(config: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**config, **changes}


def profile(config: dict[str, Any], weights: WeightTotals | None = None) -> ModelProfile:
    return profile_from_config(config, weights, model_id="org/model", provenance="test config")


def one_line(error: pytest.ExceptionInfo[AimError], *needles: str) -> str:
    """The error's message, checked to be a single line that contains every needle."""
    message = str(error.value)
    assert "\n" not in message and message.strip() == message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# ---------------------------------------------------------------------------------------------------------------------
# config.json parsing


def test_dense_gqa_llama() -> None:
    p = profile(LLAMA_31_8B)
    assert (p.architecture, p.num_layers, p.hidden_size, p.intermediate_size) == ("LlamaForCausalLM", 32, 4096, 14336)
    assert (p.num_attention_heads, p.num_kv_heads, p.head_dim) == (32, 8, 128)
    assert p.params_total == p.params_active == 8_030_261_248  # the published count, to the parameter
    assert (p.checkpoint_precision, p.quant_method, p.kv_cache_scales) == ("bf16", None, False)
    assert p.checkpoint_bytes == 2 * p.params_total
    assert (p.max_context, p.mla, p.local_attention, p.num_experts, p.tied_embeddings) == (131072, None, None, 0, False)
    assert "estimated" in p.provenance and p.provenance.startswith("test config")


def test_kv_heads_default_to_heads_and_head_dim_to_hidden_over_heads() -> None:
    config = {k: v for k, v in LLAMA_31_8B.items() if k != "num_key_value_heads"}
    p = profile(config)
    assert (p.num_kv_heads, p.head_dim) == (32, 128)


def test_mla_deepseek_v3_fp8_block_scaled() -> None:
    p = profile(DEEPSEEK_V3)
    assert p.mla is not None and (p.mla.kv_lora_rank, p.mla.qk_rope_head_dim) == (512, 64)
    assert p.mla.latent_elements == 576
    assert (p.num_attention_heads, p.num_kv_heads, p.head_dim) == (128, 128, 192)
    assert (p.num_experts, p.experts_per_token, p.intermediate_size) == (256, 8, 18432)
    assert p.params_total == pytest.approx(671 * B, rel=0.005)
    assert p.params_active == pytest.approx(37.5 * B, rel=0.02)
    assert (p.checkpoint_precision, p.quant_method, p.kv_cache_scales) == ("fp8", "fp8", False)
    # Without safetensors totals: fp8 body, bf16 embeddings and LM head.
    assert 0.5 * p.params_total < p.checkpoint_bytes < 0.52 * p.params_total * 2


def test_mla_prefers_safetensors_counts_and_keeps_the_active_share() -> None:
    on_disk = WeightTotals(
        params_by_dtype={"F8_E4M3": 684_000_000_000, "BF16": 1_400_000_000, "F32": 42_000_000},
        total_bytes=688_574_839_360,
    )
    p = profile(DEEPSEEK_V3, on_disk)
    assert p.params_total == 685_442_000_000  # includes the MTP layer stored next to the model
    assert p.checkpoint_bytes == 688_574_839_360
    assert p.params_active == pytest.approx(37.55 * B * 685.442 / 671.03, rel=0.001)
    assert "from safetensors" in p.provenance


def test_sliding_window_gpt_oss_layer_types_and_mxfp4() -> None:
    p = profile(GPT_OSS_120B)
    assert p.local_attention is not None
    assert (p.local_attention.kind, p.local_attention.window, p.local_attention.layers) == ("sliding", 128, 18)
    assert (p.num_experts, p.experts_per_token, p.head_dim, p.intermediate_size) == (128, 4, 64, 2880)
    assert (p.checkpoint_precision, p.quant_method) == ("mxfp4", "mxfp4")
    assert p.params_total == pytest.approx(116.8 * B, rel=0.01)
    assert p.params_active == pytest.approx(5.7 * B, rel=0.05)  # incl. embedding + unembedding (5.1B without)
    assert p.checkpoint_bytes == pytest.approx(65.2 * B, rel=0.06)  # published safetensors total: 65.2 GB


def test_mxfp4_packed_safetensors_counts_are_not_parameters() -> None:
    # gpt-oss stores experts as U8 blocks (two fp4 values a byte) plus U8 scales: element counts undercount.
    stored = WeightTotals(params_by_dtype={"U8": 60_000_000_000, "BF16": 3_000_000_000}, total_bytes=65_248_815_744)
    p = profile(GPT_OSS_120B, stored)
    assert p.params_total == pytest.approx(116.8 * B, rel=0.01)
    assert p.checkpoint_bytes == 65_248_815_744
    assert "packed" in p.provenance


def test_gemma3_nested_text_config_with_class_defaults() -> None:
    p = profile(GEMMA_3_27B)
    assert (p.architecture, p.num_layers, p.hidden_size, p.num_kv_heads, p.head_dim) == (
        "Gemma3ForConditionalGeneration",
        62,
        5376,
        16,
        128,
    )
    assert (p.vocab_size, p.max_context, p.tied_embeddings) == (262208, 131072, True)
    assert p.local_attention is not None
    # every 6th layer is global: 62 - 10 = 52 sliding layers of 1024 tokens
    assert (p.local_attention.kind, p.local_attention.window, p.local_attention.layers) == ("sliding", 1024, 52)
    assert p.params_total == pytest.approx(27.0 * B, rel=0.01)


def test_gemma3_explicit_pattern_and_text_config_wins() -> None:
    config = json.loads(json.dumps(GEMMA_3_27B))
    config["text_config"].update(sliding_window_pattern=2, vocab_size=1000, max_position_embeddings=8192)
    config["vocab_size"] = 5  # top level loses to text_config
    p = profile(config)
    assert (p.vocab_size, p.max_context) == (1000, 8192)
    assert p.local_attention is not None and p.local_attention.layers == 31


def test_llama4_chunked_attention_three_of_four_layers() -> None:
    p = profile(LLAMA_4_SCOUT)
    assert p.local_attention is not None
    assert (p.local_attention.kind, p.local_attention.window, p.local_attention.layers) == ("chunked", 8192, 36)
    assert (p.num_experts, p.experts_per_token, p.intermediate_size, p.max_context) == (16, 1, 8192, 10485760)
    assert p.params_total == pytest.approx(107.8 * B, rel=0.01)  # text model; the card's 109B adds vision
    assert p.params_active == pytest.approx(17.2 * B, rel=0.01)


def test_llama4_no_rope_layers_and_maverick_interleave() -> None:
    config = json.loads(json.dumps(LLAMA_4_SCOUT))
    config["text_config"].update(no_rope_layers=[1, 1, 0, 1] * 12, num_local_experts=128, interleave_moe_layer_step=2)
    p = profile(config)
    assert p.local_attention is not None and p.local_attention.layers == 36
    assert p.intermediate_size == 16384  # Maverick has dense layers: their width, not the experts'
    assert p.params_total == pytest.approx(400.7 * B, rel=0.01)
    assert p.params_active == pytest.approx(17.2 * B, rel=0.01)


def test_qwen3_moe_active_parameters_match_the_published_numbers() -> None:
    total, active = estimate_parameters(QWEN3_30B_A3B)
    assert total == pytest.approx(30.5 * B, rel=0.01)
    assert active == pytest.approx(3.3 * B, rel=0.03)
    p = profile(QWEN3_30B_A3B)
    assert (p.params_total, p.params_active) == (total, active)
    assert (p.num_experts, p.experts_per_token, p.intermediate_size) == (128, 8, 768)
    assert p.local_attention is None  # use_sliding_window: false


def test_qwen_moe_mlp_only_layers_and_sparse_step_are_dense() -> None:
    every_other = estimate_parameters(with_(QWEN3_30B_A3B, decoder_sparse_step=2))
    some_dense = estimate_parameters(with_(QWEN3_30B_A3B, mlp_only_layers=[0, 1]))
    full = estimate_parameters(QWEN3_30B_A3B)
    assert every_other[0] < some_dense[0] < full[0]
    assert profile(with_(QWEN3_30B_A3B, mlp_only_layers=[0])).intermediate_size == 6144


def test_plain_sliding_window_only_when_enabled() -> None:
    mistral = with_(LLAMA_31_8B, model_type="mistral", sliding_window=4096, max_position_embeddings=32768)
    p = profile(mistral)
    assert p.local_attention is not None
    assert (p.local_attention.kind, p.local_attention.window, p.local_attention.layers) == ("sliding", 4096, 32)
    assert profile(with_(mistral, use_sliding_window=False)).local_attention is None
    assert profile(with_(mistral, sliding_window=32768)).local_attention is None  # window >= context: no limit
    assert profile(with_(mistral, sliding_window=None)).local_attention is None
    qwen2 = profile(with_(mistral, use_sliding_window=True, max_window_layers=28))
    assert qwen2.local_attention is not None and qwen2.local_attention.layers == 4


def test_compressed_tensors_fp8_with_kv_cache_scheme() -> None:
    p = profile(with_(LLAMA_31_8B, quantization_config=COMPRESSED_FP8_KV))
    assert (p.checkpoint_precision, p.quant_method, p.kv_cache_scales) == ("fp8", "compressed-tensors", True)


def test_awq_int4_uses_the_estimate_for_packed_int32_weights() -> None:
    # An AWQ checkpoint stores ~8 int4 values per I32 word; F16 holds embeddings, LM head and scales.
    stored = WeightTotals(params_by_dtype={"I32": 820_000_000, "F16": 1_150_000_000}, total_bytes=5_580_000_000)
    p = profile(QWEN25_7B_AWQ, stored)
    assert (p.checkpoint_precision, p.quant_method, p.kv_cache_scales) == ("int4", "awq", False)
    assert p.params_total == pytest.approx(7.6 * B, rel=0.01)
    assert p.checkpoint_bytes == 5_580_000_000
    assert p.local_attention is None
    estimated = profile(QWEN25_7B_AWQ)
    assert estimated.checkpoint_bytes == pytest.approx(5.3 * B, rel=0.1)


def test_gptq_8bit_is_int8() -> None:
    gptq = {"bits": 8, "group_size": 128, "quant_method": "gptq", "desc_act": False}
    assert profile(with_(LLAMA_31_8B, quantization_config=gptq)).checkpoint_precision == "int8"


def test_compressed_tensors_w4a16_is_int4() -> None:
    w4a16 = {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "config_groups": {
            "group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "group_size": 128}}
        },
        "kv_cache_scheme": None,
    }
    p = profile(with_(LLAMA_31_8B, quantization_config=w4a16))
    assert (p.checkpoint_precision, p.kv_cache_scales) == ("int4", False)


def test_amd_quark_fp8_kv() -> None:
    p = profile(with_(LLAMA_31_8B, quantization_config=QUARK_FP8_KV))
    assert (p.checkpoint_precision, p.quant_method, p.kv_cache_scales) == ("fp8", "quark", True)
    assert p.params_total == 8_030_261_248
    # fp8 body plus bf16 embeddings and LM head (the published checkpoint is 9.08 GB)
    assert p.checkpoint_bytes == pytest.approx(9.08 * B, rel=0.01)


def test_amd_quark_mxfp4() -> None:
    p = profile(with_(LLAMA_31_8B, quantization_config=QUARK_MXFP4))
    assert (p.checkpoint_precision, p.quant_method, p.kv_cache_scales) == ("mxfp4", "quark", False)


def test_fp32_checkpoint_is_served_in_bf16_and_its_bytes_halve() -> None:
    fp32 = with_(LLAMA_31_8B, torch_dtype="float32")
    stored = WeightTotals(params_by_dtype={"F32": 8_030_261_248}, total_bytes=32_121_044_992)
    p = profile(fp32, stored)
    assert p.checkpoint_precision == "bf16"
    assert p.checkpoint_bytes == 16_060_522_496
    assert profile(fp32).checkpoint_bytes == 16_060_522_496  # estimate: parameters x 2
    only_total = profile(fp32, WeightTotals(total_bytes=32_121_044_992))
    assert only_total.checkpoint_bytes == 16_060_522_496


def test_dtype_key_and_stored_dtype_fallback() -> None:
    no_dtype = {k: v for k, v in LLAMA_31_8B.items() if k != "torch_dtype"}
    assert profile(with_(no_dtype, dtype="float16")).checkpoint_precision == "fp16"
    stored = WeightTotals(params_by_dtype={"F16": 8_030_261_248}, total_bytes=16_060_522_496)
    assert profile(no_dtype, stored).checkpoint_precision == "fp16"
    with pytest.raises(AimError) as error:
        profile(no_dtype)
    one_line(error, "test config", "torch_dtype", "add torch_dtype")


@pytest.mark.parametrize("key", ["hidden_size", "num_hidden_layers", "vocab_size", "max_position_embeddings"])
def test_missing_essential_key_names_the_key_and_the_source(key: str) -> None:
    config = {k: v for k, v in LLAMA_31_8B.items() if k != key}
    with pytest.raises(AimError) as error:
        profile_from_config(config, None, model_id="org/model", provenance="Hugging Face Hub org/model")
    one_line(error, repr(key), "Hugging Face Hub org/model", "Transformers decoder config.json")


def test_invalid_values_and_unsupported_quantisation_are_one_line() -> None:
    with pytest.raises(AimError) as error:
        profile(with_(LLAMA_31_8B, hidden_size="4096"))
    one_line(error, "test config", "'hidden_size'", "integer")
    with pytest.raises(AimError) as error:
        profile(with_(LLAMA_31_8B, quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True}))
    one_line(error, "test config", "bitsandbytes", "supported", "use a BF16")
    with pytest.raises(AimError) as error:
        profile(with_(LLAMA_31_8B, num_key_value_heads=5))
    one_line(error, "test config", "num_kv_heads")
    with pytest.raises(AimError) as error:
        profile({k: v for k, v in LLAMA_31_8B.items() if k != "architectures"})
    one_line(error, "test config", "architectures")


# ---------------------------------------------------------------------------------------------------------------------
# Local folders

TINY: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
}


def tiny_tensors(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a Llama checkpoint for `config`."""
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = config["num_key_value_heads"] * h // config["num_attention_heads"]
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h), "lm_head.weight": (v, h)}
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}"
        shapes |= {
            f"{prefix}.self_attn.q_proj.weight": (h, h),
            f"{prefix}.self_attn.k_proj.weight": (kv, h),
            f"{prefix}.self_attn.v_proj.weight": (kv, h),
            f"{prefix}.self_attn.o_proj.weight": (h, h),
            f"{prefix}.mlp.gate_proj.weight": (i, h),
            f"{prefix}.mlp.up_proj.weight": (i, h),
            f"{prefix}.mlp.down_proj.weight": (h, i),
            f"{prefix}.input_layernorm.weight": (h,),
            f"{prefix}.post_attention_layernorm.weight": (h,),
        }
    shapes["model.norm.weight"] = (h,)
    return shapes


def tiny_arrays(config: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.zeros(shape, dtype=np.float16) for name, shape in tiny_tensors(config).items()}


def write_sparse_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> Blob:
    """A safetensors file of any size: the real header, then a hole (no data is written or ever read)."""
    blob = safetensors_blob(tensors)
    with path.open("wb") as handle:
        handle.write(blob.prefix)
        handle.truncate(blob.size)
    return blob


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def test_local_folder_with_config_and_index_only(tmp_path: Path) -> None:
    folder = tmp_path / "llama-8b"
    folder.mkdir()
    write_json(folder / "config.json", LLAMA_31_8B)
    write_json(
        folder / "model.safetensors.index.json",
        {"metadata": {"total_size": 16060522496}, "weight_map": {"lm_head.weight": "model-00004-of-00004.safetensors"}},
    )
    p = read_local_model(folder)
    assert p.id == str(folder.resolve())
    assert p.checkpoint_bytes == 16060522496
    assert p.params_total == 8_030_261_248  # estimated: the shards are not there to count
    assert "local directory" in p.provenance and "total_size" in p.provenance


def test_local_folder_with_one_real_safetensors_file_and_no_index(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    write_json(folder / "config.json", TINY)
    save_file(tiny_arrays(TINY), str(folder / "model.safetensors"))
    p = read_local_model(folder)
    total, _ = estimate_parameters(TINY)
    assert p.params_total == total  # counted from the header, and equal to the architecture estimate
    assert p.checkpoint_bytes == 2 * total
    assert p.checkpoint_precision == "fp16"
    assert "1 safetensors headers" in p.provenance


def test_local_folder_reads_only_the_headers_of_big_shards(tmp_path: Path) -> None:
    folder = tmp_path / "llama-8b"
    folder.mkdir()
    write_json(folder / "config.json", LLAMA_31_8B)
    shapes = tiny_tensors(LLAMA_31_8B)
    names = sorted(shapes)
    shard_of = {name: f"model-0000{1 + n % 2}-of-00002.safetensors" for n, name in enumerate(names)}
    for shard in set(shard_of.values()):
        write_sparse_safetensors(folder / shard, {n: ("BF16", list(shapes[n])) for n in names if shard_of[n] == shard})
    write_json(
        folder / "model.safetensors.index.json", {"metadata": {"total_size": 16060522496}, "weight_map": shard_of}
    )
    started = time.perf_counter()
    p = read_local_model(folder)
    assert time.perf_counter() - started < 5  # 16 GB of (sparse) shards: only the headers were read
    assert p.params_total == 8_030_261_248
    assert p.checkpoint_bytes == 16060522496
    assert "2 shard headers" in p.provenance


def test_local_folder_errors_are_one_line_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(AimError) as error:
        read_local_model(tmp_path / "nope")
    one_line(error, str(tmp_path / "nope"), "config.json")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AimError) as error:
        read_local_model(empty)
    one_line(error, str(empty), "no config.json")

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(AimError) as error:
        read_local_model(broken)
    one_line(error, "config.json", "not valid JSON", "re-copy")

    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    write_json(no_weights / "config.json", TINY)
    with pytest.raises(AimError) as error:
        read_local_model(no_weights)
    one_line(error, str(no_weights), "no model weights", "safetensors")

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    write_json(truncated / "config.json", TINY)
    (truncated / "model.safetensors").write_bytes((10**6).to_bytes(8, "little") + b"{}")
    with pytest.raises(AimError) as error:
        read_local_model(truncated)
    one_line(error, "model.safetensors", "header length", "re-download")


# ---------------------------------------------------------------------------------------------------------------------
# The Hub, through the real huggingface_hub client against tests/fake_hub.py


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """huggingface_hub retries 5xx and connection errors with 1+2+4+8+8 s of sleep: record the sleeps instead."""
    from huggingface_hub.utils import _http

    slept: list[float] = []

    class _Clock:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            slept.append(seconds)

    monkeypatch.setattr(_http, "time", _Clock())
    return slept


def sharded_repo(hub: FakeHub, repo_id: str, **kwargs: Any) -> dict[str, Blob]:
    shapes = tiny_tensors(TINY)
    names = sorted(shapes)
    shard_of = {name: f"model-0000{1 + n % 2}-of-00002.safetensors" for n, name in enumerate(names)}
    shards = {
        shard: safetensors_blob({n: ("F16", shapes[n]) for n in names if shard_of[n] == shard})
        for shard in sorted(set(shard_of.values()))
    }
    total = sum(blob.size for blob in shards.values()) - 2 * 8  # the index counts tensor bytes, not header bytes
    index = {"metadata": {"total_size": total}, "weight_map": shard_of}
    hub.add_repo(repo_id, {"config.json": TINY, "model.safetensors.index.json": index, **shards}, **kwargs)
    return shards


def test_hub_sharded_config_and_safetensors_metadata(fake_hub: FakeHub) -> None:
    shards = sharded_repo(fake_hub, "org/tiny-sharded")
    p = fetch_hub_profile("org/tiny-sharded")
    total, _ = estimate_parameters(TINY)
    assert p.id == "org/tiny-sharded" and p.params_total == total
    assert p.checkpoint_bytes == sum(blob.size for blob in shards.values()) - 16
    assert "from safetensors headers" in p.provenance and fake_hub.repos["org/tiny-sharded"].commit in p.provenance
    assert not p.gated
    # Only the headers of the shards were fetched (Range requests), never a whole shard.
    shard_gets = [r for r in fake_hub.requests if r.path.endswith(".safetensors") and r.method == "GET"]
    assert shard_gets and all(r.range == "bytes=0-100000" for r in shard_gets)


def test_hub_single_file_repo(fake_hub: FakeHub) -> None:
    fake_hub.add_repo("org/tiny-single", {"config.json": TINY, "model.safetensors": save(tiny_arrays(TINY))})
    p = fetch_hub_profile("org/tiny-single")
    total, _ = estimate_parameters(TINY)
    assert p.params_total == total and p.checkpoint_bytes == 2 * total
    assert p.checkpoint_precision == "fp16"


def test_hub_repo_without_safetensors_falls_back_to_the_estimate(fake_hub: FakeHub) -> None:
    fake_hub.add_repo("org/bin-only", {"config.json": TINY, "pytorch_model.bin": b"\0" * 64})
    p = fetch_hub_profile("org/bin-only")
    assert p.params_total == estimate_parameters(TINY)[0]
    assert "no safetensors" in p.provenance and "estimated" in p.provenance


def test_hub_metadata_failure_after_config_falls_back_and_says_so(fake_hub: FakeHub) -> None:
    shards = sharded_repo(fake_hub, "org/lost-shard")
    lost = sorted(shards)[0]
    del fake_hub.repos["org/lost-shard"].files[lost]  # the index names a shard the repo no longer has
    p = fetch_hub_profile("org/lost-shard")
    assert p.params_total == estimate_parameters(TINY)[0]
    assert p.checkpoint_bytes == sum(blob.size for blob in shards.values()) - 16  # total_size of the cached index
    assert "safetensors metadata unavailable" in p.provenance and "estimated" in p.provenance


def test_hub_gated_without_token_names_hf_token(fake_hub: FakeHub) -> None:
    sharded_repo(fake_hub, "org/gated", mode="gated", token="hf_good")
    with pytest.raises(AimError) as error:
        fetch_hub_profile("org/gated")
    one_line(error, "org/gated", "gated", "licence", "HF_TOKEN", f"{fake_hub.url}/org/gated")


def test_hub_gated_with_hf_token_succeeds(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    sharded_repo(fake_hub, "org/gated", mode="gated", token="hf_good")
    monkeypatch.setenv("HF_TOKEN", "hf_good")
    p = fetch_hub_profile("org/gated")
    assert p.gated and p.params_total == estimate_parameters(TINY)[0]
    assert all(r.authorization == "Bearer hf_good" for r in fake_hub.seen("hub") if "resolve" in r.path)
    assert all(r.authorization is None for r in fake_hub.seen("cdn"))  # the token never leaves the Hub host


def test_hub_gated_with_a_token_without_access(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    sharded_repo(fake_hub, "org/gated", mode="gated", token="hf_good")
    monkeypatch.setenv("HF_TOKEN", "hf_other")
    with pytest.raises(AimError) as error:
        fetch_hub_profile("org/gated")
    one_line(error, "org/gated", "no access", "HF_TOKEN", "accept the licence")


def test_hub_rejected_token_is_one_line(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    sharded_repo(fake_hub, "org/tiny")
    fake_hub.valid_tokens = {"hf_good"}
    monkeypatch.setenv("HF_TOKEN", "hf_revoked")
    with pytest.raises(AimError) as error:
        fetch_hub_profile("org/tiny")
    one_line(error, "org/tiny", "HTTP 401", "set HF_TOKEN to a valid token")


def test_hub_missing_repo_is_one_line(fake_hub: FakeHub) -> None:
    with pytest.raises(AimError) as error:
        fetch_hub_profile("org/does-not-exist")
    one_line(error, "org/does-not-exist", "not found", fake_hub.url, "local model directory", "HF_TOKEN")
    fake_hub.add_repo("org/declared-missing", {"config.json": TINY}, mode="missing")
    with pytest.raises(AimError) as error:
        fetch_hub_profile("org/declared-missing")
    one_line(error, "org/declared-missing", "not found", "check the model id")


def test_hub_missing_revision_is_one_line(fake_hub: FakeHub) -> None:
    sharded_repo(fake_hub, "org/tiny")
    with pytest.raises(AimError) as error:
        fetch_hub_profile("org/tiny", revision="v9")
    one_line(error, "org/tiny", "'v9'", "check the revision")
    commit = fake_hub.repos["org/tiny"].commit
    assert commit in fetch_hub_profile("org/tiny", revision=commit).provenance


def test_hub_without_config_json_is_one_line(fake_hub: FakeHub) -> None:
    fake_hub.add_repo("org/gguf-only", {"model.gguf": b"GGUF"})
    with pytest.raises(AimError) as error:
        fetch_hub_profile("org/gguf-only")
    one_line(error, "org/gguf-only", "no config.json", "local model directory")


def test_hub_server_error_is_one_line(fake_hub: FakeHub, no_backoff: list[float]) -> None:
    fake_hub.add_repo("org/broken", {"config.json": TINY}, mode="error")
    with pytest.raises(AimError) as error:
        fetch_hub_profile("org/broken")
    one_line(error, "org/broken", "HTTP 500", "retry later", "local model directory")
    assert no_backoff  # the client retried (with backoff) before giving up


def test_hub_unreachable_names_the_endpoint(
    fake_hub: FakeHub, no_backoff: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", closed)
    with pytest.raises(AimError) as error:
        fetch_hub_profile("org/anything")
    one_line(error, "org/anything", "cannot reach", closed, "HF_ENDPOINT", "local model directory")


def test_hub_offline_with_an_empty_cache_is_one_line(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    sharded_repo(fake_hub, "org/tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AimError) as error:
        fetch_hub_profile("org/tiny")
    one_line(error, "org/tiny", "HF_HUB_OFFLINE", "local model directory", "bundled")
    assert fake_hub.requests == []


def test_hub_offline_after_a_fetch_is_served_from_the_cache(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    sharded_repo(fake_hub, "org/tiny")
    online = fetch_hub_profile("org/tiny")
    seen = len(fake_hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = fetch_hub_profile("org/tiny")
    assert len(fake_hub.requests) == seen  # nothing left the process
    assert offline.params_total == online.params_total  # the tiny model's estimate is exact
    assert offline.checkpoint_bytes == online.checkpoint_bytes  # total_size from the cached index
    assert "offline" in offline.provenance and "cached index" in offline.provenance


def test_hub_invalid_repo_id_is_one_line(fake_hub: FakeHub) -> None:
    with pytest.raises(AimError) as error:
        fetch_hub_profile("not a/valid//id")
    one_line(error, "not a/valid//id", "repo id", "check the spelling")


# ---------------------------------------------------------------------------------------------------------------------
# resolve_model: local directory, then bundled catalogue, then Hub


def catalogue_with(model_id: str, *aliases: str) -> ModelCatalogue:
    bundled = profile_from_config(LLAMA_31_8B, None, model_id=model_id, provenance="bundled")
    return ModelCatalogue(models=[bundled.model_copy(update={"aliases": list(aliases)})])


def test_resolve_order_local_then_catalogue_then_hub(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sharded_repo(fake_hub, "org/tiny")
    catalogue = catalogue_with("org/tiny", "Tiny")
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "org" / "tiny"
    local.mkdir(parents=True)
    write_json(local / "config.json", TINY)
    save_file(tiny_arrays(TINY), str(local / "model.safetensors"))

    assert resolve_model("org/tiny", catalogue=catalogue).id == str(local.resolve())  # the folder wins
    (local / "model.safetensors").unlink()
    (local / "config.json").unlink()
    local.rmdir()
    assert resolve_model("org/tiny", catalogue=catalogue).provenance.startswith("bundled")  # then the catalogue
    assert resolve_model("  TINY ", catalogue=catalogue).id == "org/tiny"  # aliases, any case
    assert fake_hub.requests == []
    hub_profile = resolve_model("org/tiny", catalogue=catalogue_with("other/model"))  # finally the Hub
    assert hub_profile.provenance.startswith("Hugging Face Hub")


def test_resolve_with_a_catalogue_yaml(tmp_path: Path) -> None:
    catalogue_file = tmp_path / "models.yaml"
    bundled = catalogue_with("meta-llama/Llama-3.1-8B-Instruct", "llama-8b")
    catalogue_file.write_text(json.dumps(bundled.model_dump(mode="json")), encoding="utf-8")  # JSON is YAML
    loaded = load_model_catalogue(catalogue_file)
    assert resolve_model("LLAMA-8B", catalogue=loaded).id == "meta-llama/Llama-3.1-8B-Instruct"


def test_resolve_a_missing_path_is_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "models" / "llama")
    with pytest.raises(AimError) as error:
        resolve_model(missing, catalogue=catalogue_with("org/model"))
    one_line(error, missing, "no such model directory", "pass the folder")
    with pytest.raises(AimError) as error:
        resolve_model("   ", catalogue=catalogue_with("org/model"))
    one_line(error, "empty", "Hugging Face repo id")


# ---------------------------------------------------------------------------------------------------------------------
# Issue #11: hostile or broken metadata is one line, never a traceback or a memory blow-up


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"max_position_embeddings": 100}, "config.json 'max_position_embeddings' must be an integer from 256 to"),
        ({"num_hidden_layers": 10**12}, "config.json 'num_hidden_layers' must be an integer from 1 to 1024"),
        ({"num_local_experts": 10**15, "num_experts_per_tok": 2}, "config.json 'num_local_experts' must be an"),
        ({"hidden_size": 10**30}, "config.json 'hidden_size' must be an integer from 1 to 1000000000"),
    ],
)
def test_absurd_config_numbers_are_one_line(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(AimError) as error:
        profile(with_(LLAMA_31_8B, **changes))
    one_line(error, needle)


def test_a_local_model_with_a_tiny_context_is_one_line_through_the_cli(tmp_path: Path) -> None:
    from aim_infra.cli import main

    (tmp_path / "config.json").write_text(json.dumps(with_(LLAMA_31_8B, max_position_embeddings=100)))
    save_file({"w": np.zeros((2, 2), dtype=np.float16)}, str(tmp_path / "model.safetensors"))
    assert main(["select", "--model", str(tmp_path), "--gpu", "MI300X", "--gpu-count", "1"]) == 2


@pytest.mark.parametrize(("name", "limit"), [("config.json", "1 MiB"), ("model.safetensors.index.json", "16 MiB")])
def test_model_metadata_is_read_with_a_size_limit(tmp_path: Path, name: str, limit: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_31_8B))
    with (tmp_path / name).open("wb") as handle:  # a sparse 4 GiB file: costs no disk, would cost 4 GiB of memory
        handle.truncate(4 * 2**30)
    with pytest.raises(AimError) as error:
        read_local_model(tmp_path)
    one_line(error, name, f"larger than {limit}")


def test_non_numeric_layer_lists_are_one_line() -> None:
    with pytest.raises(AimError) as error:
        profile(with_(QWEN3_30B_A3B, mlp_only_layers=["x"]))
    one_line(error, "config.json 'mlp_only_layers' must be a list of layer numbers")


# ---------------------------------------------------------------------------------------------------------------------
# LoRA adapters: adapter_config.json through the real huggingface_hub client

ADAPTER = {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "org/tiny"}


def test_adapter_config_comes_from_the_hub_with_its_commit(fake_hub: FakeHub) -> None:
    repo = fake_hub.add_repo("org/sql-lora", {"adapter_config.json": ADAPTER, "adapter_model.safetensors": b"x" * 64})
    config, commit = fetch_adapter_config("org/sql-lora")
    assert config == ADAPTER and commit == repo.commit
    # Only the config is fetched at preview, never the weights: the download Job fetches those.
    assert not [r for r in fake_hub.requests if r.path.endswith(".safetensors")]


def test_adapter_config_is_read_from_the_cache_when_offline(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    fake_hub.add_repo("org/sql-lora", {"adapter_config.json": ADAPTER})
    fetch_adapter_config("org/sql-lora")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(fake_hub.requests)
    assert fetch_adapter_config("org/sql-lora")[0] == ADAPTER
    assert len(fake_hub.requests) == before


def test_adapter_errors_are_one_line_naming_the_adapter(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    sharded_repo(fake_hub, "org/base-model")
    with pytest.raises(AimError) as base:
        fetch_adapter_config("org/base-model")
    assert str(base.value) == (
        f"LoRA adapter 'org/base-model' has no adapter_config.json on {fake_hub.url} (revision main): it is not a "
        "PEFT LoRA adapter; give the adapter's repository, not its base model's"
    )
    with pytest.raises(AimError) as missing:
        fetch_adapter_config("org/no-such-lora")
    assert str(missing.value) == (
        f"LoRA adapter 'org/no-such-lora' not found on {fake_hub.url}: check the model id (a private repo also "
        "needs HF_TOKEN) or remove the adapter from loraModules"
    )
    fake_hub.add_repo("org/gated-lora", {"adapter_config.json": ADAPTER}, mode="gated")
    with pytest.raises(AimError, match=r"^LoRA adapter 'org/gated-lora' is a gated repo: accept its licence"):
        fetch_adapter_config("org/gated-lora")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(AimError) as offline:
        fetch_adapter_config("org/never-fetched-lora")
    assert str(offline.value) == (
        "LoRA adapter 'org/never-fetched-lora': its adapter_config.json is not in the local Hugging Face cache and "
        "HF_HUB_OFFLINE=1 forbids fetching it (its rank and base model are read at preview): unset HF_HUB_OFFLINE, "
        "or fetch it once with `hf download <adapter> adapter_config.json`"
    )
