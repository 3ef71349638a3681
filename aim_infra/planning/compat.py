"""Rules a recipe must meet before memory is even considered: formats the GPU runs, head divisibility, vLLM flags."""

from __future__ import annotations

from collections.abc import Mapping

from aim_infra.planning.fit import Layout
from aim_infra.planning.hardware import GpuSpec
from aim_infra.planning.model_profile import ModelProfile
from aim_infra.planning.precision import ON_THE_FLY
from aim_infra.planning.recipe import Recipe
from aim_infra.planning.vllm_rules import VllmRules

AITER_SWITCH = "VLLM_ROCM_USE_AITER"


def layout_of(recipe: Recipe, gpu: GpuSpec, rules: VllmRules, max_model_len: int | None = None) -> Layout:
    """The memory-relevant shape of a recipe, with vLLM's defaults for scheduler limits the recipe leaves out."""
    defaults = rules.engine_defaults
    max_num_seqs, max_num_batched_tokens, enforce_eager = recipe.scheduler_limits
    return Layout(
        tensor_parallel_size=recipe.tensor_parallel_size,
        pipeline_parallel_size=recipe.pipeline_parallel_size,
        precision=recipe.precision,
        kv_cache_dtype=recipe.kv_cache_dtype,
        max_model_len=max_model_len or recipe.max_model_len,
        gpu_memory_utilization=recipe.gpu_memory_utilization,
        max_num_seqs=max_num_seqs or defaults.max_num_seqs(gpu.memory_gib),
        max_num_batched_tokens=max_num_batched_tokens or defaults.max_num_batched_tokens(gpu.memory_gib),
        enforce_eager=enforce_eager,
    )


def flag_problem(args: Mapping[str, object], env: Mapping[str, str], rules: VllmRules) -> str | None:
    """A removed flag, removed variable or never-valid value, named with its replacement."""
    for flag, value in args.items():
        removed = rules.removed_flag(flag)
        if removed:
            return f"flag --{flag} was removed from vLLM (use {removed.instead})"
        if rules.invalid_value(flag, value):
            return f"--{flag} {value} is not a valid value"
    for variable in env:
        gone = rules.removed_variable(variable)
        if gone:
            return f"environment variable {variable} was removed from vLLM (use {gone.instead})"
    return None


def parallelism_problem(profile: ModelProfile, gpu: GpuSpec, tensor_parallel_size: int) -> str | None:
    tp = tensor_parallel_size
    if tp > gpu.gpus_per_node:
        return f"TP {tp} exceeds the {gpu.gpus_per_node} {gpu.name} of one node (TP stays inside a node)"
    if profile.num_attention_heads % tp:
        return f"TP {tp} does not divide the {profile.num_attention_heads} attention heads"
    if profile.mla is None and profile.num_kv_heads % tp and tp % profile.num_kv_heads:
        return f"TP {tp} neither divides nor is a multiple of the {profile.num_kv_heads} KV heads"
    return None


def format_problem(
    profile: ModelProfile, gpu: GpuSpec, precision: str, kv_cache_dtype: str, quantization: str | None
) -> str | None:
    """Whether `gpu` runs `precision` weights produced from this checkpoint, and the KV dtype."""
    stored = profile.checkpoint_precision
    half = ("bf16", "fp16")
    if precision == stored or (precision in half and stored in half):
        method = profile.quant_method
    elif stored in half and precision in ON_THE_FLY:
        method = quantization
        if quantization not in ON_THE_FLY[precision]:
            allowed = ", ".join(ON_THE_FLY[precision])
            return f"{precision} from a {stored} checkpoint needs --quantization {allowed}"
    else:
        return f"a {stored} checkpoint cannot be served in {precision} (needs a {precision} checkpoint)"
    if not gpu.supports_weights(precision, method):
        how = f" ({method})" if method and method != precision else ""
        return f"{gpu.name} ({gpu.arch}) has no {precision}{how} path in vLLM"
    if kv_cache_dtype not in gpu.kv_cache_dtypes:
        return f"{gpu.name} ({gpu.arch}) has no {kv_cache_dtype} KV cache"
    return None


def recipe_problem(recipe: Recipe, profile: ModelProfile, gpu: GpuSpec, rules: VllmRules) -> str | None:
    """The first reason `recipe` cannot run `profile` on `gpu`, ignoring memory; None when it can."""
    quantization = recipe.vllm_args.get("quantization")
    problem = (
        flag_problem(recipe.vllm_args, recipe.env, rules)
        or format_problem(
            profile,
            gpu,
            recipe.precision,
            recipe.kv_cache_dtype,
            str(quantization) if quantization is not None else None,
        )
        or parallelism_problem(profile, gpu, recipe.tensor_parallel_size)
    )
    if problem:
        return problem
    if not gpu.aiter and any(name.startswith(AITER_SWITCH) and value != "0" for name, value in recipe.env.items()):
        return f"AITER is not available on {gpu.arch} ({gpu.name}); remove {AITER_SWITCH}*"
    if recipe.max_model_len > profile.max_context:
        return f"max_model_len {recipe.max_model_len} exceeds the model's context of {profile.max_context}"
    return None
