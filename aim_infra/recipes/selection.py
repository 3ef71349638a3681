"""Choose the serving recipe: filter the catalogue, prove each candidate fits, rank by estimate, explain the rest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from .assumptions import DEFAULT_ASSUMPTIONS, Assumptions
from .catalogue import RecipeCatalogue, load_catalogue
from .compat import flag_problem, format_problem, layout_of, parallelism_problem, recipe_problem
from .errors import AimError
from .estimate import Estimate, estimate
from .fit import Fit, Layout, fit_on
from .generation import (
    GenerationRules,
    context_ladder,
    generate,
    generated_precision,
    load_generation_rules,
    tensor_parallel_options,
)
from .hardware import GpuCatalogue, GpuSpec, load_gpus
from .model_profile import ModelProfile
from .precision import ON_THE_FLY, PRECISION_WISHES
from .recipe import STRUCTURAL_FLAGS, Metric, Recipe
from .vllm_rules import VllmRules, load_vllm_rules

CandidateStatus = Literal["selected", "viable", "rejected"]
HALF = ("bf16", "fp16")


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One recipe the selector looked at, and why it was or was not chosen."""

    recipe_id: str
    status: CandidateStatus
    recipe_status: str
    gpu_count: int
    tensor_parallel_size: int
    precision: str
    problem: str | None = None
    replicas: int = 0
    tuned_on: str | None = None
    weights_gib_per_gpu: float | None = None
    decode_tokens_per_s: float | None = None
    single_stream_tokens_per_s: float | None = None
    score: float | None = None

    @property
    def reason(self) -> str:
        """One line: the rejection reason, or the layout and estimate of a viable recipe.
        (Formatted on demand: a large catalogue yields thousands of candidates, most never printed.)"""
        if self.problem is not None:
            return self.problem
        where = f", tuned on {self.tuned_on}" if self.tuned_on else ""
        return (
            f"{self.replicas} × {self.gpu_count} GPU, ~{self.decode_tokens_per_s:.0f} tok/s per replica, "
            f"{self.single_stream_tokens_per_s:.0f} tok/s single stream{where}"
        )


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
    estimate: Estimate
    candidates: list[Candidate]
    notes: list[str]

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
            "estimate": asdict(self.estimate),
            "provenance": recipe.provenance,
            "notes": list(self.notes),
            "candidates": [{"recipe_id": c.recipe_id, "status": c.status, "reason": c.reason} for c in self.candidates],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class _Evaluated:
    recipe: Recipe
    problem: str | None
    fit: Fit | None = None
    estimate: Estimate | None = None
    replicas: int = 0
    score: float = 0.0


def check_extra_args(extra_args: list[str], rules: VllmRules) -> None:
    """User-supplied vLLM flags: refuse removed ones and those the recipe owns, one line each."""
    for token in extra_args:
        if not token.startswith("--"):
            continue
        flag = token[2:].split("=", 1)[0]
        if flag in STRUCTURAL_FLAGS:
            raise AimError(f"vllm extra argument --{flag}: set by the recipe; use the matching setting instead")
        value = token.split("=", 1)[1] if "=" in token else ""
        problem = flag_problem({flag: value}, {}, rules)
        if problem:
            raise AimError(f"vllm extra argument {token}: {problem}")


def _score(metric: Metric, recipe: Recipe, est: Estimate, replicas: int, assumptions: Assumptions) -> float:
    """Throughput: node tokens/s (replicas × per-replica decode). Latency: reference requests per second on an idle
    replica (1 / end-to-end time: time to first token plus the output at single-stream speed)."""
    base = replicas * est.decode_tokens_per_s if metric == "throughput" else 1e3 / est.request_latency_ms
    bonus = 1.0
    if recipe.metric == metric:
        bonus += assumptions.metric_match_bonus
    if recipe.status == "validated":
        bonus += assumptions.validated_bonus
    return base * bonus


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
    formats: dict[tuple[object, ...], str | None] = field(default_factory=dict)
    fits: dict[Layout, tuple[Fit, Estimate | None]] = field(default_factory=dict)


class Selector:
    """Stateless selection over loaded catalogues; construct once, call `select` many times."""

    def __init__(
        self,
        catalogue: RecipeCatalogue | None = None,
        rules: VllmRules | None = None,
        generation: GenerationRules | None = None,
        assumptions: Assumptions = DEFAULT_ASSUMPTIONS,
        gpus: GpuCatalogue | None = None,
    ) -> None:
        self.gpus = gpus or load_gpus()
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
            fit = fit_on(profile, gpu, layout, self.assumptions)
            request.fits[layout] = (fit, estimate(profile, gpu, layout, fit, self.assumptions) if fit.fits else None)
        fit, est = request.fits[layout]
        if est is None:
            return _Evaluated(recipe=recipe, problem=fit.reason, fit=fit)
        replicas = available // recipe.gpu_count
        return _Evaluated(
            recipe=recipe,
            problem=None,
            fit=fit,
            estimate=est,
            replicas=replicas,
            score=_score(request.metric, recipe, est, replicas, self.assumptions),
        )

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
    ) -> Decision:
        """The recipe to run `profile` on up to `gpus_available` × `gpu`, or one AimError line saying what would fit."""
        self._check_request(profile, gpu, gpus_available, metric, precision, max_model_len)
        extra = list(extra_args or [])
        check_extra_args(extra, self.rules)
        request = self._request(profile, gpu, gpus_available, metric, precision, max_model_len)
        evaluated = [self._evaluate(r, request, catalogued=True) for r in self.catalogue.for_model(profile.id)]
        manual: _Evaluated | None = None
        if recipe_id is not None:
            manual = self._manual(recipe_id, request)
            evaluated = [e for e in evaluated if e.recipe.id != recipe_id] + [manual]
        viable = [e for e in evaluated if e.problem is None]
        fallback = False
        if manual is None and not viable:
            generated, why_not = self._generated(request)
            evaluated += generated
            viable = [e for e in generated if e.problem is None]
            fallback = True
            if not viable:
                raise AimError(self._infeasible(request, why_not))
        chosen = manual or self._best(viable, gpu)
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
            candidates=self._candidates(evaluated, chosen, gpu),
            notes=self._notes(request, chosen),
        )

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
        if not 1 <= available <= 64:
            raise AimError(f"gpu count {available}: expected 1 to 64 GPUs on one node")
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
    def _best(viable: list[_Evaluated], gpu: GpuSpec) -> _Evaluated:
        # Highest score; ties go to a recipe tuned on this exact GPU, then to fewer GPUs, then by id for determinism.
        return min(
            viable,
            key=lambda e: (-e.score, e.recipe.gpu.lower() != gpu.name.lower(), e.recipe.gpu_count, e.recipe.id),
        )

    @staticmethod
    def _candidates(evaluated: list[_Evaluated], chosen: _Evaluated, gpu: GpuSpec) -> list[Candidate]:
        def describe(e: _Evaluated) -> Candidate:
            recipe, est = e.recipe, e.estimate
            status: CandidateStatus = "selected" if e is chosen else "viable" if e.problem is None else "rejected"
            return Candidate(
                recipe_id=recipe.id,
                status=status,
                recipe_status=recipe.status,
                gpu_count=recipe.gpu_count,
                tensor_parallel_size=recipe.tensor_parallel_size,
                precision=recipe.precision,
                problem=e.problem,
                replicas=e.replicas,
                tuned_on=None if recipe.gpu == gpu.name else recipe.gpu,
                weights_gib_per_gpu=e.fit.weights_gib_per_gpu if e.fit else None,
                decode_tokens_per_s=est.decode_tokens_per_s if est else None,
                single_stream_tokens_per_s=est.single_stream_tokens_per_s if est else None,
                score=e.score if e.problem is None else None,
            )

        order = {"selected": 0, "viable": 1, "rejected": 2}
        described = [describe(e) for e in evaluated]
        return sorted(described, key=lambda c: (order[c.status], -(c.score or 0.0), c.recipe_id))

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
        found = []
        for option in options:
            count = self.minimum_gpus(profile, gpu, option, max_model_len)
            if count is not None:
                found.append((option, count))
        return found

    def _infeasible(self, request: _Request, why_not: str | None) -> str:
        profile, gpu, max_model_len = request.profile, request.gpu, request.max_model_len
        context = f" at max_model_len {max_model_len}" if max_model_len else ""
        head = f"nothing can serve {profile.id} on {request.available} × {gpu.name}{context}"
        if why_not:
            head += f" ({why_not})"
        alternatives = self._alternatives(profile, gpu, max_model_len)
        if not alternatives:
            return f"{head}: it does not fit one node of {gpu.gpus_per_node} × {gpu.name} in any precision it supports"
        parts = [f"needs ≥ {alternatives[0][1]} × {gpu.name} in {alternatives[0][0]}"]
        parts += [f"or {count} with {option} (precision={option})" for option, count in alternatives[1:]]
        return f"{head}: {', '.join(parts)}"

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
        unused = request.available - chosen.replicas * recipe.gpu_count
        if unused:
            notes.append(f"{unused} of {request.available} GPUs stay unused by this recipe")
        return notes
