"""Benchmark of the recipe engine: catalogue load, selection on the shipped and a synthetic 10,000-recipe catalogue."""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aim_infra.common.errors import AimError
from aim_infra.planning.catalogue import check_recipe, load_catalogue, load_catalogue_from
from aim_infra.planning.generation import generate, load_generation_rules, tensor_parallel_options
from aim_infra.planning.hardware import load_gpus
from aim_infra.planning.model_profile import ModelProfile, load_model_catalogue
from aim_infra.planning.selection import Selector
from aim_infra.planning.vllm_rules import load_vllm_rules

#: Requests every run times: (model, gpu, available GPUs, metric).
REQUESTS = [
    ("meta-llama/Llama-3.1-8B-Instruct", "MI300X", 8, "throughput"),
    ("meta-llama/Llama-3.1-70B-Instruct", "MI300X", 8, "latency"),
    ("deepseek-ai/DeepSeek-R1", "MI355X", 8, "throughput"),
    ("openai/gpt-oss-120b", "MI325X", 8, "throughput"),
]


def timed(function: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, max) wall time in milliseconds over `repeat` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples), max(samples)


def clear_caches() -> None:
    for loader in (load_gpus, load_model_catalogue, load_catalogue, load_generation_rules):
        loader.cache_clear()


def synthetic_catalogue(directory: Path, size: int, single_model: str | None) -> None:
    """Write `size` valid recipes: generated layouts × scheduler variants, spread over models and GPUs (or one)."""
    gpu_catalogue, model_catalogue, vllm_rules = load_gpus(), load_model_catalogue(), load_vllm_rules()
    gpus = [gpu_catalogue.get(name) for name in ("MI300X", "MI325X", "MI355X")]
    models = model_catalogue.models
    if single_model:
        models = [m for m in models if m.id == single_model]
    rules = load_generation_rules()
    bases = []
    for profile in models:
        for gpu in gpus:
            for tp in tensor_parallel_options(profile, gpu, 8):
                precision = profile.checkpoint_precision
                if not gpu.supports_weights(precision, profile.quant_method):
                    continue
                candidate = generate(profile, gpu, tp, precision, None, 8192, "throughput", rules)
                try:
                    check_recipe(candidate, "synthetic", gpu_catalogue, model_catalogue, vllm_rules)
                except AimError:
                    continue  # a layout that does not fit its GPU would be refused on load
                bases.append(candidate)
    recipes = []
    for index in range(size):
        base = bases[index % len(bases)]
        recipe = base.model_dump()
        recipe.update(
            id=f"synthetic-{index:05d}",
            status="community",
            metric="latency" if index % 2 else "throughput",
            vllm_args={**base.vllm_args, "max-num-seqs": 32 * (1 + index % 16)},
        )
        recipes.append(recipe)
    chunk = 1000
    for start in range(0, size, chunk):
        (directory / f"synthetic-{start // chunk:02d}.yaml").write_text(
            yaml.safe_dump({"recipes": recipes[start : start + chunk]}, sort_keys=False)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--size", type=int, default=10_000)
    options = parser.parse_args()

    clear_caches()
    start = time.perf_counter()
    catalogue = load_catalogue()
    load_ms = (time.perf_counter() - start) * 1e3
    print(f"shipped catalogue load (GPUs, models, {len(catalogue.recipes)} recipes, fit-checked): {load_ms:.1f} ms")

    gpus = load_gpus()
    models = load_model_catalogue()
    selector = Selector(catalogue)
    for model, gpu, count, metric in REQUESTS:

        def run(model: str = model, gpu: str = gpu, count: int = count, metric: str = metric) -> object:
            return selector.select(models.get(model), gpus.get(gpu), count, metric=metric)  # type: ignore[arg-type]

        chosen = run().recipe.id  # type: ignore[attr-defined]
        median, worst = timed(run, options.repeat)
        print(f"select {model} on {count} × {gpu} ({metric}): median {median:.2f} ms, max {worst:.2f} ms -> {chosen}")

    for label, single in (("spread over all models", None), ("all for one model", "meta-llama/Llama-3.1-70B-Instruct")):
        with tempfile.TemporaryDirectory() as folder:
            synthetic_catalogue(Path(folder), options.size, single)
            start = time.perf_counter()
            big = load_catalogue_from(Path(folder))
            big_load = (time.perf_counter() - start) * 1e3
        big_selector = Selector(big)
        profile = models.get("meta-llama/Llama-3.1-70B-Instruct")
        candidates = len(big.for_model(profile.id))

        def run_big(selector: Selector = big_selector, profile: ModelProfile = profile) -> object:
            return selector.select(profile, gpus.get("MI300X"), 8, metric="throughput")

        start = time.perf_counter()
        run_big()
        cold = (time.perf_counter() - start) * 1e3
        median, worst = timed(run_big, options.repeat)
        print(
            f"synthetic {len(big.recipes)}-recipe catalogue ({label}): load {big_load:.0f} ms; select Llama-3.1-70B "
            f"on 8 × MI300X over {candidates} candidates: first {cold:.1f} ms, median {median:.1f} ms, "
            f"max {worst:.1f} ms (target ≤ 50 ms)"
        )
    # Memory is measured in a separate pass: tracing allocations slows everything it traces several-fold.
    clear_caches()
    tracemalloc.start()
    traced_selector = Selector(load_catalogue())
    for model, gpu, count, metric in REQUESTS:
        traced_selector.select(models.get(model), gpus.get(gpu), count, metric=metric)  # type: ignore[arg-type]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak traced Python memory (load the shipped catalogue + the selections above): {peak / 2**20:.1f} MiB")
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
