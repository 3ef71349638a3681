"""vLLM command-line rules from YAML: removed flags and environment variables, and per-device engine defaults."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from aim_infra.planning.paths import VLLM_FLAGS_FILE, VLLM_RULES_FILE
from aim_infra.planning.yamlio import load_model


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


class VllmFlags(BaseModel):
    """The flags `vllm serve` of one vLLM release accepts (extracted by scripts/extract_vllm_flags.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vllm_version: str = Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    read_on: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    sources: list[str] = Field(min_length=1)
    flags: list[str] = Field(min_length=1, description="Long flags without the leading --.")
    negatable: list[str] = Field(default_factory=list, description="Boolean flags also accepted as --no-<flag>.")
    aliases: dict[str, str] = Field(default_factory=dict, description="Short alias (-tp) → long flag.")

    def canonical(self, token: str) -> str | None:
        """The long flag (no dashes in front) that `token` (`--flag`, `--flag=value`, `--no-flag`, `-tp`, `-O3`) sets,
        or None when this release has no such flag. Like vLLM's FlexibleArgumentParser: underscores mean dashes,
        and `--json-flag.key=value` sets one key of a JSON flag."""
        if not token.startswith("--"):
            alias = token.split("=", 1)[0]
            if alias in self.aliases:
                return self.aliases[alias]
            return self.aliases.get("-O") if alias.startswith("-O") else None
        name = token[2:].split("=", 1)[0].replace("_", "-")
        known = set(self.flags)
        if name in known:
            return name
        if "." in name and name.split(".", 1)[0] in known:
            return name.split(".", 1)[0]
        if name.startswith("no-") and name[3:] in set(self.negatable):
            return name[3:]
        return None


@cache
def load_vllm_flags(path: Path = VLLM_FLAGS_FILE) -> VllmFlags:
    return load_model(path, VllmFlags)
