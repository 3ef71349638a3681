"""The performance model's calibrated constants (per GPU family, per model family) and error bands, from YAML."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aim_infra.planning.paths import DATA_DIR
from aim_infra.planning.precision import Precision
from aim_infra.planning.yamlio import load_model

PERFORMANCE_FILE = DATA_DIR / "performance.yaml"

#: The constants the fit may change, in the order the fitting script uses. Every one multiplies a physical cost.
FITTED = (
    "hbm_efficiency",
    "gemm_efficiency",
    "moe_gemm_efficiency",
    "attention_efficiency",
    "step_fixed_ms",
    "layer_us",
    "moe_layer_us",
    "allreduce_us",
    "xgmi_efficiency",
    "sequence_us",
)


class StepConstants(BaseModel):
    """What one engine step costs beyond the ideal roofline; see docs/recipes.md "How the estimate works"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hbm_efficiency: float = Field(gt=0, le=1, description="Share of peak HBM bandwidth weight and KV reads reach.")
    gemm_efficiency: float = Field(gt=0, le=1, description="Share of peak matrix FLOPS dense linear layers reach.")
    moe_gemm_efficiency: float = Field(
        gt=0, le=1, description="Fused-MoE expert GEMMs relative to dense GEMMs (grouped, unevenly loaded)."
    )
    attention_efficiency: float = Field(gt=0, le=1, description="Share of bf16 peak the attention kernels reach.")
    step_fixed_ms: float = Field(ge=0, le=1000, description="Scheduler, input preparation and launch cost per step.")
    layer_us: float = Field(ge=0, le=10_000, description="Kernel-launch and synchronisation cost per layer per step.")
    moe_layer_us: float = Field(ge=0, le=100_000, description="Routing, sort and fused-MoE launch per MoE layer.")
    allreduce_us: float = Field(ge=0, le=10_000, description="Latency of one tensor-parallel all-reduce.")
    xgmi_efficiency: float = Field(
        gt=0, le=1, description="Share of peak XGMI bandwidth an all-reduce's data moves at (ring/custom all-reduce)."
    )
    sequence_us: float = Field(
        ge=0, le=10_000, description="Per running sequence per step: sampling, logits and bookkeeping."
    )

    def merged(self, override: dict[str, float]) -> StepConstants:
        return self.model_copy(update=override)


class ComputeRule(BaseModel):
    """Which format the matrix units compute in for a stored weight format (W4A16 computes in bf16)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: Precision
    quant_method: str | None = Field(default=None, description="Only checkpoints with this quant_method; None = any.")
    arch: str | None = Field(default=None, description="Only this gfx arch; None = any.")
    compute: Precision
    why: str = Field(min_length=1)


class Band(BaseModel):
    """Measured ÷ estimated on the calibration points: the range printed around every estimate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float = Field(gt=0, le=1, description="The estimate × low is the range's lower end.")
    high: float = Field(ge=1, description="The estimate × high is the range's upper end.")
    points: int = Field(ge=0, description="Calibration points behind this band.")


class Bands(BaseModel):
    """One band per kind of figure; an uncalibrated GPU family widens each by `uncalibrated_widening`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    throughput: Band
    latency: Band = Field(description="TTFT, TPOT and end-to-end times.")
    uncalibrated_widening: float = Field(
        ge=1, description="Extra factor on both ends for a GPU family no measurement covers (an assumption)."
    )


class FamilyConstants(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    calibrated: bool = Field(description="Measurements on this family were fitted; false = borrowed constants.")
    borrowed_from: str | None = None
    constants: StepConstants
    note: str = ""


class ModelFamilyOverride(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    architectures: list[str] = Field(min_length=1, description="config.json architectures this applies to.")
    constants: dict[str, float] = Field(description="StepConstants fields replaced for these models.")
    why: str = Field(min_length=1)

    @model_validator(mode="after")
    def _known(self) -> ModelFamilyOverride:
        unknown = set(self.constants) - set(StepConstants.model_fields)
        if unknown:
            raise ValueError(
                f"unknown constants {sorted(unknown)}; expected some of {list(StepConstants.model_fields)}"
            )
        return self


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1, description="Changes whenever the constants are refitted.")
    vllm_versions: str = Field(min_length=1, description="vLLM releases the training measurements ran.")
    fitted_on: str = Field(min_length=1, description="Which measurement files and how many points.")
    method: str = Field(min_length=1)


class PerformanceData(BaseModel):
    """Everything the estimate uses that is not a hardware or model fact."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calibration: Calibration
    gpu_families: dict[Literal["CDNA2", "CDNA3", "CDNA4"], FamilyConstants]
    model_families: dict[str, ModelFamilyOverride] = Field(default_factory=dict)
    compute_precision: list[ComputeRule]
    bands: Bands
    pipeline_hop_us: float = Field(ge=0, description="Hand-off between pipeline stages (uncalibrated assumption).")

    def compute_format(self, weights: str, quant_method: str | None, arch: str) -> str:
        """The format the GEMMs run in for these stored weights on `arch` (first matching rule, else the weights')."""
        for rule in self.compute_precision:
            if rule.weights != weights:
                continue
            if rule.quant_method is not None and rule.quant_method != quant_method:
                continue
            if rule.arch is not None and rule.arch != arch:
                continue
            return rule.compute
        return weights

    def constants_for(self, family: str, architecture: str) -> tuple[StepConstants, FamilyConstants]:
        """The step constants for a GPU family with any model-family override applied."""
        base = self.gpu_families[family]  # type: ignore[index]
        constants = base.constants
        for override in self.model_families.values():
            if architecture in override.architectures:
                constants = constants.merged(override.constants)
        return constants, base


@cache
def load_performance_data(path: Path = PERFORMANCE_FILE) -> PerformanceData:
    return load_model(path, PerformanceData)
