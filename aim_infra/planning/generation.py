"""The fallback: synthesise conservative recipes from a model profile when no catalogue recipe fits."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aim_infra.planning.compat import format_problem, parallelism_problem
from aim_infra.planning.hardware import GpuSpec
from aim_infra.planning.model_profile import ModelProfile
from aim_infra.planning.paths import DATA_DIR
from aim_infra.planning.precision import ON_THE_FLY
from aim_infra.planning.recipe import ArgValue, Metric, Recipe
from aim_infra.planning.yamlio import load_model

GENERATION_FILE = DATA_DIR / "generation.yaml"
#: Longest context a generated recipe asks for unless the user sets max_model_len: beyond it, serving needs tuning.
DEFAULT_CONTEXT_CAP = 131072
#: Shortest context a generated recipe shrinks to before giving up.
MIN_CONTEXT = 4096


class Conditions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    aiter: bool | None = None
    mla: bool | None = None
    moe: bool | None = None
    min_gpus: int | None = Field(default=None, ge=1)
    gpu_archs: list[str] | None = Field(default=None, description="GPU architectures (gfx942, ...) it applies to.")
    architectures: list[str] | None = None
    model_match: str | None = None

    @field_validator("model_match")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"not a valid regex: {error}") from None
        return pattern

    def hold(self, profile: ModelProfile, gpu: GpuSpec, gpu_count: int) -> bool:
        checks = (
            self.aiter is None or self.aiter == gpu.aiter,
            self.mla is None or self.mla == (profile.mla is not None),
            self.moe is None or self.moe == profile.is_moe,
            self.min_gpus is None or gpu_count >= self.min_gpus,
            self.gpu_archs is None or gpu.arch in self.gpu_archs,
            self.architectures is None or profile.architecture in self.architectures,
            self.model_match is None or re.search(self.model_match, profile.id) is not None,
        )
        return all(checks)


class GenerationRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9-]+$")
    why: str = Field(min_length=1)
    when: Conditions
    vllm_args: dict[str, ArgValue] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)


class GenerationRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provenance: str
    rules: list[GenerationRule]


@cache
def load_generation_rules(path: Path = GENERATION_FILE) -> GenerationRules:
    return load_model(path, GenerationRules)


def tensor_parallel_options(profile: ModelProfile, gpu: GpuSpec, available: int) -> list[int]:
    """Powers of two up to the GPUs available on one node that the model's heads allow."""
    limit = min(available, gpu.gpus_per_node)
    sizes = [2**i for i in range(0, 7) if 2**i <= limit]
    return [tp for tp in sizes if parallelism_problem(profile, gpu, tp) is None]


def generated_precision(profile: ModelProfile, gpu: GpuSpec, wish: str) -> tuple[str, str | None] | str:
    """(precision, --quantization value or None) for a generated recipe, or the reason none is possible."""
    precision = profile.checkpoint_precision if wish == "auto" else wish
    quantization = None
    stored = profile.checkpoint_precision
    if precision != stored and stored in ("bf16", "fp16") and precision in ON_THE_FLY:
        quantization = ON_THE_FLY[precision][0]
    problem = format_problem(profile, gpu, precision, "auto", quantization)
    return problem if problem else (precision, quantization)


def generate(
    profile: ModelProfile,
    gpu: GpuSpec,
    tensor_parallel_size: int,
    precision: str,
    quantization: str | None,
    max_model_len: int,
    metric: Metric,
    rules: GenerationRules,
) -> Recipe:
    """One conservative recipe: engine defaults plus the rules that apply to this model and GPU."""
    args: dict[str, ArgValue] = {}
    env: dict[str, str] = {}
    applied: list[str] = []
    for rule in rules.rules:
        if rule.when.hold(profile, gpu, tensor_parallel_size):
            args.update(rule.vllm_args)
            env.update(rule.env)
            applied.append(rule.name)
    if quantization:
        args["quantization"] = quantization
    kv_dtype = "fp8" if profile.kv_cache_scales and "fp8" in gpu.kv_cache_dtypes else "auto"
    short = re.sub(r"[^a-z0-9]+", "-", profile.id.split("/")[-1].lower()).strip("-")
    return Recipe(
        id=f"generated-{short}-{gpu.name.lower()}-tp{tensor_parallel_size}-{precision}",
        model=profile.id,
        gpu=gpu.name,
        gpu_count=tensor_parallel_size,
        tensor_parallel_size=tensor_parallel_size,
        precision=precision,  # type: ignore[arg-type]
        kv_cache_dtype=kv_dtype,  # type: ignore[arg-type]
        max_model_len=max_model_len,
        metric=metric,
        status="generated",
        vllm_args=args,
        env=env,
        provenance=f"generated from the model profile by the AIM recipe engine (rules: {', '.join(applied) or 'none'})",
    )


def context_ladder(profile: ModelProfile, wish: int | None) -> list[int]:
    """max_model_len values to try, longest first: the wish alone, or the model's context halving to MIN_CONTEXT."""
    if wish is not None:
        return [wish]
    start = min(profile.max_context, DEFAULT_CONTEXT_CAP)
    ladder = [start]
    while ladder[-1] // 2 >= MIN_CONTEXT:
        ladder.append(ladder[-1] // 2)
    return ladder
