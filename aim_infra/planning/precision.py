"""Numeric formats: weight precisions, KV-cache dtypes and how many bytes each element takes."""

from __future__ import annotations

from typing import Literal, get_args

#: A weight format the serving engine runs with. `int4` covers AWQ and GPTQ; `mxfp4`/`mxfp6` are OCP microscaling.
Precision = Literal["bf16", "fp16", "fp8", "int8", "int4", "mxfp4", "mxfp6"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

#: What the user may ask for: the checkpoint's own precision (`auto`) or a specific one.
PrecisionWish = Literal["auto", "bf16", "fp16", "fp8", "int8", "int4", "mxfp4", "mxfp6"]
PRECISION_WISHES: tuple[str, ...] = get_args(PrecisionWish)

#: vLLM `--kv-cache-dtype` values we plan with (`auto` = the model's activation dtype, bf16/fp16).
KvCacheDtype = Literal["auto", "fp8"]
KV_CACHE_DTYPES: tuple[str, ...] = get_args(KvCacheDtype)

#: Bytes per element including the scales a format carries (MX formats: one e8m0 scale per 32 elements;
#: int4: one fp16 scale and zero point per group of 128).
BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5 + 4.0 / 128,
    "mxfp4": 0.5 + 1.0 / 32,
    "mxfp6": 0.75 + 1.0 / 32,
}

#: Formats vLLM can produce from a bf16/fp16 checkpoint at load time, and the `--quantization` values that do it.
ON_THE_FLY: dict[str, tuple[str, ...]] = {"fp8": ("fp8", "ptpc_fp8")}


def kv_element_bytes(kv_cache_dtype: str, activation_precision: str = "bf16") -> float:
    """Bytes of one KV-cache element: fp8 when asked for, otherwise the activation dtype (bf16/fp16)."""
    if kv_cache_dtype == "fp8":
        return 1.0
    return BYTES_PER_ELEMENT["fp16" if activation_precision == "fp16" else "bf16"]
