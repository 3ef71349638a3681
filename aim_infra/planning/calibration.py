"""Calibration of the performance model: replay measurements through it, fit its constants, report the error."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from aim_infra.common.errors import AimError
from aim_infra.planning.fit import Layout, fit_on
from aim_infra.planning.hardware import load_gpus
from aim_infra.planning.measurements import MEASUREMENTS_DIR, Measurement, load_measurements
from aim_infra.planning.model_profile import load_model_catalogue
from aim_infra.planning.performance import ReplicaModel, replica_model, run_load, saturation_throughput
from aim_infra.planning.performance_data import (
    FITTED,
    PERFORMANCE_FILE,
    Band,
    Bands,
    Calibration,
    FamilyConstants,
    PerformanceData,
    load_performance_data,
)
from aim_infra.planning.vllm_rules import load_vllm_rules
from aim_infra.planning.workload import Workload
from aim_infra.planning.yamlio import load_model

PRIORS_FILE = MEASUREMENTS_DIR.parent / "priors.yaml"
THROUGHPUT_METRICS = ("output_throughput",)


class Prior(BaseModel):
    """Where a constant starts and how far (in log terms) the fit may pull it without penalty growing fast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float = Field(gt=0)
    sigma: float = Field(gt=0, le=10, description="Standard deviation of ln(constant / value).")
    why: str = Field(min_length=1)


class FamilyFit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    architectures: list[str] = Field(min_length=1)
    constants: dict[str, Prior] = Field(min_length=1, description="Constants refitted for this model family alone.")
    why: str = Field(min_length=1)


class Priors(BaseModel):
    """The fit's starting point and regularisation: physically plausible constants, each with its uncertainty."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fitted_family: str = Field(description="GPU family the training measurements cover.")
    constants: dict[str, Prior]
    model_families: dict[str, FamilyFit] = Field(default_factory=dict)
    band_quantiles: tuple[float, float] = Field(description="Quantiles of measured ÷ estimated the range spans.")
    uncalibrated_widening: float = Field(ge=1)
    prior_weight: float = Field(gt=0, description="Weight of the priors against one measurement's log error.")


def load_priors(path: Path = PRIORS_FILE) -> Priors:
    return load_model(path, Priors)


@dataclass(frozen=True, slots=True)
class PointResult:
    """One measurement replayed: measured ÷ estimated (1.0 = exact; above 1 the model is pessimistic)."""

    measurement: Measurement
    estimated: float
    problem: str | None = None

    @property
    def ratio(self) -> float:
        return self.measurement.value_in_base_unit / self.estimated if self.estimated > 0 else math.inf


def _layout(m: Measurement, device_gib: float) -> Layout:
    defaults = load_vllm_rules().engine_defaults
    large = device_gib >= defaults.large_device_gib
    default_seqs = defaults.large_max_num_seqs if large else defaults.small_max_num_seqs
    default_budget = defaults.large_max_num_batched_tokens if large else defaults.small_max_num_batched_tokens
    seqs = m.max_num_seqs or (m.concurrency if m.mode in ("offline", "static_batch") and m.concurrency else None)
    return Layout(
        tensor_parallel_size=m.tp,
        pipeline_parallel_size=m.pp,
        precision=m.precision,
        kv_cache_dtype=m.kv_cache_dtype,
        max_model_len=m.isl + m.osl,
        max_num_seqs=seqs or default_seqs,
        max_num_batched_tokens=m.max_num_batched_tokens or default_budget,
    )


def prepare(m: Measurement, data: PerformanceData) -> tuple[ReplicaModel, Workload]:
    """The replica model and workload that replay `m`, or AimError when it cannot be replayed."""
    profile = load_model_catalogue().get(m.profile)
    gpu = load_gpus().get(m.gpu)
    layout = _layout(m, gpu.memory_gib)
    fit = fit_on(profile, gpu, layout)
    if not fit.fits:
        raise AimError(f"measurement {m.id}: layout does not fit: {fit.reason}")
    if m.mode == "online_rate":
        workload = Workload(input_tokens=m.isl, output_tokens=m.osl, requests_per_second=m.request_rate)
    else:
        workload = Workload(input_tokens=m.isl, output_tokens=m.osl, concurrency=m.concurrency or 1)
    lockstep = m.mode in ("offline", "static_batch") and m.concurrency is not None
    return replica_model(profile, gpu, layout, fit, workload, data, lockstep=lockstep), workload


def replay(m: Measurement, data: PerformanceData) -> float:
    """What the model estimates for `m`, in the measurement's base unit (tok/s or ms)."""
    model, workload = prepare(m, data)
    if m.mode == "offline" and m.concurrency is None:
        # A harness that sizes the batch itself (MLPerf Offline): the steady state with the running set full.
        return saturation_throughput(model, workload) * m.replicas
    requests = None
    if m.mode in ("offline", "static_batch"):
        requests = m.num_prompts or m.concurrency
        workload = workload.model_copy(update={"concurrency": requests})
    elif m.num_prompts:
        requests = m.num_prompts
    elif m.mode == "online_rate":
        # Server-style runs last minutes (MLPerf Server: at least 10): a short replay would hide a growing queue.
        requests = min(math.ceil(600 * (m.request_rate or 0)), 20_000)
    stats = run_load(model, workload, m.replicas, requests=requests, steady_state=False)
    if m.metric == "output_throughput":
        return stats.output_tokens_per_s
    if m.metric == "e2e_latency":
        return max(stats.e2e_s) * 1e3 if m.mode == "static_batch" else statistics.fmean(stats.e2e_s) * 1e3
    series = stats.ttft_ms if m.metric.startswith("ttft") else stats.tpot_ms
    if m.metric.endswith("mean"):
        return statistics.fmean(series)
    return _quantile(series, 0.5 if m.metric.endswith("p50") else 0.95)


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def evaluate(measurements: Sequence[Measurement], data: PerformanceData) -> list[PointResult]:
    results = []
    for m in measurements:
        try:
            results.append(PointResult(m, replay(m, data)))
        except AimError as error:
            results.append(PointResult(m, math.nan, problem=str(error)))
    return results


@dataclass(frozen=True, slots=True)
class ErrorSummary:
    points: int
    within_25: int
    median_ratio: float
    worst_ratio: float  # the ratio farthest from 1 in log terms
    over_2x: int

    def line(self, label: str) -> str:
        if not self.points:
            return f"{label}: no points"
        share = 100 * self.within_25 / self.points
        return (
            f"{label}: {self.points} points, {self.within_25} within ±25 % ({share:.0f} %), median ratio "
            f"{self.median_ratio:.2f}, worst {self.worst_ratio:.2f}, {self.over_2x} off by more than 2×"
        )


def summarise(results: Sequence[PointResult]) -> ErrorSummary:
    ratios = [r.ratio for r in results if r.problem is None and math.isfinite(r.ratio)]
    if not ratios:
        return ErrorSummary(0, 0, math.nan, math.nan, 0)
    worst = max(ratios, key=lambda x: abs(math.log(x)))
    return ErrorSummary(
        points=len(ratios),
        within_25=sum(0.75 <= x <= 1.25 for x in ratios),
        median_ratio=statistics.median(ratios),
        worst_ratio=worst,
        over_2x=sum(x > 2 or x < 0.5 for x in ratios),
    )


# ------------------------------------------------------------------------------------------------------ fitting


def _with(data: PerformanceData, family: str, base: dict[str, float], overrides: dict[str, dict[str, float]]) -> Any:
    families = dict(data.gpu_families)
    current = families[family]  # type: ignore[index]
    constants = current.constants.model_copy(update=base)
    families[family] = current.model_copy(update={"constants": constants})  # type: ignore[index]
    model_families = dict(data.model_families)
    for name, values in overrides.items():
        existing = model_families[name]
        model_families[name] = existing.model_copy(update={"constants": dict(values)})
    return data.model_copy(update={"gpu_families": families, "model_families": model_families})


# Long: the objective closes over the packing of constants (names, bounds, overrides); split, those six values would
# travel through every helper.
def fit_constants(
    train: Sequence[Measurement],
    priors: Priors,
    data: PerformanceData,
    progress: Callable[[str], None] | None = None,
) -> PerformanceData:
    """Least squares on ln(estimated / measured) over the training points plus the priors' penalties; returns the
    data with the fitted family's constants (and the model-family overrides) replaced and bands recomputed."""
    try:
        from scipy.optimize import least_squares
    except ImportError:  # pragma: no cover - scipy is in requirements.txt
        raise AimError("calibrate --fit needs scipy: pip install -r requirements.txt") from None

    names: list[tuple[str | None, str]] = [(None, n) for n in FITTED if n in priors.constants]
    for family_name, family in priors.model_families.items():
        names += [(family_name, n) for n in family.constants]
    prior_values = [
        (priors.constants[n] if fam is None else priors.model_families[fam].constants[n]) for fam, n in names
    ]
    start = [math.log(p.value) for p in prior_values]
    # Efficiencies are shares of a peak (≤ 1); every other constant is a time, bounded only by sanity.
    lower = [math.log(1e-4)] * len(names)
    upper = [0.0 if n.endswith("efficiency") else math.log(1e5) for _, n in names]
    overrides_base = {
        name: dict(data.model_families[name].constants) if name in data.model_families else {}
        for name in priors.model_families
    }
    data = _ensure_families(data, priors)

    def unpack(x: Sequence[float]) -> PerformanceData:
        base: dict[str, float] = {}
        overrides = {name: dict(values) for name, values in overrides_base.items()}
        for (fam, n), value in zip(names, x, strict=True):
            if fam is None:
                base[n] = math.exp(value)
            else:
                overrides[fam][n] = math.exp(value)
        return _with(data, priors.fitted_family, base, overrides)

    calls = 0

    def residuals(x: Sequence[float]) -> list[float]:
        nonlocal calls
        calls += 1
        candidate = unpack(x)
        out = []
        for m in train:
            try:
                estimated = replay(m, candidate)
            except AimError:
                estimated = math.nan
            out.append(math.log(estimated / m.value_in_base_unit) if estimated > 0 else 5.0)
        weight = math.sqrt(priors.prior_weight)
        out += [weight * (v - math.log(p.value)) / p.sigma for v, p in zip(x, prior_values, strict=True)]
        if progress and calls % 25 == 0:
            progress(f"  {calls} evaluations, cost {sum(r * r for r in out) / 2:.4f}")
        return out

    x0 = [min(max(s, lo + 1e-6), hi - 1e-6) for s, lo, hi in zip(start, lower, upper, strict=True)]
    solution = least_squares(residuals, x0, bounds=(lower, upper), x_scale=1.0, diff_step=1e-3, max_nfev=400)
    fitted = unpack(solution.x)
    return fitted


def _ensure_families(data: PerformanceData, priors: Priors) -> PerformanceData:
    """Add the model-family overrides the priors fit but the data does not list yet."""
    from aim_infra.planning.performance_data import ModelFamilyOverride

    families = dict(data.model_families)
    for name, family in priors.model_families.items():
        if name not in families:
            families[name] = ModelFamilyOverride(
                architectures=family.architectures,
                constants={k: p.value for k, p in family.constants.items()},
                why=family.why,
            )
    return data.model_copy(update={"model_families": families})


def bands_from(results: Sequence[PointResult], priors: Priors) -> Bands:
    """The printed range: quantiles of measured ÷ estimated per kind of figure, never narrower than exact."""
    low_q, high_q = priors.band_quantiles

    def band(kind: Callable[[Measurement], bool]) -> Band:
        ratios = [r.ratio for r in results if r.problem is None and kind(r.measurement)]
        if not ratios:
            return Band(low=0.5, high=2.0, points=0)
        return Band(
            low=round(min(1.0, _quantile(ratios, low_q)), 3),
            high=round(max(1.0, _quantile(ratios, high_q)), 3),
            points=len(ratios),
        )

    return Bands(
        throughput=band(lambda m: m.metric in THROUGHPUT_METRICS),
        latency=band(lambda m: m.metric not in THROUGHPUT_METRICS),
        uncalibrated_widening=priors.uncalibrated_widening,
    )


def finalise(
    fitted: PerformanceData, train_results: Sequence[PointResult], priors: Priors, version: str, vllm_versions: str
) -> PerformanceData:
    """Mark the fitted family calibrated, copy its constants to the families without data, and set the bands."""
    family = priors.fitted_family
    constants = fitted.gpu_families[family].constants  # type: ignore[index]
    families: dict[str, FamilyConstants] = {}
    for name, current in fitted.gpu_families.items():
        if name == family:
            families[name] = FamilyConstants(calibrated=True, constants=constants, note=current.note)
        else:
            families[name] = FamilyConstants(
                calibrated=False, borrowed_from=family, constants=constants, note=current.note
            )
    points = len([r for r in train_results if r.problem is None])
    return fitted.model_copy(
        update={
            "gpu_families": families,
            "bands": bands_from(train_results, priors),
            "calibration": Calibration(
                version=version,
                vllm_versions=vllm_versions,
                fitted_on=f"{points} measurements (split train) under calibration/measurements/",
                method="least squares on ln(estimated / measured) with log-normal priors (calibration/priors.yaml)",
            ),
        }
    )


HEADER = """\
# The performance model's constants, validated by aim_infra.planning.performance_data.PerformanceData.
# GENERATED by `python -m aim_infra calibrate --fit` from calibration/priors.yaml and the measurements under
# calibration/measurements/ (split: train). Edit the priors or add measurements, then refit; do not hand-edit numbers.
# benchmarks/performance_model.md reports the error of these constants on every measurement.
"""


def write_performance_data(data: PerformanceData, path: Path = PERFORMANCE_FILE) -> None:
    payload = data.model_dump(mode="json")
    for family in payload["gpu_families"].values():
        family["constants"] = {k: _sig(v) for k, v in family["constants"].items()}
    for family in payload["model_families"].values():
        family["constants"] = {k: _sig(v) for k, v in family["constants"].items()}
    text = HEADER + yaml.safe_dump(payload, sort_keys=False, allow_unicode=True, width=118)
    path.write_text(text, encoding="utf-8")
    load_performance_data.cache_clear()


def _sig(value: float) -> float:
    return float(f"{value:.4g}")


def calibration_version(train: Sequence[Measurement], priors: Priors) -> str:
    """A version that changes exactly when the fit's inputs change: the date-free hash of priors and training data."""
    import hashlib
    import json

    payload = json.dumps(
        {"priors": priors.model_dump(mode="json"), "train": [m.model_dump(mode="json") for m in train]},
        sort_keys=True,
    )
    return "cal-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def engine_versions(train: Sequence[Measurement]) -> str:
    seen: list[str] = []
    for m in train:
        if m.engine_version not in seen:
            seen.append(m.engine_version)
    return "; ".join(seen)


def refit(
    directory: Path = MEASUREMENTS_DIR,
    priors_path: Path = PRIORS_FILE,
    out: Path = PERFORMANCE_FILE,
    progress: Callable[[str], None] | None = None,
) -> PerformanceData:
    """Fit on every `train` and `local` measurement, write the constants to `out`, return them."""
    measurements = load_measurements(directory)
    train = [m for m in measurements if m.split in ("train", "local")]
    if not train:
        raise AimError(f"{directory}: no measurements with split train or local to fit on")
    priors = load_priors(priors_path)
    data = load_performance_data(out)
    fitted = fit_constants(train, priors, data, progress)
    results = evaluate(train, fitted)
    final = finalise(fitted, results, priors, calibration_version(train, priors), engine_versions(train))
    write_performance_data(final, out)
    return final


def report(directory: Path = MEASUREMENTS_DIR, data: PerformanceData | None = None) -> str:
    """The error report, as Markdown: summary per split, then measured vs estimated for every point."""
    data = data or load_performance_data()
    measurements = load_measurements(directory)
    splits = {
        "train (fitted on)": [m for m in measurements if m.split == "train"],
        "holdout (never fitted on)": [m for m in measurements if m.split == "holdout"],
        "local (your aim:benchmark results, fitted on)": [m for m in measurements if m.split == "local"],
    }
    results = {name: evaluate(points, data) for name, points in splits.items() if points}
    cal = data.calibration
    lines = [
        "# Performance model: measured vs estimated",
        "",
        f"Calibration `{cal.version}`, {cal.method}; fitted on {cal.fitted_on}. Ratio = measured ÷ estimated "
        "(above 1: the model is pessimistic). Generated by `python benchmarks/performance_model.py`.",
        "",
        "| split | points | within ±25 % | median ratio | worst ratio | off by > 2× |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        s = summarise(rows)
        share = f"{s.within_25} ({100 * s.within_25 / s.points:.0f} %)" if s.points else "0"
        lines.append(f"| {name} | {s.points} | {share} | {s.median_ratio:.2f} | {s.worst_ratio:.2f} | {s.over_2x} |")
    every = [r for rows in results.values() for r in rows]
    total = summarise(every)
    lines.append(
        f"| all | {total.points} | {total.within_25} ({100 * total.within_25 / max(total.points, 1):.0f} %) | "
        f"{total.median_ratio:.2f} | {total.worst_ratio:.2f} | {total.over_2x} |"
    )
    bands = data.bands
    lines += [
        "",
        f"Printed ranges: throughput × [{bands.throughput.low}, {bands.throughput.high}] "
        f"({bands.throughput.points} points), latencies × [{bands.latency.low}, {bands.latency.high}] "
        f"({bands.latency.points} points): the 10th–90th percentile of the training ratios; GPU families without "
        f"training data widen both ×{bands.uncalibrated_widening}.",
    ]
    for name, rows in results.items():
        lines += ["", f"## {name}", "", *_points_table(rows)]
    return "\n".join(lines) + "\n"


def _points_table(rows: Sequence[PointResult]) -> list[str]:
    """One split's points: measured beside estimated, each linked to its source."""
    lines = [
        "| point | GPUs × TP | in / out | load | metric | measured | estimated | ratio | engine |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r.measurement
        load = (
            f"{m.request_rate:g} req/s"
            if m.mode == "online_rate"
            else f"{m.mode} c{m.concurrency}"
            if m.concurrency
            else f"{m.mode} (saturated)"
        )
        unit = "tok/s" if m.metric == "output_throughput" else "ms"
        estimated = "—" if r.problem else f"{r.estimated:,.1f}"
        ratio = f"not replayed: {r.problem}" if r.problem else f"{r.ratio:.2f}"
        lines.append(
            f"| [{m.id}]({m.source}) | {m.gpu_count} × {m.gpu} TP{m.tp} | {m.isl} / {m.osl} | {load} | "
            f"{m.metric} ({unit}) | {m.value_in_base_unit:,.1f} | {estimated} | {ratio} | {m.engine_version} |"
        )
    return lines
