"""`calibrate --add`: an aim:benchmark result becomes valid local measurements; a bad result or file is one line."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aim_infra import cli
from aim_infra.common.errors import AimError
from aim_infra.planning.calibration_add import add_result, measurements_from_result
from aim_infra.planning.measurements import load_measurements

ROOT = Path(__file__).resolve().parents[2]
FIGURES = {
    "output_tokens_per_s": 2950.5,
    "ttft_ms": 181.2,
    "tpot_ms": 19.8,
    "e2e_latency_s": 5.23,
    "ttft_p95_ms": 402.0,
    "tpot_p95_ms": 23.1,
}
RESULT: dict[str, Any] = {
    "measured": {
        **FIGURES,
        "requests_completed": 256,
        "requests_failed": 0,
        "requests_incomplete": 0,
        "input_tokens_mean": 1031.0,
        "output_tokens_mean": 256.0,
        "duration_s": 22.2,
    },
    "estimate": {**FIGURES, "range": {}, "calibration": {"version": "2026.12.1"}},
    "ratio": dict.fromkeys(FIGURES, 1.0),
    "within_range": dict.fromkeys(FIGURES, True),
    "workload": {"inputTokens": 1024, "outputTokens": 256, "concurrency": 64, "numPrompts": 256},
    "layout": {
        "gpu": "MI300X",
        "gpu_count": 8,  # all replicas together
        "replicas": 4,
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 1,
        "precision": "bf16",
        "kv_cache_dtype": "auto",
        "max_num_seqs": 1024,
        "max_num_batched_tokens": 8192,
    },
    "model": "Qwen/Qwen3-8B",
    "recipe_id": "qwen3-8b-mi300x-tp2-throughput",
    "load_generator": "guidellm 0.8.1",
    "engine_version": "vLLM 0.11.2",
    "measured_at": "2026-12-05T13:16:34+00:00",
}


def changed(path: str, value: Any) -> dict[str, Any]:
    """RESULT with the dotted key set to `value`, or removed when `value` is ..."""
    result = copy.deepcopy(RESULT)
    *parents, last = path.split(".")
    target = result
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return result


def test_one_entry_per_measured_figure_with_the_runs_layout_and_load() -> None:
    entries = measurements_from_result(RESULT, source="runs/result.json")
    by_metric = {m.metric: m for m in entries}
    assert list(by_metric) == ["output_throughput", "ttft_mean", "tpot_mean", "ttft_p95", "tpot_p95"]
    assert (by_metric["output_throughput"].value, by_metric["output_throughput"].unit) == (2950.5, "tok/s")
    assert (by_metric["ttft_p95"].value, by_metric["ttft_p95"].unit) == (402.0, "ms")
    assert by_metric["tpot_mean"].value == 19.8
    first = entries[0]
    assert (first.gpu, first.gpu_count, first.tp, first.pp, first.replicas) == ("MI300X", 8, 2, 1, 4)
    assert (first.isl, first.osl, first.mode, first.concurrency, first.num_prompts) == (1024, 256, "online", 64, 256)
    assert (first.model, first.profile, first.split, first.source) == (
        "Qwen/Qwen3-8B",
        "Qwen/Qwen3-8B",
        "local",
        "runs/result.json",
    )
    assert first.engine_version == "vLLM 0.11.2" and (first.max_num_seqs, first.max_num_batched_tokens) == (1024, 8192)
    assert "guidellm 0.8.1" in first.note and "qwen3-8b-mi300x-tp2-throughput" in first.note
    assert first.id == "qwen-qwen3-8b-mi300x-4x-tp2-i1024-o256-c64-20261205t131634-output-throughput"
    assert len({m.id for m in entries}) == 5


def test_open_loop_result_is_online_rate_and_null_figures_are_skipped() -> None:
    result = changed("workload", {"inputTokens": 512, "outputTokens": 1, "requestsPerSecond": 2.5, "numPrompts": 150})
    result["measured"].update(tpot_ms=None, tpot_p95_ms=None)
    entries = measurements_from_result(result, source="r.json")
    assert [m.metric for m in entries] == ["output_throughput", "ttft_mean", "ttft_p95"]
    assert {(m.mode, m.request_rate, m.concurrency) for m in entries} == {("online_rate", 2.5, None)}
    assert "-r2.5-" in entries[0].id


def test_round_trip_writes_a_file_the_measurement_loader_accepts(tmp_path: Path) -> None:
    source = tmp_path / "result.json"
    source.write_text(json.dumps(RESULT))
    root = tmp_path / "measurements"
    written, entries = add_result(source, root=root)
    assert written == root / "local" / "qwen-qwen3-8b-mi300x-4x-tp2-i1024-o256-c64-20261205t131634.yaml"
    assert load_measurements(root) == entries
    # Not twice: the file exists (and with --force, the same ids would collide with nothing else).
    with pytest.raises(AimError, match=r"exists: pass --force to overwrite it, or --out another file$"):
        add_result(source, root=root)
    rewritten, _ = add_result(source, root=root, force=True)
    assert rewritten == written and load_measurements(root) == entries


def test_a_second_file_with_the_same_ids_is_refused_and_removed(tmp_path: Path) -> None:
    source = tmp_path / "result.json"
    source.write_text(json.dumps(RESULT))
    root = tmp_path / "measurements"
    add_result(source, root=root)
    copy_path = root / "local" / "copy.yaml"
    with pytest.raises(AimError, match=r"measurement id .* is also in"):
        add_result(source, out=copy_path, root=root)
    assert not copy_path.exists()


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        ("measured.ttft_ms", ..., "r.json: measured.ttft_ms: missing"),
        ("measured.tpot_ms", -3, "r.json: measured.tpot_ms: Input should be greater than 0 (got -3)"),
        ("measured.requests_completed", 0, "r.json: measured.requests_completed: Input should be greater than or"),
        ("workload.numPrompts", ..., "r.json: workload.numPrompts: missing"),
        ("layout.gpu_count", ..., "r.json: layout.gpu_count: missing"),
        ("layout.gpu_count", 2, "r.json: layout: gpu_count 2 is not replicas 4 × tensor_parallel_size 2 × pipeline"),
        ("layout.precision", "fp7", "r.json: layout.precision: Input should be 'bf16', 'fp16'"),
        ("layout.kv_cache_dtype", "int3", "r.json: layout.kv_cache_dtype: Input should be 'auto' or 'fp8'"),
        ("model", "", "r.json: model: String should have at least 1 character"),
        (
            "measured_at",
            "yesterday",
            "r.json: measured_at: not an ISO time (e.g. 2026-12-05T13:16:34+00:00) (got 'yesterday')",
        ),
        ("load_generator", ..., "r.json: load_generator: missing"),
    ],
)
def test_a_malformed_result_is_one_line_naming_the_key(path: str, value: Any, needle: str) -> None:
    with pytest.raises(AimError) as raised:
        measurements_from_result(changed(path, value), source="r.json")
    message = str(raised.value)
    assert needle in message and "\n" not in message, message


def test_not_an_object_and_no_figures_are_refused() -> None:
    with pytest.raises(AimError, match=r"^r.json: expected the JSON object aim:benchmark prints, got list$"):
        measurements_from_result([], source="r.json")  # type: ignore[arg-type]
    nothing = changed("measured", {**dict.fromkeys(FIGURES), "requests_completed": 1, "requests_failed": 0})
    with pytest.raises(AimError, match=r"no figure to add \(every metric is null\)"):
        measurements_from_result(nothing, source="r.json")


def cli_run(*argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "aim_infra", "calibrate", *argv]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_add_writes_and_refuses_in_one_line(tmp_path: Path) -> None:
    source = tmp_path / "result.json"
    source.write_text(json.dumps(RESULT))
    out = tmp_path / "entries.yaml"
    done = cli_run("--add", str(source), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Added 5 measurement(s) (split local) from {source} to {out}\n"
    again = cli_run("--add", str(source), "--out", str(out))
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr == f"error: {out} exists: pass --force to overwrite it, or --out another file\n"
    assert cli_run("--add", str(source), "--out", str(out), "--force").returncode == 0

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(changed("measured.ttft_p95_ms", ...)))
    refused = cli_run("--add", str(bad), "--out", str(tmp_path / "x.yaml"))
    assert (refused.returncode, refused.stderr) == (2, f"error: {bad}: measured.ttft_p95_ms: missing\n")
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "cannot read it: No such file or directory"), ("{oops", "not JSON"), ("[1]", "got list")],
)
def test_cli_add_unreadable_result_is_one_line(
    content: str | None, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "result.json"
    if content is not None:
        source.write_text(content)
    code = cli.main(["calibrate", "--add", str(source), "--out", str(tmp_path / "m.yaml")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith(f"error: --add {source}: ")
    assert needle in err, err


def test_calibrate_needs_a_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["calibrate"])
    _, err = capsys.readouterr()
    assert exited.value.code == 2 and err.count("\n") == 1 and "--add" in err
