"""LoRA adapters in the plan: the generated and hand-written vLLM LoRA data, adapter_config.json checks, plan_lora."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aim_infra.common.errors import AimError
from aim_infra.planning.lora import (
    AdapterConfig,
    LoraAdapter,
    check_lora_extra_args,
    load_lora_rules,
    plan_lora,
)
from aim_infra.planning.model_profile import ModelProfile, load_model_catalogue
from aim_infra.planning.paths import VLLM_LORA_FILE
from aim_infra.planning.vllm_rules import load_vllm_flags
from tests.planning import factories

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "extract_vllm_lora.py"
#: The unpacked vLLM wheel the committed recipes/vllm_lora.yaml was generated from, when this machine has it.
VLLM_SOURCE = Path("/tmp/vllm-dl/src")
WHERE = "aim:models: chat.loraModules"

#: Every catalogue model vLLM 0.23.0 serves with LoRA: all of them (each class implements SupportsLoRA, read in
#: vllm/model_executor/models/{llama,mllama4,qwen2,qwen3,qwen3_moe,deepseek_v2,gpt_oss,mixtral,mistral,gemma3_mm}.py).
LORA_CAPABLE_CATALOGUE = {
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct",
    "amd/Llama-3.1-8B-Instruct-FP8-KV",
    "amd/Llama-3.1-70B-Instruct-FP8-KV",
    "amd/Llama-3.1-405B-Instruct-FP8-KV",
    "meta-llama/Llama-3.3-70B-Instruct",
    "amd/Llama-3.3-70B-Instruct-MXFP4-Preview",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
    "Qwen/Qwen2.5-0.5B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct",
    "Qwen/Qwen3-8B",
    "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B",
    "Qwen/Qwen3-235B-A22B",
    "Qwen/Qwen3-235B-A22B-FP8",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
    "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-R1",
    "deepseek-ai/DeepSeek-R1-0528",
    "moonshotai/Kimi-K2-Instruct",
    "openai/gpt-oss-20b",
    "openai/gpt-oss-120b",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "mistralai/Mistral-Large-Instruct-2411",
    "google/gemma-3-27b-it",
}


def adapter_json(**overrides: Any) -> dict[str, Any]:
    """A PEFT adapter_config.json of a rank-16 adapter on Llama-3.1-8B-Instruct unless told otherwise (`key=...`
    leaves the key out)."""
    data: dict[str, Any] = {
        "peft_type": "LORA",
        "r": 16,
        "lora_alpha": 32,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "base_model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct",
        "use_dora": False,
        "modules_to_save": None,
        "bias": "none",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not ...}


def adapter(name: str = "sql", rank: int = 16, **config: Any) -> LoraAdapter:
    settings: dict[str, Any] = {"rank": rank, "lora_alpha": 2 * rank, "target_modules": ("q_proj", "v_proj")}
    settings.update(config)
    return LoraAdapter(name=name, model=f"acme/{name}-lora", revision=None, config=AdapterConfig(**settings))


def catalogue_model(model_id: str) -> ModelProfile:
    profile = load_model_catalogue().find(model_id)
    assert profile is not None
    return profile


def refused(call: Any) -> str:
    with pytest.raises(AimError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


# The data files


def test_the_lora_data_is_for_the_base_images_vllm() -> None:
    rules = load_lora_rules()
    version = load_vllm_flags().vllm_version
    assert rules.capability.vllm_version == rules.rules.vllm_version == version
    assert all(f"v{version}/" in source for source in rules.capability.sources)
    assert rules.capability.max_lora_ranks == [1, 8, 16, 32, 64, 128, 256, 320, 512]
    sources = [rules.rules.adapter.required_source, rules.rules.adapter.rank_source, rules.rules.speculative.source]
    sources += [feature.source for feature in rules.rules.adapter.refused] + rules.rules.moe.sources
    assert all(f"/blob/v{version}/vllm/" in source for source in sources), sources


def test_known_architectures_are_lora_capable_and_known_others_are_not() -> None:
    rules = load_lora_rules()
    for architecture in (
        "LlamaForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "Qwen3MoeForCausalLM",
        "MistralForCausalLM",  # through `class MistralForCausalLM(LlamaForCausalLM)` and `from .llama import`
        "DeepseekV3ForCausalLM",  # through DeepseekV2ForCausalLM in the same module
        "LlamaBidirectionalModel",  # through as_embedding_model(LlamaForCausalLM)
    ):
        assert rules.serves(architecture), architecture
    # starcoder2.py: `class Starcoder2ForCausalLM(nn.Module, SupportsPP)`; DeepSeek-V4's nvidia/, amd/ and xpu/
    # classes implement no SupportsLoRA; bert.py's BertEmbeddingModel neither.
    for architecture in ("Starcoder2ForCausalLM", "DeepseekV4ForCausalLM", "BertModel"):
        assert not rules.serves(architecture), architecture
    assert rules.capability.architectures == sorted(rules.capability.architectures)


def test_which_catalogue_models_vllm_serves_with_lora() -> None:
    rules = load_lora_rules()
    models = load_model_catalogue().models
    capable = {profile.id for profile in models if rules.serves(profile.architecture)}
    assert capable == LORA_CAPABLE_CATALOGUE
    assert {profile.id for profile in models} == LORA_CAPABLE_CATALOGUE  # a new catalogue model is added here


# adapter_config.json


def test_an_adapter_config_is_read_from_peft_json() -> None:
    config = AdapterConfig.from_json(adapter_json(), f"{WHERE}.sql")
    assert config.rank == 16 and config.lora_alpha == 32
    assert config.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert config.base_model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (config.use_dora, config.modules_to_save, config.bias) == (False, None, "none")
    minimal = AdapterConfig.from_json({"r": 8, "lora_alpha": 16.5, "target_modules": "all-linear"}, "x")
    assert (minimal.target_modules, minimal.base_model, minimal.bias, minimal.lora_alpha) == (
        "all-linear",
        None,
        "none",
        16.5,
    )
    assert AdapterConfig.from_json(adapter_json(modules_to_save=[], use_dora=None), "x").modules_to_save == ()


@pytest.mark.parametrize(
    ("overrides", "key", "allowed"),
    [
        ({"use_dora": True}, "use_dora = true", "vLLM does not yet support DoRA"),
        ({"modules_to_save": ["lm_head"]}, 'modules_to_save = ["lm_head"]', "allowed: null or []"),
        ({"bias": "lora_only"}, 'bias = "lora_only"', 'allowed: "none"'),
        ({"bias": None}, "bias = null", 'allowed: "none"'),
    ],
)
def test_peft_features_vllm_refuses_are_one_line_naming_adapter_and_key(
    overrides: dict[str, Any], key: str, allowed: str
) -> None:
    message = refused(lambda: AdapterConfig.from_json(adapter_json(**overrides), f"{WHERE}.sql"))
    assert message.startswith(f"{WHERE}.sql: adapter_config.json {key} is refused by vLLM 0.23.0"), message
    assert allowed in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (["r", 8], "adapter_config.json holds"),
        ("r=8", "not a JSON object"),
        (adapter_json(r="16"), 'r = "16": expected a whole number from 1 to 512'),
        (adapter_json(r=16.0), "r = 16.0: expected a whole number"),
        (adapter_json(r=True), "r = true: expected a whole number"),
        (adapter_json(r=0), "r = 0: expected a whole number from 1 to 512"),
        (adapter_json(r=-4), "r = -4: expected"),
        (adapter_json(lora_alpha=...), "has no lora_alpha; vLLM 0.23.0 needs r, lora_alpha, target_modules"),
        (adapter_json(r=...), "has no r;"),
        (adapter_json(lora_alpha="32"), 'lora_alpha = "32": expected a number'),
        (adapter_json(target_modules={"q_proj": 1}), "target_modules = {"),
        (adapter_json(target_modules=["q_proj", 3]), "expected a list of module names or a regular expression"),
        (adapter_json(use_dora="no"), 'use_dora = "no": expected true or false'),
        (adapter_json(modules_to_save="lm_head"), "modules_to_save = "),
        (adapter_json(r=513), "r = 513 is above the largest LoRA rank vLLM 0.23.0 serves (512)"),
    ],
)
def test_a_malformed_adapter_config_is_one_line(data: object, expected: str) -> None:
    message = refused(lambda: AdapterConfig.from_json(data, f"{WHERE}.sql"))
    assert message.startswith(f"{WHERE}.sql: adapter_config.json "), message
    assert expected in message, message


# plan_lora


def test_no_adapters_plan_nothing() -> None:
    assert plan_lora(factories.dense(), [], factories.recipe(), where=WHERE) is None


def test_a_dense_model_serves_every_adapter_in_one_batch() -> None:
    serving = plan_lora(factories.dense(), [adapter("sql", 8), adapter("chat", 16)], factories.recipe(), where=WHERE)
    assert serving is not None
    assert (serving.max_lora_rank, serving.max_loras, serving.max_cpu_loras, serving.env) == (16, 2, 2, {})
    assert serving.vllm_args() == ["--enable-lora", "--max-loras=2", "--max-lora-rank=16", "--max-cpu-loras=2"]
    assert all(load_vllm_flags().canonical(token) for token in serving.vllm_args())
    assert any("performance estimate is the base model's" in note for note in serving.notes)
    assert not any("MoE" in note for note in serving.notes)


def test_a_moe_model_with_lora_leaves_the_aiter_moe_kernel() -> None:
    profile = catalogue_model("Qwen/Qwen3-30B-A3B")
    serving = plan_lora(profile, [adapter()], factories.recipe(model=profile.id), where=WHERE)
    assert serving is not None and serving.env == {"VLLM_ROCM_USE_AITER_MOE": "0"}
    assert any(note.startswith("MoE model with LoRA: VLLM_ROCM_USE_AITER_MOE=0 (") for note in serving.notes)


def test_an_architecture_without_lora_support_is_refused() -> None:
    profile = factories.dense(id="bigcode/starcoder2-15b", architecture="Starcoder2ForCausalLM")
    message = refused(lambda: plan_lora(profile, [adapter()], factories.recipe(), where=WHERE))
    assert message.startswith(f"{WHERE}: bigcode/starcoder2-15b is a Starcoder2ForCausalLM")
    assert "vLLM 0.23.0" in message and "serve a merged model instead" in message


@pytest.mark.parametrize(("rank", "max_lora_rank"), [(1, 1), (8, 8), (10, 16), (64, 64), (300, 320), (512, 512)])
def test_the_max_lora_rank_is_the_smallest_allowed_value_that_holds_the_largest_adapter(
    rank: int, max_lora_rank: int
) -> None:
    serving = plan_lora(factories.dense(), [adapter("a", 1), adapter("b", rank)], factories.recipe(), where=WHERE)
    assert serving is not None and serving.max_lora_rank == max_lora_rank
    assert load_lora_rules().rank_for(rank) == max_lora_rank


def test_a_rank_above_the_largest_is_refused_naming_the_adapter() -> None:
    assert load_lora_rules().rank_for(513) is None
    message = refused(lambda: plan_lora(factories.dense(), [adapter("big", 513)], factories.recipe(), where=WHERE))
    assert message.startswith(f"{WHERE}: adapter big (acme/big-lora): adapter_config.json r = 513 is above")


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"use_dora": True}, "use_dora = true"),
        ({"modules_to_save": ("lm_head",)}, "modules_to_save"),
        ({"bias": "all"}, "bias"),
    ],
)
def test_plan_lora_checks_adapters_built_without_from_json(config: dict[str, Any], key: str) -> None:
    adapters = [adapter("ok"), adapter("bad", **config)]
    message = refused(lambda: plan_lora(factories.dense(), adapters, factories.recipe(), where=WHERE))
    assert message.startswith(f"{WHERE}: adapter bad (acme/bad-lora): adapter_config.json {key}"), message


def test_two_adapters_with_one_name_are_refused() -> None:
    message = refused(lambda: plan_lora(factories.dense(), [adapter(), adapter()], factories.recipe(), where=WHERE))
    assert "'sql' is used twice" in message


def speculative(tokens: int, **args: Any) -> dict[str, Any]:
    return {"speculative-config": json.dumps({"method": "ngram", "num_speculative_tokens": tokens}), **args}


@pytest.mark.parametrize(
    ("gpu", "args", "allowed"),
    [
        # MI300X (192 GiB): vLLM's defaults are max-num-seqs 1024, max-num-batched-tokens 8192.
        ("MI300X", speculative(7), True),  # 1024 × 8 = 8192 ≤ 8192
        ("MI300X", speculative(8), False),  # 1024 × 9 = 9216 > 8192
        ("MI300X", speculative(8, **{"max-num-batched-tokens": 9216}), True),
        ("MI300X", speculative(8, **{"max-num-seqs": 512}), True),  # 512 × 9 = 4608
        ("MI300X", speculative(3, **{"max-num-seqs": 512, "max-num-batched-tokens": 2047}), False),  # 2048 needed
        ("MI300X", {"spec-method": "ngram", "spec-tokens": 8}, False),
        # --performance-mode throughput doubles the defaults it is left, not the values a recipe states.
        ("MI300X", speculative(8, **{"performance-mode": "throughput", "max-num-seqs": 1024}), True),  # 16384
        ("MI300X", speculative(8, **{"performance-mode": "throughput"}), False),  # 2048 × 9 = 18432 > 16384
        # MI210 (64 GiB, under vLLM's 70 GiB line): max-num-seqs 256, max-num-batched-tokens 2048.
        ("MI210", speculative(7), True),  # 256 × 8 = 2048
        ("MI210", speculative(8), False),
        # Without chunked prefill a whole prompt must fit one step: vLLM raises the default budget to max-model-len.
        ("MI210", speculative(8, **{"no-enable-chunked-prefill": True}), True),  # max(2048, 8192) ≥ 2304
    ],
)
def test_speculative_decoding_with_lora_needs_the_token_budget(gpu: str, args: dict[str, Any], allowed: bool) -> None:
    recipe = factories.recipe(gpu=gpu, vllm_args=args)
    if allowed:
        assert plan_lora(factories.dense(), [adapter()], recipe, where=WHERE) is not None
    else:
        message = refused(lambda: plan_lora(factories.dense(), [adapter()], recipe, where=WHERE))
        assert "speculative decoding" in message and "max-num-batched-tokens ≥" in message, message


def test_speculative_decoding_with_lora_budget_is_refused_naming_the_numbers() -> None:
    recipe = factories.recipe(id="spec-recipe", vllm_args=speculative(8))
    message = refused(lambda: plan_lora(factories.dense(), [adapter()], recipe, where=WHERE))
    assert message == (
        f"{WHERE}: recipe spec-recipe runs speculative decoding with 8 speculative tokens and max-num-seqs 1024, so "
        "with LoRA vLLM 0.23.0 needs max-num-batched-tokens ≥ 1024 × (8 + 1) = 9216, and it is 8192; choose a "
        "recipe without speculative decoding or serve a merged model"
    )


def test_speculative_decoding_without_a_stated_token_count_is_a_note() -> None:
    recipe = factories.recipe(vllm_args={"speculative-config": json.dumps({"method": "mtp"})})
    serving = plan_lora(factories.dense(), [adapter()], recipe, where=WHERE)
    assert serving is not None
    assert any("draft model's own token count" in note and "max-num-batched-tokens ≥" in note for note in serving.notes)
    broken = factories.recipe(vllm_args={"speculative-config": "{method: mtp"})
    assert "is not a JSON object" in refused(lambda: plan_lora(factories.dense(), [adapter()], broken, where=WHERE))


@pytest.mark.parametrize(
    ("base", "noted"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", True),  # the FP8 re-quantisation of the same base: a note, not an error
        ("Qwen/Qwen3-8B", True),
        ("amd/llama-3.1-8b-instruct-fp8-kv", False),  # Hub ids are case-insensitive
        ("/home/me/models/llama-3.1-8b", False),  # a local folder says nothing about the Hub id
        ("./checkpoints/base", False),
        (None, False),
    ],
)
def test_an_adapter_trained_on_another_base_is_a_note(base: str | None, noted: bool) -> None:
    profile = catalogue_model("amd/Llama-3.1-8B-Instruct-FP8-KV")
    serving = plan_lora(profile, [adapter(base_model=base)], factories.recipe(model=profile.id), where=WHERE)
    assert serving is not None
    notes = [note for note in serving.notes if "was trained on" in note]
    assert bool(notes) == noted, serving.notes
    if noted:
        assert notes[0].startswith(f"adapter sql (acme/sql-lora) was trained on {base}, not {profile.id}")


# vllmExtraArgs


@pytest.mark.parametrize("has_adapters", [True, False])
@pytest.mark.parametrize("token", ["--lora-modules", "--lora-modules=sql=/models/sql", "--lora_modules"])
def test_lora_modules_in_extra_args_are_always_refused(token: str, has_adapters: bool) -> None:
    message = refused(lambda: check_lora_extra_args(["--seed=1", token, "x"], has_adapters, "aim:vllmExtraArgs"))
    assert message.startswith(f"aim:vllmExtraArgs: {token} is set by the stack from loraModules")


@pytest.mark.parametrize(
    "token", ["--enable-lora", "--no-enable-lora", "--max-loras=4", "--max-lora-rank", "--max_cpu_loras=8"]
)
def test_the_sized_lora_flags_are_refused_only_with_adapters(token: str) -> None:
    message = refused(lambda: check_lora_extra_args([token, "64"], True, "aim:vllmExtraArgs"))
    assert message.startswith(f"aim:vllmExtraArgs: {token} is set from loraModules")
    check_lora_extra_args([token, "64"], False, "aim:vllmExtraArgs")  # adapters loaded at run time: the user's own


def test_other_lora_flags_stay_the_users() -> None:
    check_lora_extra_args(["--fully-sharded-loras", "--lora-dtype=bfloat16", "--max-num-seqs", "64"], True, "x")


# scripts/extract_vllm_lora.py


def run_script(source: Path, version: str, read_on: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(source), version, read_on], capture_output=True, text=True, check=True
    )


@pytest.mark.skipif(not VLLM_SOURCE.is_dir(), reason=f"no unpacked vLLM wheel at {VLLM_SOURCE} (CI has none)")
def test_the_script_reproduces_the_committed_yaml_from_the_vllm_source() -> None:
    committed = load_lora_rules().capability
    result = run_script(VLLM_SOURCE, committed.vllm_version, committed.read_on)
    assert result.stdout == VLLM_LORA_FILE.read_text(encoding="utf-8")
    assert f", {len(committed.architectures)} LoRA-capable" in result.stderr, result.stderr
    assert "warning" not in result.stderr, result.stderr


SYNTHETIC_TREE = {
    "vllm/config/lora.py": "MaxLoRARanks = Literal[1, 8, 16]\n",
    "vllm/model_executor/models/interfaces.py": (
        "import torch  # never imported by the script\n"
        "class SupportsLoRA(Protocol):\n    supports_lora: ClassVar[Literal[True]] = True\n"
        "class SupportsPP(Protocol):\n    supports_pp = True\n"
    ),
    "vllm/model_executor/models/__init__.py": "from .interfaces import SupportsLoRA, SupportsPP\n",
    "vllm/model_executor/models/base.py": (
        "from vllm.model_executor.models import SupportsLoRA\nclass LoraBase(nn.Module, SupportsLoRA):\n    pass\n"
    ),
    "vllm/model_executor/models/dense.py": (
        "import torch.nn as nn\n"
        "from .base import LoraBase\n"
        "from .interfaces import SupportsPP\n"
        "from . import interfaces\n"
        "class DenseForCausalLM(LoraBase, SupportsPP):\n    pass\n"
        "class Flagged(nn.Module):\n    supports_lora = True\n"
        "class Plain(nn.Module, SupportsPP):\n    pass\n"
        "class ThroughModule(interfaces.SupportsLoRA):\n    pass\n"
        "Renamed = DenseForCausalLM\n"
    ),
    "vllm/model_executor/models/registry.py": (
        "_TEXT = {\n"
        '    "DenseForCausalLM": ("dense", "DenseForCausalLM"),\n'
        '    "FlaggedForCausalLM": ("dense", "Flagged"),\n'
        '    "PlainForCausalLM": ("dense", "Plain"),\n'
        '    "ModuleForCausalLM": ("dense", "ThroughModule"),\n'
        "}\n"
        '_EMBED = {"RenamedModel": ("dense", "Renamed"), '
        '**{k: (m, a) for k, (m, a) in _TEXT.items() if a == "Plain"}}\n'
        '_OTHER = {"ExternalModel": ("vllm.models.external", "External")}\n'
        "_VLLM_MODELS = {**_TEXT, **_EMBED, **_OTHER}\n"
        '_PREVIOUSLY_SUPPORTED_MODELS = {"OldForCausalLM": "0.10.2"}\n'
    ),
    "vllm/models/external/__init__.py": (
        "if current_platform.is_rocm():\n    from .amd import External\nelse:\n    from .nvidia import External\n"
    ),
    "vllm/models/external/amd.py": (
        "from vllm.model_executor.models.base import LoraBase\nclass External(LoraBase): ...\n"
    ),
    "vllm/models/external/nvidia.py": "class External(nn.Module): ...\n",
}


def test_the_script_reads_lora_support_from_source_without_importing_it(tmp_path: Path) -> None:
    for relative, text in SYNTHETIC_TREE.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    result = run_script(tmp_path, "9.9.9", "2026-12-06")
    out = result.stdout
    architectures = [line[4:] for line in out.split("architectures:\n", 1)[1].splitlines()]
    # Inheritance through a relative import and a package re-export, `supports_lora = True`, `module.Class` bases
    # and a plain alias count; a class with neither, and a name bound per platform where one branch lacks LoRA, do not.
    assert architectures == ["DenseForCausalLM", "FlaggedForCausalLM", "ModuleForCausalLM", "RenamedModel"]
    assert 'vllm_version: "9.9.9"' in out and "max_lora_ranks: [1, 8, 16]" in out
    assert "https://github.com/vllm-project/vllm/tree/v9.9.9/vllm/models/external" in out
    assert result.stderr.startswith("6 architectures in the registry, 4 LoRA-capable")


def test_the_script_fails_on_a_registry_it_does_not_understand(tmp_path: Path) -> None:
    for relative, text in SYNTHETIC_TREE.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    registry = tmp_path / "vllm/model_executor/models/registry.py"
    registry.write_text(registry.read_text() + "_VLLM_MODELS = {**_TEXT, **load_more()}\n")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "9.9.9", "2026-12-06"], capture_output=True, text=True
    )
    assert result.returncode == 1 and result.stdout == ""
    assert "cannot read **load_more()" in result.stderr
