"""Turn validated settings into the recipe decision: resolve the model, the GPU type and count, then select."""

from __future__ import annotations

from dataclasses import replace

from aim_infra.common.errors import AimError
from aim_infra.planning.detect import NodeGpus, choose_gpu
from aim_infra.planning.hardware import GpuSpec, load_gpus
from aim_infra.planning.lora import LoraAdapter
from aim_infra.planning.monitoring.rules import AlertThresholds, default_thresholds
from aim_infra.planning.packing import JointPlan, ModelPlan, ModelRequest, NodeInventory, plan_models
from aim_infra.planning.revision import is_commit
from aim_infra.planning.selection import Decision, Selector
from aim_infra.stack.adapters import check_adapter_args, read_adapters, serve_adapters
from aim_infra.stack.cluster import discover_gpus, discover_host_gpus
from aim_infra.stack.components.api_proxy import STREAM_TIMEOUT_SECONDS
from aim_infra.stack.manifests.autoscaling import cold_start_seconds, wake_service_name
from aim_infra.stack.manifests.sizing import startup_budget_seconds
from aim_infra.stack.model_sources import resolve_model
from aim_infra.stack.settings import ModelSpec, Settings, quantity_bytes

#: The node name joint planning gives the GPUs stated by hand (aim:gpu + aim:gpuCount) or read from this host
#: (clusterBootstrap kubeadm, before it is a node): one node of that many GPUs.
CONFIGURED_NODE = "configured-node"
#: The router in front of several models: its objects are named after it, so no model may take this name.
ROUTER_NAME = "aim-router"


def _cluster_gpu_nodes(settings: Settings, kube_context: str | None) -> list[NodeGpus]:
    """The cluster's GPU nodes, only those of the type aim:gpu names when it is not auto (one line when none is)."""
    found = discover_gpus(kube_context)
    if settings.gpu != "auto":
        wanted = load_gpus().get(settings.gpu)
        found = [n for n in found if n.gpu.name == wanted.name]
        if not found:
            raise AimError(f"aim:gpu {settings.gpu}: no node advertises that GPU; set aim:gpuCount or check the nodes")
    return found


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
    found = _cluster_gpu_nodes(settings, kube_context)
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


def target_nodes(settings: Settings, kube_context: str | None) -> tuple[list[NodeInventory], bool]:
    """The nodes joint planning packs the models onto, and whether their GPU type came from node labels. By hand
    (aim:gpu and aim:gpuCount) or from this host (kubeadm): one node of that many GPUs. Otherwise every GPU node the
    cluster advertises, of the type aim:gpu names (when not auto), each with aim:gpuCount GPUs (when not auto)."""
    if settings.cluster_bootstrap == "kubeadm" or (settings.gpu != "auto" and settings.gpu_count != "auto"):
        gpu, count, detected = target_hardware(settings, kube_context)
        return [NodeInventory(node=CONFIGURED_NODE, gpu=gpu, free_gpus=count)], detected
    found = _cluster_gpu_nodes(settings, kube_context)
    if settings.gpu == "auto":
        # Joint planning takes nodes of one GPU type: the type decide() would choose for one model (choose_gpu says
        # in one line when no node advertises a GPU).
        chosen = choose_gpu(found).gpu
        found = [n for n in found if (n.gpu.name, n.gpu.memory_gib) == (chosen.name, chosen.memory_gib)]
    fixed = None if settings.gpu_count == "auto" else int(settings.gpu_count)
    return [NodeInventory(node=n.node, gpu=n.gpu, free_gpus=n.count if fixed is None else fixed) for n in found], True


def model_request(spec: ModelSpec) -> ModelRequest:
    """One aim:models entry as joint planning takes it: its profile resolved as decide() resolves aim:model, its
    replica bounds (auto: the plan's)."""
    profile = resolve_model(spec.model, spec.model_revision_or_none, local=False)
    bounds = spec.replica_bounds
    return ModelRequest(
        name=spec.name,
        profile=profile,
        metric=spec.metric,
        precision=spec.precision,
        max_model_len=None if spec.max_model_len == "auto" else int(spec.max_model_len),
        recipe_id=spec.recipe or None,
        extra_args=tuple(spec.vllm_extra_args),
        workload=spec.workload,
        min_replicas=None if bounds is None else bounds[0],
        max_replicas=None if bounds is None else bounds[1],
    )


def decide_models(settings: Settings, kube_context: str | None) -> tuple[JointPlan, bool]:
    """The joint plan of every aim:models entry on the nodes' GPUs, and whether the GPU type came from node labels.
    A model whose SLO the plan cannot meet stops here as one line, as the single-model selector stops."""
    for spec in settings.models:
        check_servable(settings, spec)
    # Adapters are read (and refused) before the nodes are asked: a typo in an adapter id costs no cluster call.
    adapters = {spec.name: read_adapters(spec) for spec in settings.models}
    nodes, detected = target_nodes(settings, kube_context)
    requests = [model_request(spec) for spec in settings.models]
    selector = Selector()
    plan = _auto_runs_reserved(plan_models(requests, nodes, selector), settings, selector)
    for spec, planned in zip(settings.models, plan.models, strict=True):
        if not planned.meets_slo:
            missed = next(note for note in plan.notes if note.startswith(f"{planned.name} misses its SLO"))
            raise AimError(
                f"aim:models: {missed}; free on the nodes: {plan.free_text()}. Relax the SLO, lower the load, "
                "raise max or add GPUs"
            )
        check_remote_code(spec, planned.decision)
        check_cache_size(settings, planned.decision)
        check_model_cache_nodes(settings, planned)
        check_cold_start(spec, planned)
    return _with_adapters(plan, settings, adapters), detected


def _with_adapters(plan: JointPlan, settings: Settings, adapters: dict[str, list[LoraAdapter]]) -> JointPlan:
    """Each model's chosen recipe with its LoRA adapters loaded (vLLM flags, environment), and the lines the preview
    shows about them. After packing: adapters change neither the GPUs a replica takes nor where it runs."""
    models: list[ModelPlan] = []
    notes: list[str] = []
    for spec, planned in zip(settings.models, plan.models, strict=True):
        decision, lines = serve_adapters(spec, planned.decision, adapters[spec.name])
        models.append(replace(planned, decision=decision))
        notes += lines
    return replace(plan, models=tuple(models), added_notes=(*plan.added_notes, *notes))


def check_model_cache_nodes(settings: Settings, planned: ModelPlan) -> None:
    """Every replica of a model mounts its one cache volume: a ReadWriteOncePod volume admits one pod, a ReadWriteOnce
    volume one node; replicas the plan places (or reserves) beyond that would stay Pending."""
    nodes = sorted(set(planned.placement) | set(planned.reserved))
    most = planned.replicas + len(planned.reserved)
    mode = settings.cache_access_mode
    if mode == "ReadWriteOncePod" and most > 1:
        raise AimError(
            f"aim:cacheAccessMode: 'ReadWriteOncePod' is not allowed: model {planned.name} runs up to {most} replicas "
            "and only one pod can mount such a volume; use ReadWriteOnce (replicas share one node) or ReadWriteMany"
        )
    if mode == "ReadWriteOnce" and len(nodes) > 1:
        raise AimError(
            f"aim:cacheAccessMode: 'ReadWriteOnce' is not allowed: the plan spreads model {planned.name}'s replicas "
            f"over nodes {', '.join(nodes)} and such a volume stays on one node; set aim:cacheAccessMode "
            "ReadWriteMany, or lower the model's replicas.max"
        )


def check_cold_start(spec: ModelSpec, planned: ModelPlan) -> None:
    """A scale-to-zero model's first request after an idle spell must get its answer started within what the router's
    proxy waits for one (its read timeout): past that the client gets the proxy's 504 while the model still starts."""
    if not spec.scale_to_zero:
        return
    wait = cold_start_seconds(startup_budget_seconds(planned.decision))
    if wait > STREAM_TIMEOUT_SECONDS:
        raise AimError(
            f"aim:models: {spec.name}.scaleToZero: true is not allowed: a cold start of {planned.decision.recipe.id} "
            f"takes up to {wait} s, longer than the {STREAM_TIMEOUT_SECONDS} s the router's proxy waits for an answer "
            "to start; keep one replica (replicas.min 1, scaleToZero false) or serve a smaller checkpoint (loading "
            "takes time in proportion to its size)"
        )


def check_servable(settings: Settings, spec: ModelSpec) -> None:
    """What the program cannot serve yet, or not without another setting, as one line before anything is planned."""
    where = f"aim:models: {spec.name}"
    if spec.name == ROUTER_NAME:
        raise AimError(f"{where}: the name is the router's (its objects are named {ROUTER_NAME}); choose another name")
    if spec.scale_to_zero and wake_service_name(spec.name) in {other.name for other in settings.models}:
        # The model's wake Service (the interceptor's hostname for it) would take the other model's Service name.
        raise AimError(
            f"{where}.scaleToZero: the model's wake Service {wake_service_name(spec.name)} has another model's name; "
            "rename one of them"
        )
    check_adapter_args(spec)
    if settings.benchmark:
        raise AimError("aim:benchmark: true is not supported with aim:models yet (it measures one model); set it false")
    if spec.autoscaled and not settings.monitoring:
        raise AimError(
            f"{where}.replicas: {spec.replica_text} needs aim:monitoring true: KEDA scales on vLLM's metrics as "
            "Prometheus reads them; turn monitoring on or fix the replica count"
        )


def runs_remote_code(vllm_args: list[str]) -> bool:
    """Whether the vLLM command line lets the model repository's Python code run (recipe or aim:vllmExtraArgs)."""
    for token in vllm_args:
        flag, _, value = token.partition("=")
        if flag == "--trust-remote-code" and value.lower() not in ("false", "0"):
            return True
    return False


def check_remote_code(settings: Settings | ModelSpec, decision: Decision) -> None:
    """--trust-remote-code runs the Hub repository's Python in the vLLM pod, next to the API key and HF token: only
    code pinned by commit, so what was reviewed is what runs (a branch can change under a running stack). Takes the
    stack's single-model keys or one aim:models entry (the same field names)."""
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


def _auto_runs_reserved(plan: JointPlan, settings: Settings, selector: Selector) -> JointPlan:
    """`replicas: auto` with no autoscaler runs every replica the plan placed or reserved for the model (as a single
    model's `auto` fills its node): GPUs reserved for a scale-up nothing would make would sit idle. The estimate is
    redone at that count."""
    models = []
    for spec, planned in zip(settings.models, plan.models, strict=True):
        if spec.replicas == "auto" and planned.reserved:
            count = planned.replicas + len(planned.reserved)
            planned = replace(
                planned,
                decision=selector.with_replicas(planned.decision, count),
                min_replicas=count,
                replicas=count,
                max_replicas=count,
                placement=planned.placement + planned.reserved,
                reserved=(),
            )
        models.append(planned)
    return replace(plan, models=tuple(models), free_after_placement=dict(plan.free))
