"""Joint planning of several models on a cluster's nodes: recipes and replicas chosen together, bin-packed per node.

Each model's options come from the recipe selector: its viable recipes, each at replica counts from its minimum up
to the fewest that meet its SLO at its workload. One option per model is chosen so that every replica fits whole on
one node (tensor and pipeline parallelism never cross nodes), ranked by: every SLO met, then fewest GPUs, then most
GPUs reserved for autoscaling up to each model's maximum. Pure: requests and the nodes' free GPUs come in, a plan or
one AimError line comes out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aim_infra.common.errors import AimError
from aim_infra.planning.compat import layout_of
from aim_infra.planning.hardware import GpuSpec
from aim_infra.planning.model_profile import ModelProfile
from aim_infra.planning.performance import PerformanceEstimate, estimate_performance
from aim_infra.planning.recipe import Metric, Recipe
from aim_infra.planning.selection import Decision, Selector
from aim_infra.planning.workload import Workload

#: Where the requests come from in stack config: every error line starts with it.
WHERE = "aim:models"

#: A Kubernetes DNS-1123 label: the model's name is part of its URL path and of its objects' names.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_RULE = (
    "expected a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit, "
    "at most 63 characters): it names the model's URL and objects"
)

#: A replica bound above this is a typo, not a deployment.
MAX_REPLICAS = 1000

#: The search is bounded twice: each model keeps its best MAX_OPTIONS_PER_MODEL (recipe, replicas) options (always
#: including its smallest), and the branch-and-bound over their combinations visits at most MAX_SEARCH_STEPS nodes
#: of its tree. A few models × a few recipes × a few replica counts stay far below both; the limits only keep an
#: absurd request (dozens of models on dozens of nodes) from running for minutes.
MAX_OPTIONS_PER_MODEL = 16
MAX_SEARCH_STEPS = 50_000


class ModelRequest(BaseModel):
    """One model to serve next to others: the selector's inputs, plus its replica bounds.

    `min_replicas` is the autoscaler's floor (0: scale to zero; the GPUs of one replica stay reserved so a request
    that wakes it finds them); None: the fewest replicas that meet the workload's SLO (1 without a workload).
    `max_replicas` is its ceiling; None: as many as the GPUs the other models leave allow.
    Construction by keywords raises one AimError line (model_validate keeps pydantic's ValidationError)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    profile: ModelProfile
    metric: Metric = "throughput"
    precision: str = "auto"
    max_model_len: int | None = Field(default=None, strict=True)  # the selector checks its range per model
    recipe_id: str | None = None
    extra_args: tuple[str, ...] = ()
    workload: Workload | None = None
    min_replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS, strict=True)
    max_replicas: int | None = Field(default=None, ge=1, le=MAX_REPLICAS, strict=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            name = data.get("name")
            head = f"{WHERE}: {name}" if isinstance(name, str) and DNS_LABEL.fullmatch(name) else WHERE
            raise AimError(_validation_line(error, head, ModelRequest)) from None

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        if not DNS_LABEL.fullmatch(name):
            raise ValueError(DNS_RULE)
        return name

    @model_validator(mode="after")
    def _bounds(self) -> ModelRequest:
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_replicas {low} is above max_replicas {high}: expected min ≤ max")
        return self


class NodeInventory(BaseModel):
    """One node as planning sees it: its name, its GPU type and how many of its GPUs are free.

    `gpu` is a GPU name from recipes/gpus.yaml, or the GpuSpec node discovery read (a partitioned GPU carries its
    own memory there). Construction by keywords raises one AimError line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field(min_length=1, max_length=253)
    gpu: GpuSpec | str
    free_gpus: int = Field(ge=0, le=1024, strict=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            name = data.get("node")
            head = f"{WHERE}: node {name}" if isinstance(name, str) and name else WHERE
            raise AimError(_validation_line(error, head, NodeInventory)) from None


@dataclass(frozen=True)
class ModelPlan:
    """One model in the joint plan: its decision (recipe, estimate at `replicas`), its bounds and where it runs."""

    name: str
    decision: Decision
    min_replicas: int  # the autoscaler's floor
    replicas: int  # placed and guaranteed: at least the floor (≥ 1), the fewest that meet the SLO when they fit
    max_replicas: int  # the ceiling the reserved GPUs allow (≤ wanted_max)
    wanted_max: int | None  # the ceiling asked for; None: as far as the spare GPUs allow
    slo_replicas: int | None  # the fewest replicas of this recipe that meet the SLO on these nodes (None: none do)
    placement: tuple[str, ...]  # the node of each placed replica
    reserved: tuple[str, ...]  # the node of each replica reserved for scaling up

    @property
    def gpus_per_replica(self) -> int:
        return self.decision.recipe.gpu_count

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica

    @property
    def reserved_gpus(self) -> int:
        return len(self.reserved) * self.gpus_per_replica

    @property
    def meets_slo(self) -> bool:
        return self.decision.estimate.meets_slo

    @property
    def scale_limited(self) -> bool:
        """The nodes could not reserve the GPUs for every replica up to the maximum asked for."""
        return self.wanted_max is not None and self.max_replicas < self.wanted_max


@dataclass(frozen=True)
class JointPlan:
    """Every model's plan, in request order, and the GPUs each node has left."""

    models: tuple[ModelPlan, ...]
    gpu: GpuSpec
    nodes: tuple[NodeInventory, ...]  # sorted by name
    free_after_placement: dict[str, int]  # per node, once the placed replicas are counted
    free: dict[str, int]  # per node, once the reserved scale-up replicas are counted too
    search_steps: int
    search_cut: bool  # the search hit MAX_SEARCH_STEPS: the plan is the best found, not proven the best
    #: Lines about what was added to the models' decisions after packing (their LoRA adapters), shown with the notes.
    added_notes: tuple[str, ...] = ()

    def model(self, name: str) -> ModelPlan:
        found = next((m for m in self.models if m.name == name), None)
        if found is None:
            raise AimError(f"{WHERE}: no model named {name!r}; planned: {', '.join(m.name for m in self.models)}")
        return found

    @property
    def gpus_placed(self) -> int:
        return sum(m.gpus for m in self.models)

    @property
    def gpus_reserved(self) -> int:
        return sum(m.reserved_gpus for m in self.models)

    @property
    def notes(self) -> list[str]:
        """One line per thing a reader must know: a missed SLO, a model that cannot scale to its maximum."""
        notes = []
        if self.search_cut:
            notes.append(
                f"the search stopped after {self.search_steps} steps: this is the best plan it found, not proven the "
                "best (fewer models or replica bounds make it exhaustive)"
            )
        for m in self.models:
            if not m.meets_slo:
                missed = "; ".join(m.decision.estimate.slo_violations)
                if m.slo_replicas is None:
                    why = "no replica count of its recipe on these nodes meets it"
                elif m.wanted_max is not None and m.slo_replicas > m.wanted_max:
                    why = f"it needs {m.slo_replicas}, above its max_replicas {m.wanted_max}"
                else:
                    why = f"it needs {m.slo_replicas} ({m.slo_replicas * m.gpus_per_replica} GPUs): no room for them"
                notes.append(f"{m.name} misses its SLO with {m.replicas} replica(s) ({missed}): {why}")
            if m.scale_limited:
                notes.append(
                    f"{m.name} can scale to {m.max_replicas} of the {m.wanted_max} replicas asked: the nodes have no "
                    f"room for more {m.gpus_per_replica}-GPU replicas"
                )
        return [*notes, *self.added_notes]

    def free_text(self) -> str:
        """e.g. `node-a 0 free, node-b 3 free (MI300X)`: what no model uses or reserves."""
        return _nodes_text(self.free, self.gpu)


# --- the search's units --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Option:
    """One way to run one model: a recipe (the selector's decision with it fixed) at a replica count."""

    decision: Decision
    replicas: int
    meets_slo: bool
    shortfall: int  # replicas short of the fewest that meet the SLO (0 when it meets it)
    slo_replicas: int | None
    preference: int  # the recipe's place in the selector's ranking for this model
    estimate: Callable[[int], PerformanceEstimate]

    @property
    def gpus_per_replica(self) -> int:
        return self.decision.recipe.gpu_count

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica

    @property
    def cost(self) -> tuple[int, int, int]:
        """What the plan minimises, in order: models missing their SLO, replicas short of it, GPUs."""
        return (0 if self.meets_slo else 1, self.shortfall, self.gpus)

    @property
    def order(self) -> tuple[int, ...]:
        return (*self.cost, self.preference, self.replicas)


@dataclass(frozen=True, slots=True)
class _Packing:
    key: tuple[Any, ...]
    options: tuple[_Option, ...]
    placed: tuple[tuple[str, ...], ...]
    reserved: tuple[tuple[str, ...], ...]
    free_after_placement: dict[str, int]
    free: dict[str, int]


# --- the entry point ------------------------------------------------------------------------------------------------
def plan_models(requests: Sequence[ModelRequest], nodes: Sequence[NodeInventory], selector: Selector) -> JointPlan:
    """Every model's recipe and replicas, chosen together so their replicas fit the nodes' free GPUs, each replica on
    one node; or one AimError line saying which model needs what and what the nodes offer."""
    _check_requests(requests)
    gpu, ordered = _node_gpu(nodes, selector)
    free = {n.node: n.free_gpus for n in ordered}
    biggest = max(free.values())
    if biggest == 0:
        raise AimError(f"{WHERE}: no node has a free GPU: {_nodes_text(free, gpu)}; free some or add a node")
    # The selector sizes one replica against one node: its GPU count is the largest free block (the catalogue's
    # node size at most, which also bounds a partitioned node's many small devices).
    cap = min(biggest, gpu.gpus_per_node)
    per_model = [_model_options(r, gpu, cap, free, selector) for r in requests]
    if any(not c.options for c in per_model) or sum(c.least_gpus for c in per_model) > sum(free.values()):
        raise AimError(_impossible(requests, per_model, free, gpu, cut=False))
    best, steps, cut = _search([c.options for c in per_model], free, requests)
    if best is None:
        raise AimError(_impossible(requests, per_model, free, gpu, cut=cut))
    models = tuple(
        _model_plan(request, option, placed, reserved)
        for request, option, placed, reserved in zip(requests, best.options, best.placed, best.reserved, strict=True)
    )
    return JointPlan(
        models=models,
        gpu=gpu,
        nodes=ordered,
        free_after_placement=best.free_after_placement,
        free=best.free,
        search_steps=steps,
        search_cut=cut,
    )


def _check_requests(requests: Sequence[ModelRequest]) -> None:
    if not requests:
        raise AimError(f"{WHERE}: no models: list at least one")
    seen: set[str] = set()
    for request in requests:
        if request.name in seen:
            raise AimError(
                f"{WHERE}: name {request.name!r} is used twice: expected one name per model (it names the model's "
                "URL and objects)"
            )
        seen.add(request.name)


def _node_gpu(nodes: Sequence[NodeInventory], selector: Selector) -> tuple[GpuSpec, tuple[NodeInventory, ...]]:
    """The one GPU type of the nodes (resolved by name when given as one) and the nodes sorted by name, so the
    placement does not depend on the order discovery listed them in."""
    if not nodes:
        raise AimError(f"{WHERE}: no GPU nodes to plan on; expected at least one node with free GPUs")
    names = [n.node for n in nodes]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise AimError(f"{WHERE}: node {twice[0]!r} is listed twice: expected each node once with its free GPUs")
    specs = [_node_spec(n, selector) for n in nodes]
    if len({(s.name, s.memory_gib) for s in specs}) > 1:
        same_name = len({s.name for s in specs}) < len({(s.name, s.memory_gib) for s in specs})
        shown = ", ".join(
            f"{n.node} {s.name}" + (f" {s.memory_gib:g} GiB" if same_name else "")
            for n, s in zip(nodes, specs, strict=True)
        )
        raise AimError(
            f"{WHERE}: the nodes have different GPU types ({shown}): joint planning takes nodes of one type; "
            "plan the nodes of each type separately or leave the others out"
        )
    ordered = sorted(zip(nodes, specs, strict=True), key=lambda pair: pair[0].node)
    return specs[0], tuple(n.model_copy(update={"gpu": s}) for n, s in ordered)


def _node_spec(node: NodeInventory, selector: Selector) -> GpuSpec:
    if isinstance(node.gpu, GpuSpec):
        return node.gpu
    try:
        return selector.gpus.get(node.gpu)
    except AimError as error:
        raise AimError(f"{WHERE}: node {node.node}: {error}") from None


# --- one model's options --------------------------------------------------------------------------------------------
def _recipe_decisions(
    request: ModelRequest, gpu: GpuSpec, cap: int, free: dict[str, int], selector: Selector
) -> list[Decision]:
    """The model's viable recipes, each as the selector's decision with that recipe fixed, the selector's pick first
    and the rest in its ranking. Viable: it fits one node's free GPUs and can serve the workload; whether it meets
    the SLO is judged per replica count afterwards, since replicas may spread over several nodes."""

    def select(available: int, workload: Workload | None, recipe_id: str | None) -> Decision:
        return selector.select(
            request.profile,
            gpu,
            available,
            metric=request.metric,
            precision=request.precision,
            max_model_len=request.max_model_len,
            recipe_id=recipe_id,
            extra_args=list(request.extra_args),
            workload=workload,
        )

    workload = request.workload
    try:
        probe = select(cap, workload, request.recipe_id)
    except AimError as error:
        if workload is None:
            raise _cannot_serve(request, gpu, cap, free, selector, error) from None
        try:
            # No recipe meets the SLO within one node: list those that fit at all, at the selector's default workload;
            # the replica counts below judge the SLO across nodes, at the model's own workload.
            probe, workload = select(cap, None, request.recipe_id), None
        except AimError:
            raise _cannot_serve(request, gpu, cap, free, selector, error) from None
    if request.recipe_id is not None:
        return [probe]
    decisions = [probe]
    for candidate in probe.candidates:
        if candidate.recipe_id == probe.recipe.id or candidate.output_tokens_per_s is None:
            continue  # the selector's pick, or a recipe with no estimate: it cannot serve here
        try:
            if candidate.recipe_id in selector.catalogue.by_id:
                decision = select(cap, workload, candidate.recipe_id)
            else:  # a generated variant has no id to force: it is the pick among recipes of at most its GPUs
                decision = select(candidate.gpu_count, workload, None)
        except AimError:
            continue
        if decision.recipe.id == candidate.recipe_id:
            decisions.append(decision)
    return decisions


def _cannot_serve(
    request: ModelRequest, gpu: GpuSpec, cap: int, free: dict[str, int], selector: Selector, error: AimError
) -> AimError:
    """The selector's line, with the model's name; and, when one replica needs more GPUs than any node has free,
    what it needs and the nodes' largest free block."""
    forced = selector.catalogue.by_id.get(request.recipe_id) if request.recipe_id else None
    if forced is not None:
        needs, tp, pp = forced.gpu_count, forced.tensor_parallel_size, forced.pipeline_parallel_size
    else:
        try:
            minimum = selector.minimum_gpus(request.profile, gpu, request.precision, request.max_model_len)
        except AimError:
            minimum = None
        needs, tp, pp = minimum or 0, minimum or 0, 1
    if needs > cap:
        parallel = f"TP {tp}" + (f" × PP {pp}" if pp > 1 else "")
        return AimError(
            f"{WHERE}: model {request.name} needs {needs} GPUs per replica ({parallel}) but no node has more than "
            f"{cap} free: {_nodes_text(free, gpu)}; {error}"
        )
    return AimError(f"{WHERE}: model {request.name}: {error}")


def _fewest_meeting(low: int, high: int, estimate: Callable[[int], PerformanceEstimate]) -> int | None:
    """The fewest replicas in [low, high] that meet the SLO, or None. More replicas never make the estimate worse
    (the load is spread evenly), so a binary search finds it."""
    if low > high or not estimate(high).meets_slo:
        return None
    while low < high:
        middle = (low + high) // 2
        if estimate(middle).meets_slo:
            high = middle
        else:
            low = middle + 1
    return low


def _estimator(
    decision: Decision, workload: Workload, gpu: GpuSpec, selector: Selector
) -> Callable[[int], PerformanceEstimate]:
    """The estimate of the decision's recipe at its workload for any replica count, each computed once."""
    layout = layout_of(decision.recipe, gpu, selector.rules, decision.recipe.max_model_len)
    known: dict[int, PerformanceEstimate] = {}

    def estimate(replicas: int) -> PerformanceEstimate:
        if replicas not in known:
            known[replicas] = estimate_performance(
                decision.model, gpu, layout, decision.fit, workload, replicas, selector.performance
            )
        return known[replicas]

    return estimate


@dataclass(frozen=True, slots=True)
class _Choices:
    """One model's options for the search, and the least it needs (for the line saying it does not fit)."""

    options: list[_Option]
    floor: int  # replicas it runs at the least
    smallest: Recipe  # its viable recipe of the fewest GPUs per replica

    @property
    def least_gpus(self) -> int:
        return self.floor * self.smallest.gpu_count

    def need_text(self, name: str) -> str:
        """`chat needs 2 × 4 GPUs (TP 4)`."""
        recipe = self.smallest
        pipeline = f" × PP {recipe.pipeline_parallel_size}" if recipe.pipeline_parallel_size > 1 else ""
        return f"{name} needs {self.floor} × {recipe.gpu_count} GPUs (TP {recipe.tensor_parallel_size}{pipeline})"


def _model_options(request: ModelRequest, gpu: GpuSpec, cap: int, free: dict[str, int], selector: Selector) -> _Choices:
    """The model's (recipe, replicas) options worth searching, best first: per recipe, the fewest replicas that meet
    the SLO (at least the floor) and, in case those do not fit beside the other models, every count from the floor
    up to it (they miss the SLO). No options when even the floor of every recipe exceeds the nodes' GPUs."""
    floor = max(request.min_replicas or 1, 1)  # a model that scales to zero still needs room for one replica
    decisions = _recipe_decisions(request, gpu, cap, free, selector)
    found: list[_Option] = []
    failure: AimError | None = None
    servable: list[Recipe] = []
    for preference, decision in enumerate(decisions):
        size = decision.recipe.gpu_count
        most = min(sum(f // size for f in free.values()), MAX_REPLICAS)  # replicas of this size the nodes hold
        estimate = _estimator(decision, request.workload or decision.workload, gpu, selector)
        try:
            fewest = _fewest_meeting(floor, most, estimate)
            if floor > most:
                estimate(floor)  # beyond the nodes, but it must still serve the workload to count as a need
        except AimError as error:  # the model's workload does not run on this recipe at all (length, KV cache)
            failure = failure or error
            continue
        servable.append(decision.recipe)
        top = min(request.max_replicas or most, most)
        need = fewest if fewest is not None else most + 1
        found.extend(
            _Option(
                decision=decision,
                replicas=replicas,
                meets_slo=replicas >= need,
                shortfall=max(need - replicas, 0),
                slo_replicas=fewest,
                preference=preference,
                estimate=estimate,
            )
            for replicas in range(floor, min(need, top) + 1)
        )
    if not servable:
        assert failure is not None  # the selector returns at least one decision, so each was dropped by an error
        raise AimError(f"{WHERE}: model {request.name} cannot serve its workload on {gpu.name}: {failure}")
    found.sort(key=lambda o: o.order)
    if len(found) > MAX_OPTIONS_PER_MODEL:
        smallest = min(found, key=lambda o: (o.gpus, o.order))
        kept = found[: MAX_OPTIONS_PER_MODEL - 1]
        found = kept if any(o is smallest for o in kept) else [*kept, smallest]
    return _Choices(found, floor, min(servable, key=lambda r: r.gpu_count))


def _impossible(
    requests: Sequence[ModelRequest], per_model: list[_Choices], free: dict[str, int], gpu: GpuSpec, cut: bool
) -> str:
    needs = [choices.need_text(request.name) for request, choices in zip(requests, per_model, strict=True)]
    searched = f" (the search stopped after {MAX_SEARCH_STEPS} steps)" if cut else ""
    return (
        f"{WHERE}: {_and(needs)}, but the nodes offer {_nodes_text(free, gpu)}{searched}: drop a model, lower min "
        "replicas, or choose smaller recipes"
    )


# --- the search -----------------------------------------------------------------------------------------------------
def _search(
    per_model: list[list[_Option]], free: dict[str, int], requests: Sequence[ModelRequest]
) -> tuple[_Packing | None, int, bool]:
    """Branch and bound over one option per model, options best first. A combination's cost (models missing their
    SLO, replicas short, GPUs) is at least its chosen part plus every remaining model's cheapest option, so a branch
    whose bound is already worse than the best packing found is cut; so is one needing more GPUs than the nodes have.
    Each leaf is packed (first-fit decreasing) and, among equal costs, the most GPUs reserved for scaling up wins.
    Returns the best packing (the best found so far when the step limit cut the search short), the steps taken,
    and whether the limit cut it."""
    total = sum(free.values())
    floors = [tuple(min(o.cost[i] for o in options) for i in range(3)) for options in per_model]
    rest: list[tuple[int, ...]] = [(0, 0, 0)] * (len(per_model) + 1)
    for level in range(len(per_model) - 1, -1, -1):
        rest[level] = _add(floors[level], rest[level + 1])
    best: _Packing | None = None
    steps = 0

    def visit(level: int, chosen: tuple[_Option, ...], spent: tuple[int, ...]) -> None:
        nonlocal best, steps
        steps += 1
        if level == len(per_model):
            packing = _pack(chosen, free, requests)
            if packing is not None and (best is None or packing.key < best.key):
                best = packing
            return
        for option in per_model[level]:
            if steps >= MAX_SEARCH_STEPS:
                return
            here = _add(spent, option.cost)
            bound = _add(here, rest[level + 1])
            if best is not None and bound > best.key[:3]:
                break  # options are sorted by cost, so every later one is bounded no better
            if bound[2] > total:
                continue
            visit(level + 1, (*chosen, option), here)

    visit(0, (), (0, 0, 0))
    return best, steps, steps >= MAX_SEARCH_STEPS


def _add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _pack(options: tuple[_Option, ...], free: dict[str, int], requests: Sequence[ModelRequest]) -> _Packing | None:
    """Place every replica whole on one node, or None. First-fit decreasing by GPUs per replica: the big replicas
    are the hard ones, so they go first while nodes are still free. It is exact for the usual sizes: when each size
    divides the larger ones (TP 1, 2, 4, 8), placing a replica of size s anywhere leaves every node's free count
    modulo s unchanged, so the room the smaller sizes find in total does not depend on where the larger went, and a
    decreasing-order placement fits whenever any placement does, whatever each node has free. Other sizes (a
    pipeline of 3) get the usual good heuristic. First fit (nodes by name) fills one node before the next, which
    keeps whole nodes free for large scale-up replicas."""
    left = dict(free)
    placed: list[list[str]] = [[] for _ in options]
    replicas = sorted(
        ((o.gpus_per_replica, m) for m, o in enumerate(options) for _ in range(o.replicas)),
        key=lambda item: (-item[0], item[1]),
    )
    for size, m in replicas:
        node = next((n for n, gpus in left.items() if gpus >= size), None)
        if node is None:
            return None
        left[node] -= size
        placed[m].append(node)
    after_placement = dict(left)
    reserved = _reserve(options, left, requests)
    misses, short, gpus = (sum(o.cost[i] for o in options) for i in range(3))
    reserved_gpus = sum(len(r) * o.gpus_per_replica for r, o in zip(reserved, options, strict=True))
    key = (misses, short, gpus, -reserved_gpus, tuple(o.order for o in options))
    return _Packing(
        key=key,
        options=options,
        placed=tuple(tuple(p) for p in placed),
        reserved=tuple(tuple(r) for r in reserved),
        free_after_placement=after_placement,
        free=left,
    )


def _reserve(options: tuple[_Option, ...], left: dict[str, int], requests: Sequence[ModelRequest]) -> list[list[str]]:
    """Reserve scale-up replicas on the GPUs left (updating `left`): first up to each stated maximum, then, for the
    models without one, as far as the rest allows. One replica per model per round, so models share what is left
    rather than the first taking it all."""
    reserved: list[list[str]] = [[] for _ in options]
    bounded = [m for m, r in enumerate(requests) if r.max_replicas is not None]
    unbounded = [m for m, r in enumerate(requests) if r.max_replicas is None]
    for group in (bounded, unbounded):
        wanting = [m for m in group if options[m].replicas < (requests[m].max_replicas or MAX_REPLICAS)]
        while wanting:
            still = []
            for m in wanting:
                size = options[m].gpus_per_replica
                node = next((n for n, gpus in left.items() if gpus >= size), None)
                if node is None:
                    continue
                left[node] -= size
                reserved[m].append(node)
                if options[m].replicas + len(reserved[m]) < (requests[m].max_replicas or MAX_REPLICAS):
                    still.append(m)
            wanting = still
    return reserved


# --- the result -----------------------------------------------------------------------------------------------------
def _model_plan(
    request: ModelRequest, option: _Option, placed: tuple[str, ...], reserved: tuple[str, ...]
) -> ModelPlan:
    base = option.decision
    estimate = option.estimate(option.replicas)
    # The selector's notes about replicas describe one model filling one node; here the joint plan places them.
    notes = [n for n in base.notes if not n.startswith("sized for the workload") and "stay unused" not in n]
    notes.append(
        f"planned with the other models: {option.replicas} replica(s) placed on {', '.join(sorted(set(placed)))}"
        + (f", {len(reserved)} more reserved for scaling up" if reserved else "")
    )
    decision = replace(
        base,
        replicas=option.replicas,
        estimate=estimate,
        workload=estimate.workload,
        sized=request.workload is not None,
        notes=notes,
    )
    floor = request.min_replicas if request.min_replicas is not None else option.replicas
    return ModelPlan(
        name=request.name,
        decision=decision,
        min_replicas=floor,
        replicas=option.replicas,
        max_replicas=option.replicas + len(reserved),
        wanted_max=request.max_replicas,
        slo_replicas=option.slo_replicas,
        placement=placed,
        reserved=reserved,
    )


# --- small text helpers ---------------------------------------------------------------------------------------------
def _nodes_text(free: dict[str, int], gpu: GpuSpec) -> str:
    return ", ".join(f"{node} {gpus} free" for node, gpus in free.items()) + f" ({gpu.name})"


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _validation_line(error: ValidationError, head: str, model: type[BaseModel]) -> str:
    """One line from pydantic's first complaint: the key, the value given and what is allowed."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    if first.get("type") == "extra_forbidden":
        return f"{head}: {where}: unknown key; expected one of {', '.join(model.model_fields)}"
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    message = message.replace("Input should be", "expected", 1).replace("String should have", "expected", 1)
    if not where:
        return f"{head}: {message}"
    return f"{head}: {where} {_shown(first.get('input'))} is not allowed: {message}"


def _shown(value: object) -> str:
    """repr() for an error line, booleans and null as a stack file writes them, never long."""
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
