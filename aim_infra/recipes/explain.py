"""Human-readable explanations of a decision, the catalogue and the GPU list, as plain-text tables."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from .catalogue import RecipeCatalogue
from .hardware import GpuCatalogue
from .selection import Decision


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], max_width: int = 200) -> str:
    """Left-aligned columns; the last column may run long (it holds reasons)."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    lines = []
    for row in cells:
        line = "  ".join(value.ljust(widths[i]) for i, value in enumerate(row[:-1]))
        lines.append(f"{line}  {row[-1]}"[:max_width].rstrip())
    return "\n".join(lines)


def explain_decision(decision: Decision) -> str:
    """What was chosen, why, what it costs, how fast we expect it, and every other candidate with its reason."""
    recipe, est, fit, gpu = decision.recipe, decision.estimate, decision.fit, decision.gpu
    context = f"max_model_len {recipe.max_model_len}"
    command = shlex.join(["vllm", "serve", decision.model.id, *decision.vllm_args])
    env = " ".join(f"{k}={v}" for k, v in sorted(decision.env.items())) or "(none)"
    lines = [
        f"model     {decision.model.short()}",
        f"hardware  {decision.gpus_available} × {gpu.name} available ({gpu.arch}, {gpu.memory_gib:g} GiB, "
        f"{gpu.bandwidth_tbps:g} TB/s per device)",
        f"goal      {decision.metric}",
        "",
        f"selected  {recipe.id}  [{recipe.status}{', fallback' if decision.fallback else ''}]",
        f"layout    {decision.replicas} replica(s) × {recipe.gpu_count} GPU: TP {recipe.tensor_parallel_size}, "
        f"PP {recipe.pipeline_parallel_size}, {recipe.precision} weights, KV {recipe.kv_cache_dtype}, {context}",
        f"memory    weights {fit.weights_gib_per_gpu:.1f} GiB + overhead {fit.overhead_gib_per_gpu:.1f} GiB + KV cache "
        f"{fit.kv_cache_gib_per_gpu:.1f} GiB per GPU (gpu_memory_utilization {recipe.gpu_memory_utilization:g}); "
        f"{fit.full_length_sequences:.1f} full-length sequences, {fit.max_concurrent_sequences} concurrent typical",
        f"estimate  ~{est.decode_tokens_per_s:,.0f} tok/s per replica at batch {est.batch} "
        f"(~{est.decode_tokens_per_s * decision.replicas:,.0f} tok/s for {decision.replicas} replica(s)), "
        f"~{est.single_stream_tokens_per_s:,.0f} tok/s single stream, TTFT ~{est.ttft_ms:,.0f} ms "
        "(roofline estimate, not a measurement)",
        f"command   {command}",
        f"env       {env}",
        f"source    {recipe.provenance}",
    ]
    lines += [f"note      {note}" for note in decision.notes]
    rows = [
        (
            c.recipe_id,
            c.status,
            c.recipe_status,
            c.gpu_count,
            c.tensor_parallel_size,
            c.precision,
            "" if c.weights_gib_per_gpu is None else f"{c.weights_gib_per_gpu:.1f}",
            "" if c.decode_tokens_per_s is None else f"{c.decode_tokens_per_s:,.0f}",
            c.reason,
        )
        for c in decision.candidates
    ]
    headers = ("CANDIDATE", "STATUS", "KIND", "GPUS", "TP", "PREC", "GIB/GPU", "EST TOK/S", "REASON")
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
