"""`estimate` and `select` with a workload: the JSON contract scripts rely on, sizing from the SLO, one-line errors."""

from __future__ import annotations

import json

import pytest

from aim_infra.planning.hardware import load_gpus
from aim_infra.planning.model_profile import load_model_catalogue
from aim_infra.planning.selection import Selector
from aim_infra.planning.workload import Workload

from .test_cli import cli, one_line_error

CONTRACT = ("output_tokens_per_s", "ttft_ms", "tpot_ms", "e2e_latency_s", "ttft_p95_ms", "tpot_p95_ms")
LLAMA_FP8 = ("--model", "amd/Llama-3.1-70B-Instruct-FP8-KV", "--gpu", "MI300X")


def estimate(*args: str) -> dict:  # type: ignore[type-arg]
    result = cli("estimate", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_estimate_json_has_the_contract() -> None:
    out = estimate(
        *LLAMA_FP8,
        "--gpu-count",
        "8",
        "--tensor-parallel-size",
        "8",
        "--kv-cache-dtype",
        "fp8",
        "--input-tokens",
        "128",
        "--output-tokens",
        "2048",
        "--concurrency",
        "1",
    )
    for key in CONTRACT:
        low, high = out["range"][key]
        assert low <= out[key] <= high
    assert out["calibration"]["version"].startswith("cal-")
    assert out["layout"]["replicas"] == 1 and out["layout"]["compute_precision"] == "fp8"
    # Published: 17.2 s for this request on 8 × MI300X (vLLM 0.10, a training point): the estimate lands near it.
    assert 0.8 * 17.2 < out["e2e_latency_s"] < 1.25 * 17.2


def test_estimate_spreads_the_load_evenly_over_replicas() -> None:
    common = ("--input-tokens", "1024", "--output-tokens", "256", "--requests-per-second", "8")
    one = estimate(*LLAMA_FP8, "--gpu-count", "2", "--tensor-parallel-size", "2", *common)
    four = estimate(*LLAMA_FP8, "--gpu-count", "8", "--tensor-parallel-size", "2", *common)
    assert four["layout"]["replicas"] == 4
    assert four["ttft_p95_ms"] <= one["ttft_p95_ms"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--gpu-count", "6", "--tensor-parallel-size", "4"), "--gpu-count 6 is not a multiple of TP × PP"),
        (("--gpu-count", "1", "--tensor-parallel-size", "1", "--precision", "bf16"), "cannot be served in bf16"),
        (("--gpu-count", "6", "--tensor-parallel-size", "3"), "TP 3 does not divide"),
        (("--gpu-count", "8", "--tensor-parallel-size", "8", "--input-tokens", "0"), "--input-tokens 0"),
        (("--gpu-count", "8", "--tensor-parallel-size", "8", "--input-tokens", "abc"), "expected a whole number"),
        (("--gpu-count", "8", "--tensor-parallel-size", "8", "--ttft-p95-ms", "nan"), "finite number"),
        (("--gpu-count", "8", "--tensor-parallel-size", "8", "--requests-per-second", "1"), "not allowed with"),
        (("--gpu-count", "8", "--tensor-parallel-size", "8", "--input-tokens", "200000"), "exceed the context"),
    ],
)
def test_bad_estimate_input_is_one_line(args: tuple[str, ...], expected: str) -> None:
    defaults = {"--input-tokens": "128", "--output-tokens": "128", "--concurrency": "4"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    merged = [*LLAMA_FP8, *args]
    for flag, value in defaults.items():
        if flag not in given:
            merged += [flag, value]
    line = one_line_error(cli("estimate", *merged))
    assert expected in line


def test_a_layout_that_does_not_fit_is_one_line() -> None:
    args = ("--model", "amd/Llama-3.1-405B-Instruct-FP8-KV", "--gpu", "MI300X", "--gpu-count", "1")
    workload = ("--input-tokens", "128", "--output-tokens", "128", "--concurrency", "1")
    line = one_line_error(cli("estimate", *args, "--tensor-parallel-size", "1", *workload))
    assert "does not fit MI300X" in line


def test_estimate_of_an_unknown_model_is_one_line() -> None:
    line = one_line_error(
        cli(
            "estimate",
            "--model",
            "no-such/model-xyz",
            "--gpu",
            "MI300X",
            "--gpu-count",
            "1",
            "--tensor-parallel-size",
            "1",
            "--input-tokens",
            "10",
            "--output-tokens",
            "10",
            "--concurrency",
            "1",
        )
    )
    assert "no-such/model-xyz" in line


def test_select_with_a_workload_sizes_replicas_from_the_slo() -> None:
    base = ("select", "--model", "Qwen/Qwen3-8B", "--gpu", "MI300X", "--gpu-count", "8", "--json")
    loose = json.loads(cli(*base, "--input-tokens", "512", "--output-tokens", "128", "--concurrency", "8").stdout)
    assert loose["sized_for_workload"] is True
    assert loose["replicas"] == 1  # no SLO: the fewest GPUs serve it
    busy = ("--input-tokens", "2048", "--output-tokens", "256", "--concurrency", "512", "--ttft-p95-ms", "2000")
    sized = json.loads(cli(*base, *busy).stdout)
    assert sized["replicas"] > 1 and sized["estimate"]["meets_slo"] is True
    assert sized["estimate"]["ttft_p95_ms"] <= 2000


def test_select_says_what_would_meet_an_slo_one_node_cannot() -> None:
    line = one_line_error(
        cli(
            "select",
            "--model",
            "meta-llama/Llama-3.1-70B-Instruct",
            "--gpu",
            "MI300X",
            "--gpu-count",
            "8",
            "--input-tokens",
            "2048",
            "--output-tokens",
            "512",
            "--requests-per-second",
            "40",
            "--ttft-p95-ms",
            "1000",
        )
    )
    assert "no recipe meets the workload" in line and "this node has 8" in line and "replicas of TP" in line


@pytest.mark.parametrize("model", ["openai/gpt-oss-120b", "Qwen/Qwen3-8B", "meta-llama/Llama-3.1-70B-Instruct"])
def test_latency_never_picks_a_candidate_with_a_worse_latency_estimate(model: str) -> None:
    profile = load_model_catalogue().get(model)
    decision = Selector().select(profile, load_gpus().get("MI300X"), 8, metric="latency")
    viable = [c for c in decision.candidates if c.status != "rejected"]
    chosen = next(c for c in viable if c.status == "selected")
    assert chosen.e2e_latency_s == min(c.e2e_latency_s for c in viable)  # type: ignore[type-var]


def test_a_recipe_tuned_for_another_metric_says_so() -> None:
    profile = load_model_catalogue().get("openai/gpt-oss-120b")
    decision = Selector().select(profile, load_gpus().get("MI300X"), 8, metric="latency")
    if decision.recipe.metric != "latency":
        assert any("is tuned for throughput, not latency" in note for note in decision.notes)
    sized = Selector().select(
        profile, load_gpus().get("MI300X"), 8, workload=Workload(input_tokens=256, output_tokens=256, concurrency=4)
    )
    assert sized.sized and any("sized for the workload" in note for note in sized.notes)
