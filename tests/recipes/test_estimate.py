"""The roofline estimate moves the right way: bandwidth, precision, tensor parallelism, MoE sparsity, batch."""

from __future__ import annotations

from aim_infra.recipes.estimate import estimate, weight_bytes_read_per_step
from aim_infra.recipes.fit import Layout, fit_on

from .factories import dense, gpu


def run(model, device, **layout_fields):  # type: ignore[no-untyped-def]
    fields = {
        "tensor_parallel_size": 1,
        "precision": "bf16",
        "max_model_len": 8192,
        "max_num_seqs": 1024,
        "max_num_batched_tokens": 8192,
    }
    fields.update(layout_fields)
    layout = Layout(**fields)  # type: ignore[arg-type]
    fit = fit_on(model, device, layout)
    assert fit.fits, fit.reason
    return estimate(model, device, layout, fit)


def seventy():  # type: ignore[no-untyped-def]
    return dense(
        params_total=70_553_706_496,
        params_active=70_553_706_496,
        checkpoint_bytes=141_107_412_992,
        num_layers=80,
        hidden_size=8192,
        intermediate_size=28672,
        num_attention_heads=64,
    )


def test_more_bandwidth_decodes_faster() -> None:
    slow = run(dense(), gpu(bandwidth_tbps=5.3))
    fast = run(dense(), gpu(bandwidth_tbps=8.0))
    assert fast.single_stream_tokens_per_s > slow.single_stream_tokens_per_s
    assert fast.decode_tokens_per_s > slow.decode_tokens_per_s


def test_single_stream_is_in_a_plausible_range_for_an_8b_model_on_mi300x() -> None:
    est = run(dense(), gpu())
    # 16 GB of weights per step at ~4 TB/s effective plus fixed step cost: ~150-250 tok/s.
    assert 100 < est.single_stream_tokens_per_s < 300
    assert est.decode_tokens_per_s > 20 * est.single_stream_tokens_per_s
    assert 10 < est.ttft_ms < 1000


def test_tensor_parallelism_lowers_latency_but_costs_per_gpu_throughput() -> None:
    tp2 = run(seventy(), gpu(), tensor_parallel_size=2)
    tp8 = run(seventy(), gpu(), tensor_parallel_size=8)
    assert tp8.single_stream_tokens_per_s > tp2.single_stream_tokens_per_s
    assert tp8.ttft_ms < tp2.ttft_ms
    assert tp8.decode_tokens_per_s_per_gpu < tp2.decode_tokens_per_s_per_gpu


def test_fp8_weights_decode_faster_than_bf16() -> None:
    bf16 = run(seventy(), gpu(), tensor_parallel_size=2)
    fp8 = run(seventy(), gpu(), tensor_parallel_size=2, precision="fp8")
    assert fp8.single_stream_tokens_per_s > 1.5 * bf16.single_stream_tokens_per_s


def test_moe_reads_only_the_routed_experts_at_small_batch() -> None:
    moe = dense(
        params_total=30_500_000_000,
        params_active=3_300_000_000,
        num_experts=128,
        experts_per_token=8,
        checkpoint_bytes=61_000_000_000,
        num_kv_heads=4,
        intermediate_size=768,
    )
    one = weight_bytes_read_per_step(moe, "bf16", 1)
    many = weight_bytes_read_per_step(moe, "bf16", 512)
    assert one < 0.2 * moe.checkpoint_bytes
    assert many > 0.99 * moe.checkpoint_bytes
    assert weight_bytes_read_per_step(dense(), "bf16", 1) == dense().checkpoint_bytes


def test_batch_is_capped_by_kv_capacity_and_max_num_seqs() -> None:
    est = run(dense(), gpu(), max_num_seqs=32)
    assert est.batch == 32
    assert est.max_concurrent_sequences == 32
