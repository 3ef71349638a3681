"""Turn validated settings into the recipe decision: resolve the model, the GPU type and count, then select."""

from __future__ import annotations

from aim_infra.common.errors import AimError
from aim_infra.planning.detect import choose_gpu
from aim_infra.planning.hardware import GpuSpec, load_gpus
from aim_infra.planning.monitoring.rules import AlertThresholds, default_thresholds
from aim_infra.planning.revision import is_commit
from aim_infra.planning.selection import Decision, Selector
from aim_infra.stack.cluster import discover_gpus, discover_host_gpus
from aim_infra.stack.model_sources import resolve_model
from aim_infra.stack.settings import Settings, quantity_bytes


def target_hardware(settings: Settings, kube_context: str | None) -> tuple[GpuSpec, int, bool]:
    """(GPU type, GPUs available on one node, whether it was read from the cluster's node labels)."""
    if settings.gpu != "auto" and settings.gpu_count != "auto":
        return load_gpus().get(settings.gpu), int(settings.gpu_count), False
    if settings.cluster_bootstrap == "kubeadm":
        # This host becomes the only node, and at the first preview it is no node yet: ask its GPUs directly.
        spec, count = discover_host_gpus()
        if settings.gpu != "auto" and load_gpus().get(settings.gpu).name != spec.name:
            raise AimError(
                f"aim:gpu {settings.gpu}: this host has {count} x {spec.name}; set aim:gpu auto or {spec.name}"
            )
        return spec, count if settings.gpu_count == "auto" else int(settings.gpu_count), False
    found = discover_gpus(kube_context)
    if settings.gpu != "auto":
        wanted = load_gpus().get(settings.gpu)
        found = [n for n in found if n.gpu.name == wanted.name]
        if not found:
            raise AimError(f"aim:gpu {settings.gpu}: no node advertises that GPU; set aim:gpuCount or check the nodes")
    chosen = choose_gpu(found)
    count = chosen.count if settings.gpu_count == "auto" else int(settings.gpu_count)
    return chosen.gpu, count, True


def decide(settings: Settings, kube_context: str | None) -> tuple[Decision, bool]:
    """The decision for this stack, and whether the GPU type came from node labels (then node affinity can be
    required)."""
    # aim:model is a Hub id the pods download: never a folder of the machine that runs `pulumi up`.
    profile = resolve_model(settings.model, settings.model_revision_or_none, local=False)
    gpu, count, detected = target_hardware(settings, kube_context)
    decision = Selector().select(
        profile,
        gpu,
        count,
        metric=settings.metric,
        precision=settings.precision,
        max_model_len=None if settings.max_model_len == "auto" else int(settings.max_model_len),
        recipe_id=settings.recipe or None,
        extra_args=settings.vllm_extra_args,
        workload=settings.workload,
    )
    check_remote_code(settings, decision)
    check_cache_size(settings, decision)
    return decision, detected


def runs_remote_code(vllm_args: list[str]) -> bool:
    """Whether the vLLM command line lets the model repository's Python code run (recipe or aim:vllmExtraArgs)."""
    for token in vllm_args:
        flag, _, value = token.partition("=")
        if flag == "--trust-remote-code" and value.lower() not in ("false", "0"):
            return True
    return False


def check_remote_code(settings: Settings, decision: Decision) -> None:
    """--trust-remote-code runs the Hub repository's Python in the vLLM pod, next to the API key and HF token: only
    code pinned by commit, so what was reviewed is what runs (a branch can change under a running stack)."""
    if not runs_remote_code(decision.vllm_args) or is_commit(settings.model_revision):
        return
    shown = repr(settings.model_revision) if settings.model_revision else "unset"
    who = "aim:vllmExtraArgs" if runs_remote_code(settings.vllm_extra_args) else f"recipe {decision.recipe.id}"
    raise AimError(
        f"aim:modelRevision: {shown} is not allowed: expected a 40-hex commit sha, "
        f"because {who} runs --trust-remote-code (the repository's Python code runs in the vLLM "
        f"pod next to the API key); find the commit at https://huggingface.co/{settings.model}/commits/main or with "
        f"`git ls-remote https://huggingface.co/{settings.model} refs/heads/main`"
    )


def check_cache_size(settings: Settings, decision: Decision) -> None:
    """An explicit aim:cacheSize must hold the checkpoint plus the headroom `auto` would give it, or the download
    fills the volume and the pods never start."""
    if settings.cache_size == "auto":
        return
    from aim_infra.stack.components.engine import cache_quantity

    needed = cache_quantity(decision)
    if quantity_bytes(settings.cache_size) < quantity_bytes(needed):
        raise AimError(
            f"aim:cacheSize: {settings.cache_size!r} is not allowed: expected at least {needed} for "
            f"{decision.model.id} (its {decision.model.checkpoint_bytes / 2**30:,.1f} GiB checkpoint + 15 % + 10 GiB "
            "headroom), or auto"
        )


def check_single_pod_cache(settings: Settings, replicas: int) -> None:
    """A ReadWriteOncePod cache admits one pod: every replica after the first would stay Pending forever."""
    if settings.cache_access_mode == "ReadWriteOncePod" and replicas > 1:
        source = "aim:replicas auto fills one node with" if settings.replicas == "auto" else "aim:replicas is"
        raise AimError(
            f"aim:cacheAccessMode: 'ReadWriteOncePod' is not allowed with {replicas} replicas ({source} {replicas}): "
            "only one pod can mount such a volume; use ReadWriteOnce (replicas share one node) or ReadWriteMany, "
            "or set aim:replicas 1"
        )


def replica_count(settings: Settings, decision: Decision) -> tuple[int, Decision]:
    """`auto`: the decision's count (the fewest that meet aim:workload, or every replica one node holds without one).
    An explicit count beyond one node spreads over nodes, which a ReadWriteOnce cache cannot follow. The returned
    decision carries the estimate for the count that will run."""
    if settings.replicas == "auto":
        check_single_pod_cache(settings, max(1, decision.replicas))
        return max(1, decision.replicas), decision
    wanted = int(settings.replicas)
    check_single_pod_cache(settings, wanted)
    on_one_node = decision.gpus_available // decision.recipe.gpu_count
    if wanted > on_one_node and settings.cache_access_mode != "ReadWriteMany":
        raise AimError(
            f"aim:replicas {wanted}: only {on_one_node} fit on one node of {decision.gpus_available} × "
            f"{decision.gpu.name}; more need replicas on several nodes: set aim:cacheAccessMode ReadWriteMany"
        )
    return wanted, Selector().with_replicas(decision, wanted)


def alert_thresholds(settings: Settings, decision: Decision) -> AlertThresholds:
    """Alert thresholds from stack config; `auto` TTFT follows what the recipe is tuned for."""
    defaults = default_thresholds(decision.recipe.metric)
    ttft = defaults.ttft_p95_seconds if settings.alert_ttft_p95_seconds == "auto" else settings.alert_ttft_p95_seconds
    return AlertThresholds(
        ttft_p95_seconds=float(ttft),
        queue_depth=settings.alert_queue_depth,
        kv_cache_usage=float(settings.alert_kv_cache_usage),
        throughput_fraction=float(settings.alert_throughput_fraction),
        gpu_memory_usage=float(settings.alert_gpu_memory_usage),
    )
