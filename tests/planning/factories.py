"""Small builders for GPU specs, model profiles and recipes, so engine tests state only what they vary."""

from __future__ import annotations

from typing import Any

from aim_infra.planning.hardware import GpuSpec
from aim_infra.planning.model_profile import ModelProfile
from aim_infra.planning.recipe import Recipe

GIB = 2**30


def gpu(**overrides: Any) -> GpuSpec:
    """An MI300X-like device unless told otherwise."""
    base: dict[str, Any] = {
        "name": "MI300X",
        "family": "CDNA3",
        "arch": "gfx942",
        "memory_gib": 192,
        "bandwidth_tbps": 5.3,
        "peak_tflops": {"bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9},
        "fp8_format": "fnuz",
        "weight_precisions": {"bf16": ["*"], "fp16": ["*"], "fp8": ["*"], "int4": ["awq", "gptq"], "mxfp4": ["mxfp4"]},
        "kv_cache_dtypes": ["auto", "fp8"],
        "aiter": True,
        "pci_device_ids": ["74a1"],
        "product_name_patterns": ["MI300X(?!\\w)"],
        "xgmi_gbps": 64,
        "provenance": "test",
    }
    base.update(overrides)
    return GpuSpec.model_validate(base)


def gfx90a(**overrides: Any) -> GpuSpec:
    return gpu(
        name="MI250",
        family="CDNA2",
        arch="gfx90a",
        memory_gib=64,
        bandwidth_tbps=1.6,
        peak_tflops={"bf16": 181.0, "fp16": 181.0},
        fp8_format="none",
        weight_precisions={"bf16": ["*"], "fp16": ["*"], "int4": ["awq", "gptq"]},
        kv_cache_dtypes=["auto"],
        aiter=False,
        pci_device_ids=["740c"],
        product_name_patterns=["MI250"],
        **overrides,
    )


def dense(**overrides: Any) -> ModelProfile:
    """A Llama-3.1-8B-shaped dense GQA model in bf16 unless told otherwise."""
    base: dict[str, Any] = {
        "id": "test/dense-8b",
        "architecture": "LlamaForCausalLM",
        "params_total": 8_030_261_248,
        "params_active": 8_030_261_248,
        "checkpoint_precision": "bf16",
        "checkpoint_bytes": 16_060_522_496,
        "num_layers": 32,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "num_attention_heads": 32,
        "num_kv_heads": 8,
        "head_dim": 128,
        "max_context": 131072,
    }
    base.update(overrides)
    return ModelProfile.model_validate(base)


def recipe(**overrides: Any) -> Recipe:
    base: dict[str, Any] = {
        "id": "test-recipe",
        "model": "test/dense-8b",
        "gpu": "MI300X",
        "gpu_count": 1,
        "tensor_parallel_size": 1,
        "precision": "bf16",
        "max_model_len": 8192,
        "metric": "throughput",
        "status": "community",
        "provenance": "test",
    }
    base.update(overrides)
    return Recipe.model_validate(base)
