"""LiveBenchmark under the mock runtime: the command it runs, when it re-runs, what it exposes, no secret anywhere."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from aim_infra.host import live_benchmark
from aim_infra.stack.components.benchmark import parse_result
from aim_infra.stack.plan import COMMAND_TYPE, PlanResult, run_stack

ROOT = Path(__file__).resolve().parents[3]
API_KEY = "sk-LIVEBENCH-never-in-a-command-0123"
WORKLOAD = {"inputTokens": 1024, "outputTokens": 256, "concurrency": 64}
FIGURES = {
    "output_tokens_per_s": 3000.0,
    "ttft_ms": 180.0,
    "tpot_ms": 20.0,
    "e2e_latency_s": 5.3,
    "ttft_p95_ms": 400.0,
    "tpot_p95_ms": 24.0,
}
ESTIMATE = {
    "kind": "estimate",
    **FIGURES,
    "range": {key: [value / 2, value * 2] for key, value in FIGURES.items()},
    "calibration": {"version": "2026.12.1"},
    "workload": WORKLOAD,
    "layout": {
        "gpu": "MI300X",
        "gpu_count": 8,
        "replicas": 8,
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "precision": "bf16",
        "kv_cache_dtype": "auto",
        "max_num_seqs": 1024,
        "max_num_batched_tokens": 8192,
    },
}

PROGRAM = '''"""Test program: a stand-in engine step, then one LiveBenchmark after it."""
import json
import sys

sys.path.insert(0, {root!r})

import pulumi
import pulumi_command as command

from aim_infra.stack.components.benchmark import LiveBenchmark, LiveBenchmarkArgs

engine = command.local.Command("engine", create="true")
args = json.loads({args!r})
benchmark = LiveBenchmark("benchmark", LiveBenchmarkArgs(**args, depends_on=[engine]))
pulumi.export("benchmark", benchmark.result)
'''


def run_benchmark(tmp_path: Path, **overrides: Any) -> PlanResult:
    """A fresh mock run of a program with one LiveBenchmark."""
    args = {
        "namespace": "aim",
        "service": "aim-engine",
        "service_port": 8000,
        "model_id": "Qwen/Qwen3-8B",
        "model_revision": "abc123",
        "estimate": ESTIMATE,
        "recipe_id": "qwen3-8b-mi300x-tp1",
        "decision_hash": "0123456789abcdef",
        "image": "localhost:5000/aim-engine@sha256:" + "a" * 64,
        "workload": WORKLOAD,
        "api_key_secret": "aim-engine-api-key:VLLM_API_KEY",
        "hf_token_secret": "aim-engine-hf-token:HF_TOKEN",
        "kube_context": "prod-mi300x",
        **overrides,
    }
    program = tmp_path / f"program-{len(list(tmp_path.glob('program-*')))}"
    program.mkdir()
    (program / "__main__.py").write_text(PROGRAM.format(root=str(ROOT), args=json.dumps(args)))
    result = run_stack("test", project_dir=program, config={"aim:apiKey": API_KEY})
    assert result.error is None, result.error
    return result


def argv_of(result: PlanResult) -> list[str]:
    create = result.named(COMMAND_TYPE, "benchmark-run").inputs["create"]
    return shlex.split(create.replace('"$AIM_PYTHON"', "python"))


def test_runs_the_host_program_after_the_engine_with_secret_references_only(tmp_path: Path) -> None:
    result = run_benchmark(tmp_path)
    [component] = result.of_type("aim:infra:LiveBenchmark")
    run = result.named(COMMAND_TYPE, "benchmark-run")
    assert run.parent == component.urn and run.inputs["dir"] == str(ROOT)
    assert {result.by_urn(u).name for u in run.dependencies} == {"engine"}  # type: ignore[union-attr]
    assert "delete" not in run.inputs
    argv = argv_of(result)
    assert argv[:4] == ["python", "-m", "aim_infra.host.live_benchmark", "--port-forward"]
    flag = {argv[i]: argv[i + 1] for i in range(4, len(argv) - 1) if argv[i].startswith("--")}
    assert flag["--namespace"] == "aim" and flag["--service"] == "aim-engine" and flag["--service-port"] == "8000"
    assert flag["--model"] == "Qwen/Qwen3-8B" and flag["--revision"] == "abc123"
    assert flag["--recipe-id"] == "qwen3-8b-mi300x-tp1" and flag["--context"] == "prod-mi300x"
    assert flag["--api-key-secret"] == "aim-engine-api-key:VLLM_API_KEY"
    assert flag["--hf-token-secret"] == "aim-engine-hf-token:HF_TOKEN"
    assert json.loads(flag["--estimate"]) == ESTIMATE
    # The program accepts exactly what the component passes (the estimate validates, the rule picks 256 requests).
    access, options = live_benchmark.parse_args(argv[3:])
    assert access.port_forward and options.num_prompts == 256 and options.revision == "abc123"
    # No key in any command's inputs, nor anywhere in what the program declared.
    assert API_KEY not in json.dumps([r.inputs for r in result.resources]) and API_KEY not in json.dumps(result.outputs)


def test_reruns_on_a_new_recipe_decision_image_or_workload(tmp_path: Path) -> None:
    base = run_benchmark(tmp_path).named(COMMAND_TYPE, "benchmark-run").inputs["triggers"]
    assert base[:3] == ["qwen3-8b-mi300x-tp1", "0123456789abcdef", "localhost:5000/aim-engine@sha256:" + "a" * 64]
    assert json.loads(base[3]) == WORKLOAD
    changes = {
        "recipe_id": "qwen3-8b-mi300x-tp2",
        "decision_hash": "fedcba9876543210",
        "image": "localhost:5000/aim-engine@sha256:" + "b" * 64,
        "workload": {**WORKLOAD, "concurrency": 128},
    }
    for index, (key, value) in enumerate(changes.items()):
        triggers = run_benchmark(tmp_path, **{key: value}).named(COMMAND_TYPE, "benchmark-run").inputs["triggers"]
        assert [i for i in range(4) if triggers[i] != base[i]] == [index], key


def test_optional_flags_are_left_out(tmp_path: Path) -> None:
    result = run_benchmark(tmp_path, model_revision=None, api_key_secret=None, hf_token_secret=None, kube_context=None)
    argv = argv_of(result)
    for flag in ("--revision", "--api-key-secret", "--hf-token-secret", "--context"):
        assert flag not in argv
    # Before the command ran (the mock runs nothing) the result is empty, not an error.
    assert result.outputs["benchmark"] == {}


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ('{"measured": {"ttft_ms": 80.0}}\n', {"measured": {"ttft_ms": 80.0}}),
        ("", {}),
        (None, {}),
        ("not json", {}),
        ("[1, 2]", {}),
    ],
)
def test_result_is_the_programs_json(stdout: str | None, expected: dict[str, Any]) -> None:
    assert parse_result(stdout) == expected
