"""The recipe catalogue: every YAML file under recipes/catalogue/, validated, checked to fit its own GPU, indexed."""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from aim_infra.common.errors import AimError
from aim_infra.planning.assumptions import DEFAULT_ASSUMPTIONS
from aim_infra.planning.compat import layout_of, recipe_problem
from aim_infra.planning.fit import fit_on
from aim_infra.planning.hardware import GpuCatalogue, load_gpus
from aim_infra.planning.model_profile import ModelCatalogue, load_model_catalogue
from aim_infra.planning.paths import CATALOGUE_DIR
from aim_infra.planning.recipe import Recipe, RecipeFile
from aim_infra.planning.vllm_rules import VllmFlags, VllmRules, load_vllm_flags, load_vllm_rules
from aim_infra.planning.yamlio import load_model


class RecipeCatalogue(BaseModel):
    """All catalogue recipes, with an index by model id for selection."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    recipes: tuple[Recipe, ...]
    by_model: dict[str, tuple[Recipe, ...]]
    by_id: dict[str, Recipe]
    source_of: dict[str, str]

    def for_model(self, model_id: str) -> tuple[Recipe, ...]:
        return self.by_model.get(model_id.lower(), ())

    def get(self, recipe_id: str) -> Recipe:
        recipe = self.by_id.get(recipe_id)
        if recipe is None:
            close = [i for i in self.by_id if recipe_id.lower() in i or i.startswith(recipe_id.lower()[:12])][:5]
            hint = f"; similar: {', '.join(close)}" if close else "; list them with `python -m aim_infra recipes`"
            raise AimError(f"unknown recipe {recipe_id!r}{hint}")
        return recipe

    def filtered(self, model: str | None = None, gpu: str | None = None) -> list[Recipe]:
        chosen = list(self.recipes)
        if model:
            chosen = [r for r in chosen if model.lower() in r.model.lower()]
        if gpu:
            chosen = [r for r in chosen if r.gpu.lower() == gpu.lower()]
        return chosen


def check_recipe(
    recipe: Recipe,
    where: str,
    gpus: GpuCatalogue,
    models: ModelCatalogue,
    rules: VllmRules,
    flags: VllmFlags | None = None,
) -> None:
    """Reject a recipe that names an unknown GPU or model, a flag the pinned vLLM lacks, breaks a rule, or does not
    fit its own GPU."""
    prefix = f"{where}: recipe {recipe.id}"
    known = flags or load_vllm_flags()
    for flag in recipe.vllm_args:
        # A removed flag gets the rules' own message (what replaced it) from recipe_problem below.
        if known.canonical(f"--{flag}") is None and rules.removed_flag(flag) is None:
            raise AimError(
                f"{prefix}: vllm_args.{flag}: not a flag of vLLM {known.vllm_version} (the base image's); "
                "allowed: the flags recipes/vllm_flags.yaml lists"
            )
    try:
        gpu = gpus.get(recipe.gpu)
    except AimError as error:
        raise AimError(f"{prefix}: field gpu: {error}") from None
    profile = models.find(recipe.model)
    if profile is None:
        raise AimError(f"{prefix}: field model: {recipe.model!r} is not in the bundled model catalogue (models.yaml)")
    problem = recipe_problem(recipe, profile, gpu, rules)
    if problem:
        raise AimError(f"{prefix}: {problem}")
    fit = fit_on(profile, gpu, layout_of(recipe, gpu, rules), DEFAULT_ASSUMPTIONS)
    if not fit.fits:
        raise AimError(f"{prefix}: does not fit {recipe.gpu_count} × {gpu.name}: {fit.reason}")


def load_catalogue_from(
    directory: Path,
    gpus: GpuCatalogue | None = None,
    models: ModelCatalogue | None = None,
    rules: VllmRules | None = None,
) -> RecipeCatalogue:
    """Load every `*.yaml` under `directory` (sorted, so the order is deterministic); the first bad recipe stops it."""
    gpus = gpus or load_gpus()
    models = models or load_model_catalogue()
    rules = rules or load_vllm_rules()
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise AimError(f"{directory}: no recipe files (*.yaml)")
    recipes: list[Recipe] = []
    source_of: dict[str, str] = {}
    by_model: dict[str, list[Recipe]] = defaultdict(list)
    for path in files:
        for recipe in load_model(path, RecipeFile).recipes:
            if recipe.id in source_of:
                raise AimError(f"{path}: recipe {recipe.id}: id already used in {source_of[recipe.id]}")
            check_recipe(recipe, str(path), gpus, models, rules)
            source_of[recipe.id] = str(path)
            recipes.append(recipe)
            # Index under the catalogue's canonical id, so an alias in the recipe finds the same profile.
            canonical = models.get(recipe.model).id.lower()
            by_model[canonical].append(recipe)
    return RecipeCatalogue(
        recipes=tuple(recipes),
        by_model={k: tuple(v) for k, v in by_model.items()},
        by_id={r.id: r for r in recipes},
        source_of=source_of,
    )


@cache
def load_catalogue(directory: Path = CATALOGUE_DIR) -> RecipeCatalogue:
    """The shipped catalogue (cached per process)."""
    return load_catalogue_from(directory)
