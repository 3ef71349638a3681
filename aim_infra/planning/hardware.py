"""The AMD Instinct hardware catalogue: per-device memory, bandwidth, compute and supported formats, from YAML."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aim_infra.common.errors import AimError
from aim_infra.planning.paths import GPUS_FILE
from aim_infra.planning.precision import KvCacheDtype, Precision
from aim_infra.planning.yamlio import load_model

#: Every quantisation method is accepted for a precision whose method list is this.
ANY_METHOD = "*"


class GpuSpec(BaseModel):
    """One AMD Instinct model as Kubernetes sees it; numbers are per *visible device* (an MI250 GCD, not a package)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^MI\d{3}[A-Z]*$", description="Short product name, e.g. MI300X.")
    aliases: list[str] = Field(default_factory=list, description="Other names users type (case-insensitive).")
    family: Literal["CDNA2", "CDNA3", "CDNA4"]
    arch: Literal["gfx90a", "gfx942", "gfx950"]
    memory_gib: float = Field(gt=0, description="HBM per visible device in GiB.")
    bandwidth_tbps: float = Field(gt=0, description="Peak HBM bandwidth per visible device in TB/s.")
    peak_tflops: dict[Precision, float] = Field(description="Dense peak matrix TFLOPS per device, by input format.")
    fp8_format: Literal["none", "fnuz", "ocp"]
    weight_precisions: dict[Precision, list[str]] = Field(
        description="Weight formats vLLM runs on this arch, each with the checkpoint quantisation methods it accepts "
        f"('{ANY_METHOD}' = any)."
    )
    kv_cache_dtypes: list[KvCacheDtype]
    aiter: bool = Field(description="AITER kernels exist for this arch (gfx942/gfx950 only).")
    pci_device_ids: list[str] = Field(min_length=1)
    product_name_patterns: list[str] = Field(min_length=1, description="Regexes matched against product names.")
    devices_per_package: int = Field(default=1, ge=1)
    gpus_per_node: int = Field(default=8, ge=1, description="Visible devices on a usual node of this type.")
    xgmi_gbps: float = Field(
        gt=0, description="Peer-to-peer bandwidth per device used for tensor-parallel traffic, GB/s."
    )
    provenance: str = Field(min_length=1)
    notes: str = ""

    @field_validator("pci_device_ids")
    @classmethod
    def _lowercase_hex(cls, ids: list[str]) -> list[str]:
        cleaned = [i.lower().removeprefix("0x") for i in ids]
        for device_id in cleaned:
            if not re.fullmatch(r"[0-9a-f]{4}", device_id):
                raise ValueError(f"PCI device id {device_id!r} is not four hex digits")
        return cleaned

    @field_validator("product_name_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"pattern {pattern!r} is not a valid regex: {error}") from None
        return patterns

    @model_validator(mode="after")
    def _consistent(self) -> GpuSpec:
        if ("fp8" in self.weight_precisions) != (self.fp8_format != "none"):
            raise ValueError("fp8 must be in weight_precisions exactly when fp8_format is not 'none'")
        if "fp8" in self.kv_cache_dtypes and self.fp8_format == "none":
            raise ValueError("an fp8 KV cache needs an fp8 format")
        if self.aiter != (self.arch in ("gfx942", "gfx950")):
            raise ValueError("aiter is available exactly on gfx942 and gfx950")
        return self

    def supports_weights(self, precision: str, quant_method: str | None) -> bool:
        """Whether vLLM on this arch can run weights of `precision` produced by `quant_method`."""
        methods = self.weight_precisions.get(precision)  # type: ignore[call-overload]
        if methods is None:
            return False
        return ANY_METHOD in methods or quant_method is None or quant_method in methods

    def tflops(self, precision: str) -> float:
        """Peak dense TFLOPS for matmuls in `precision`, falling back to bf16 when the format has no faster path."""
        return self.peak_tflops.get(precision, self.peak_tflops["bf16"])  # type: ignore[call-overload]

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * 2**30

    def matches_name(self, text: str) -> bool:
        wanted = _normalise(text)
        return wanted in {_normalise(self.name), *(_normalise(a) for a in self.aliases)}

    def matches_product(self, product_name: str) -> bool:
        return any(re.search(p, product_name, flags=re.IGNORECASE) for p in self.product_name_patterns)

    def partitioned(self, memory_gib: float) -> GpuSpec:
        """This GPU split into partitions of `memory_gib` each (e.g. MI300X CPX): memory, bandwidth, compute scale."""
        factor = memory_gib / self.memory_gib
        return self.model_copy(
            update={
                "memory_gib": memory_gib,
                "bandwidth_tbps": self.bandwidth_tbps * factor,
                "peak_tflops": {k: v * factor for k, v in self.peak_tflops.items()},
                "notes": f"{self.name} partition of {memory_gib:g} GiB",
            }
        )


class GpuCatalogue(BaseModel):
    """All known GPUs, in the order the YAML lists them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: list[GpuSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> GpuCatalogue:
        seen: set[str] = set()
        for gpu in self.gpus:
            for label in (gpu.name, *gpu.aliases):
                key = _normalise(label)
                if key in seen:
                    raise ValueError(f"GPU name or alias {label!r} is listed twice")
                seen.add(key)
        return self

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.gpus]

    def get(self, name: str) -> GpuSpec:
        """The GPU called `name` (or an alias); one clear line listing the known ones otherwise."""
        for gpu in self.gpus:
            if gpu.matches_name(name):
                return gpu
        raise AimError(f"unknown GPU {name!r}: expected one of {', '.join(self.names)}")

    def by_device_id(self, device_id: str) -> GpuSpec | None:
        wanted = device_id.strip().lower().removeprefix("0x")
        return next((g for g in self.gpus if wanted in g.pci_device_ids), None)

    def by_product_name(self, product_name: str) -> GpuSpec | None:
        # Longest matching name first so "MI300X" is not taken for an "MI300X..." variant listed later.
        matches = [g for g in self.gpus if g.matches_product(product_name)]
        return max(matches, key=lambda g: len(g.name)) if matches else None


def _normalise(text: str) -> str:
    text = re.sub(r"[^a-z0-9]", "", text.lower())
    return text.removeprefix("amdinstinct").removeprefix("amd").removeprefix("instinct")


@cache
def load_gpus(path: Path = GPUS_FILE) -> GpuCatalogue:
    """Load and validate the GPU catalogue (cached: the file is read once per process)."""
    return load_model(path, GpuCatalogue)
