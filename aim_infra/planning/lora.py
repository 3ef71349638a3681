"""LoRA adapters in the plan: whether the pinned vLLM serves them on a model, adapter checks, the engine's LoRA flags.

Each adapter's adapter_config.json is checked for what vLLM would refuse when it loads the adapter; plan_lora sizes
--max-loras / --max-lora-rank and adds the environment a MoE model needs. The facts come from two YAML files:
recipes/vllm_lora.yaml (generated from vLLM's source by scripts/extract_vllm_lora.py: LoRA-capable architectures,
allowed ranks) and recipes/vllm_lora_rules.yaml (read by hand from the same release: PEFT features vLLM refuses, the
MoE kernel switch, the speculative-decoding budget). The stack adds what only it knows: where each adapter's files are
in the pod (`--lora-modules`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aim_infra.common.errors import AimError
from aim_infra.planning.hardware import load_gpus
from aim_infra.planning.model_profile import ModelProfile
from aim_infra.planning.paths import VLLM_LORA_FILE, VLLM_LORA_RULES_FILE
from aim_infra.planning.recipe import Recipe
from aim_infra.planning.vllm_rules import load_vllm_flags, load_vllm_rules
from aim_infra.planning.yamlio import load_model

VERSION = r"^[0-9]+\.[0-9]+\.[0-9]+$"
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

#: Flags the stack sets from loraModules: the adapters' paths in the pod are known only there.
STACK_ONLY_FLAGS = ("lora-modules",)
#: Flags plan_lora sizes from the adapters (LoraServing.vllm_args).
SIZED_FLAGS = ("enable-lora", "max-loras", "max-lora-rank", "max-cpu-loras")


class LoraCapability(BaseModel):
    """recipes/vllm_lora.yaml: what one vLLM release's source says about LoRA (generated, never edited by hand)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vllm_version: str = Field(pattern=VERSION)
    read_on: str = Field(pattern=DATE)
    sources: list[str] = Field(min_length=1)
    max_lora_ranks: list[int] = Field(min_length=1, description="The values --max-lora-rank accepts (MaxLoRARanks).")
    architectures: list[str] = Field(min_length=1, description="Registry architectures whose class supports LoRA.")

    @model_validator(mode="after")
    def _ordered(self) -> LoraCapability:
        if self.max_lora_ranks != sorted(set(self.max_lora_ranks)) or self.max_lora_ranks[0] < 1:
            raise ValueError("max_lora_ranks must be distinct positive whole numbers in ascending order")
        if len(set(self.architectures)) != len(self.architectures):
            raise ValueError("architectures lists a name twice")
        return self


FeatureValue = bool | str | list[str] | None
#: The adapter_config.json keys AdapterConfig keeps for the rules to look at.
FeatureKey = Literal["use_dora", "modules_to_save", "bias"]


class RefusedFeature(BaseModel):
    """An adapter_config.json key vLLM refuses unless its value is one of `allowed` (a missing key is allowed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: FeatureKey
    allowed: list[FeatureValue] = Field(min_length=1)
    refusal: str = Field(min_length=1, description="vLLM's own words when it refuses the adapter.")
    source: str = Field(min_length=1)


class AdapterRules(BaseModel):
    """What vLLM's PEFTHelper needs from adapter_config.json and what it refuses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required_keys: list[str] = Field(min_length=1)
    required_source: str = Field(min_length=1)
    refused: list[RefusedFeature]
    rank_source: str = Field(min_length=1)


class MoeRule(BaseModel):
    """The environment a mixture-of-experts model needs when it serves LoRA, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: dict[str, str] = Field(min_length=1)
    why: str = Field(min_length=1)
    sources: list[str] = Field(min_length=1)


class SpeculativeRule(BaseModel):
    """LoRA with speculative decoding: the scheduler's token budget must hold every sequence's draft tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    why: str = Field(min_length=1)
    source: str = Field(min_length=1)


class LoraRulesFile(BaseModel):
    """recipes/vllm_lora_rules.yaml: rules read by hand from the pinned vLLM's source, each with where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vllm_version: str = Field(pattern=VERSION)
    checked_on: str = Field(pattern=DATE)
    adapter: AdapterRules
    moe: MoeRule
    speculative: SpeculativeRule


class LoraRules(BaseModel):
    """Both files together, for one vLLM release."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    capability: LoraCapability
    rules: LoraRulesFile

    @property
    def vllm_version(self) -> str:
        return self.capability.vllm_version

    @property
    def max_rank(self) -> int:
        return self.capability.max_lora_ranks[-1]

    def serves(self, architecture: str) -> bool:
        """Whether vLLM serves LoRA adapters on a model of this architecture (config.json `architectures[0]`)."""
        return architecture in self.capability.architectures

    def rank_for(self, rank: int) -> int | None:
        """The smallest --max-lora-rank that holds an adapter of `rank`; None above the largest."""
        return next((allowed for allowed in self.capability.max_lora_ranks if allowed >= rank), None)


@cache
def load_lora_rules(capability_path: Path = VLLM_LORA_FILE, rules_path: Path = VLLM_LORA_RULES_FILE) -> LoraRules:
    """Both LoRA files (cached: read once per process); one line when they are for different vLLM releases."""
    capability = load_model(capability_path, LoraCapability)
    rules = load_model(rules_path, LoraRulesFile)
    if rules.vllm_version != capability.vllm_version:
        raise AimError(
            f"{rules_path}: vllm_version {rules.vllm_version} but {capability_path} is for vLLM "
            f"{capability.vllm_version}; re-check the hand-written rules against that release and update the version"
        )
    return LoraRules(capability=capability, rules=rules)


def _shown(value: object) -> str:
    """A JSON value as adapter_config.json spells it, cut short."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


class AdapterConfig(BaseModel):
    """What the plan reads from one adapter's adapter_config.json (PEFT's LoraConfig as JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int = Field(gt=0, description="`r`: the adapter's LoRA rank.")
    lora_alpha: float = Field(description="Scaling numerator: vLLM scales the update by lora_alpha / r.")
    target_modules: tuple[str, ...] | str = Field(description="Module names, or PEFT's regular expression.")
    base_model: str | None = Field(default=None, description="`base_model_name_or_path`: what it was trained on.")
    use_dora: bool = False
    modules_to_save: tuple[str, ...] | None = None
    bias: str | None = "none"

    def feature(self, key: FeatureKey) -> FeatureValue:
        """The value of an adapter_config.json key the rules look at, as JSON would hold it."""
        values: dict[FeatureKey, FeatureValue | tuple[str, ...]] = {
            "use_dora": self.use_dora,
            "modules_to_save": self.modules_to_save,
            "bias": self.bias,
        }
        value = values[key]
        return list(value) if isinstance(value, tuple) else value

    def refusal(self, rules: LoraRules) -> str | None:
        """Why the pinned vLLM would refuse this adapter when it loads it (key, value, what is allowed), or None."""
        for feature in rules.rules.adapter.refused:
            value = self.feature(feature.key)
            if value not in feature.allowed:
                allowed = " or ".join(_shown(a) for a in feature.allowed)
                return (
                    f"{feature.key} = {_shown(value)} is refused by vLLM {rules.vllm_version} "
                    f"({feature.refusal}); allowed: {allowed}"
                )
        if self.rank > rules.max_rank:
            return (
                f"r = {self.rank} is above the largest LoRA rank vLLM {rules.vllm_version} serves ({rules.max_rank}); "
                "allowed: a whole number from 1 to "
                f"{rules.max_rank}, or serve a model with the adapter merged into its weights"
            )
        return None

    @classmethod
    def from_json(cls, data: object, where: str) -> AdapterConfig:
        """Read a parsed adapter_config.json; one AimError line naming `where`, the key, the value and what is
        allowed for anything malformed or refused by the pinned vLLM."""
        rules = load_lora_rules()
        if not isinstance(data, Mapping):
            raise AimError(f"{where}: adapter_config.json holds {_shown(data)}, not a JSON object")
        missing = [key for key in rules.rules.adapter.required_keys if key not in data]
        if missing:
            needed = ", ".join(rules.rules.adapter.required_keys)
            raise AimError(
                f"{where}: adapter_config.json has no {missing[0]}; vLLM {rules.vllm_version} needs {needed} "
                "(is this a LoRA adapter?)"
            )
        problem = _malformed(data, rules.max_rank)
        if problem:
            raise AimError(f"{where}: adapter_config.json {problem}")
        target_modules = data["target_modules"]
        modules_to_save = data.get("modules_to_save")
        config = cls.model_validate(
            {
                "rank": data["r"],
                "lora_alpha": data["lora_alpha"],
                "target_modules": target_modules if isinstance(target_modules, str) else tuple(target_modules),
                "base_model": data.get("base_model_name_or_path") or None,
                "use_dora": bool(data.get("use_dora")),
                "modules_to_save": None if modules_to_save is None else tuple(modules_to_save),
                # A missing key is PEFT's default "none"; an explicit null is refused by vLLM like any other bias.
                "bias": data.get("bias", "none"),
            }
        )
        refusal = config.refusal(rules)
        if refusal:
            raise AimError(f"{where}: adapter_config.json {refusal}")
        return config


def _malformed(data: Mapping[str, object], max_rank: int) -> str | None:
    """The first key of adapter_config.json with a value of the wrong kind, as `key = value: expected ...`."""
    rank = data["r"]
    whole = isinstance(rank, int) and not isinstance(rank, bool) and rank > 0
    checks: list[tuple[str, bool, str]] = [
        ("r", whole, f"a whole number from 1 to {max_rank}"),
        ("lora_alpha", _is_number(data["lora_alpha"]), "a number"),
        (
            "target_modules",
            isinstance(data["target_modules"], str) or _is_names(data["target_modules"]),
            "a list of module names or a regular expression",
        ),
        (
            "base_model_name_or_path",
            data.get("base_model_name_or_path") is None or isinstance(data.get("base_model_name_or_path"), str),
            "a model id or path",
        ),
        ("use_dora", data.get("use_dora") is None or isinstance(data.get("use_dora"), bool), "true or false"),
        (
            "modules_to_save",
            data.get("modules_to_save") is None or _is_names(data.get("modules_to_save")),
            "null or a list of module names",
        ),
        ("bias", data.get("bias") is None or isinstance(data.get("bias"), str), '"none", "all" or "lora_only"'),
    ]
    for key, fine, expected in checks:
        if not fine:
            return f"{key} = {_shown(data.get(key))}: expected {expected}"
    return None


class LoraAdapter(BaseModel):
    """One adapter the deployment serves: the name requests use, its Hub repository and revision, its config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    model: str = Field(min_length=1, description="Hugging Face repo id of the adapter.")
    revision: str | None = None
    config: AdapterConfig


class LoraServing(BaseModel):
    """How the engine serves a model's adapters: the LoRA flags, the environment and the preview's notes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_lora_rank: int = Field(gt=0)
    max_loras: int = Field(gt=0, description="Adapters one batch can mix.")
    max_cpu_loras: int = Field(gt=0, description="Adapters kept loaded in host memory.")
    env: dict[str, str] = Field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def vllm_args(self) -> list[str]:
        """The LoRA flags, one token each; `--lora-modules` (the adapters' paths in the pod) is the stack's."""
        return [
            "--enable-lora",
            f"--max-loras={self.max_loras}",
            f"--max-lora-rank={self.max_lora_rank}",
            f"--max-cpu-loras={self.max_cpu_loras}",
        ]


def plan_lora(
    profile: ModelProfile, adapters: Sequence[LoraAdapter], recipe: Recipe, *, where: str
) -> LoraServing | None:
    """How `recipe` serves `adapters` on `profile`; None without adapters. One AimError line when the pinned vLLM
    cannot: an architecture without LoRA support, a rank above the largest, a refused PEFT feature, or a speculative
    decoding budget vLLM rejects with LoRA on."""
    if not adapters:
        return None
    rules = load_lora_rules()
    if not rules.serves(profile.architecture):
        raise AimError(
            f"{where}: {profile.id} is a {profile.architecture}, which vLLM {rules.vllm_version} does not serve with "
            "LoRA adapters (recipes/vllm_lora.yaml); serve a merged model instead (the adapter folded into the weights)"
        )
    names = [adapter.name for adapter in adapters]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise AimError(f"{where}: adapter name {repeated!r} is used twice; each adapter needs a name of its own")
    for adapter in adapters:
        refusal = adapter.config.refusal(rules)
        if refusal:
            raise AimError(f"{where}: adapter {adapter.name} ({adapter.model}): adapter_config.json {refusal}")
    largest = max(adapter.config.rank for adapter in adapters)
    max_lora_rank = rules.rank_for(largest)
    if max_lora_rank is None:  # refusal() already caught it; kept so the type checker knows
        raise AimError(f"{where}: LoRA rank {largest} is above vLLM's largest ({rules.max_rank})")
    notes = [
        "the performance estimate is the base model's: the adapters' weight buffers "
        f"({len(adapters)} adapter(s) × rank {max_lora_rank} on every adapted layer) and the LoRA kernels' time are "
        "not modelled",
    ]
    notes += _speculative(recipe, rules, where)
    env: dict[str, str] = {}
    if profile.is_moe:
        env = dict(rules.rules.moe.env)
        shown = ", ".join(f"{name}={value}" for name, value in env.items())
        notes.append(f"MoE model with LoRA: {shown} ({rules.rules.moe.why})")
    notes += [note for adapter in adapters if (note := _base_model_note(adapter, profile))]
    # Every adapter fits in one batch and stays loaded: no request waits for an adapter slot or a reload.
    return LoraServing(
        max_lora_rank=max_lora_rank, max_loras=len(adapters), max_cpu_loras=len(adapters), env=env, notes=tuple(notes)
    )


def _speculative_tokens(recipe: Recipe, where: str) -> tuple[bool, int | None]:
    """(whether the recipe runs speculative decoding, its num_speculative_tokens when the recipe states it)."""
    args = recipe.vllm_args
    tokens: int | None = None
    raw = args.get("speculative-config")
    if isinstance(raw, str):
        try:
            config = json.loads(raw)
        except ValueError:
            config = None
        if not isinstance(config, dict):
            raise AimError(
                f"{where}: recipe {recipe.id} speculative-config {_shown(raw)} is not a JSON object "
                '(e.g. {"method": "ngram", "num_speculative_tokens": 3})'
            )
        stated = config.get("num_speculative_tokens")
        tokens = stated if isinstance(stated, int) and not isinstance(stated, bool) else None
    spec_tokens = recipe.int_arg("spec-tokens")
    tokens = spec_tokens if spec_tokens is not None else tokens
    on = raw is not None or any(flag in args for flag in ("spec-method", "spec-model", "spec-tokens"))
    return on, tokens


def _scheduler_budget(recipe: Recipe) -> tuple[int, int]:
    """(max-num-seqs, max-num-batched-tokens) the engine will run the recipe with: the recipe's, else vLLM's defaults
    for the GPU's memory, as EngineArgs._set_default_max_num_seqs_and_batched_tokens_args fills them in."""
    max_num_seqs, max_num_batched_tokens, _ = recipe.scheduler_limits
    defaults = load_vllm_rules().engine_defaults
    memory = load_gpus().get(recipe.gpu).memory_gib
    throughput = recipe.vllm_args.get("performance-mode") == "throughput"  # doubles each default, not a stated value
    seqs = max_num_seqs or defaults.max_num_seqs(memory) * (2 if throughput else 1)
    tokens = max_num_batched_tokens
    if tokens is None:
        tokens = defaults.max_num_batched_tokens(memory) * (2 if throughput else 1)
        if recipe.vllm_args.get("no-enable-chunked-prefill") is True:
            tokens = max(tokens, recipe.max_model_len)  # without chunking, a whole prompt must fit one step
    return seqs, tokens


def _speculative(recipe: Recipe, rules: LoraRules, where: str) -> list[str]:
    """Notes about speculative decoding with LoRA; one AimError line when vLLM would refuse to start."""
    on, tokens = _speculative_tokens(recipe, where)
    if not on:
        return []
    if tokens is None:
        return [
            f"recipe {recipe.id} runs speculative decoding with the draft model's own token count, which the plan "
            f"cannot see: {rules.rules.speculative.why}"
        ]
    seqs, budget = _scheduler_budget(recipe)
    needed = seqs * (tokens + 1)
    if budget < needed:
        raise AimError(
            f"{where}: recipe {recipe.id} runs speculative decoding with {tokens} speculative tokens and "
            f"max-num-seqs {seqs}, so with LoRA vLLM {rules.vllm_version} needs max-num-batched-tokens ≥ "
            f"{seqs} × ({tokens} + 1) = {needed}, and it is {budget}; choose a recipe without speculative decoding "
            "or serve a merged model"
        )
    return []


def _is_local_path(name: str) -> bool:
    """A folder the adapter was trained from rather than a Hub id (`owner/name` or a bare `name`)."""
    return name.startswith(("/", "./", "../", "~")) or "\\" in name or name.count("/") > 1


def _base_model_note(adapter: LoraAdapter, profile: ModelProfile) -> str | None:
    """A note when the adapter names another base model. Not an error: an adapter trained on a model usually runs
    on its quantised or re-hosted variants too, and vLLM only needs the layer shapes to agree."""
    base = adapter.config.base_model
    if base is None or _is_local_path(base):
        return None
    served = {name.lower() for name in (profile.id, *profile.aliases)}
    if base.lower() in served:
        return None
    return (
        f"adapter {adapter.name} ({adapter.model}) was trained on {base}, not {profile.id}: fine for a quantised or "
        "re-hosted copy of the same base, wrong for another model"
    )


def check_lora_extra_args(extra_args: Sequence[str], has_adapters: bool, where: str) -> None:
    """One AimError line when vllmExtraArgs set a LoRA flag the stack owns: `--lora-modules` always (the stack writes
    it from loraModules, with the adapters' paths in the pod); the flags plan_lora sizes when there are adapters.

    Without adapters, `--enable-lora` (and the sizing flags) stay allowed: a deployment that loads adapters at run
    time through vLLM's /v1/load_lora_adapter API needs them, and those adapters are the user's business."""
    flags = load_vllm_flags()
    for token in extra_args:
        if not token.startswith("-"):
            continue  # a flag's value
        flag = flags.canonical(token)
        if flag in STACK_ONLY_FLAGS:
            raise AimError(
                f"{where}: {token} is set by the stack from loraModules (name → Hub id and revision); "
                "list the adapters there instead"
            )
        if has_adapters and flag in SIZED_FLAGS:
            raise AimError(
                f"{where}: {token} is set from loraModules (--enable-lora, --max-loras, --max-lora-rank, "
                "--max-cpu-loras are sized from the adapters); remove it"
            )
