"""The performance estimate of one deployment layout at one workload: throughput, TTFT and TPOT under load, ranged.

Calibrated, not measured: every figure comes with the range the calibration's error supports and the calibration's
version. The model (docs/recipes.md "How the estimate works"): a step-time function (step_cost) driven through a
simulation of vLLM's scheduler (scheduler_sim) at the workload's load, spread evenly over the replicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aim_infra.common.errors import AimError
from aim_infra.planning.fit import GIB, Fit, Layout, kv_bytes_per_sequence
from aim_infra.planning.hardware import GpuSpec
from aim_infra.planning.model_profile import ModelProfile
from aim_infra.planning.performance_data import PerformanceData, load_performance_data
from aim_infra.planning.scheduler_sim import Load, SimulationResult, simulate
from aim_infra.planning.step_cost import StepCost, step_cost
from aim_infra.planning.workload import Workload, benchmark_requests

#: Share of the saturated rate an open loop may offer and still count as sustained: near 100 % queues grow without
#: bound under any variance, so 10 % headroom is kept (an assumption, not a calibrated figure).
SUSTAINABLE_SHARE = 0.9

#: The figures every estimate reports, each with a [low, high] range (the `estimate --json` contract).
RANGED = ("output_tokens_per_s", "ttft_ms", "tpot_ms", "e2e_latency_s", "ttft_p95_ms", "tpot_p95_ms")


@dataclass(frozen=True, slots=True, kw_only=True)
class PerformanceEstimate:
    """Estimated, not measured: the layout at the workload, all replicas together."""

    workload: Workload
    gpu: str
    gpu_count: int
    replicas: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    precision: str
    compute_precision: str
    kv_cache_dtype: str
    max_num_seqs: int
    max_num_batched_tokens: int
    output_tokens_per_s: float
    requests_per_s: float
    ttft_ms: float
    tpot_ms: float
    e2e_latency_s: float
    ttft_p50_ms: float
    tpot_p50_ms: float
    ttft_p95_ms: float
    tpot_p95_ms: float
    saturation_output_tokens_per_s: float  # all replicas, at the running cap
    max_running_per_replica: int
    kv_capacity_sequences: int  # per replica, at input + output tokens
    step_base_ms: float  # decode step ≈ base + per_sequence × running, at the workload's mean context
    step_per_sequence_ms: float
    weights_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    ranges: dict[str, tuple[float, float]]
    calibration: dict[str, Any]
    cost_per_million_output_tokens: float | None
    slo_violations: tuple[str, ...]

    @property
    def meets_slo(self) -> bool:
        return not self.slo_violations

    def as_json(self) -> dict[str, Any]:
        """The machine-readable estimate (`estimate --json`, `select --json`'s `estimate`, the stack output)."""
        return {
            "kind": "estimate",
            "output_tokens_per_s": self.output_tokens_per_s,
            "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms,
            "e2e_latency_s": self.e2e_latency_s,
            "ttft_p95_ms": self.ttft_p95_ms,
            "tpot_p95_ms": self.tpot_p95_ms,
            "ttft_p50_ms": self.ttft_p50_ms,
            "tpot_p50_ms": self.tpot_p50_ms,
            "requests_per_s": self.requests_per_s,
            "range": {key: [low, high] for key, (low, high) in self.ranges.items()},
            "calibration": dict(self.calibration),
            "workload": self.workload.as_json(),
            "layout": {
                "gpu": self.gpu,
                "gpu_count": self.gpu_count,
                "replicas": self.replicas,
                "tensor_parallel_size": self.tensor_parallel_size,
                "pipeline_parallel_size": self.pipeline_parallel_size,
                "precision": self.precision,
                "compute_precision": self.compute_precision,
                "kv_cache_dtype": self.kv_cache_dtype,
                "max_num_seqs": self.max_num_seqs,
                "max_num_batched_tokens": self.max_num_batched_tokens,
            },
            "saturation_output_tokens_per_s": self.saturation_output_tokens_per_s,
            "per_replica": {
                "max_running_sequences": self.max_running_per_replica,
                "kv_capacity_sequences": self.kv_capacity_sequences,
                "step_base_ms": self.step_base_ms,
                "step_per_sequence_ms": self.step_per_sequence_ms,
            },
            "weights_gib_per_gpu": self.weights_gib_per_gpu,
            "kv_cache_gib_per_gpu": self.kv_cache_gib_per_gpu,
            "cost_per_million_output_tokens": self.cost_per_million_output_tokens,
            "meets_slo": self.meets_slo,
            "slo_violations": list(self.slo_violations),
        }


@dataclass(frozen=True, slots=True)
class ReplicaModel:
    """One replica's step function and limits at a workload: what the simulation needs."""

    cost: StepCost
    max_running: int
    token_budget: int
    kv_capacity: int
    virtual_engines: int  # pipeline stages keep this many batches in flight


def replica_model(
    profile: ModelProfile,
    gpu: GpuSpec,
    layout: Layout,
    fit: Fit,
    workload: Workload,
    data: PerformanceData,
    lockstep: bool = False,
) -> ReplicaModel:
    """The replica's step cost at the workload's mean context and its running cap (max-num-seqs, token budget and
    the KV cache), or one AimError line when the workload cannot run. `lockstep`: every request starts together
    (an offline batch), so all reach full length at once and the KV cache must hold them at input + output."""
    length = workload.input_tokens + workload.output_tokens
    if length > layout.max_model_len:
        raise AimError(
            f"workload {workload.input_tokens} + {workload.output_tokens} tokens per request exceeds max_model_len "
            f"{layout.max_model_len}"
        )
    # vLLM allocates KV blocks as sequences grow, so a running set of staggered requests holds prompt + half the
    # output on average; one full-length request must still fit.
    held = length if lockstep else workload.input_tokens + (workload.output_tokens + 1) // 2
    occupancy = kv_bytes_per_sequence(profile, layout, held)
    budget = fit.kv_cache_gib_per_gpu * GIB
    full = kv_bytes_per_sequence(profile, layout, length)
    capacity = int(budget // occupancy) if occupancy > 0 else layout.max_num_seqs
    if budget < full or capacity < 1:
        raise AimError(f"the KV cache ({fit.kv_cache_gib_per_gpu:.1f} GiB per GPU) holds no request of {length} tokens")
    constants, _ = data.constants_for(gpu.family, profile.architecture)
    mean_context = workload.input_tokens + max(workload.output_tokens // 2, 1)
    cost = step_cost(profile, gpu, layout, constants, data, mean_context)
    cap = max(1, min(layout.max_num_seqs, layout.max_num_batched_tokens, capacity))
    return ReplicaModel(
        cost=cost,
        max_running=cap,
        token_budget=layout.max_num_batched_tokens,
        kv_capacity=capacity,
        virtual_engines=layout.pipeline_parallel_size,
    )


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class LoadStats:
    output_tokens_per_s: float
    requests_per_s: float
    ttft_ms: list[float]
    tpot_ms: list[float]
    e2e_s: list[float]


def run_load(
    model: ReplicaModel,
    workload: Workload,
    replicas: int,
    requests: int | None = None,
    steady_state: bool = True,
) -> LoadStats:
    """Spread the workload evenly over `replicas` (× pipeline virtual engines), simulate each distinct share, and
    pool the per-request times. Throughput is the engines' sum. `steady_state`: a closed loop starts with all its
    clients sending at once, a burst real traffic does not have, so their first requests are left out of the
    latency statistics (a published benchmark is replayed with them: it reported them)."""
    engines = replicas * model.virtual_engines
    total = requests if requests is not None else benchmark_requests(workload)
    cap = max(1, model.max_running // model.virtual_engines)
    shares: list[tuple[Load, int]] = []
    if workload.concurrency is not None:
        base, extra = divmod(workload.concurrency, engines)
        for clients, count in ((base + 1, extra), (base, engines - extra)):
            if count and clients:
                per_engine = max(1, round(total * clients / workload.concurrency))
                stagger = _request_seconds(model, workload, min(clients, cap)) if steady_state else 0.0
                load = Load(workload.input_tokens, workload.output_tokens, per_engine, clients=clients, stagger=stagger)
                shares.append((load, count))
    else:
        rate = float(workload.requests_per_second or 0) / engines
        per_engine = max(1, math.ceil(total / engines))
        shares.append((Load(workload.input_tokens, workload.output_tokens, per_engine, rate=rate), engines))
    throughput = 0.0
    rate_done = 0.0
    ttft: list[float] = []
    tpot: list[float] = []
    e2e: list[float] = []
    for load, count in shares:
        result = simulate(model.cost, load, cap, model.token_budget)
        throughput += count * result.output_tokens_per_s
        span = result.ended - result.started
        rate_done += count * (len(result.requests) / span if span > 0 else 0.0)
        warmup = load.clients if steady_state and load.clients and len(result.requests) > load.clients else 0
        _collect(result, workload.output_tokens, ttft, tpot, e2e, weight=count, skip=warmup)
    return LoadStats(throughput, rate_done, ttft, tpot, e2e)


def _request_seconds(model: ReplicaModel, workload: Workload, running: int) -> float:
    """Roughly how long one request takes with `running` in flight: its prompt, then its output at that batch."""
    context = running * (workload.input_tokens + workload.output_tokens / 2)
    prompt = model.cost.seconds(0, workload.input_tokens, 0, workload.input_tokens**2 / 2)
    return prompt + workload.output_tokens * model.cost.seconds(running, 0, context)


def _collect(
    result: SimulationResult,
    output: int,
    ttft: list[float],
    tpot: list[float],
    e2e: list[float],
    weight: int,
    skip: int = 0,
) -> None:
    # Weight by how many engines ran this share, capped so a 64-replica deployment does not copy lists 64 times.
    repeat = min(weight, 4)
    for times in result.requests[skip:]:
        first = (times.first_token - times.arrival) * 1e3
        whole = times.finish - times.arrival
        per_token = (times.finish - times.first_token) * 1e3 / (output - 1) if output > 1 else 0.0
        ttft.extend([first] * repeat)
        tpot.extend([per_token] * repeat)
        e2e.extend([whole] * repeat)


def saturation_throughput(model: ReplicaModel, workload: Workload) -> float:
    """One replica's output tokens/s with its running set full, in steady state: each step decodes `cap` sequences
    and prefills the prompts of the ones that replace those finishing (cap × input / output tokens per step)."""
    cap = model.max_running
    prefill = cap * workload.input_tokens / max(workload.output_tokens, 1)
    context = cap * (workload.input_tokens + workload.output_tokens / 2)
    prefill_attention = prefill * workload.input_tokens / 2
    # Prompt tokens beyond the budget left by the decodes spill into extra steps.
    per_step = max(model.token_budget - cap, 1)
    extra_steps = max(prefill - per_step, 0.0) / model.token_budget
    seconds = model.cost.seconds(cap, min(prefill, per_step), context, prefill_attention)
    seconds += extra_steps * model.cost.seconds(0, model.token_budget, 0, 0)
    return cap / seconds * model.virtual_engines if seconds > 0 else 0.0


def decode_step_line(model: ReplicaModel, workload: Workload) -> tuple[float, float]:
    """(base, per sequence) in ms: a pure decode step with n sequences at the mean context ≈ base + n × slope."""
    mean_context = workload.input_tokens + workload.output_tokens / 2
    many = max(model.max_running, 2)
    one = model.cost.seconds(1, 0, mean_context)
    full = model.cost.seconds(many, 0, many * mean_context)
    slope = (full - one) / (many - 1)
    return (one - slope) * 1e3, slope * 1e3


# Long: half of it is the one PerformanceEstimate(...) call naming every field a user sees.
def estimate_performance(
    profile: ModelProfile,
    gpu: GpuSpec,
    layout: Layout,
    fit: Fit,
    workload: Workload,
    replicas: int,
    data: PerformanceData | None = None,
) -> PerformanceEstimate:
    """The estimate of `replicas` × `layout` serving `workload` (load spread evenly), with ranges and SLO check."""
    data = data or load_performance_data()
    if replicas < 1:
        raise AimError(f"replicas {replicas}: expected at least 1")
    model = replica_model(profile, gpu, layout, fit, workload, data)
    stats = run_load(model, workload, replicas)
    family = data.gpu_families[gpu.family]  # type: ignore[index]
    widen = 1.0 if family.calibrated else data.bands.uncalibrated_widening
    band_t, band_l = data.bands.throughput, data.bands.latency
    values = {
        "output_tokens_per_s": stats.output_tokens_per_s,
        "ttft_ms": sum(stats.ttft_ms) / len(stats.ttft_ms),
        "tpot_ms": sum(stats.tpot_ms) / len(stats.tpot_ms),
        "e2e_latency_s": sum(stats.e2e_s) / len(stats.e2e_s),
        "ttft_p95_ms": _percentile(stats.ttft_ms, 95),
        "tpot_p95_ms": _percentile(stats.tpot_ms, 95),
    }
    ranges: dict[str, tuple[float, float]] = {}
    for key, value in values.items():
        band = band_t if key == "output_tokens_per_s" else band_l
        ranges[key] = (_round(value * band.low / widen), _round(value * band.high * widen))
    saturation = saturation_throughput(model, workload) * replicas
    violations = slo_violations(workload, values, saturation)
    gpus = replicas * layout.gpu_count
    cost = None
    if workload.gpu_hourly_cost is not None and values["output_tokens_per_s"] > 0:
        cost = _round(gpus * workload.gpu_hourly_cost / (values["output_tokens_per_s"] * 3600) * 1e6)
    base_ms, slope_ms = decode_step_line(model, workload)
    compute = data.compute_format(layout.precision, profile.quant_method, gpu.arch)
    calibration = calibration_summary(data, gpu)
    return PerformanceEstimate(
        workload=workload,
        gpu=gpu.name,
        gpu_count=gpus,
        replicas=replicas,
        tensor_parallel_size=layout.tensor_parallel_size,
        pipeline_parallel_size=layout.pipeline_parallel_size,
        precision=layout.precision,
        compute_precision=compute,
        kv_cache_dtype=layout.kv_cache_dtype,
        max_num_seqs=layout.max_num_seqs,
        max_num_batched_tokens=layout.max_num_batched_tokens,
        output_tokens_per_s=_round(values["output_tokens_per_s"]),
        requests_per_s=_round(stats.requests_per_s),
        ttft_ms=_round(values["ttft_ms"]),
        tpot_ms=_round(values["tpot_ms"]),
        e2e_latency_s=_round(values["e2e_latency_s"]),
        ttft_p50_ms=_round(_percentile(stats.ttft_ms, 50)),
        tpot_p50_ms=_round(_percentile(stats.tpot_ms, 50)),
        ttft_p95_ms=_round(values["ttft_p95_ms"]),
        tpot_p95_ms=_round(values["tpot_p95_ms"]),
        saturation_output_tokens_per_s=_round(saturation),
        max_running_per_replica=model.max_running,
        kv_capacity_sequences=model.kv_capacity,
        step_base_ms=_round(base_ms),
        step_per_sequence_ms=_round(slope_ms),
        weights_gib_per_gpu=round(fit.weights_gib_per_gpu, 2),
        kv_cache_gib_per_gpu=round(fit.kv_cache_gib_per_gpu, 2),
        ranges=ranges,
        calibration=calibration,
        cost_per_million_output_tokens=cost,
        slo_violations=tuple(violations),
    )


def slo_violations(workload: Workload, values: dict[str, float], saturation: float) -> list[str]:
    """What the estimate misses of the workload's SLO and offered rate, one phrase each (empty: it meets them)."""
    violations = []
    if workload.ttft_p95_ms is not None and values["ttft_p95_ms"] > workload.ttft_p95_ms:
        violations.append(f"TTFT p95 ~{values['ttft_p95_ms']:,.0f} ms > {workload.ttft_p95_ms:g} ms")
    if workload.tpot_p95_ms is not None and values["tpot_p95_ms"] > workload.tpot_p95_ms:
        violations.append(f"TPOT p95 ~{values['tpot_p95_ms']:,.1f} ms > {workload.tpot_p95_ms:g} ms")
    if workload.requests_per_second is not None:
        # An open loop only has a steady state below capacity; the simulated minute cannot show a queue that grows
        # for ever, so compare with the saturated rate, keeping SUSTAINABLE_SHARE of it as headroom.
        sustainable = saturation * SUSTAINABLE_SHARE / workload.output_tokens
        if workload.requests_per_second > sustainable:
            violations.append(
                f"sustains ~{sustainable:.3g} req/s at most (90 % of the saturated rate) < "
                f"{workload.requests_per_second:g} req/s offered"
            )
    return violations


def calibration_summary(data: PerformanceData, gpu: GpuSpec) -> dict[str, Any]:
    """What the estimate was calibrated on, and its bands: printed with every figure so the range can be judged."""
    family = data.gpu_families[gpu.family]  # type: ignore[index]
    widen = 1.0 if family.calibrated else data.bands.uncalibrated_widening
    band_t, band_l = data.bands.throughput, data.bands.latency
    calibration: dict[str, Any] = {
        "version": data.calibration.version,
        "vllm_versions": data.calibration.vllm_versions,
        "fitted_on": data.calibration.fitted_on,
        "gpu_family": gpu.family,
        "calibrated": family.calibrated,
        "throughput_band": [band_t.low / widen, band_t.high * widen],
        "latency_band": [band_l.low / widen, band_l.high * widen],
    }
    if not family.calibrated:
        calibration["note"] = (
            f"no measurement on {gpu.family} was fitted: constants of {family.borrowed_from}, band widened "
            f"×{widen:g} (an assumption)"
        )
    return calibration


def _round(value: float) -> float:
    """Three significant figures: the model is not more precise than that, and stable output diffs better."""
    if not math.isfinite(value) or value == 0:
        return value
    digits = 2 - math.floor(math.log10(abs(value)))
    return round(value, max(digits, 0)) if digits > 0 else float(round(value, digits))
