"""What `aim:benchmark` compares and records: the estimate it reads, the result it prints, measured over estimated."""

from __future__ import annotations

import datetime
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aim_infra.common.errors import AimError
from aim_infra.planning.workload import Workload, parse_workload

#: The figures compared, the same keys in `measured`, `estimate`, `ratio` and `within_range` (the estimate's ranged
#: figures, performance.RANGED; a test keeps the two equal).
METRICS = ("output_tokens_per_s", "ttft_ms", "tpot_ms", "e2e_latency_s", "ttft_p95_ms", "tpot_p95_ms")


class Layout(BaseModel):
    """The deployment the figures belong to (the estimate's `layout`; extra keys are kept, not checked)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    gpu: str = Field(min_length=1)
    gpu_count: int = Field(ge=1, le=4096, description="GPUs of all replicas together.")
    tensor_parallel_size: int = Field(ge=1, le=64)
    pipeline_parallel_size: int = Field(default=1, ge=1, le=64)
    replicas: int = Field(ge=1, le=1024)
    precision: str = Field(min_length=1)
    kv_cache_dtype: str = "auto"
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Layout:
        per_replica = self.tensor_parallel_size * self.pipeline_parallel_size
        if self.gpu_count != self.replicas * per_replica:
            raise ValueError(
                f"gpu_count {self.gpu_count} is not replicas {self.replicas} × tensor_parallel_size "
                f"{self.tensor_parallel_size} × pipeline_parallel_size {self.pipeline_parallel_size}"
            )
        return self


class Calibration(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    version: str = Field(min_length=1)


class Estimate(BaseModel):
    """The estimate the stack hands over (`decision.summary()["estimate"]`): the figures, their ranges, the
    calibration version, the workload and the layout. Other keys of the estimate are kept as they are."""

    model_config = ConfigDict(extra="allow", frozen=True)

    output_tokens_per_s: float = Field(ge=0, allow_inf_nan=False)
    ttft_ms: float = Field(ge=0, allow_inf_nan=False)
    tpot_ms: float = Field(ge=0, allow_inf_nan=False)
    e2e_latency_s: float = Field(ge=0, allow_inf_nan=False)
    ttft_p95_ms: float = Field(ge=0, allow_inf_nan=False)
    tpot_p95_ms: float = Field(ge=0, allow_inf_nan=False)
    range: dict[str, tuple[float, float]]
    calibration: Calibration
    workload: dict[str, Any]
    layout: Layout

    @field_validator("range")
    @classmethod
    def _every_metric_ranged(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for key in METRICS:
            if key not in value:
                raise ValueError(f"no [low, high] for {key}")
            low, high = value[key]
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"{key}: [{low}, {high}] is not a [low, high] pair")
        return value

    @field_validator("workload")
    @classmethod
    def _valid_workload(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            parse_workload(value, where="workload")
        except AimError as error:
            raise ValueError(str(error)) from None
        return value

    def parsed_workload(self) -> Workload:
        return parse_workload(self.workload, where="estimate.workload")

    def figures(self) -> dict[str, float]:
        return {key: float(getattr(self, key)) for key in METRICS}


class Measured(BaseModel):
    """What the load generator measured: means and p95s over the completed requests, plus the counts."""

    model_config = ConfigDict(extra="allow", frozen=True)

    # Required but nullable: null where GuideLLM had nothing to measure (no TPOT with one output token).
    output_tokens_per_s: float | None = Field(gt=0, allow_inf_nan=False)
    ttft_ms: float | None = Field(gt=0, allow_inf_nan=False)
    tpot_ms: float | None = Field(gt=0, allow_inf_nan=False)
    e2e_latency_s: float | None = Field(gt=0, allow_inf_nan=False)
    ttft_p95_ms: float | None = Field(gt=0, allow_inf_nan=False)
    tpot_p95_ms: float | None = Field(gt=0, allow_inf_nan=False)
    requests_completed: int = Field(ge=1)
    requests_failed: int = Field(ge=0)


class ResultWorkload(BaseModel):
    """The workload as the benchmark ran it: camelCase like `aim:workload`, plus how many requests it sent."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    input_tokens: int = Field(ge=1, alias="inputTokens")
    output_tokens: int = Field(ge=1, alias="outputTokens")
    concurrency: int | None = Field(default=None, ge=1)
    requests_per_second: float | None = Field(default=None, gt=0, alias="requestsPerSecond", allow_inf_nan=False)
    num_prompts: int = Field(ge=1, alias="numPrompts")


class BenchmarkResult(BaseModel):
    """The one JSON object `python -m aim_infra.host.live_benchmark` prints (and `calibrate --add` reads)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    measured: Measured
    estimate: dict[str, Any]
    ratio: dict[str, float | None]
    within_range: dict[str, bool | None]
    workload: ResultWorkload
    layout: Layout
    model: str = Field(min_length=1)
    recipe_id: str
    load_generator: str = Field(min_length=1)
    measured_at: str = Field(min_length=1)
    engine_version: str | None = None

    @field_validator("measured_at")
    @classmethod
    def _iso_time(cls, value: str) -> str:
        try:
            datetime.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("not an ISO time (e.g. 2026-12-05T13:16:34+00:00)") from None
        return value


def _describe(error: ValidationError, where: str) -> str:
    """The first problem as `<where>: <key.path>: <what>`, naming the key (one line)."""
    first = error.errors(include_url=False)[0]
    location = ".".join(str(part) for part in first.get("loc", ())) or "(top level)"
    if first.get("type") == "missing":
        return f"{where}: {location}: missing"
    shown = repr(first.get("input"))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {location}: {message} (got {shown})"


def parse_estimate(raw: Any, where: str = "estimate") -> Estimate:
    if not isinstance(raw, dict):
        raise AimError(f"{where}: expected a JSON object (decision.summary()['estimate']), got {type(raw).__name__}")
    try:
        return Estimate.model_validate(raw)
    except ValidationError as error:
        raise AimError(_describe(error, where)) from None


def parse_result(raw: Any, where: str) -> BenchmarkResult:
    if not isinstance(raw, dict):
        raise AimError(f"{where}: expected the JSON object aim:benchmark prints, got {type(raw).__name__}")
    try:
        return BenchmarkResult.model_validate(raw)
    except ValidationError as error:
        raise AimError(_describe(error, where)) from None


def compare(
    measured: dict[str, float], estimate: dict[str, float], ranges: dict[str, tuple[float, float]]
) -> tuple[dict[str, float | None], dict[str, bool | None]]:
    """measured / estimate per metric (None where the estimate is 0), and whether the measured figure lies inside
    the estimate's [low, high] range (bounds included)."""
    ratio: dict[str, float | None] = {}
    inside: dict[str, bool | None] = {}
    for key in METRICS:
        value, guess = measured.get(key), estimate.get(key)
        ratio[key] = round(value / guess, 4) if value is not None and guess else None
        low_high = ranges.get(key)
        inside[key] = None if value is None or low_high is None else bool(low_high[0] <= value <= low_high[1])
    return ratio, inside
