"""`calibrate --add`: an aim:benchmark result becomes measurement entries (split local) the model fit can use."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aim_infra.common.errors import AimError
from aim_infra.planning.benchmark_result import BenchmarkResult, parse_result
from aim_infra.planning.measurements import MEASUREMENTS_DIR, Measurement, MeasurementFile, load_measurements
from aim_infra.planning.yamlio import load_model

#: result["measured"] key → (Measurement metric, unit, short name for the id).
METRIC_OF = {
    "output_tokens_per_s": ("output_throughput", "tok/s", "output-throughput"),
    "ttft_ms": ("ttft_mean", "ms", "ttft-mean"),
    "tpot_ms": ("tpot_mean", "ms", "tpot-mean"),
    "ttft_p95_ms": ("ttft_p95", "ms", "ttft-p95"),
    "tpot_p95_ms": ("tpot_p95", "ms", "tpot-p95"),
}

MAX_RUN_SLUG = 120 - 1 - max(len(short) for _, _, short in METRIC_OF.values())

#: Which key of the result a Measurement field comes from, to name it when the entry does not validate.
_RESULT_KEY = {
    "model": "model",
    "profile": "model",
    "gpu": "layout.gpu",
    "gpu_count": "layout.gpu_count",
    "tp": "layout.tensor_parallel_size",
    "pp": "layout.pipeline_parallel_size",
    "precision": "layout.precision",
    "kv_cache_dtype": "layout.kv_cache_dtype",
    "isl": "workload.inputTokens",
    "osl": "workload.outputTokens",
    "concurrency": "workload.concurrency",
    "request_rate": "workload.requestsPerSecond",
    "num_prompts": "workload.numPrompts",
    "max_num_seqs": "layout.max_num_seqs",
    "max_num_batched_tokens": "layout.max_num_batched_tokens",
    "value": "measured",
    "engine_version": "engine_version",
}


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")[:limit].strip("-.") or "x"


def _stamp(measured_at: str) -> str:
    moment = datetime.datetime.fromisoformat(measured_at)  # BenchmarkResult checked it parses
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC)
    return moment.strftime("%Y%m%dt%H%M%S")


def run_slug(result: BenchmarkResult) -> str:
    """What names the run: model, GPU, layout, workload and time, e.g.
    `qwen-qwen3-8b-mi300x-1x-tp1-i1024-o256-c64-20261205t131634` (the file name; ids add the metric)."""
    layout, workload = result.layout, result.workload
    load = f"c{workload.concurrency}" if workload.concurrency is not None else f"r{workload.requests_per_second:g}"
    shape = f"{layout.replicas}x-tp{layout.tensor_parallel_size}"
    if layout.pipeline_parallel_size > 1:
        shape += f"-pp{layout.pipeline_parallel_size}"
    rest = [_slug(layout.gpu, 12), shape, f"i{workload.input_tokens}-o{workload.output_tokens}-{_slug(load, 16)}"]
    rest.append(_stamp(result.measured_at))
    # The model's part shrinks so that an id (this + "-" + the longest metric name) stays within 120 characters.
    room = MAX_RUN_SLUG - len("-".join(rest)) - 1
    return "-".join([_slug(result.model, max(room, 8)), *rest])[:MAX_RUN_SLUG]


def measurements_from_result(result: dict[str, Any], source: str) -> list[Measurement]:
    """One local Measurement per measured figure (throughput, TTFT and TPOT means and p95s); AimError naming the
    result's key when the result is malformed."""
    parsed = parse_result(result, where=source)
    layout, workload, measured = parsed.layout, parsed.workload, parsed.measured
    closed = workload.concurrency is not None
    run = run_slug(parsed)
    estimate_version = (parsed.estimate.get("calibration") or {}).get("version", "?")
    note = (
        f"measured live by aim:benchmark with {parsed.load_generator} against recipe {parsed.recipe_id or '?'} "
        f"({'closed loop, ' + str(workload.concurrency) + ' clients' if closed else 'Poisson arrivals'}); "
        f"{measured.requests_completed} completed, {measured.requests_failed} failed; "
        f"estimate from calibration {estimate_version}; measured at {parsed.measured_at}"
    )
    if (prompt := (measured.model_extra or {}).get("input_tokens_mean")) is not None:
        note += f"; mean prompt {prompt:g} tokens as the engine counted them"
    entries: list[Measurement] = []
    for key, (metric, unit, short) in METRIC_OF.items():
        value = getattr(measured, key)
        if value is None:
            continue
        fields = {
            "id": f"{run}-{short}",
            "model": parsed.model,
            "profile": parsed.model,
            "gpu": layout.gpu,
            "gpu_count": layout.gpu_count,
            "tp": layout.tensor_parallel_size,
            "pp": layout.pipeline_parallel_size,
            "precision": layout.precision,
            "kv_cache_dtype": layout.kv_cache_dtype,
            "isl": workload.input_tokens,
            "osl": workload.output_tokens,
            "mode": "online" if closed else "online_rate",
            "concurrency": workload.concurrency,
            "request_rate": workload.requests_per_second,
            "num_prompts": workload.num_prompts,
            "max_num_seqs": layout.max_num_seqs,
            "max_num_batched_tokens": layout.max_num_batched_tokens,
            "metric": metric,
            "value": value,
            "unit": unit,
            "engine_version": parsed.engine_version or "vLLM (version not reported by the engine's /version)",
            "source": source,
            "note": note,
            "split": "local",
        }
        try:
            entries.append(Measurement.model_validate(fields))
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            field = str(first["loc"][0]) if first.get("loc") else ""
            message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
            where = _RESULT_KEY.get(field, "the result")
            raise AimError(f"{source}: {where}: {message} (got {first.get('input')!r})") from None
    if not entries:
        raise AimError(f"{source}: measured: no figure to add (every metric is null)")
    return entries


def read_result(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or one AimError line saying why not."""
    try:
        text = path.read_text()
    except OSError as error:
        raise AimError(f"--add {path}: cannot read it: {error.strerror or error}") from None
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise AimError(f"--add {path}: not JSON ({error}): pass the file live_benchmark --out wrote") from None
    if not isinstance(raw, dict):
        raise AimError(f"--add {path}: expected the JSON object aim:benchmark prints, got {type(raw).__name__}")
    return raw


def add_result(
    result_path: Path, out: Path | None = None, force: bool = False, root: Path = MEASUREMENTS_DIR
) -> tuple[Path, list[Measurement]]:
    """Write the result's measurements to `out` (default `<root>/local/<run>.yaml`); refuses to overwrite unless
    `force`. The written file must load, and inside `root` its ids must be unique among all measurements there."""
    raw = read_result(result_path)
    entries = measurements_from_result(raw, source=str(result_path))
    target = out or root / "local" / f"{run_slug(parse_result(raw, str(result_path)))}.yaml"
    if target.exists() and not force:
        raise AimError(f"{target} exists: pass --force to overwrite it, or --out another file")
    document = {"measurements": [entry.model_dump(mode="json", exclude_none=True) for entry in entries]}
    header = f"# Measured by aim:benchmark ({result_path.name}); added by `python -m aim_infra calibrate --add`.\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = target.read_text() if target.exists() else None
    target.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120))
    try:
        load_model(target, MeasurementFile)
        if target.resolve().is_relative_to(root.resolve()):
            load_measurements(root)
    except AimError:
        if previous is None:
            target.unlink()
        else:
            target.write_text(previous)
        raise
    return target, entries
