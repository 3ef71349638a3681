"""Selection: filter, fit, rank by the metric, fall back to a generated recipe, and explain every candidate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from aim_infra.common.errors import AimError
from aim_infra.planning.catalogue import RecipeCatalogue, load_catalogue_from
from aim_infra.planning.hardware import GpuCatalogue
from aim_infra.planning.model_profile import MlaDims, ModelCatalogue, ModelProfile
from aim_infra.planning.selection import Selector

from .factories import dense, gfx90a, gpu

MI300X = gpu()
MI355X = gpu(
    name="MI355X",
    family="CDNA4",
    arch="gfx950",
    memory_gib=288,
    bandwidth_tbps=8.0,
    peak_tflops={"bf16": 2500.0, "fp8": 5000.0, "mxfp4": 10000.0},
    fp8_format="ocp",
    weight_precisions={"bf16": ["*"], "fp16": ["*"], "fp8": ["*"], "int4": ["*"], "mxfp4": ["*"], "mxfp6": ["*"]},
    pci_device_ids=["75a3"],
    product_name_patterns=["MI355X"],
)
MI250 = gfx90a()
GPUS = GpuCatalogue(gpus=[MI250, MI300X, MI355X])

SMALL = dense(id="test/small")
LARGE = dense(
    id="test/large-405b",
    params_total=405_853_388_800,
    params_active=405_853_388_800,
    checkpoint_bytes=811_706_777_600,
    num_layers=126,
    hidden_size=16384,
    intermediate_size=53248,
    num_attention_heads=128,
)
ODD_HEADS = dense(id="test/odd-heads", num_attention_heads=20, num_kv_heads=4, head_dim=128)
MLA = dense(
    id="test/mla-671b",
    architecture="DeepseekV3ForCausalLM",
    params_total=684_531_386_000,
    params_active=37_000_000_000,
    num_experts=256,
    experts_per_token=8,
    checkpoint_precision="fp8",
    quant_method="fp8",
    checkpoint_bytes=688_586_727_753,
    num_layers=61,
    hidden_size=7168,
    intermediate_size=2048,
    vocab_size=129280,
    num_attention_heads=128,
    num_kv_heads=128,
    head_dim=192,
    mla=MlaDims(kv_lora_rank=512, qk_rope_head_dim=64),
    max_context=163840,
)
QUARK_MXFP4 = dense(
    id="test/quark-mxfp4", checkpoint_precision="mxfp4", quant_method="quark", checkpoint_bytes=5_000_000_000
)
GPT_OSS = dense(
    id="test/gpt-oss",
    architecture="GptOssForCausalLM",
    params_total=20_914_757_184,
    params_active=3_610_000_000,
    num_experts=32,
    experts_per_token=4,
    checkpoint_precision="mxfp4",
    quant_method="mxfp4",
    checkpoint_bytes=13_761_300_000,
    num_layers=24,
    hidden_size=2880,
    intermediate_size=2880,
    vocab_size=201088,
    num_attention_heads=64,
    num_kv_heads=8,
    head_dim=64,
)
MODELS = ModelCatalogue(models=[SMALL, LARGE, ODD_HEADS, MLA, QUARK_MXFP4, GPT_OSS])


def recipe_entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "test/small",
        "gpu": "MI300X",
        "gpu_count": 1,
        "tensor_parallel_size": 1,
        "precision": "bf16",
        "max_model_len": 32768,
        "metric": "throughput",
        "status": "community",
        "provenance": "test",
    }
    base.update(fields)
    return base


def catalogue(tmp_path: Path, *entries: dict[str, Any]) -> RecipeCatalogue:
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"recipes": list(entries)}))
    return load_catalogue_from(tmp_path, gpus=GPUS, models=MODELS)


def selector(cat: RecipeCatalogue) -> Selector:
    return Selector(cat, gpus=GPUS)


@pytest.fixture
def small_catalogue(tmp_path: Path) -> RecipeCatalogue:
    return catalogue(
        tmp_path,
        recipe_entry(id="small-tp1-tput"),
        recipe_entry(
            id="small-tp8-lat", gpu_count=8, tensor_parallel_size=8, metric="latency", env={"NCCL_MIN_NCHANNELS": "112"}
        ),
        recipe_entry(id="small-tp1-fp8", precision="fp8", vllm_args={"quantization": "fp8"}),
        recipe_entry(id="small-mi355x", gpu="MI355X"),
    )


def test_throughput_prefers_replicas_of_the_smallest_layout(small_catalogue: RecipeCatalogue) -> None:
    decision = selector(small_catalogue).select(SMALL, MI300X, 8, metric="throughput")
    assert decision.recipe.id == "small-tp1-tput"
    assert decision.replicas == 8
    assert not decision.fallback
    status = {c.recipe_id: c.status for c in decision.candidates}
    assert status == {
        "small-tp1-tput": "selected",
        "small-tp8-lat": "viable",
        "small-tp1-fp8": "rejected",
        "small-mi355x": "rejected",
    }
    reasons = {c.recipe_id: c.reason for c in decision.candidates}
    assert "set precision=fp8" in reasons["small-tp1-fp8"]
    assert "gfx942" in reasons["small-mi355x"]


def test_latency_prefers_more_tensor_parallelism(small_catalogue: RecipeCatalogue) -> None:
    decision = selector(small_catalogue).select(SMALL, MI300X, 8, metric="latency")
    assert decision.recipe.id == "small-tp8-lat"
    assert decision.replicas == 1
    assert decision.vllm_args[0] == "--tensor-parallel-size=8"


def test_recipes_needing_more_gpus_than_available_are_rejected(small_catalogue: RecipeCatalogue) -> None:
    decision = selector(small_catalogue).select(SMALL, MI300X, 4, metric="latency")
    assert decision.recipe.id == "small-tp1-tput"
    reason = next(c.reason for c in decision.candidates if c.recipe_id == "small-tp8-lat")
    assert reason == "needs 8 GPUs, 4 available"


def test_precision_wish_selects_the_on_the_fly_recipe(small_catalogue: RecipeCatalogue) -> None:
    decision = selector(small_catalogue).select(SMALL, MI300X, 1, precision="fp8")
    assert decision.recipe.id == "small-tp1-fp8"
    assert "--quantization=fp8" in decision.vllm_args


def test_same_arch_recipe_is_reused_on_a_sibling_gpu(tmp_path: Path) -> None:
    mi325x = gpu(
        name="MI325X", memory_gib=256, bandwidth_tbps=6.0, pci_device_ids=["74a5"], product_name_patterns=["MI325X"]
    )
    gpus = GpuCatalogue(gpus=[MI300X, mi325x])
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"recipes": [recipe_entry(id="small-on-mi300x")]}))
    cat = load_catalogue_from(tmp_path, gpus=gpus, models=MODELS)
    decision = Selector(cat, gpus=gpus).select(SMALL, mi325x, 1)
    assert decision.recipe.id == "small-on-mi300x"
    assert "tuned on MI300X" in decision.candidates[0].reason


def test_generated_fallback_for_a_model_without_recipes(small_catalogue: RecipeCatalogue) -> None:
    throughput = selector(small_catalogue).select(LARGE, MI300X, 8)
    assert throughput.fallback and throughput.recipe.status == "generated"
    assert throughput.recipe.tensor_parallel_size == 8  # 405B bf16 only fits on 8
    assert throughput.recipe.env == {"VLLM_ROCM_USE_AITER": "1", "NCCL_MIN_NCHANNELS": "112"}
    assert any("generated" in note for note in throughput.notes)
    assert any("cheaper alternative" in note and "fp8" in note for note in throughput.notes)


def test_generated_throughput_uses_the_smallest_tp_and_latency_more(tmp_path: Path) -> None:
    empty = catalogue(
        tmp_path,
        recipe_entry(id="unrelated", model="test/large-405b", gpu_count=8, tensor_parallel_size=8, max_model_len=8192),
    )
    sel = selector(empty)
    throughput = sel.select(SMALL, MI300X, 8, metric="throughput")
    latency = sel.select(SMALL, MI300X, 8, metric="latency")
    assert throughput.recipe.tensor_parallel_size == 1 and throughput.replicas == 8
    assert latency.recipe.tensor_parallel_size > 1
    viable = [c for c in latency.candidates if c.status != "rejected"]
    assert {c.tensor_parallel_size for c in viable} == {1, 2, 4, 8}


def test_generated_context_shrinks_until_it_fits(tmp_path: Path) -> None:
    empty = catalogue(tmp_path, recipe_entry(id="unrelated"))
    seventy = dense(
        id="test/small",
        params_total=70 * 10**9,
        params_active=70 * 10**9,
        checkpoint_bytes=141 * 10**9,
        num_layers=80,
        hidden_size=8192,
        num_attention_heads=64,
    )
    decision = Selector(empty, gpus=GPUS).select(seventy, MI300X, 1)
    assert decision.recipe.tensor_parallel_size == 1
    assert decision.recipe.max_model_len < 131072


def test_infeasible_request_names_the_minimum(small_catalogue: RecipeCatalogue) -> None:
    with pytest.raises(AimError) as error:
        selector(small_catalogue).select(LARGE, MI300X, 4, max_model_len=8192)
    message = str(error.value)
    assert "\n" not in message
    # fp8 fits the 4 GPUs given: say so, and what bf16 would need (never "needs ≥ 4" on 4 GPUs).
    assert message.endswith(": it can be served here in fp8 (set precision to fp8); bf16 needs ≥ 8 × MI300X"), message


def test_model_too_big_for_any_node_says_so(small_catalogue: RecipeCatalogue) -> None:
    with pytest.raises(AimError, match="does not fit one node of 8 × MI250"):
        selector(small_catalogue).select(LARGE, MI250, 8)


def test_gfx90a_has_no_fp8(small_catalogue: RecipeCatalogue) -> None:
    with pytest.raises(AimError, match=r"MI250 \(gfx90a\) has no fp8 path"):
        selector(small_catalogue).select(SMALL, MI250, 1, precision="fp8")
    with pytest.raises(AimError, match="gfx90a has no kernels in ROCm vLLM for its fp8 weights"):
        selector(small_catalogue).select(MLA, MI250, 8)
    decision = selector(small_catalogue).select(SMALL, MI250, 1)
    assert decision.recipe.precision == "bf16"
    assert "VLLM_ROCM_USE_AITER" not in decision.env


def test_mxfp4_only_where_supported(small_catalogue: RecipeCatalogue) -> None:
    with pytest.raises(
        AimError, match=r"gfx942 has no kernels in ROCm vLLM for its mxfp4 weights \(quantisation quark"
    ):
        selector(small_catalogue).select(QUARK_MXFP4, MI300X, 1)
    assert selector(small_catalogue).select(QUARK_MXFP4, MI355X, 1).recipe.precision == "mxfp4"
    # gpt-oss's own MXFP4 format runs on gfx942 (triton path), with its ROCm attention settings.
    oss = selector(small_catalogue).select(GPT_OSS, MI300X, 1)
    assert oss.recipe.precision == "mxfp4"
    assert oss.recipe.vllm_args["attention-backend"] == "ROCM_AITER_UNIFIED_ATTN"
    assert oss.recipe.vllm_args["block-size"] == 64


def test_mla_model_on_eight_mi300x_uses_block_size_one(small_catalogue: RecipeCatalogue) -> None:
    decision = selector(small_catalogue).select(MLA, MI300X, 8)
    assert decision.recipe.tensor_parallel_size == 8
    assert decision.recipe.vllm_args["block-size"] == 1
    with pytest.raises(AimError, match="needs ≥ 4 × MI300X in fp8"):
        selector(small_catalogue).select(MLA, MI300X, 2)


def test_tensor_parallel_size_must_divide_the_heads(tmp_path: Path) -> None:
    with pytest.raises(AimError, match="TP 8 does not divide the 20 attention heads"):
        catalogue(tmp_path, recipe_entry(id="odd", model="test/odd-heads", gpu_count=8, tensor_parallel_size=8))
    cat = catalogue(tmp_path, recipe_entry(id="fine"))
    decision = selector(cat).select(ODD_HEADS, MI300X, 8, metric="latency")
    assert decision.recipe.tensor_parallel_size == 4
    assert {c.tensor_parallel_size for c in decision.candidates} == {1, 2, 4}


def test_manual_recipe_is_honoured_and_checked(small_catalogue: RecipeCatalogue) -> None:
    decision = selector(small_catalogue).select(SMALL, MI300X, 8, metric="throughput", recipe_id="small-tp8-lat")
    assert decision.recipe.id == "small-tp8-lat"
    assert decision.candidates[0].status == "selected"
    with pytest.raises(AimError, match="needs 8 GPUs, 2 available"):
        selector(small_catalogue).select(SMALL, MI300X, 2, recipe_id="small-tp8-lat")
    with pytest.raises(AimError, match="unknown recipe 'nope'"):
        selector(small_catalogue).select(SMALL, MI300X, 2, recipe_id="nope")


def test_max_model_len_overrides_and_is_bounded(small_catalogue: RecipeCatalogue) -> None:
    decision = selector(small_catalogue).select(SMALL, MI300X, 1, max_model_len=65536)
    assert decision.recipe.max_model_len == 65536
    assert "--max-model-len=65536" in decision.vllm_args
    with pytest.raises(AimError, match="max_model_len 200000: expected 256 to 131072"):
        selector(small_catalogue).select(SMALL, MI300X, 1, max_model_len=200000)


def test_extra_args_cannot_use_removed_or_owned_flags(small_catalogue: RecipeCatalogue) -> None:
    sel = selector(small_catalogue)
    assert sel.select(SMALL, MI300X, 1, extra_args=["--enable-chunked-prefill"]).vllm_args[-1] == (
        "--enable-chunked-prefill"
    )
    with pytest.raises(AimError, match="--swap-space: removed from vLLM"):
        sel.select(SMALL, MI300X, 1, extra_args=["--swap-space", "4"])
    with pytest.raises(AimError, match="set by the recipe"):
        sel.select(SMALL, MI300X, 1, extra_args=["--tensor-parallel-size=2"])


def test_summary_has_the_cli_contract(small_catalogue: RecipeCatalogue) -> None:
    summary = selector(small_catalogue).select(SMALL, MI300X, 8).summary()
    for key in (
        "recipe_id",
        "model",
        "gpu",
        "gpu_count",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "precision",
        "kv_cache_dtype",
        "max_model_len",
        "metric",
        "status",
        "fallback",
        "vllm_args",
        "env",
        "replicas",
        "estimate",
        "candidates",
    ):
        assert key in summary
    for key in ("weights_gib_per_gpu", "kv_cache_gib_per_gpu", "output_tokens_per_s", "ttft_p95_ms", "range"):
        assert key in summary["estimate"]  # type: ignore[operator]
    assert all(set(c) == {"recipe_id", "status", "reason"} for c in summary["candidates"])  # type: ignore[union-attr]


def test_bad_requests_are_one_line(small_catalogue: RecipeCatalogue) -> None:
    sel = selector(small_catalogue)
    for kwargs, text in (
        ({"metric": "speed"}, "metric 'speed': expected throughput or latency"),
        ({"precision": "fp4"}, "precision 'fp4': expected one of auto"),
    ):
        with pytest.raises(AimError, match=text):
            sel.select(SMALL, MI300X, 1, **kwargs)
    with pytest.raises(AimError, match="gpu count 0"):
        sel.select(SMALL, MI300X, 0)


def test_profile_type_is_public() -> None:
    assert isinstance(SMALL, ModelProfile)


def test_gpt_oss_on_gfx90a_is_refused_for_its_weight_format(small_catalogue: RecipeCatalogue) -> None:
    """Issue #11: the reason is the missing MXFP4 kernels of gfx90a, not memory ("does not fit")."""
    with pytest.raises(AimError) as error:
        selector(small_catalogue).select(GPT_OSS, MI250, 8)
    message = str(error.value)
    assert "gfx90a has no kernels in ROCm vLLM for its mxfp4 weights" in message and "MI300X" in message, message
    assert "does not fit" not in message


def test_an_impossible_precision_wish_names_the_ones_that_fit_here(small_catalogue: RecipeCatalogue) -> None:
    """Never "nothing can serve … on 1 × MI300X: needs ≥ 1 × MI300X" (issue #11)."""
    with pytest.raises(AimError) as error:
        selector(small_catalogue).select(SMALL, MI300X, 1, precision="int4")
    message = str(error.value)
    assert "needs ≥ 1 ×" not in message and "it can be served here in bf16" in message, message


def test_more_gpus_than_one_node_holds_is_refused(small_catalogue: RecipeCatalogue) -> None:
    with pytest.raises(AimError, match=r"^gpu count 64 \(aim:gpuCount / --gpu-count\): expected 1 to 8, the most MI3"):
        selector(small_catalogue).select(SMALL, MI300X, 64)


def test_rccl_channels_only_on_mi300_class_nodes(tmp_path: Path) -> None:
    """NCCL_MIN_NCHANNELS=112 is AMD's advice for gfx942/gfx950 XGMI nodes; gfx90a keeps RCCL's default."""
    empty = catalogue(tmp_path, recipe_entry(id="unrelated"))  # for test/small: the 150B gets a generated recipe
    big = dense(id="test/big-150b", params_total=150_000_000_000, params_active=150_000_000_000,
                checkpoint_bytes=300_000_000_000)  # fmt: skip
    sel = Selector(empty, gpus=GPUS)
    on_mi250 = sel.select(big, MI250, 8)
    assert on_mi250.recipe.tensor_parallel_size > 1 and "NCCL_MIN_NCHANNELS" not in on_mi250.env
    on_mi300x = sel.select(big, MI300X, 8)
    assert on_mi300x.recipe.tensor_parallel_size > 1 and on_mi300x.env["NCCL_MIN_NCHANNELS"] == "112"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--bogus-flag-xyz=1"], "vllm extra argument --bogus-flag-xyz: not a flag of vLLM 0.23.0"),
        (["--use-v2-block-manager"], "vllm extra argument --use-v2-block-manager: removed from vLLM"),
        (["-tp", "2"], "vllm extra argument -tp: set by the recipe"),
        (["--max_model_len=100"], "vllm extra argument --max_model_len: set by the recipe"),
        (["-x"], "vllm extra argument -x: not a flag of vLLM"),
    ],
)
def test_extra_args_must_be_flags_of_the_pinned_vllm(
    small_catalogue: RecipeCatalogue, args: list[str], expected: str
) -> None:
    with pytest.raises(AimError) as error:
        selector(small_catalogue).select(SMALL, MI300X, 1, extra_args=args)
    assert str(error.value).startswith(expected), str(error.value)


def test_extra_args_accept_every_spelling_vllm_accepts(small_catalogue: RecipeCatalogue) -> None:
    args = ["--no-enable-prefix-caching", "--max-num-seqs", "64", "--compilation-config.mode=3", "-O3",
            "--enable_chunked_prefill", "--attention-backend=TRITON_ATTN", "-q", "fp8"]  # fmt: skip
    assert selector(small_catalogue).select(SMALL, MI300X, 1, extra_args=args).vllm_args[-len(args) :] == args
