"""Choose the serving recipe: filter the catalogue, prove each candidate fits, rank by estimate, explain the rest."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from aim_infra.common.errors import AimError
from aim_infra.planning.assumptions import DEFAULT_ASSUMPTIONS, Assumptions
from aim_infra.planning.catalogue import RecipeCatalogue, load_catalogue
from aim_infra.planning.compat import flag_problem, format_problem, layout_of, parallelism_problem, recipe_problem
from aim_infra.planning.fit import Fit, Layout, fit_on
from aim_infra.planning.generation import (
    GenerationRules,
    context_ladder,
    generate,
    generated_precision,
    load_generation_rules,
    tensor_parallel_options,
)
from aim_infra.planning.hardware import GpuCatalogue, GpuSpec, load_gpus
from aim_infra.planning.model_profile import ModelProfile
from aim_infra.planning.performance import PerformanceEstimate, estimate_performance
from aim_infra.planning.performance_data import PerformanceData, load_performance_data
from aim_infra.planning.precision import ON_THE_FLY, PRECISION_WISHES
from aim_infra.planning.recipe import STRUCTURAL_FLAGS, Metric, Recipe
from aim_infra.planning.vllm_rules import VllmFlags, VllmRules, load_vllm_flags, load_vllm_rules
from aim_infra.planning.workload import Workload, default_workload

CandidateStatus = Literal["selected", "viable", "rejected"]
HALF = ("bf16", "fp16")


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One recipe the selector looked at, and why it was or was not chosen."""

    recipe_id: str
    status: CandidateStatus
    recipe_status: str
    recipe_metric: str = "throughput"
    gpu_count: int
    tensor_parallel_size: int
    precision: str
    problem: str | None = None
    replicas: int = 0
    tuned_on: str | None = None
    weights_gib_per_gpu: float | None = None
    output_tokens_per_s: float | None = None
    saturation_output_tokens_per_s: float | None = None
    ttft_p95_ms: float | None = None
    tpot_p95_ms: float | None = None
    e2e_latency_s: float | None = None
    cost_per_million_output_tokens: float | None = None
    lost: str | None = None

    @property
    def gpus_used(self) -> int:
        return self.replicas * self.gpu_count

    @property
    def reason(self) -> str:
        """One line: the rejection reason, or the layout and estimate of a viable recipe and why it lost.
        (Formatted on demand: a large catalogue yields thousands of candidates, most never printed.)"""
        if self.problem is not None:
            return self.problem
        where = f", tuned on {self.tuned_on}" if self.tuned_on else ""
        text = (
            f"{self.replicas} × {self.gpu_count} GPU: ~{self.output_tokens_per_s:,.0f} tok/s at the workload, "
            f"TTFT p95 ~{self.ttft_p95_ms:,.0f} ms, TPOT p95 ~{self.tpot_p95_ms:,.1f} ms{where}"
        )
        return f"{text}; lost: {self.lost}" if self.lost else text


@dataclass(frozen=True)
class Decision:
    """The selector's answer: what to run, with what, how many times, how fast we expect it, and the alternatives."""

    model: ModelProfile
    gpu: GpuSpec
    gpus_available: int
    metric: Metric
    recipe: Recipe
    fallback: bool
    vllm_args: list[str]
    env: dict[str, str]
    replicas: int
    fit: Fit
    estimate: PerformanceEstimate
    candidates: list[Candidate]
    notes: list[str]
    workload: Workload
    sized: bool  # replicas chosen from the workload's SLO (aim:workload set) rather than filling the node

    @property
    def rejected(self) -> list[Candidate]:
        return [c for c in self.candidates if c.status == "rejected"]

    def summary(self) -> dict[str, object]:
        """The machine-readable form (`select --json`): the stable contract other tools read."""
        recipe = self.recipe
        return {
            "recipe_id": recipe.id,
            "model": self.model.id,
            "gpu": self.gpu.name,
            "gpu_count": recipe.gpu_count,
            "gpus_available": self.gpus_available,
            "tensor_parallel_size": recipe.tensor_parallel_size,
            "pipeline_parallel_size": recipe.pipeline_parallel_size,
            "precision": recipe.precision,
            "kv_cache_dtype": recipe.kv_cache_dtype,
            "max_model_len": recipe.max_model_len,
            "metric": self.metric,
            "status": recipe.status,
            "fallback": self.fallback,
            "vllm_args": list(self.vllm_args),
            "env": dict(self.env),
            "replicas": self.replicas,
            "workload": self.workload.as_json(),
            "sized_for_workload": self.sized,
            "estimate": self.estimate.as_json(),
            "provenance": recipe.provenance,
            "notes": list(self.notes),
            "candidates": [{"recipe_id": c.recipe_id, "status": c.status, "reason": c.reason} for c in self.candidates],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class _Evaluated:
    recipe: Recipe
    problem: str | None
    fit: Fit | None = None
    layout: Layout | None = None
    estimate: PerformanceEstimate | None = None
    replicas: int = 0


def check_extra_args(extra_args: list[str], rules: VllmRules, flags: VllmFlags | None = None) -> None:
    """User-supplied vLLM flags: refuse removed ones, those the recipe owns and those the pinned vLLM does not know,
    one line each."""
    known = flags or load_vllm_flags()
    for token in extra_args:
        if not token.startswith("-") or _is_number(token):
            continue  # a value of the flag before it
        shown = token.split("=", 1)[0]
        flag = known.canonical(token)
        if flag is None:
            gone = rules.removed_flag(token.lstrip("-").split("=", 1)[0].replace("_", "-"))
            if gone:
                raise AimError(f"vllm extra argument {shown}: removed from vLLM (use {gone.instead})")
            raise AimError(
                f"vllm extra argument {shown}: not a flag of vLLM {known.vllm_version} (the base image's); "
                "allowed: the flags of `vllm serve --help` (recipes/vllm_flags.yaml lists them)"
            )
        if flag in STRUCTURAL_FLAGS:
            raise AimError(f"vllm extra argument {shown}: set by the recipe; use the matching setting instead")
        value = token.split("=", 1)[1] if "=" in token else ""
        problem = flag_problem({flag: value}, {}, rules)
        if problem:
            raise AimError(f"vllm extra argument {token}: {problem}")


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def profile_format_note(profile: ModelProfile) -> str:
    """The quantisation method behind a checkpoint's precision, when it says more (e.g. gpt-oss's mxfp4 MoE)."""
    method = profile.quant_method
    return f" (quantisation {method})" if method and method != profile.checkpoint_precision else ""


@dataclass(slots=True)
class _Request:
    """One selection's inputs plus the memo tables that make thousands of candidates cheap: many recipes share a
    layout or a format, and fit, estimate and format checks depend on nothing else."""

    profile: ModelProfile
    gpu: GpuSpec
    available: int
    metric: Metric
    precision: str
    max_model_len: int | None
    sibling_gpus: frozenset[str]
    workload: Workload = field(default_factory=Workload)  # replaced per select() call
    sized: bool = False
    formats: dict[tuple[object, ...], str | None] = field(default_factory=dict)
    fits: dict[Layout, Fit] = field(default_factory=dict)
    estimates: dict[tuple[Layout, int], PerformanceEstimate] = field(default_factory=dict)


class Selector:
    """Stateless selection over loaded catalogues; construct once, call `select` many times."""

    def __init__(
        self,
        catalogue: RecipeCatalogue | None = None,
        rules: VllmRules | None = None,
        generation: GenerationRules | None = None,
        assumptions: Assumptions = DEFAULT_ASSUMPTIONS,
        gpus: GpuCatalogue | None = None,
        performance: PerformanceData | None = None,
    ) -> None:
        self.gpus = gpus or load_gpus()
        self.performance = performance or load_performance_data()
        self.catalogue = catalogue if catalogue is not None else load_catalogue()
        self.rules = rules or load_vllm_rules()
        self.generation = generation or load_generation_rules()
        self.assumptions = assumptions

    # --- evaluation ---------------------------------------------------------------------------------------------
    def _evaluate(self, recipe: Recipe, request: _Request, *, catalogued: bool) -> _Evaluated:
        """Filter, check, fit and estimate one recipe. Catalogue recipes passed the flag and AITER rules on load
        (for their architecture, which is the request's), so only the format and parallelism checks run again."""
        profile, gpu, precision, available = request.profile, request.gpu, request.precision, request.available
        if recipe.gpu != gpu.name and recipe.gpu.lower() not in request.sibling_gpus:
            return _Evaluated(
                recipe=recipe, problem=f"tuned for {recipe.gpu}, a different architecture than {gpu.arch}"
            )
        stored = profile.checkpoint_precision
        if precision == "auto" and recipe.precision != stored and not (recipe.precision in HALF and stored in HALF):
            return _Evaluated(
                recipe=recipe,
                problem=f"quantises to {recipe.precision} on the fly (changes accuracy): "
                f"set precision={recipe.precision}",
            )
        if precision != "auto" and recipe.precision != precision:
            return _Evaluated(recipe=recipe, problem=f"runs {recipe.precision}, {precision} was asked for")
        if recipe.gpu_count > available:
            return _Evaluated(recipe=recipe, problem=f"needs {recipe.gpu_count} GPUs, {available} available")
        if catalogued:
            quantization = recipe.vllm_args.get("quantization")
            key = (recipe.precision, recipe.kv_cache_dtype, quantization, recipe.tensor_parallel_size)
            if key not in request.formats:
                request.formats[key] = format_problem(
                    profile,
                    gpu,
                    recipe.precision,
                    recipe.kv_cache_dtype,
                    None if quantization is None else str(quantization),
                ) or parallelism_problem(profile, gpu, recipe.tensor_parallel_size)
            problem = request.formats[key]
        else:
            problem = recipe_problem(recipe, profile, gpu, self.rules)
        if problem:
            return _Evaluated(recipe=recipe, problem=problem)
        layout = layout_of(recipe, gpu, self.rules, request.max_model_len)
        if layout not in request.fits:
            request.fits[layout] = fit_on(profile, gpu, layout, self.assumptions)
        fit = request.fits[layout]
        if not fit.fits:
            return _Evaluated(recipe=recipe, problem=fit.reason, fit=fit, layout=layout)
        return _Evaluated(recipe=recipe, problem=None, fit=fit, layout=layout)

    # --- performance --------------------------------------------------------------------------------------------
    def _estimate(self, request: _Request, layout: Layout, fit: Fit, replicas: int) -> PerformanceEstimate:
        key = (layout, replicas)
        if key not in request.estimates:
            request.estimates[key] = estimate_performance(
                request.profile, request.gpu, layout, fit, request.workload, replicas, self.performance
            )
        return request.estimates[key]

    def _perform(self, evaluated: _Evaluated, request: _Request) -> _Evaluated:
        """Attach the estimate: at every replica the node holds, or (sizing) at the fewest replicas that meet the
        workload's SLO. A candidate that cannot serve the workload, or misses the SLO on this node, is rejected."""
        if evaluated.problem is not None:
            return evaluated
        assert evaluated.layout is not None and evaluated.fit is not None
        layout, fit, recipe = evaluated.layout, evaluated.fit, evaluated.recipe
        workload = request.workload
        needed = workload.input_tokens + workload.output_tokens
        if needed > layout.max_model_len:
            return replace(
                evaluated,
                problem=f"max_model_len {layout.max_model_len} is shorter than the workload's {workload.input_tokens} "
                f"+ {workload.output_tokens} tokens per request",
            )
        most = max(1, request.available // recipe.gpu_count)
        try:
            if not request.sized:
                return replace(evaluated, estimate=self._estimate(request, layout, fit, most), replicas=most)
            best = self._estimate(request, layout, fit, most)
            if not best.meets_slo:
                return replace(
                    evaluated,
                    estimate=best,
                    replicas=most,
                    problem=f"misses the workload with {most} replica(s) on this node: "
                    + "; ".join(best.slo_violations),
                )
            low, high = 1, most  # the fewest replicas that meet it: more replicas never make the estimate worse
            while low < high:
                middle = (low + high) // 2
                if self._estimate(request, layout, fit, middle).meets_slo:
                    high = middle
                else:
                    low = middle + 1
            return replace(evaluated, estimate=self._estimate(request, layout, fit, low), replicas=low)
        except AimError as error:
            return replace(evaluated, problem=str(error))

    def replicas_needed(self, evaluated: _Evaluated, request: _Request, gpu_limit: int = 64) -> int | None:
        """Replicas of `evaluated` that would meet the workload beyond this node (None: not even at `gpu_limit`)."""
        assert evaluated.layout is not None and evaluated.fit is not None
        for replicas in range(1, gpu_limit // evaluated.recipe.gpu_count + 1):
            if self._estimate(request, evaluated.layout, evaluated.fit, replicas).meets_slo:
                return replicas
        return None

    def _generated(self, request: _Request) -> tuple[list[_Evaluated], str | None]:
        """Generated variants, one per tensor-parallel size, each at the longest context that fits."""
        profile, gpu = request.profile, request.gpu
        chosen = generated_precision(profile, gpu, request.precision)
        if isinstance(chosen, str):
            return [], chosen
        wanted_precision, quantization = chosen
        variants: list[_Evaluated] = []
        for tp in tensor_parallel_options(profile, gpu, request.available):
            last: _Evaluated | None = None
            for length in context_ladder(profile, request.max_model_len):
                recipe = generate(
                    profile, gpu, tp, wanted_precision, quantization, length, request.metric, self.generation
                )
                last = self._evaluate(recipe, request, catalogued=False)
                if last.problem is None:
                    break
            if last is not None:
                variants.append(last)
        return variants, None

    # --- the public entry point ---------------------------------------------------------------------------------
    # Long: the decision in the order a reader checks it (validate, evaluate the catalogue, a forced recipe, the
    # generated fallback, choose, explain); each step is a method already.
    def select(
        self,
        profile: ModelProfile,
        gpu: GpuSpec,
        gpus_available: int,
        *,
        metric: Metric = "throughput",
        precision: str = "auto",
        max_model_len: int | None = None,
        recipe_id: str | None = None,
        extra_args: list[str] | None = None,
        workload: Workload | None = None,
    ) -> Decision:
        """The recipe to run `profile` on up to `gpus_available` × `gpu`, or one AimError line saying what would fit.
        With a `workload`, replicas (and the choice) minimise GPUs, then cost, subject to its SLO at its load;
        without one, every recipe fills the node and the estimate is shown at the default workload."""
        self._check_request(profile, gpu, gpus_available, metric, precision, max_model_len)
        extra = list(extra_args or [])
        check_extra_args(extra, self.rules)
        request = self._request(profile, gpu, gpus_available, metric, precision, max_model_len)
        request.workload = workload or default_workload(metric)
        request.sized = workload is not None
        evaluated = [self._evaluate(r, request, catalogued=True) for r in self.catalogue.for_model(profile.id)]
        manual: _Evaluated | None = None
        if recipe_id is not None:
            manual = self._manual(recipe_id, request)
            evaluated = [e for e in evaluated if e.recipe.id != recipe_id] + [manual]
        evaluated = [self._perform(e, request) for e in evaluated]
        if manual is not None:
            manual = next(e for e in evaluated if e.recipe.id == recipe_id)
            if manual.estimate is None:
                raise AimError(f"recipe {recipe_id} cannot serve the workload: {manual.problem}")
        viable = [e for e in evaluated if e.problem is None]
        fallback = False
        if manual is None and not viable:
            generated, why_not = self._generated(request)
            generated = [self._perform(e, request) for e in generated]
            evaluated += generated
            viable = [e for e in generated if e.problem is None]
            fallback = True
            if not viable:
                raise AimError(self._infeasible(request, why_not, evaluated))
        chosen = manual or self._best(viable, request)
        assert chosen.fit is not None and chosen.estimate is not None  # viable ones always carry both
        recipe = chosen.recipe
        if max_model_len is not None and recipe.max_model_len != max_model_len:
            recipe = recipe.model_copy(update={"max_model_len": max_model_len})
        return Decision(
            model=profile,
            gpu=gpu,
            gpus_available=gpus_available,
            metric=metric,
            recipe=recipe,
            fallback=fallback,
            vllm_args=recipe.args_list() + extra,
            env=dict(recipe.env),
            replicas=chosen.replicas,
            fit=chosen.fit,
            estimate=chosen.estimate,
            candidates=self._candidates(evaluated, chosen, request),
            notes=self._notes(request, chosen),
            workload=request.workload,
            sized=request.sized,
        )

    def with_replicas(self, decision: Decision, replicas: int) -> Decision:
        """The same decision at a replica count the user fixed (aim:replicas), with its estimate redone."""
        if replicas == decision.replicas:
            return decision
        layout = layout_of(decision.recipe, decision.gpu, self.rules, decision.recipe.max_model_len)
        estimate = estimate_performance(
            decision.model, decision.gpu, layout, decision.fit, decision.workload, replicas, self.performance
        )
        note = f"replicas fixed at {replicas} (aim:replicas): the estimate is for {replicas} replica(s)"
        return replace(decision, replicas=replicas, estimate=estimate, notes=[*decision.notes, note])

    def _request(
        self,
        profile: ModelProfile,
        gpu: GpuSpec,
        available: int,
        metric: Metric,
        precision: str,
        max_model_len: int | None,
    ) -> _Request:
        siblings = frozenset(g.name.lower() for g in self.gpus.gpus if g.arch == gpu.arch)
        return _Request(profile, gpu, available, metric, precision, max_model_len, siblings | {gpu.name.lower()})

    def _check_request(
        self,
        profile: ModelProfile,
        gpu: GpuSpec,
        available: int,
        metric: str,
        precision: str,
        max_model_len: int | None,
    ) -> None:
        if metric not in ("throughput", "latency"):
            raise AimError(f"metric {metric!r}: expected throughput or latency")
        if precision not in PRECISION_WISHES:
            raise AimError(f"precision {precision!r}: expected one of {', '.join(PRECISION_WISHES)}")
        if not 1 <= available <= gpu.gpus_per_node:
            # The count is what one node offers (replicas spread over nodes by aim:replicas, not by this count).
            raise AimError(
                f"gpu count {available} (aim:gpuCount / --gpu-count): expected 1 to {gpu.gpus_per_node}, the most "
                f"{gpu.name} one node holds (recipes/gpus.yaml)"
            )
        if max_model_len is not None and not 256 <= max_model_len <= profile.max_context:
            raise AimError(
                f"max_model_len {max_model_len}: expected 256 to {profile.max_context} (the context of {profile.id})"
            )

    def _manual(self, recipe_id: str, request: _Request) -> _Evaluated:
        recipe = self.catalogue.get(recipe_id)
        profile = request.profile
        if self.catalogue.for_model(profile.id) and recipe not in self.catalogue.for_model(profile.id):
            raise AimError(f"recipe {recipe_id} serves {recipe.model}, not {profile.id}")
        wish = recipe.precision if request.precision == "auto" else request.precision
        manual_request = self._request(
            profile, request.gpu, request.available, request.metric, wish, request.max_model_len
        )
        evaluated = self._evaluate(recipe, manual_request, catalogued=False)
        if evaluated.problem:
            raise AimError(
                f"recipe {recipe_id} cannot serve on {request.available} × {request.gpu.name}: {evaluated.problem}"
            )
        return evaluated

    @staticmethod
    def _rank(e: _Evaluated, request: _Request) -> tuple[object, ...]:
        """Sort key, best first. The estimate decides; what a recipe is tuned for, whether it is validated and where
        it was tuned only break exact ties, so a bonus can never pick a slower candidate.
        Sizing (a workload was given): fewest GPUs, then cost per token, then the metric at the workload.
        Otherwise: throughput = the node's saturated output tokens/s; latency = mean end-to-end time at the
        workload."""
        est = e.estimate
        assert est is not None
        if request.metric == "latency":
            measure: float = est.e2e_latency_s
        elif request.sized:
            measure = -est.output_tokens_per_s
        else:
            measure = -est.saturation_output_tokens_per_s
        primary: tuple[object, ...] = (
            (est.gpu_count, est.cost_per_million_output_tokens or 0.0) if request.sized else ()
        )
        recipe = e.recipe
        return (
            *primary,
            measure,
            recipe.metric != request.metric,
            recipe.status != "validated",
            recipe.gpu.lower() != request.gpu.name.lower(),
            recipe.gpu_count,
            recipe.id,
        )

    def _best(self, viable: list[_Evaluated], request: _Request) -> _Evaluated:
        return min(viable, key=lambda e: self._rank(e, request))

    @staticmethod
    def _why_lost(e: _Evaluated, chosen: _Evaluated, request: _Request) -> str:
        """One phrase: what made `e` lose to `chosen`."""
        mine, theirs = e.estimate, chosen.estimate
        assert mine is not None and theirs is not None
        if request.sized and mine.gpu_count != theirs.gpu_count:
            return f"needs {mine.gpu_count} GPUs for the workload, {chosen.recipe.id} needs {theirs.gpu_count}"
        if request.sized and (mine.cost_per_million_output_tokens or 0) != (theirs.cost_per_million_output_tokens or 0):
            return (
                f"costs ~{mine.cost_per_million_output_tokens:.3g} per 1M output tokens, "
                f"{chosen.recipe.id} ~{theirs.cost_per_million_output_tokens:.3g}"
            )
        if request.metric == "latency" and mine.e2e_latency_s != theirs.e2e_latency_s:
            return f"mean request latency ~{mine.e2e_latency_s:.3g} s > ~{theirs.e2e_latency_s:.3g} s"
        if request.metric == "throughput":
            attr = "output_tokens_per_s" if request.sized else "saturation_output_tokens_per_s"
            what = "at the workload" if request.sized else "at full load"
            a, b = getattr(mine, attr), getattr(theirs, attr)
            if a != b:
                return f"~{a:,.0f} tok/s {what} < ~{b:,.0f}"
        return f"same estimate; {chosen.recipe.id} is preferred (tuned for {request.metric}, validated or tuned here)"

    def _candidates(self, evaluated: list[_Evaluated], chosen: _Evaluated, request: _Request) -> list[Candidate]:
        gpu = request.gpu

        def describe(e: _Evaluated) -> Candidate:
            recipe, est = e.recipe, e.estimate
            status: CandidateStatus = "selected" if e is chosen else "viable" if e.problem is None else "rejected"
            return Candidate(
                recipe_id=recipe.id,
                status=status,
                recipe_status=recipe.status,
                recipe_metric=recipe.metric,
                gpu_count=recipe.gpu_count,
                tensor_parallel_size=recipe.tensor_parallel_size,
                precision=recipe.precision,
                problem=e.problem,
                replicas=e.replicas,
                tuned_on=None if recipe.gpu == gpu.name else recipe.gpu,
                weights_gib_per_gpu=e.fit.weights_gib_per_gpu if e.fit else None,
                output_tokens_per_s=est.output_tokens_per_s if est else None,
                saturation_output_tokens_per_s=est.saturation_output_tokens_per_s if est else None,
                ttft_p95_ms=est.ttft_p95_ms if est else None,
                tpot_p95_ms=est.tpot_p95_ms if est else None,
                e2e_latency_s=est.e2e_latency_s if est else None,
                cost_per_million_output_tokens=est.cost_per_million_output_tokens if est else None,
                lost=self._why_lost(e, chosen, request) if status == "viable" else None,
            )

        order = {"selected": 0, "viable": 1, "rejected": 2}
        ranked = {
            id(e): i
            for i, e in enumerate(
                sorted((e for e in evaluated if e.problem is None), key=lambda e: self._rank(e, request))
            )
        }
        described = [(describe(e), ranked.get(id(e), 0)) for e in evaluated]
        described.sort(key=lambda item: (order[item[0].status], item[1], item[0].recipe_id))
        return [c for c, _ in described]

    def minimum_gpus(
        self, profile: ModelProfile, gpu: GpuSpec, precision: str, max_model_len: int | None
    ) -> int | None:
        """Fewest GPUs (one node) on which a generated recipe in `precision` fits, or None."""
        chosen = generated_precision(profile, gpu, precision)
        if isinstance(chosen, str):
            return None
        wanted, quantization = chosen
        length = max_model_len or context_ladder(profile, None)[-1]
        for tp in tensor_parallel_options(profile, gpu, gpu.gpus_per_node):
            recipe = generate(profile, gpu, tp, wanted, quantization, length, "throughput", self.generation)
            request = self._request(profile, gpu, tp, "throughput", precision, None)
            if self._evaluate(recipe, request, catalogued=False).problem is None:
                return tp
        return None

    def _alternatives(self, profile: ModelProfile, gpu: GpuSpec, max_model_len: int | None) -> list[tuple[str, int]]:
        """(precision, minimum GPUs) for the checkpoint's precision and, from a 16-bit checkpoint, fp8 on the fly."""
        options = [profile.checkpoint_precision]
        if profile.checkpoint_precision in HALF:
            options += [p for p in ON_THE_FLY if p in gpu.weight_precisions]
        found: list[tuple[str, int]] = []
        for option in options:
            count = self.minimum_gpus(profile, gpu, option, max_model_len)
            if count is not None:
                found.append((option, count))
        return found

    def _infeasible(self, request: _Request, why_not: str | None, evaluated: list[_Evaluated]) -> str:
        profile, gpu, max_model_len = request.profile, request.gpu, request.max_model_len
        missed = [e for e in evaluated if e.estimate is not None and e.problem is not None]
        if request.sized and missed:
            return self._slo_infeasible(request, missed)
        context = f" at max_model_len {max_model_len}" if max_model_len else ""
        head = f"nothing can serve {profile.id} on {request.available} × {gpu.name}{context}"
        if why_not:
            head += f" ({why_not})"
        if isinstance(generated_precision(profile, gpu, "auto"), str):
            # Not a question of size: this GPU has no kernels for the checkpoint's weight format at all.
            elsewhere = [g.name for g in self.gpus.gpus if not isinstance(generated_precision(profile, g, "auto"), str)]
            where = f"; it runs on {', '.join(elsewhere)}" if elsewhere else ""
            return (
                f"nothing can serve {profile.id} on {gpu.name}: {gpu.arch} has no kernels in ROCm vLLM for its "
                f"{profile.checkpoint_precision} weights{profile_format_note(profile)}{where}"
            )
        alternatives = self._alternatives(profile, gpu, max_model_len)
        if not alternatives:
            return f"{head}: it does not fit one node of {gpu.gpus_per_node} × {gpu.name} in any precision it supports"
        here = [option for option, count in alternatives if count <= request.available]
        if here:
            # The GPUs are enough for these precisions: only the one asked for (or the checkpoint's) is not.
            shown = " or ".join(here)
            beyond = [f"{option} needs ≥ {count} × {gpu.name}" for option, count in alternatives if option not in here]
            return f"{head}: it can be served here in {shown} (set precision to {shown})" + "".join(
                f"; {text}" for text in beyond
            )
        parts = [f"needs ≥ {alternatives[0][1]} × {gpu.name} in {alternatives[0][0]}"]
        parts += [f"or {count} with {option} (precision={option})" for option, count in alternatives[1:]]
        return f"{head}: {', '.join(parts)}"

    def _slo_infeasible(self, request: _Request, missed: list[_Evaluated]) -> str:
        """Every recipe fits but none meets the workload on this node: say what would."""
        gpu, workload = request.gpu, request.workload
        head = f"no recipe meets the workload ({workload.describe()}) on {request.available} × {gpu.name}"
        options = []
        for e in missed:
            needed = self.replicas_needed(e, request)
            if needed is not None:
                options.append((needed * e.recipe.gpu_count, needed, e))
        if not options:
            best = min(missed, key=lambda e: self._rank(e, request))
            assert best.estimate is not None
            return f"{head}: not even with 64 GPUs; best on this node: {'; '.join(best.estimate.slo_violations)}"
        gpus, needed, e = min(options, key=lambda o: (o[0], o[2].recipe.id))
        return (
            f"{head}: needs {needed} replicas of TP{e.recipe.tensor_parallel_size} ({e.recipe.id}) = {gpus} "
            f"{gpu.name}; this node has {request.available}. Relax the SLO, lower the load, or add nodes"
        )

    def _notes(self, request: _Request, chosen: _Evaluated) -> list[str]:
        profile, gpu = request.profile, request.gpu
        notes: list[str] = []
        recipe = chosen.recipe
        if recipe.status == "generated":
            notes.append("no catalogue recipe fits: this recipe was generated from the model profile (conservative)")
        if request.precision == "auto" and recipe.precision == profile.checkpoint_precision:
            for option, count in self._alternatives(profile, gpu, request.max_model_len)[1:]:
                if count < recipe.gpu_count:
                    notes.append(
                        f"cheaper alternative: {count} × {gpu.name} with {option} quantised on the fly "
                        f"(set precision={option}; changes accuracy)"
                    )
        if recipe.metric != request.metric:
            notes.append(
                f"{recipe.id} is tuned for {recipe.metric}, not {request.metric}: it has the best estimated "
                f"{request.metric} of the candidates here"
            )
        if request.sized:
            notes.append(
                f"sized for the workload ({request.workload.describe()}): {chosen.replicas} replica(s) are the fewest "
                "that meet it"
            )
        unused = request.available - chosen.replicas * recipe.gpu_count
        if unused:
            notes.append(f"{unused} of {request.available} GPUs stay unused by this recipe")
        return notes
