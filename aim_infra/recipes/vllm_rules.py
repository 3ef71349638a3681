"""vLLM command-line rules from YAML: removed flags and environment variables, and per-device engine defaults."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .paths import VLLM_RULES_FILE
from .yamlio import load_model


class RemovedOption(BaseModel):
    """A flag or environment variable current vLLM no longer accepts, with what replaces it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    instead: str = Field(min_length=1)


class EngineDefaults(BaseModel):
    """vLLM V1's scheduler defaults, which depend on device memory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    large_device_gib: float = Field(gt=0, description="Devices with at least this much memory get the large defaults.")
    large_max_num_seqs: int = Field(gt=0)
    large_max_num_batched_tokens: int = Field(gt=0)
    small_max_num_seqs: int = Field(gt=0)
    small_max_num_batched_tokens: int = Field(gt=0)
    gpu_memory_utilization: float = Field(gt=0, le=1)

    def max_num_seqs(self, memory_gib: float) -> int:
        return self.large_max_num_seqs if memory_gib >= self.large_device_gib else self.small_max_num_seqs

    def max_num_batched_tokens(self, memory_gib: float) -> int:
        if memory_gib >= self.large_device_gib:
            return self.large_max_num_batched_tokens
        return self.small_max_num_batched_tokens


class VllmRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    removed_flags: list[RemovedOption]
    removed_env: list[RemovedOption]
    invalid_flag_values: dict[str, list[str]] = Field(
        default_factory=dict, description="flag → value prefixes that are never valid (e.g. dtype float8_*)."
    )
    engine_defaults: EngineDefaults
    provenance: str

    def removed_flag(self, flag: str) -> RemovedOption | None:
        name = flag.removeprefix("--")
        return next((r for r in self.removed_flags if r.name.removeprefix("--") == name), None)

    def removed_variable(self, variable: str) -> RemovedOption | None:
        return next((r for r in self.removed_env if r.name == variable), None)

    def invalid_value(self, flag: str, value: object) -> bool:
        prefixes = self.invalid_flag_values.get(flag.removeprefix("--"), [])
        return any(str(value).startswith(p) for p in prefixes)


@cache
def load_vllm_rules(path: Path = VLLM_RULES_FILE) -> VllmRules:
    return load_model(path, VllmRules)
