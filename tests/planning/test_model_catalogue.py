"""The bundled model catalogue (recipes/models.yaml) against the architecture facts it was built from.

The expected rows restate the shared facts sheet (§4a, "architecture facts of popular models"); where the model's own
config.json / safetensors totals disagree with that sheet, the source wins and the row here says so.
"""

from __future__ import annotations

import pytest

from aim_infra.planning.model_profile import ModelProfile, load_model_catalogue

B = 1_000_000_000

#: Every model the catalogue issue requires (Hugging Face ids exactly as on the Hub).
REQUIRED_IDS = (
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct",
    "amd/Llama-3.1-8B-Instruct-FP8-KV",
    "amd/Llama-3.1-70B-Instruct-FP8-KV",
    "amd/Llama-3.1-405B-Instruct-FP8-KV",
    "meta-llama/Llama-3.3-70B-Instruct",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
    "Qwen/Qwen3-8B",
    "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B",
    "Qwen/Qwen3-235B-A22B",
    "Qwen/Qwen3-235B-A22B-FP8",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct",
    "Qwen/Qwen2.5-0.5B-Instruct",
    "deepseek-ai/DeepSeek-R1",
    "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-R1-0528",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    "moonshotai/Kimi-K2-Instruct",
    "openai/gpt-oss-20b",
    "openai/gpt-oss-120b",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "mistralai/Mistral-Large-Instruct-2411",
    "google/gemma-3-27b-it",
)

#: Facts sheet §4a, one tuple per model: (total params, active params or None for dense, layers, Q heads,
#: KV heads, head dim, max context). KV heads / head dim are None for MLA rows (checked through `mla`).
FACTS: dict[str, tuple[float, float | None, int, int, int | None, int | None, int]] = {
    "meta-llama/Llama-3.1-8B-Instruct": (8.0 * B, None, 32, 32, 8, 128, 131072),
    "amd/Llama-3.1-8B-Instruct-FP8-KV": (8.0 * B, None, 32, 32, 8, 128, 131072),
    "meta-llama/Llama-3.1-70B-Instruct": (70.6 * B, None, 80, 64, 8, 128, 131072),
    "amd/Llama-3.1-70B-Instruct-FP8-KV": (70.6 * B, None, 80, 64, 8, 128, 131072),
    "meta-llama/Llama-3.3-70B-Instruct": (70.6 * B, None, 80, 64, 8, 128, 131072),
    "amd/Llama-3.3-70B-Instruct-MXFP4-Preview": (70.6 * B, None, 80, 64, 8, 128, 131072),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": (70.6 * B, None, 80, 64, 8, 128, 131072),
    "meta-llama/Llama-3.1-405B-Instruct": (405 * B, None, 126, 128, 8, 128, 131072),
    "amd/Llama-3.1-405B-Instruct-FP8-KV": (405 * B, None, 126, 128, 8, 128, 131072),
    "Qwen/Qwen3-8B": (8.2 * B, None, 36, 32, 8, 128, 40960),
    "Qwen/Qwen3-32B": (32.8 * B, None, 64, 64, 8, 128, 40960),
    "Qwen/Qwen2.5-72B-Instruct": (72.7 * B, None, 80, 64, 8, 128, 32768),
    "Qwen/Qwen3-30B-A3B": (30.5 * B, 3.3 * B, 48, 32, 4, 128, 40960),
    "Qwen/Qwen3-235B-A22B": (235 * B, 22 * B, 94, 64, 4, 128, 40960),
    "Qwen/Qwen3-235B-A22B-FP8": (235 * B, 22 * B, 94, 64, 4, 128, 40960),
    "Qwen/Qwen3-Coder-480B-A35B-Instruct": (480 * B, 35 * B, 62, 96, 8, 128, 262144),
    "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8": (480 * B, 35 * B, 62, 96, 8, 128, 262144),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (46.7 * B, 12.9 * B, 32, 32, 8, 128, 32768),
    "mistralai/Mixtral-8x22B-Instruct-v0.1": (141 * B, 39 * B, 56, 48, 8, 128, 65536),
    # The sheet marks the KV heads *check*; config.json confirms 8.
    "mistralai/Mistral-Large-Instruct-2411": (123 * B, None, 88, 96, 8, 128, 131072),
    # The sheet marks the KV heads *check*; config.json text_config confirms 16. 27.4B includes the vision tower.
    "google/gemma-3-27b-it": (27 * B, None, 62, 32, 16, 128, 131072),
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": (109 * B, 17 * B, 48, 40, 8, 128, 10485760),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct": (400 * B, 17 * B, 48, 40, 8, 128, 1048576),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8": (400 * B, 17 * B, 48, 40, 8, 128, 1048576),
    "openai/gpt-oss-120b": (117 * B, 5.1 * B, 36, 64, 8, 64, 131072),
    "openai/gpt-oss-20b": (21 * B, 3.6 * B, 24, 64, 8, 64, 131072),
    # MLA rows: 671B is the main model; the checkpoint also carries the MTP layer (~685B on disk).
    "deepseek-ai/DeepSeek-V3": (671 * B, 37 * B, 61, 128, None, None, 163840),
    "deepseek-ai/DeepSeek-R1": (671 * B, 37 * B, 61, 128, None, None, 163840),
    "deepseek-ai/DeepSeek-R1-0528": (671 * B, 37 * B, 61, 128, None, None, 163840),
    "moonshotai/Kimi-K2-Instruct": (1000 * B, 32 * B, 61, 64, None, None, 131072),
}

#: Routed experts per MoE layer and experts per token, from the sheet and config.json.
EXPERTS = {
    "Qwen/Qwen3-30B-A3B": (128, 8),
    "Qwen/Qwen3-235B-A22B": (128, 8),
    "Qwen/Qwen3-235B-A22B-FP8": (128, 8),
    "Qwen/Qwen3-Coder-480B-A35B-Instruct": (160, 8),
    "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8": (160, 8),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (8, 2),
    "mistralai/Mixtral-8x22B-Instruct-v0.1": (8, 2),
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": (16, 1),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct": (128, 1),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8": (128, 1),
    "openai/gpt-oss-120b": (128, 4),
    "openai/gpt-oss-20b": (32, 4),
    "deepseek-ai/DeepSeek-V3": (256, 8),
    "deepseek-ai/DeepSeek-R1": (256, 8),
    "deepseek-ai/DeepSeek-R1-0528": (256, 8),
    "moonshotai/Kimi-K2-Instruct": (384, 8),
}

MLA_MODELS = (
    "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-R1",
    "deepseek-ai/DeepSeek-R1-0528",
    "moonshotai/Kimi-K2-Instruct",
)

#: Plausible checkpoint bytes per parameter for the stored precision (scales, bf16 embeddings and MTP layers included).
BYTES_PER_PARAM = {"bf16": (1.95, 2.05), "fp16": (1.95, 2.05), "fp8": (0.98, 1.2), "mxfp4": (0.5, 0.7)}


def gemma3_sliding_layers(num_layers: int = 62, pattern: int = 6) -> int:
    """Gemma 3: every `pattern`-th layer is global (sliding_window_pattern), the rest use the sliding window."""
    return sum(1 for layer in range(num_layers) if (layer + 1) % pattern)


@pytest.fixture(scope="module")
def catalogue():
    return load_model_catalogue()


def profile(catalogue, model_id: str) -> ModelProfile:
    found = catalogue.find(model_id)
    assert found is not None, f"{model_id} missing from the catalogue"
    return found


def test_catalogue_loads_and_is_not_trivial(catalogue):
    assert len(catalogue.models) >= len(REQUIRED_IDS)


@pytest.mark.parametrize("model_id", REQUIRED_IDS)
def test_required_model_present(catalogue, model_id):
    assert catalogue.get(model_id).id == model_id


def test_an_amd_quark_mxfp4_checkpoint_is_present(catalogue):
    mxfp4 = [m for m in catalogue.models if m.id.startswith("amd/") and m.checkpoint_precision == "mxfp4"]
    assert mxfp4, "expected one AMD Quark MXFP4 checkpoint"
    assert all(m.quant_method == "quark" for m in mxfp4)


@pytest.mark.parametrize("model_id", sorted(FACTS))
def test_matches_facts_sheet(catalogue, model_id):
    total, active, layers, heads, kv_heads, head_dim, max_ctx = FACTS[model_id]
    p = profile(catalogue, model_id)
    assert p.num_layers == layers
    assert p.num_attention_heads == heads
    assert p.max_context == max_ctx
    if kv_heads is not None:
        assert p.num_kv_heads == kv_heads
    if head_dim is not None:
        assert p.head_dim == head_dim
    assert p.params_total == pytest.approx(total, rel=0.04)
    if active is None:
        assert not p.is_moe
        assert p.params_active == p.params_total
    else:
        assert p.is_moe
        assert p.params_active == pytest.approx(active, rel=0.05)


@pytest.mark.parametrize("model_id", sorted(EXPERTS))
def test_moe_expert_counts(catalogue, model_id):
    p = profile(catalogue, model_id)
    assert (p.num_experts, p.experts_per_token) == EXPERTS[model_id]


def test_every_moe_model_has_experts_and_every_dense_none(catalogue):
    for p in catalogue.models:
        if p.params_active < p.params_total:
            assert p.num_experts > 0 and p.experts_per_token > 0, p.id
        else:
            assert p.num_experts == 0 and p.experts_per_token == 0, p.id
        if p.is_moe:
            # expert_params derives routed-expert weights from total/active; it must stay inside the model.
            assert 0 < p.expert_params < p.params_total, p.id


@pytest.mark.parametrize("model_id", MLA_MODELS)
def test_mla_models(catalogue, model_id):
    p = profile(catalogue, model_id)
    assert p.mla is not None
    assert (p.mla.kv_lora_rank, p.mla.qk_rope_head_dim) == (512, 64)
    assert p.mla.latent_elements == 576
    assert p.num_kv_heads == p.num_attention_heads
    assert p.head_dim == 128 + 64  # qk_nope_head_dim + qk_rope_head_dim


def test_every_deepseek_v3_architecture_has_mla(catalogue):
    for p in catalogue.models:
        if p.architecture == "DeepseekV3ForCausalLM":
            assert p.mla is not None, p.id
        else:
            assert p.mla is None, p.id


def test_bytes_per_param_plausible_for_precision(catalogue):
    for p in catalogue.models:
        low, high = BYTES_PER_PARAM[p.checkpoint_precision]
        assert low <= p.bytes_per_param <= high, (p.id, p.checkpoint_precision, p.bytes_per_param)


def test_precision_and_quant_method_agree(catalogue):
    for p in catalogue.models:
        if p.checkpoint_precision in ("bf16", "fp16"):
            assert p.quant_method is None, p.id
        else:
            assert p.quant_method, p.id
        if p.kv_cache_scales:
            assert p.id.startswith("amd/"), p.id
    assert profile(catalogue, "openai/gpt-oss-120b").quant_method == "mxfp4"
    assert profile(catalogue, "deepseek-ai/DeepSeek-R1").quant_method == "fp8"
    assert profile(catalogue, "Qwen/Qwen3-235B-A22B-FP8").quant_method == "fp8"
    assert profile(catalogue, "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8").quant_method == "compressed-tensors"
    for size in ("8B", "70B", "405B"):
        amd = profile(catalogue, f"amd/Llama-3.1-{size}-Instruct-FP8-KV")
        assert (amd.checkpoint_precision, amd.quant_method, amd.kv_cache_scales) == ("fp8", "quark", True)


def test_local_attention(catalogue):
    oss120 = profile(catalogue, "openai/gpt-oss-120b").local_attention
    oss20 = profile(catalogue, "openai/gpt-oss-20b").local_attention
    assert (oss120.kind, oss120.window, oss120.layers) == ("sliding", 128, 36 // 2)
    assert (oss20.kind, oss20.window, oss20.layers) == ("sliding", 128, 24 // 2)
    gemma = profile(catalogue, "google/gemma-3-27b-it").local_attention
    assert (gemma.kind, gemma.window, gemma.layers) == ("sliding", 1024, gemma3_sliding_layers())
    assert gemma.layers == 52
    for model_id in (
        "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
    ):
        chunked = profile(catalogue, model_id).local_attention
        assert (chunked.kind, chunked.window, chunked.layers) == ("chunked", 8192, 48 * 3 // 4)
    # Disabled sliding windows (Qwen use_sliding_window false, Mistral sliding_window null) are full attention.
    for model_id in (
        "Qwen/Qwen3-8B",
        "Qwen/Qwen2.5-7B-Instruct",
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "mistralai/Mistral-Large-Instruct-2411",
        "meta-llama/Llama-3.1-8B-Instruct",
    ):
        assert profile(catalogue, model_id).local_attention is None


def test_gated_repos(catalogue):
    for p in catalogue.models:
        org = p.id.split("/", 1)[0]
        if org in ("meta-llama", "mistralai", "google"):
            assert p.gated, p.id
        if org in ("Qwen", "deepseek-ai", "openai", "moonshotai"):
            assert not p.gated, p.id


def test_short_aliases_resolve(catalogue):
    for p in catalogue.models:
        short = p.id.split("/", 1)[1]
        assert catalogue.get(short).id == p.id
        assert catalogue.get(short.lower()).id == p.id


def test_every_profile_names_its_sources(catalogue):
    for p in catalogue.models:
        assert "config" in p.provenance, p.id
        assert len(p.provenance) > 40, p.id
