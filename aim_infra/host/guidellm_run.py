"""GuideLLM as aim:benchmark's load generator: the scenario for a workload, the run, the report read into figures.

Closed loop (`concurrency`): GuideLLM's `concurrent` profile, that many streams each keeping one request in flight.
Open loop (`requestsPerSecond`): GuideLLM replays a trace of seeded Poisson arrivals (`replay` profile, timestamps
drawn here), because its own `poisson` profile starts every request at once in 0.8.1 (the shared start time is
published to the workers before the arrival offset is set). Both use synthetic prompts of the workload's length made
with the model's tokenizer, a fixed output length (`ignore_eos`), streaming chat completions with usage.

TPOT here is GuideLLM's inter-token latency: (request latency − TTFT) / (output tokens − 1), vLLM's definition of
TPOT. GuideLLM's own "time per output token" also counts the first token, so it is not used.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aim_infra.common.errors import AimError
from aim_infra.planning.workload import Workload

NAME = "guidellm"
#: GuideLLM's own start-up (imports, worker processes, request compilation) before the first request goes out.
STARTUP_ALLOWANCE_SECONDS = 300.0
SEED = 42


class GeneratorError(AimError):
    """GuideLLM is missing, failed, or wrote a report we cannot read: the message is the line to print."""


@dataclass(frozen=True)
class Plan:
    """One benchmark run: where, which model and tokenizer, the workload and how many requests."""

    target: str
    model: str
    workload: Workload
    num_prompts: int
    tokenizer: str
    revision: str | None = None
    max_seconds: float = 1800.0
    request_timeout: float = 600.0


def version() -> str:
    """`guidellm <version>`, or GeneratorError saying how to install it."""
    try:
        return f"{NAME} {importlib.metadata.version(NAME)}"
    except importlib.metadata.PackageNotFoundError:
        raise GeneratorError(
            "guidellm is not installed: pip install -r requirements-benchmark.txt (aim:benchmark's load generator)"
        ) from None


def poisson_arrivals(count: int, rate: float, seed: int = SEED) -> list[float]:
    """`count` arrival times in seconds from 0, with exponential gaps of mean 1/rate (a Poisson process)."""
    draw = random.Random(seed)
    times, now = [], 0.0
    for _ in range(count):
        times.append(round(now, 6))
        now += draw.expovariate(rate)
    return times


def scenario(plan: Plan, report: Path, trace: Path | None) -> dict[str, Any]:
    """GuideLLM's scenario (`guidellm run --scenario FILE`) for the plan, without the API key."""
    workload = plan.workload
    tokenizer: dict[str, Any] = {"kind": "huggingface_auto", "model": plan.tokenizer}
    if plan.revision:
        tokenizer["load_kwargs"] = {"revision": plan.revision}
    if workload.concurrency is not None:
        profile: dict[str, Any] = {"kind": "concurrent", "streams": workload.concurrency}
        data: dict[str, Any] = {
            "kind": "synthetic_text",
            "prompt_tokens": workload.input_tokens,
            "output_tokens": workload.output_tokens,
        }
    else:
        if trace is None:
            raise ValueError("an open-loop workload needs a trace file")
        profile = {"kind": "replay", "schedule_turn": "timestamp"}
        data = {"kind": "trace_synthetic", "source": {"kind": "json_file", "path": str(trace)}}
    return {
        "spec": {
            "backend": {
                "kind": "openai_http",
                "target": plan.target,
                "model": plan.model,
                "request_format": "/v1/chat/completions",
                # vLLM (uvicorn) and kubectl port-forward speak HTTP/1.1.
                "http2": False,
                "timeout": plan.request_timeout,
            },
            "profile": profile,
            "constraints": [
                {"kind": "max_requests", "count": plan.num_prompts},
                {"kind": "max_duration", "seconds": plan.max_seconds},
            ],
            "tokenizer": tokenizer,
            "data": [data],
            "seed": {"kind": "static", "value": SEED},
            "outputs": [{"kind": "json", "path": str(report)}],
        }
    }


def trace_rows(plan: Plan) -> list[dict[str, Any]]:
    """The open loop's arrivals: one row per request, the workload's lengths, Poisson timestamps."""
    rate = float(plan.workload.requests_per_second or 0)
    return [
        {"timestamp": t, "input_length": plan.workload.input_tokens, "output_length": plan.workload.output_tokens}
        for t in poisson_arrivals(plan.num_prompts, rate)
    ]


def run(plan: Plan, workdir: Path, *, api_key: str, hf_token: str = "") -> dict[str, Any]:
    """Run GuideLLM for the plan in `workdir` (private: the scenario holds the key) and return its JSON report."""
    report = workdir / "report.json"
    trace = None
    if plan.workload.concurrency is None:
        trace = workdir / "arrivals.jsonl"
        trace.write_text("".join(json.dumps(row) + "\n" for row in trace_rows(plan)))
    document = scenario(plan, report, trace)
    if api_key:
        document["spec"]["backend"]["api_key"] = api_key
    scenario_file = workdir / "scenario.json"
    scenario_file.touch(mode=0o600)
    scenario_file.write_text(json.dumps(document))
    env = {**os.environ, "GUIDELLM__LOGGING__CONSOLE_LOG_LEVEL": "WARNING"}
    if hf_token:
        env["HF_TOKEN"] = hf_token
    log = workdir / "guidellm.log"
    argv = [sys.executable, "-m", NAME, "run", "--scenario", str(scenario_file), "--disable-console"]
    limit = plan.max_seconds + STARTUP_ALLOWANCE_SECONDS
    with log.open("w") as output:
        # Its own session, so a time-out stops GuideLLM's worker processes too.
        # Run inside the private directory: GuideLLM also reads a `.env` from where it runs.
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise GeneratorError(f"GuideLLM did not finish within {limit:g} s (--max-seconds + start-up)") from None
        finally:
            scenario_file.unlink(missing_ok=True)
    if code != 0:
        raise GeneratorError(f"GuideLLM failed (exit {code}): {last_error(log.read_text(errors='replace'))}")
    try:
        return json.loads(report.read_text())
    except (OSError, ValueError) as error:
        raise GeneratorError(f"GuideLLM wrote no readable report ({report.name}: {error})") from None


def last_error(output: str) -> str:
    """The line that says why GuideLLM stopped: its last `...Error: ...` line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head:
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def _distribution(metrics: dict[str, Any], name: str) -> dict[str, Any]:
    try:
        found = metrics[name]["successful"]
    except (KeyError, TypeError):
        found = None
    if not isinstance(found, dict):
        raise GeneratorError(f"GuideLLM's report has no metrics.{name}.successful (a GuideLLM version we do not read)")
    return found


def _mean(metrics: dict[str, Any], name: str, scale: float = 1.0) -> float | None:
    value = _distribution(metrics, name).get("mean")
    return round(float(value) * scale, 3) if isinstance(value, int | float) and value > 0 else None


def _p95(metrics: dict[str, Any], name: str) -> float | None:
    value = (_distribution(metrics, name).get("percentiles") or {}).get("p95")
    return round(float(value), 3) if isinstance(value, int | float) and value > 0 else None


def measured_from_report(report: dict[str, Any]) -> dict[str, Any]:
    """The figures aim:benchmark compares, from GuideLLM's report of one benchmark; GeneratorError when no request
    completed. Throughput is the completed requests' output tokens over the benchmark's duration."""
    benchmarks = report.get("benchmarks") if isinstance(report, dict) else None
    if not isinstance(benchmarks, list) or len(benchmarks) != 1 or not isinstance(benchmarks[0], dict):
        raise GeneratorError("GuideLLM's report does not hold exactly one benchmark")
    benchmark = benchmarks[0]
    metrics = benchmark.get("metrics")
    if not isinstance(metrics, dict):
        raise GeneratorError("GuideLLM's report has no metrics")
    totals = metrics.get("request_totals") or {}
    completed = int(totals.get("successful") or 0)
    failed = int(totals.get("errored") or 0)
    incomplete = int(totals.get("incomplete") or 0)
    if completed == 0:
        raise GeneratorError(
            f"all {failed + incomplete} requests failed ({failed} errored, {incomplete} cut off): "
            f"{first_request_error(benchmark)}"
        )
    duration = float(benchmark.get("duration") or 0)
    output_tokens = float(_distribution(metrics, "output_token_count").get("total_sum") or 0)
    return {
        "output_tokens_per_s": round(output_tokens / duration, 2) if duration > 0 else None,
        "ttft_ms": _mean(metrics, "time_to_first_token_ms"),
        "tpot_ms": _mean(metrics, "inter_token_latency_ms"),
        "e2e_latency_s": _mean(metrics, "request_latency"),
        "ttft_p95_ms": _p95(metrics, "time_to_first_token_ms"),
        "tpot_p95_ms": _p95(metrics, "inter_token_latency_ms"),
        "requests_completed": completed,
        "requests_failed": failed,
        "requests_incomplete": incomplete,
        "input_tokens_mean": _mean(metrics, "prompt_token_count"),
        "output_tokens_mean": _mean(metrics, "output_token_count"),
        "duration_s": round(duration, 3),
    }


def first_request_error(benchmark: dict[str, Any]) -> str:
    """The first errored request's error text, one line (what the engine or the connection said)."""
    requests = benchmark.get("requests") or {}
    for kind in ("errored", "incomplete"):
        for entry in requests.get(kind) or []:
            info = entry.get("info") if isinstance(entry, dict) else None
            error = (info or {}).get("error") or (entry.get("error") if isinstance(entry, dict) else None)
            if error:
                # httpx's message carries an escaped newline and a link after it: keep what comes before.
                return " ".join(str(error).split("\\n", 1)[0].split())[:240]
    return "GuideLLM recorded no error text"
