"""The shipped recipe catalogue (recipes/catalogue/*.yaml): schema, coverage and the ROCm rules every entry keeps."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from aim_infra.planning.catalogue import load_catalogue_from
from aim_infra.planning.hardware import load_gpus
from aim_infra.planning.paths import CATALOGUE_DIR
from aim_infra.planning.recipe import Recipe, RecipeFile
from aim_infra.planning.vllm_rules import load_vllm_rules
from aim_infra.planning.yamlio import load_model

FILES = sorted(CATALOGUE_DIR.glob("*.yaml"))

#: Models the catalogue promises tuned recipes for on each of the three current Instinct generations.
POPULAR_MODELS = (
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct",
    "amd/Llama-3.1-8B-Instruct-FP8-KV",
    "amd/Llama-3.1-70B-Instruct-FP8-KV",
    "amd/Llama-3.1-405B-Instruct-FP8-KV",
    "meta-llama/Llama-3.3-70B-Instruct",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
    "Qwen/Qwen3-8B",
    "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B",
    "Qwen/Qwen3-235B-A22B",
    "Qwen/Qwen3-235B-A22B-FP8",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct",
    "deepseek-ai/DeepSeek-R1",
    "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-R1-0528",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    "moonshotai/Kimi-K2-Instruct",
    "openai/gpt-oss-20b",
    "openai/gpt-oss-120b",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "mistralai/Mistral-Large-Instruct-2411",
    "google/gemma-3-27b-it",
)
COVERED_GPUS = ("MI300X", "MI325X", "MI355X")


@cache
def recipes_by_file() -> dict[str, tuple[Recipe, ...]]:
    return {path.name: tuple(load_model(path, RecipeFile).recipes) for path in FILES}


def all_recipes() -> list[Recipe]:
    return [recipe for recipes in recipes_by_file().values() for recipe in recipes]


def arch_of(gpu_name: str) -> str:
    return load_gpus().get(gpu_name).arch


def test_the_catalogue_has_family_files() -> None:
    assert FILES, f"no recipe files under {CATALOGUE_DIR}"
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.-]*\.yaml", path.name) for path in FILES)


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_every_file_validates_as_a_recipe_file(path: Path) -> None:
    assert load_model(path, RecipeFile).recipes


def test_ids_are_unique_across_files() -> None:
    counts = Counter(recipe.id for recipe in all_recipes())
    assert [recipe_id for recipe_id, count in counts.items() if count > 1] == []


def test_ids_follow_the_naming_scheme() -> None:
    for recipe in all_recipes():
        suffix = (
            f"-{recipe.gpu.lower()}-tp{recipe.tensor_parallel_size}"
            + (f"-pp{recipe.pipeline_parallel_size}" if recipe.pipeline_parallel_size > 1 else "")
            + f"-{recipe.precision}"
            + ("-kvfp8" if recipe.kv_cache_dtype == "fp8" else "")
            + f"-{recipe.metric}"
        )
        assert recipe.id == recipe.id.lower() and recipe.id.endswith(suffix), (recipe.id, suffix)
        assert len(recipe.id) > len(suffix), recipe.id


@pytest.mark.parametrize("model", POPULAR_MODELS)
def test_every_popular_model_has_a_recipe_on_each_current_gpu(model: str) -> None:
    gpus = {recipe.gpu for recipe in all_recipes() if recipe.model == model}
    assert set(COVERED_GPUS) <= gpus, f"{model}: missing {sorted(set(COVERED_GPUS) - gpus)}"


def test_every_model_and_gpu_is_known() -> None:
    from aim_infra.planning.model_profile import load_model_catalogue

    models = load_model_catalogue()
    for recipe in all_recipes():
        assert models.find(recipe.model) is not None, recipe.id
        assert load_gpus().get(recipe.gpu).name == recipe.gpu, recipe.id


def test_no_aiter_on_gfx90a() -> None:
    for recipe in all_recipes():
        if arch_of(recipe.gpu) == "gfx90a":
            assert not [name for name in recipe.env if name.startswith("VLLM_ROCM_USE_AITER")], recipe.id
            assert recipe.precision in ("bf16", "fp16", "int8", "int4"), recipe.id
            assert recipe.kv_cache_dtype == "auto", recipe.id


def test_fp8_kv_cache_only_where_the_gpu_has_fp8() -> None:
    for recipe in all_recipes():
        if recipe.kv_cache_dtype == "fp8" or recipe.precision == "fp8":
            assert arch_of(recipe.gpu) in ("gfx942", "gfx950"), recipe.id


def test_nccl_channels_only_for_multi_gpu_recipes() -> None:
    for recipe in all_recipes():
        if "NCCL_MIN_NCHANNELS" in recipe.env:
            assert recipe.gpu_count > 1, recipe.id
            assert recipe.env["NCCL_MIN_NCHANNELS"] == "112", recipe.id


def test_env_values_are_strings_and_switches_are_zero_or_one() -> None:
    for recipe in all_recipes():
        for name, value in recipe.env.items():
            assert isinstance(value, str), (recipe.id, name)
            if name.startswith("VLLM_ROCM_USE_AITER"):
                assert value in ("0", "1"), (recipe.id, name, value)


def test_no_removed_flags_or_variables() -> None:
    rules = load_vllm_rules()
    for recipe in all_recipes():
        for flag, value in recipe.vllm_args.items():
            assert rules.removed_flag(flag) is None, (recipe.id, flag)
            assert not rules.invalid_value(flag, value), (recipe.id, flag, value)
        for variable in recipe.env:
            assert rules.removed_variable(variable) is None, (recipe.id, variable)
        # The images already export these; a recipe repeating them only adds noise.
        assert "HIP_FORCE_DEV_KERNARG" not in recipe.env and "SAFETENSORS_FAST_GPU" not in recipe.env, recipe.id


def test_quantising_on_the_fly_says_how() -> None:
    bf16_checkpoints = {"meta-llama/Llama-3.3-70B-Instruct", "meta-llama/Llama-3.1-70B-Instruct"}
    for recipe in all_recipes():
        if recipe.model in bf16_checkpoints and recipe.precision == "fp8":
            assert recipe.vllm_args.get("quantization") in ("fp8", "ptpc_fp8"), recipe.id


def test_mla_models_with_aiter_use_block_size_one() -> None:
    mla = ("deepseek-ai/DeepSeek-", "moonshotai/Kimi-K2")
    for recipe in all_recipes():
        distilled = "Distill" in recipe.model
        if recipe.model.startswith(mla) and not distilled and recipe.env.get("VLLM_ROCM_USE_AITER") == "1":
            assert recipe.vllm_args.get("block-size") == 1, recipe.id


def test_every_recipe_names_its_public_source() -> None:
    for recipe in all_recipes():
        assert recipe.provenance.strip(), recipe.id
        assert "https://" in recipe.provenance, recipe.id
        assert recipe.notes.strip(), recipe.id
        assert recipe.status in ("validated", "community"), recipe.id


def test_catalogue_size_stays_curated() -> None:
    assert 60 <= len(all_recipes()) <= 110


def test_the_shipped_catalogue_loads_with_the_fit_check() -> None:
    catalogue = load_catalogue_from(CATALOGUE_DIR)
    assert len(catalogue.recipes) == len(all_recipes())
