"""Memory arithmetic: weights per GPU, KV bytes for GQA, MLA, sliding windows and fp8, and the fit rule."""

from __future__ import annotations

import pytest

from aim_infra.planning.fit import (
    Layout,
    fit_on,
    kv_bytes_per_sequence,
    kv_bytes_per_token_per_layer,
    serving_weight_bytes,
)
from aim_infra.planning.model_profile import LocalAttention, MlaDims

from .factories import GIB, dense, gfx90a, gpu


def layout(**overrides: object) -> Layout:
    base: dict[str, object] = {
        "tensor_parallel_size": 1,
        "precision": "bf16",
        "max_model_len": 8192,
        "max_num_seqs": 256,
        "max_num_batched_tokens": 8192,
    }
    base.update(overrides)
    return Layout(**base)  # type: ignore[arg-type]


def test_gqa_kv_bytes_split_across_tensor_parallel_ranks() -> None:
    model = dense()  # 8 KV heads × 128 dims, bf16
    assert kv_bytes_per_token_per_layer(model, 1, "auto") == 2 * 8 * 128 * 2
    assert kv_bytes_per_token_per_layer(model, 2, "auto") == 2 * 4 * 128 * 2
    assert kv_bytes_per_token_per_layer(model, 8, "auto") == 2 * 1 * 128 * 2


def test_gqa_kv_heads_replicate_once_tp_exceeds_them() -> None:
    model = dense(num_attention_heads=64, num_kv_heads=4)
    assert kv_bytes_per_token_per_layer(model, 8, "auto") == kv_bytes_per_token_per_layer(model, 4, "auto")


def test_fp8_kv_cache_halves_the_bytes() -> None:
    model = dense()
    assert kv_bytes_per_token_per_layer(model, 1, "fp8") * 2 == kv_bytes_per_token_per_layer(model, 1, "auto")


def test_mla_latent_is_replicated_on_every_rank_and_has_no_kv_pair() -> None:
    model = dense(
        num_attention_heads=128,
        num_kv_heads=128,
        head_dim=192,
        mla=MlaDims(kv_lora_rank=512, qk_rope_head_dim=64),
        num_layers=61,
    )
    assert kv_bytes_per_token_per_layer(model, 1, "auto") == 576 * 2
    assert kv_bytes_per_token_per_layer(model, 8, "auto") == 576 * 2
    per_sequence = kv_bytes_per_sequence(model, layout(tensor_parallel_size=8), 1000)
    assert per_sequence == 576 * 2 * 61 * 1000


def test_sliding_window_layers_keep_only_their_window() -> None:
    sliding = dense(
        num_layers=36,
        head_dim=64,
        local_attention=LocalAttention(kind="sliding", window=128, layers=18),
    )
    full = dense(num_layers=36, head_dim=64)
    tokens = 131072
    per_layer = kv_bytes_per_token_per_layer(sliding, 1, "auto")
    assert kv_bytes_per_sequence(sliding, layout(), tokens) == per_layer * (18 * tokens + 18 * 128)
    assert kv_bytes_per_sequence(sliding, layout(), tokens) < 0.51 * kv_bytes_per_sequence(full, layout(), tokens)
    # Short sequences are not affected by the window.
    assert kv_bytes_per_sequence(sliding, layout(), 100) == kv_bytes_per_sequence(full, layout(), 100)


def test_pipeline_parallel_splits_layers() -> None:
    model = dense()
    one = kv_bytes_per_sequence(model, layout(), 4096)
    assert kv_bytes_per_sequence(model, layout(pipeline_parallel_size=2), 4096) == one / 2


def test_on_the_fly_fp8_halves_linear_weights_but_keeps_embeddings() -> None:
    model = dense()
    fp8 = serving_weight_bytes(model, "fp8")
    assert fp8 is not None
    embeddings = model.embedding_params * 2
    assert fp8 == pytest.approx(embeddings + (model.checkpoint_bytes - embeddings) / 2)
    assert serving_weight_bytes(model, "bf16") == model.checkpoint_bytes
    # There is no way back from fp8 to bf16, and no on-the-fly MXFP4.
    fp8_model = dense(checkpoint_precision="fp8", checkpoint_bytes=8 * 10**9, quant_method="fp8")
    assert serving_weight_bytes(fp8_model, "bf16") is None
    assert serving_weight_bytes(model, "mxfp4") is None


def test_weights_divide_by_all_gpus() -> None:
    model = dense()
    fit = fit_on(model, gpu(), layout(tensor_parallel_size=4))
    assert fit.weights_gib_per_gpu == pytest.approx(model.checkpoint_bytes / 4 / GIB)


def test_small_model_fits_one_mi300x_with_full_context() -> None:
    fit = fit_on(dense(), gpu(), layout(max_model_len=131072, max_num_seqs=1024))
    assert fit.fits, fit.reason
    assert 100 < fit.kv_cache_gib_per_gpu < 160
    assert fit.full_length_sequences > 5


def test_weights_larger_than_the_device_are_rejected_with_numbers() -> None:
    big = dense(params_total=405 * 10**9, params_active=405 * 10**9, checkpoint_bytes=810 * 10**9)
    fit = fit_on(big, gpu(), layout())
    assert not fit.fits
    assert "exceed" in fit.reason and "MI300X" in fit.reason and "\n" not in fit.reason


def test_kv_that_cannot_hold_one_full_sequence_plus_concurrency_is_rejected() -> None:
    seventy = dense(
        params_total=70_553_706_496,
        params_active=70_553_706_496,
        checkpoint_bytes=141_107_412_992,
        num_layers=80,
        hidden_size=8192,
        intermediate_size=28672,
        num_attention_heads=64,
    )
    fit = fit_on(seventy, gpu(), layout(max_model_len=131072, max_num_seqs=1024))
    assert not fit.fits
    assert "131072-token sequence" in fit.reason
    assert fit_on(seventy, gpu(), layout(max_model_len=131072, tensor_parallel_size=2, max_num_seqs=1024)).fits
    assert fit_on(seventy, gpu(), layout(max_model_len=16384, max_num_seqs=1024)).fits


def test_small_device_gets_less_room() -> None:
    model = dense()
    small = fit_on(model, gfx90a(), layout(max_model_len=131072))
    large = fit_on(model, gpu(), layout(max_model_len=131072))
    assert small.fits and small.full_length_sequences < 3 < large.full_length_sequences
    bigger = dense(checkpoint_bytes=50 * 10**9, params_total=25 * 10**9, params_active=25 * 10**9)
    assert not fit_on(bigger, gfx90a(), layout(max_model_len=131072)).fits
    assert fit_on(bigger, gfx90a(), layout(max_model_len=32768, tensor_parallel_size=2)).fits


def test_higher_memory_utilisation_leaves_more_kv() -> None:
    low = fit_on(dense(), gpu(), layout(gpu_memory_utilization=0.8))
    high = fit_on(dense(), gpu(), layout(gpu_memory_utilization=0.95))
    assert high.kv_cache_gib_per_gpu - low.kv_cache_gib_per_gpu == pytest.approx(0.15 * 192, rel=1e-6)
