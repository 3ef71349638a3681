"""The performance estimate: step costs add up, precision is priced as computed, ranges and SLOs behave."""

from __future__ import annotations

import pytest

from aim_infra.common.errors import AimError
from aim_infra.planning.fit import Layout, fit_on
from aim_infra.planning.hardware import load_gpus
from aim_infra.planning.model_profile import load_model_catalogue
from aim_infra.planning.performance import RANGED, estimate_performance
from aim_infra.planning.performance_data import load_performance_data
from aim_infra.planning.step_cost import step_cost
from aim_infra.planning.workload import Workload

from .factories import dense, gpu

DATA = load_performance_data()


def layout(**fields: object) -> Layout:
    base: dict[str, object] = {
        "tensor_parallel_size": 1,
        "precision": "bf16",
        "max_model_len": 8192,
        "max_num_seqs": 1024,
        "max_num_batched_tokens": 8192,
    }
    base.update(fields)
    return Layout(**base)  # type: ignore[arg-type]


def estimate(profile=None, device=None, replicas: int = 1, workload: Workload | None = None, **fields):  # type: ignore[no-untyped-def]
    profile = profile or dense()
    device = device or gpu()
    shape = layout(**fields)
    fit = fit_on(profile, device, shape)
    assert fit.fits, fit.reason
    return estimate_performance(profile, device, shape, fit, workload or Workload(), replicas, DATA)


def cost_of(profile, device, **fields):  # type: ignore[no-untyped-def]
    constants, _ = DATA.constants_for(device.family, profile.architecture)
    return step_cost(profile, device, layout(**fields), constants, DATA, mean_context=1024)


def test_a_step_adds_memory_compute_and_fixed_costs_instead_of_taking_the_larger() -> None:
    cost = cost_of(dense(), gpu())
    batch = 256
    total = cost.seconds(batch, 0, batch * 1024)
    memory = (cost.weights_read(batch) + batch * 1024 * cost.kv_bytes_per_context_token) / cost.bandwidth
    compute = batch * cost.linear_s_per_token
    assert total > memory + compute  # both, plus fixed and per-sequence costs
    assert total > max(memory, compute) * 1.2


def test_more_bandwidth_and_tensor_parallelism_make_a_single_stream_faster() -> None:
    slow = cost_of(dense(), gpu(bandwidth_tbps=5.3)).seconds(1, 0, 1024)
    fast = cost_of(dense(), gpu(bandwidth_tbps=8.0)).seconds(1, 0, 1024)
    assert fast < slow
    big = dense(params_total=70_000_000_000, params_active=70_000_000_000, checkpoint_bytes=140_000_000_000)
    assert cost_of(big, gpu(), tensor_parallel_size=8).seconds(1, 0, 1024) < cost_of(big, gpu()).seconds(1, 0, 1024)


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
    cost = cost_of(moe, gpu())
    assert cost.weights_read(1) < 0.2 * moe.checkpoint_bytes
    assert cost.weights_read(4096) > 0.99 * moe.checkpoint_bytes


def test_compute_precision_is_separate_from_storage_precision() -> None:
    mi300x, mi355x = load_gpus().get("MI300X"), load_gpus().get("MI355X")
    # gpt-oss: MXFP4 experts with bf16 activations on ROCm vLLM, on either arch.
    assert DATA.compute_format("mxfp4", "mxfp4", mi300x.arch) == "bf16"
    assert DATA.compute_format("mxfp4", "mxfp4", mi355x.arch) == "bf16"
    # AMD Quark MXFP4 (W4A4) uses the FP4 matrix units of gfx950 only.
    assert DATA.compute_format("mxfp4", "quark", mi355x.arch) == "mxfp4"
    assert DATA.compute_format("mxfp4", "quark", mi300x.arch) == "bf16"
    assert DATA.compute_format("int4", "awq", mi300x.arch) == "bf16"  # W4A16
    assert DATA.compute_format("fp8", None, mi300x.arch) == "fp8"  # W8A8


def test_every_figure_has_a_range_around_it_and_the_calibration_it_rests_on() -> None:
    est = estimate().as_json()
    for key in RANGED:
        low, high = est["range"][key]
        assert low <= est[key] <= high, key
    assert est["calibration"]["version"] == DATA.calibration.version
    assert est["calibration"]["calibrated"] is True  # an MI300X-like device is CDNA3


def test_an_uncalibrated_gpu_family_gets_a_wider_range_and_says_so() -> None:
    cdna3 = estimate().as_json()
    cdna4 = estimate(device=gpu(name="MI355X", family="CDNA4", arch="gfx950")).as_json()
    assert cdna4["calibration"]["calibrated"] is False
    assert "assumption" in cdna4["calibration"]["note"]

    def width(e: dict) -> float:  # type: ignore[type-arg]
        low, high = e["range"]["output_tokens_per_s"]
        return high / low

    assert width(cdna4) > width(cdna3)


def test_more_replicas_never_make_latency_worse_at_the_same_load() -> None:
    load = Workload(input_tokens=1024, output_tokens=128, concurrency=256)
    one = estimate(replicas=1, workload=load)
    four = estimate(replicas=4, workload=load)
    assert four.ttft_p95_ms <= one.ttft_p95_ms
    assert four.tpot_p95_ms <= one.tpot_p95_ms


def test_slo_violations_and_cost_are_reported() -> None:
    tight = Workload(input_tokens=512, output_tokens=128, concurrency=512, tpot_p95_ms=1.0, gpu_hourly_cost=2.0)
    est = estimate(workload=tight)
    assert not est.meets_slo and "TPOT p95" in est.slo_violations[0]
    expected = est.gpu_count * 2.0 / (est.output_tokens_per_s * 3600) * 1e6
    assert est.cost_per_million_output_tokens == pytest.approx(expected, rel=0.01)
    overload = estimate(workload=Workload(input_tokens=512, output_tokens=512, requests_per_second=10_000))
    assert any("req/s offered" in v for v in overload.slo_violations)


def test_a_workload_longer_than_the_context_is_one_line() -> None:
    with pytest.raises(AimError, match="exceeds max_model_len 2048"):
        estimate(workload=Workload(input_tokens=2000, output_tokens=100), max_model_len=2048)


def test_the_step_line_exported_for_alerts_matches_the_step_function() -> None:
    est = estimate(workload=Workload(input_tokens=1000, output_tokens=200, concurrency=16))
    profile, device = dense(), gpu()
    constants, _ = DATA.constants_for(device.family, profile.architecture)
    cost = step_cost(profile, device, layout(), constants, DATA, mean_context=1100)
    for running in (8, 64):
        line = est.step_base_ms + running * est.step_per_sequence_ms
        assert line == pytest.approx(cost.seconds(running, 0, running * 1100) * 1e3, rel=0.05)


def test_deepseek_gets_its_model_family_constants() -> None:
    r1 = load_model_catalogue().get("deepseek-ai/DeepSeek-R1")
    base, _ = DATA.constants_for("CDNA3", "LlamaForCausalLM")
    mla, _ = DATA.constants_for("CDNA3", r1.architecture)
    assert mla != base
    assert set(DATA.model_families["deepseek_v3"].constants) <= set(type(base).model_fields)
