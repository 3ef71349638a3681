"""Measured serving results the performance model is calibrated and checked on, as validated YAML entries."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aim_infra.common.errors import AimError
from aim_infra.planning.paths import DATA_DIR
from aim_infra.planning.precision import KvCacheDtype, Precision
from aim_infra.planning.yamlio import load_model

#: Where measurement files live: one YAML list per source family; `local/` takes `calibrate --add` results.
MEASUREMENTS_DIR = DATA_DIR.parent / "calibration" / "measurements"

#: How the measurement was taken, which decides how the model replays it:
#: offline        all `num_prompts` (default: concurrency) requests submitted at t=0, metric over the whole run
#: static_batch   `concurrency` requests prefilled together then decoded together (benchmark_latency)
#: online         a closed loop of `concurrency` clients (`vllm bench serve --max-concurrency`), `num_prompts` in all
#: online_rate    Poisson arrivals at `request_rate` requests/s over all replicas (`--request-rate`, MLPerf Server)
Mode = Literal["offline", "static_batch", "online", "online_rate"]

#: What was measured. Throughputs are output tokens/s of the whole measured system (all replicas).
Metric = Literal[
    "output_throughput",
    "e2e_latency",
    "ttft_mean",
    "ttft_p50",
    "ttft_p95",
    "tpot_mean",
    "tpot_p50",
    "tpot_p95",
]
Split = Literal["train", "holdout", "local"]


class Measurement(BaseModel):
    """One published (or locally measured) figure with everything needed to replay it through the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=120, description="Unique slug.")
    model: str = Field(min_length=1, description="The model as the source names it.")
    profile: str = Field(min_length=1, description="Bundled model catalogue id the model is replayed with.")
    gpu: str = Field(min_length=1)
    gpu_count: int = Field(ge=1, le=64, description="GPUs of the measured system.")
    tp: int = Field(ge=1, le=64, description="Tensor-parallel size of one replica.")
    pp: int = Field(default=1, ge=1, le=64)
    precision: Precision = Field(description="Weight format served.")
    kv_cache_dtype: KvCacheDtype = "auto"
    isl: int = Field(ge=1, le=1_048_576, description="Input tokens per request (a dataset mean where noted).")
    osl: int = Field(ge=1, le=1_048_576, description="Output tokens per request (a dataset mean where noted).")
    mode: Mode
    concurrency: int | None = Field(default=None, ge=1, le=1_000_000)
    request_rate: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    num_prompts: int | None = Field(default=None, ge=1, le=10_000_000)
    max_num_seqs: int | None = Field(default=None, ge=1, le=1_000_000)
    max_num_batched_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    metric: Metric
    value: float = Field(gt=0, allow_inf_nan=False)
    unit: Literal["tok/s", "s", "ms"]
    engine_version: str = Field(min_length=1)
    source: str = Field(min_length=1, description="URL (or local file) the figure was read from.")
    note: str = ""
    split: Split = Field(description="train: fitted on; holdout: never fitted on, reported apart; local: your own.")

    @model_validator(mode="after")
    def _consistent(self) -> Measurement:
        if self.gpu_count % (self.tp * self.pp):
            raise ValueError(f"gpu_count {self.gpu_count} is not a multiple of tp × pp = {self.tp * self.pp}")
        if self.mode == "online_rate" and self.request_rate is None:
            raise ValueError("mode online_rate needs request_rate")
        if self.mode in ("static_batch", "online") and self.concurrency is None:
            raise ValueError(f"mode {self.mode} needs concurrency")
        if self.metric == "output_throughput" and self.unit != "tok/s":
            raise ValueError("output_throughput is in tok/s")
        if self.metric != "output_throughput" and self.unit == "tok/s":
            raise ValueError(f"{self.metric} is a time: unit s or ms")
        return self

    @property
    def replicas(self) -> int:
        return self.gpu_count // (self.tp * self.pp)

    @property
    def value_in_base_unit(self) -> float:
        """tok/s for throughput, milliseconds for every time."""
        return self.value * 1000 if self.unit == "s" else self.value


class MeasurementFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    measurements: list[Measurement] = Field(min_length=1)


def load_measurements(directory: Path = MEASUREMENTS_DIR) -> list[Measurement]:
    """Every measurement under `directory` (recursively, sorted by path), ids unique across files."""
    found: list[Measurement] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.rglob("*.yaml")):
        for entry in load_model(path, MeasurementFile).measurements:
            if entry.id in seen:
                raise AimError(f"{path}: measurement id {entry.id!r} is also in {seen[entry.id]}")
            seen[entry.id] = path
            found.append(entry)
    return found
