"""Human-readable explanations of a decision, a joint plan, the catalogue and the GPU list, as plain-text tables."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from aim_infra.planning.catalogue import RecipeCatalogue
from aim_infra.planning.hardware import GpuCatalogue
from aim_infra.planning.packing import JointPlan, ModelPlan
from aim_infra.planning.selection import Decision


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], max_width: int = 200) -> str:
    """Left-aligned columns; the last column may run long (it holds reasons)."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    lines = []
    for row in cells:
        line = "  ".join(value.ljust(widths[i]) for i, value in enumerate(row[:-1]))
        lines.append(f"{line}  {row[-1]}"[:max_width].rstrip())
    return "\n".join(lines)


def _span(low: float, high: float, fmt: str) -> str:
    return f"{format(low, fmt)}–{format(high, fmt)}"


def estimate_lines(decision: Decision) -> list[str]:
    """The estimate in words: what the workload gets, its range, what the range and the numbers rest on."""
    est = decision.estimate
    r = est.ranges
    cal = est.calibration
    workload = decision.workload.describe()
    origin = (
        "aim:workload"
        if decision.sized
        else f"the default for a {decision.metric} goal; set aim:workload (or --input-tokens …) for your traffic"
    )
    lines = [
        f"workload  {workload} ({origin})",
        f"estimate  ~{est.output_tokens_per_s:,.0f} output tok/s for {est.replicas} replica(s) "
        f"(range {_span(*r['output_tokens_per_s'], ',.0f')}); "
        f"TTFT mean ~{est.ttft_ms:,.0f} ms, p95 ~{est.ttft_p95_ms:,.0f} ms (range {_span(*r['ttft_p95_ms'], ',.0f')}); "
        f"TPOT mean ~{est.tpot_ms:,.1f} ms, p95 ~{est.tpot_p95_ms:,.1f} ms (range {_span(*r['tpot_p95_ms'], ',.1f')}); "
        f"request ~{est.e2e_latency_s:,.2f} s",
        f"full load ~{est.saturation_output_tokens_per_s:,.0f} output tok/s with every replica full "
        f"({est.max_running_per_replica} running sequences per replica: max-num-seqs, token budget and KV cache at "
        f"these lengths)",
    ]
    if est.cost_per_million_output_tokens is not None:
        lines.append(
            f"cost      ~{est.cost_per_million_output_tokens:.3g} per 1M output tokens "
            f"({est.gpu_count} GPUs at {decision.workload.gpu_hourly_cost:g} per GPU-hour)"
        )
    if est.slo_violations:
        lines.append(f"slo       MISSED: {'; '.join(est.slo_violations)}")
    trust = (
        f"calibrated on {cal['fitted_on'].split(' (')[0]} ({cal['version']})"
        if cal["calibrated"]
        else str(cal.get("note", "uncalibrated"))
    )
    lines.append(
        f"basis     estimated, not measured: a step-cost model driven through a simulation of vLLM's scheduler, "
        f"{trust}; ranges span the 10th–90th percentile of its error there (docs/recipes.md: How the estimate works)"
    )
    return lines


def capacity_rows(decision: Decision) -> tuple[tuple[str, ...], list[tuple[object, ...]]]:
    """Per candidate at the workload: GPUs, replicas, tokens/s, TTFT/TPOT p95, cost, and why it lost."""

    def number(value: float | None, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    rows: list[tuple[object, ...]] = [
        (
            c.recipe_id,
            c.status,
            c.recipe_status,
            c.gpus_used if c.output_tokens_per_s is not None else c.gpu_count,
            c.replicas or "",
            c.tensor_parallel_size,
            c.precision,
            number(c.output_tokens_per_s, ",.0f"),
            number(c.ttft_p95_ms, ",.0f"),
            number(c.tpot_p95_ms, ",.1f"),
            number(c.cost_per_million_output_tokens, ".3g"),
            c.problem or (f"lost: {c.lost}" if c.lost else "chosen"),
        )
        for c in decision.candidates
    ]
    headers: tuple[str, ...] = (
        "CANDIDATE",
        "STATUS",
        "KIND",
        "GPUS",
        "REPL",
        "TP",
        "PREC",
        "TOK/S",
        "TTFT P95",
        "TPOT P95",
        "$/1M",
        "WHY",
    )
    return headers, rows


def packing_table(plan: JointPlan) -> tuple[tuple[str, ...], list[tuple[object, ...]]]:
    """The joint plan, one row per model: recipe, GPUs (total = replicas × per replica), replicas min–max, the
    estimate at its workload (with its range, as the single-model estimate prints it), whether its SLO is met, and
    the nodes its replicas go to. `table(*packing_table(plan))` prints it; `plan.notes` and `plan.free_text()`
    belong under it."""

    def ranged(plan_model: ModelPlan, key: str, fmt: str) -> str:
        est = plan_model.decision.estimate
        low, high = est.ranges[key]
        return f"~{format(getattr(est, key), fmt)} ({_span(low, high, fmt)})"

    def replicas(m: ModelPlan) -> str:
        text = f"{m.min_replicas}–{m.max_replicas}"
        if m.wanted_max is None:
            return f"{text} (auto)"
        return f"{text} (of {m.wanted_max} asked)" if m.scale_limited else text

    def slo(m: ModelPlan) -> str:
        workload = m.decision.workload
        if not m.decision.sized or (not workload.has_slo and workload.requests_per_second is None):
            return "none set"
        return "met" if m.meets_slo else "MISSED"

    def nodes(m: ModelPlan) -> str:
        text = ", ".join(f"{node} ×{m.placement.count(node)}" for node in dict.fromkeys(m.placement))
        if m.reserved:
            text += "; reserved " + ", ".join(f"{node} ×{m.reserved.count(node)}" for node in dict.fromkeys(m.reserved))
        return text

    rows: list[tuple[object, ...]] = []
    for m in plan.models:
        recipe = m.decision.recipe
        pipeline = f" × PP {recipe.pipeline_parallel_size}" if recipe.pipeline_parallel_size > 1 else ""
        rows.append(
            (
                m.name,
                recipe.id,
                f"{m.gpus} = {m.replicas} × {m.gpus_per_replica} (TP {recipe.tensor_parallel_size}{pipeline})",
                replicas(m),
                ranged(m, "output_tokens_per_s", ",.0f"),
                ranged(m, "ttft_p95_ms", ",.0f"),
                ranged(m, "tpot_p95_ms", ",.1f"),
                slo(m),
                nodes(m),
            )
        )
    headers = ("MODEL", "RECIPE", "GPUS", "REPLICAS", "TOK/S", "TTFT P95 MS", "TPOT P95 MS", "SLO", "NODES")
    return headers, rows


def explain_decision(decision: Decision) -> str:
    """What was chosen, why, what it costs, how fast we expect it, and every other candidate with its reason."""
    recipe, fit, gpu = decision.recipe, decision.fit, decision.gpu
    context = f"max_model_len {recipe.max_model_len}"
    command = shlex.join(["vllm", "serve", decision.model.id, *decision.vllm_args])
    env = " ".join(f"{k}={v}" for k, v in sorted(decision.env.items())) or "(none)"
    lines = [
        f"model     {decision.model.short()}",
        f"hardware  {decision.gpus_available} × {gpu.name} available ({gpu.arch}, {gpu.memory_gib:g} GiB, "
        f"{gpu.bandwidth_tbps:g} TB/s per device)",
        f"goal      {decision.metric}",
        "",
        f"selected  {recipe.id}  [{recipe.status}{', fallback' if decision.fallback else ''}, "
        f"tuned for {recipe.metric}]",
        f"layout    {decision.replicas} replica(s) × {recipe.gpu_count} GPU: TP {recipe.tensor_parallel_size}, "
        f"PP {recipe.pipeline_parallel_size}, {recipe.precision} weights "
        f"(compute {decision.estimate.compute_precision}), KV {recipe.kv_cache_dtype}, {context}",
        f"memory    weights {fit.weights_gib_per_gpu:.1f} GiB + overhead {fit.overhead_gib_per_gpu:.1f} GiB "
        f"+ KV cache {fit.kv_cache_gib_per_gpu:.1f} GiB per GPU (gpu_memory_utilization "
        f"{recipe.gpu_memory_utilization:g}); {fit.full_length_sequences:.1f} full-length sequences, "
        f"{decision.estimate.kv_capacity_sequences} at the workload's lengths",
        *estimate_lines(decision),
        f"command   {command}",
        f"env       {env}",
        f"source    {recipe.provenance}",
    ]
    lines += [f"note      {note}" for note in decision.notes]
    headers, rows = capacity_rows(decision)
    return "\n".join(lines) + "\n\n" + table(headers, rows, max_width=400)


def explain_catalogue(catalogue: RecipeCatalogue, model: str | None = None, gpu: str | None = None) -> str:
    recipes = catalogue.filtered(model, gpu)
    if not recipes:
        return "no recipes match"
    rows = [
        (
            r.id,
            r.model,
            r.gpu,
            r.gpu_count,
            r.tensor_parallel_size,
            r.precision,
            r.kv_cache_dtype,
            r.max_model_len,
            r.metric,
            r.status,
        )
        for r in recipes
    ]
    headers = ("RECIPE", "MODEL", "GPU", "GPUS", "TP", "PREC", "KV", "MAX LEN", "METRIC", "STATUS")
    return table(headers, rows) + f"\n\n{len(recipes)} recipe(s)"


def explain_gpus(gpus: GpuCatalogue) -> str:
    rows = [
        (
            g.name,
            g.arch,
            g.family,
            f"{g.memory_gib:g}",
            f"{g.bandwidth_tbps:g}",
            g.fp8_format,
            ",".join(g.weight_precisions),
            ",".join(g.kv_cache_dtypes),
            "yes" if g.aiter else "no",
            ",".join(g.pci_device_ids),
        )
        for g in gpus.gpus
    ]
    headers = ("GPU", "ARCH", "FAMILY", "GIB", "TB/S", "FP8", "WEIGHTS", "KV", "AITER", "PCI IDS")
    return table(headers, rows)
