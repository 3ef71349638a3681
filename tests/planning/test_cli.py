"""The `python -m aim_infra` contract: select/recipes/gpus output, exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "aim_infra", *args], cwd=ROOT, capture_output=True, text=True, env=environment
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


def test_select_json_has_the_contract() -> None:
    result = cli(
        "select", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "MI300X", "--gpu-count", "8", "--json"
    )
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert decision["gpu"] == "MI300X"
    assert decision["metric"] == "throughput"
    assert decision["gpu_count"] == decision["tensor_parallel_size"] * decision["pipeline_parallel_size"]
    assert decision["replicas"] * decision["gpu_count"] <= 8
    assert isinstance(decision["fallback"], bool)
    args = decision["vllm_args"]
    assert all(isinstance(a, str) for a in args)
    assert f"--tensor-parallel-size={decision['tensor_parallel_size']}" in args
    assert f"--max-model-len={decision['max_model_len']}" in args
    assert set(decision["estimate"]) >= {
        "weights_gib_per_gpu",
        "kv_cache_gib_per_gpu",
        "output_tokens_per_s",
        "ttft_p95_ms",
        "tpot_p95_ms",
        "range",
        "calibration",
    }
    statuses = [c["status"] for c in decision["candidates"]]
    assert statuses.count("selected") == 1
    assert set(statuses) <= {"selected", "viable", "rejected"}


def test_select_table_explains_the_choice() -> None:
    result = cli(
        "select", "--model", "Llama-3.1-70B-Instruct", "--gpu", "mi300x", "--gpu-count", "8", "--metric", "latency"
    )
    assert result.returncode == 0, result.stderr
    for text in (
        "selected",
        "memory",
        "workload",
        "estimate",
        "estimated, not measured",
        "vllm serve",
        "CANDIDATE",
        "WHY",
    ):
        assert text in result.stdout


def test_select_a_local_model_directory_absent_from_the_catalogue(tmp_path: Path) -> None:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    index = {"metadata": {"total_size": 2_471_645_184}, "weight_map": {"lm_head.weight": "model.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    result = cli("select", "--model", str(tmp_path), "--gpu", "MI300X", "--gpu-count", "1", "--json")
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["fallback"] is True and decision["status"] == "generated"
    assert decision["tensor_parallel_size"] == 1


def test_infeasible_request_exits_2_with_the_minimum() -> None:
    line = one_line_error(
        cli("select", "--model", "meta-llama/Llama-3.1-405B-Instruct", "--gpu", "MI300X", "--gpu-count", "2")
    )
    assert "needs ≥" in line and "MI300X" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("select", "--model", "x", "--gpu", "MI300X", "--gpu-count", "two"), "--gpu-count: invalid value 'two'"),
        (("select", "--model", "x", "--gpu", "MI300X", "--gpu-count", "0"), "expected a whole number ≥ 1"),
        (("select", "--model", "x", "--gpu", "MI300X"), "--gpu-count"),
        (
            ("select", "--model", "Qwen/Qwen3-8B", "--gpu", "MI300X", "--gpu-count", "1", "--revision", "main; rm"),
            "--revision: invalid value 'main; rm': expected empty (the default branch), a 40-hex commit sha",
        ),
        (
            ("select", "--model", "Qwen/Qwen3-8B", "--gpu", "MI300X", "--gpu-count", "1", "--revision", "../etc"),
            "--revision: invalid value '../etc'",
        ),
        (("select", "--model", "Qwen/Qwen3-8B", "--gpu", "H100", "--gpu-count", "1"), "unknown GPU 'H100'"),
        (
            ("select", "--model", "Qwen/Qwen3-8B", "--gpu", "MI300X", "--gpu-count", "1", "--metric", "fast"),
            "--metric: invalid choice: 'fast'",
        ),
        (
            ("select", "--model", "Qwen/Qwen3-8B", "--gpu", "MI300X", "--gpu-count", "1", "--precision", "fp4"),
            "--precision: invalid choice",
        ),
        (
            (
                "select",
                "--model",
                "Qwen/Qwen3-8B",
                "--gpu",
                "MI300X",
                "--gpu-count",
                "1",
                "--max-model-len",
                "10000000",
            ),
            "max_model_len 10000000",
        ),
        (
            ("select", "--model", "Qwen/Qwen3-8B", "--gpu", "MI300X", "--gpu-count", "1", "--recipe", "no-such"),
            "unknown recipe 'no-such'",
        ),
        (("select", "--model", "nobody/no-such-model", "--gpu", "MI300X", "--gpu-count", "1"), "no-such-model"),
        (("recipes", "--gpu", "B200"), "unknown GPU 'B200'"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        ((), "the following arguments are required"),
    ],
)
def test_bad_input_is_one_line(args: tuple[str, ...], expected: str) -> None:
    assert expected in one_line_error(cli(*args))


def test_recipes_lists_and_filters() -> None:
    result = cli("recipes", "--gpu", "MI355X")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines()[1:] if line.strip() and "recipe(s)" not in line]
    assert rows and all(" MI355X " in f" {row} " for row in rows)
    listed = json.loads(cli("recipes", "--model", "DeepSeek-R1", "--json").stdout)
    assert listed and all("DeepSeek-R1" in r["model"] for r in listed)


def test_gpus_lists_the_catalogue() -> None:
    result = cli("gpus")
    assert result.returncode == 0, result.stderr
    for name in ("MI210", "MI250", "MI300X", "MI325X", "MI355X"):
        assert name in result.stdout
    assert {g["name"] for g in json.loads(cli("gpus", "--json").stdout)} >= {"MI300X", "MI355X"}
