"""LoRA adapters of one aim:models entry at preview: their adapter_config.json from the Hub, the vLLM flags that load
them from the model's cache volume at start, and the list the serving pod's preflight checks.

The rules (which architectures, ranks and PEFT features the pinned vLLM serves) are planning's (planning/lora.py);
this module adds what only the stack knows: where each adapter's files are in the pod (the cache volume, one folder
per repository and revision, filled by a download Job of its own) and the Hub it asks.
"""

from __future__ import annotations

import json
from dataclasses import replace

from aim_infra.common.errors import AimError
from aim_infra.planning.lora import AdapterConfig, LoraAdapter, check_lora_extra_args, plan_lora
from aim_infra.planning.selection import Decision
from aim_infra.stack.manifests.engine_pod import model_directory
from aim_infra.stack.model_sources import fetch_adapter_config
from aim_infra.stack.settings import ModelSpec

#: The serving container's list of adapters for its preflight (aim_infra.pod.preflight.check_adapters).
PREFLIGHT_ENV = "AIM_LORA_MODULES"


def where(spec: ModelSpec) -> str:
    return f"aim:models: {spec.name}.loraModules"


def check_adapter_args(spec: ModelSpec) -> None:
    """The model's vllmExtraArgs leave the LoRA flags to loraModules (one line otherwise), before anything is asked."""
    check_lora_extra_args(spec.vllm_extra_args, bool(spec.lora_modules), f"aim:models: {spec.name}.vllmExtraArgs")


def read_adapters(spec: ModelSpec) -> list[LoraAdapter]:
    """Each adapter's adapter_config.json (Hub, or the local Hub cache offline), checked: one line naming the adapter
    when it cannot be read or the pinned vLLM would refuse it."""
    adapters: list[LoraAdapter] = []
    for name, source in spec.lora_modules.items():
        at = f"{where(spec)}.{name}"
        try:
            data, _commit = fetch_adapter_config(source.model, source.revision_or_none)
        except AimError as error:
            raise AimError(f"{at}: {error}") from None
        config = AdapterConfig.from_json(data, at)
        adapters.append(LoraAdapter(name=name, model=source.model, revision=source.revision_or_none, config=config))
    return adapters


def lora_module_args(adapters: list[LoraAdapter], served_model_name: str) -> list[str]:
    """`--lora-modules` with one JSON object per adapter (vLLM's LoRAModulePath): its name, its folder on the cache
    volume and the served model it belongs to (the parent `/v1/models` lists, which the router reads). One flag with
    several values: the flag's parser action replaces the list each time it sees the flag, so a second
    `--lora-modules` would drop the first."""
    modules = [
        json.dumps(
            {"name": a.name, "path": model_directory(a.model, a.revision), "base_model_name": served_model_name},
            separators=(",", ":"),
        )
        for a in adapters
    ]
    return ["--lora-modules", *modules] if modules else []


def preflight_list(adapters: list[LoraAdapter]) -> str:
    """AIM_LORA_MODULES: what the preflight checks is on the volume before vLLM starts."""
    return json.dumps(
        [
            {"name": a.name, "path": model_directory(a.model, a.revision), "model": a.model, "revision": a.revision}
            for a in adapters
        ],
        separators=(",", ":"),
    )


def serve_adapters(spec: ModelSpec, decision: Decision, adapters: list[LoraAdapter]) -> tuple[Decision, list[str]]:
    """The decision with the model's adapters loaded (flags, environment) and the preview's lines about them; the
    decision unchanged when the model has none. One line when the chosen recipe cannot serve them."""
    serving = plan_lora(decision.model, adapters, decision.recipe, where=where(spec))
    if serving is None:
        return decision, []
    served = replace(
        decision,
        vllm_args=[*decision.vllm_args, *serving.vllm_args(), *lora_module_args(adapters, spec.model)],
        env={**decision.env, **serving.env, PREFLIGHT_ENV: preflight_list(adapters)},
    )
    return served, [f"{spec.name}: {note}" for note in serving.notes]
