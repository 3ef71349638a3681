"""The serving-recipe schema: one validated description of how to run one model on one GPU type with vLLM."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aim_infra.planning.precision import KvCacheDtype, Precision

Metric = Literal["throughput", "latency"]
RecipeStatus = Literal["validated", "community", "generated"]

#: Flags a recipe states as fields, not inside `vllm_args`, so the engine can reason about them.
STRUCTURAL_FLAGS = (
    "tensor-parallel-size",
    "pipeline-parallel-size",
    "max-model-len",
    "kv-cache-dtype",
    "gpu-memory-utilization",
    "model",
    "port",
    "host",
    "served-model-name",
    "api-key",
)
#: Scheduler limits the memory fit reads from a recipe, with the range a real deployment can use.
SCHEDULER_LIMITS = {"max-num-seqs": (1, 65536), "max-num-batched-tokens": (1, 10_485_760)}
FLAG_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")

ArgValue = str | int | float | bool


class Recipe(BaseModel):
    """How to serve `model` on `gpu_count` × `gpu`. `vllm_args` maps flag names (no dashes) to values;
    `true` is a bare switch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=120)
    model: str = Field(min_length=1, description="Model id the recipe serves (a bundled catalogue id).")
    gpu: str = Field(min_length=1, description="GPU name from recipes/gpus.yaml.")
    gpu_count: int = Field(ge=1, le=64)
    tensor_parallel_size: int = Field(ge=1, le=64)
    pipeline_parallel_size: int = Field(default=1, ge=1, le=16)
    precision: Precision
    kv_cache_dtype: KvCacheDtype = "auto"
    max_model_len: int = Field(ge=256)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.3, le=0.98)
    metric: Metric
    status: RecipeStatus
    vllm_args: dict[str, ArgValue] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    provenance: str = Field(min_length=1, description="The public source this recipe follows.")
    notes: str = ""

    @field_validator("vllm_args")
    @classmethod
    def _flag_names(cls, args: dict[str, ArgValue]) -> dict[str, ArgValue]:
        for flag, value in args.items():
            if not FLAG_NAME.fullmatch(flag):
                raise ValueError(f"flag {flag!r} must be a lower-case vLLM flag name without leading dashes")
            if flag in STRUCTURAL_FLAGS:
                raise ValueError(f"flag {flag!r} is set by a recipe field, not in vllm_args")
            if value is False:
                raise ValueError(f"flag {flag!r}: false is not a value; leave the switch out")
            if flag in SCHEDULER_LIMITS:
                low, high = SCHEDULER_LIMITS[flag]
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    raise ValueError(f"flag {flag!r} must be a whole number from {low} to {high}")
        return args

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"environment variable {name!r} is not a valid name")
        return env

    @model_validator(mode="after")
    def _parallelism(self) -> Recipe:
        if self.tensor_parallel_size * self.pipeline_parallel_size != self.gpu_count:
            raise ValueError(
                f"gpu_count {self.gpu_count} must equal tensor_parallel_size {self.tensor_parallel_size}"
                f" × pipeline_parallel_size {self.pipeline_parallel_size}"
            )
        return self

    def args_list(self) -> list[str]:
        """The full argument list after `vllm serve <model>`, one `--flag=value` token per setting (a bare `--flag`
        for a switch): structural flags first, then the recipe's own. One token per flag keeps every value next to
        its flag, which the admission policy relies on when it checks the parallelism a Deployment runs."""
        args = [
            f"--tensor-parallel-size={self.tensor_parallel_size}",
            f"--pipeline-parallel-size={self.pipeline_parallel_size}",
            f"--max-model-len={self.max_model_len}",
            f"--gpu-memory-utilization={self.gpu_memory_utilization:g}",
        ]
        if self.kv_cache_dtype != "auto":
            args.append(f"--kv-cache-dtype={self.kv_cache_dtype}")
        for flag, value in self.vllm_args.items():
            args.append(f"--{flag}" if value is True else f"--{flag}={value}")
        return args

    @cached_property
    def scheduler_limits(self) -> tuple[int | None, int | None, bool]:
        """(--max-num-seqs, --max-num-batched-tokens, --enforce-eager) as set by the recipe; read once per recipe
        because selection looks at every candidate's layout."""
        return (
            self.int_arg("max-num-seqs"),
            self.int_arg("max-num-batched-tokens"),
            self.vllm_args.get("enforce-eager") is True,
        )

    def int_arg(self, flag: str) -> int | None:
        value = self.vllm_args.get(flag)
        if value is None or isinstance(value, bool):
            return None
        try:
            return int(value)
        except (TypeError, ValueError, OverflowError):
            return None


class RecipeFile(BaseModel):
    """One YAML file under recipes/catalogue/."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipes: list[Recipe] = Field(min_length=1)
