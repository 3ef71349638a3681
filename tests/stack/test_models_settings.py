"""aim:models (several models, handed over as JSON): the single-model keys as its one-element form, good lists
parse, and every bad value is one line naming its key path (aim:models[1].replicas.min)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from aim_infra.common.errors import AimError
from aim_infra.planning.hardware import load_gpus
from aim_infra.planning.model_profile import load_model_catalogue
from aim_infra.planning.selection import Selector
from aim_infra.stack.manifests.engine import EngineNames
from aim_infra.stack.plan import load_stack_config, run_stack
from aim_infra.stack.settings import (
    MODEL_NAME_MAX,
    SINGLE_MODEL_KEYS,
    SINGLE_MODEL_NAME,
    ModelSpec,
    ReplicaRange,
    Settings,
    field_keys,
    parse_settings,
)

ROOT = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]

THREE = [
    {
        "name": "chat",
        "model": "meta-llama/Llama-3.3-70B-Instruct",
        "replicas": {"min": 1, "max": 2},
        "workload": {"inputTokens": 2048, "outputTokens": 512, "concurrency": 64, "ttftP95Ms": 2000},
        "loraModules": {"sql": {"model": "org/llama-sql-lora", "revision": "v1"}},
    },
    {
        "name": "small",
        "model": "Qwen/Qwen3-8B",
        "metric": "latency",
        "replicas": {"min": "0", "max": "2"},  # `pulumi config set --path` may keep numbers as text
        "scaleToZero": "true",
    },
    {
        "name": "mid",
        "model": "Qwen/Qwen3-30B-A3B",
        "modelRevision": "a" * 40,
        "precision": "fp8",
        "maxModelLen": 32768,
        "recipe": "qwen3-30b-a3b-mi300x-tp1-bf16-throughput",
        "vllmExtraArgs": "--max-num-seqs 64",
        "replicas": 2,
    },
]


def models_error(value: Any, **single: Any) -> str:
    with pytest.raises(AimError) as error:
        parse_settings({**single, "models": value})
    message = str(error.value)
    assert "\n" not in message and len(message) < 500, message
    return message


# --------------------------------------------------------------------------------------------------------------------
# The single-model keys are the one-element list


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"models": "[]"},
        {"models": ""},
        {"models": []},
        {
            "model": "meta-llama/Llama-3.3-70B-Instruct",
            "modelRevision": "main",
            "metric": "latency",
            "precision": "fp8",
            "maxModelLen": "8192",
            "recipe": "llama-3.3-70b-mi300x-tp1-fp8-throughput",
            "vllmExtraArgs": '["--max-num-seqs", "64"]',
            "workload": '{"inputTokens": 2048, "requestsPerSecond": 4.5, "tpotP95Ms": 50}',
            "replicas": "3",
        },
    ],
)
def test_without_aim_models_the_single_model_keys_are_one_model_named_as_today(raw: dict[str, Any]) -> None:
    settings = parse_settings(raw)
    assert not settings.multi_model and settings.models_given == []
    [one] = settings.models
    assert one.name == SINGLE_MODEL_NAME
    keys = field_keys()
    for key in SINGLE_MODEL_KEYS:
        assert getattr(one, _field(key)) == getattr(settings, keys[key]), key
    assert one.workload_or_default == settings.workload_or_default
    assert one.model_revision_or_none == settings.model_revision_or_none
    assert (one.scale_to_zero, one.lora_modules) == (False, {})
    assert one.replica_bounds == (None if settings.replicas == "auto" else (settings.replicas, settings.replicas))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stacks_of_this_project_are_one_model_each(stack: str) -> None:
    config, _ = load_stack_config(stack)
    settings = parse_settings({k.removeprefix("aim:"): v for k, v in config.items() if k.startswith("aim:")})
    [one] = settings.models
    assert (one.name, one.model, one.workload) == (SINGLE_MODEL_NAME, settings.model, settings.workload)


def test_the_one_model_keeps_the_engines_object_names() -> None:
    """The program names its engine ENGINE; the one model's name is that name, so naming a model's objects after
    its name declares exactly today's objects."""
    program = (ROOT / "__main__.py").read_text(encoding="utf-8")
    assert re.search(rf'^ENGINE = "{SINGLE_MODEL_NAME}"$', program, re.MULTILINE) or "SINGLE_MODEL_NAME" in program
    names = EngineNames(parse_settings({}).models[0].name, "aim")
    assert (names.workload, names.model_cache, names.download) == (
        "aim-engine",
        "aim-engine-model-cache",
        "aim-engine-download",
    )


def _field(key: str) -> str:
    return next(name for name, field in ModelSpec.model_fields.items() if (field.alias or name) == key)


def test_a_model_entry_has_the_single_model_keys_with_their_defaults_and_three_of_its_own() -> None:
    keys = [field.alias or name for name, field in ModelSpec.model_fields.items()]
    assert set(keys) == {*SINGLE_MODEL_KEYS, "name", "scaleToZero", "loraModules"}
    settings_fields = field_keys()
    for key in SINGLE_MODEL_KEYS:
        if key == "model":  # required in an entry; the single-model key has a default model
            assert ModelSpec.model_fields["model"].is_required()
            continue
        mine = ModelSpec.model_fields[_field(key)].get_default(call_default_factory=True)
        theirs = Settings.model_fields[settings_fields[key]].get_default(call_default_factory=True)
        assert mine == theirs, key


# --------------------------------------------------------------------------------------------------------------------
# Good lists


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "mapping"])
def test_three_models_parse(as_json: bool) -> None:
    settings = parse_settings({"models": json.dumps(THREE) if as_json else THREE})
    assert settings.multi_model and [m.name for m in settings.models] == ["chat", "small", "mid"]
    chat, small, mid = settings.models
    assert chat.replicas == ReplicaRange(min=1, max=2) and chat.replica_bounds == (1, 2) and chat.autoscaled
    assert chat.workload is not None and (chat.workload.input_tokens, chat.workload.ttft_p95_ms) == (2048, 2000.0)
    assert chat.lora_modules["sql"].model == "org/llama-sql-lora" and chat.lora_modules["sql"].revision == "v1"
    assert chat.metric == "throughput" and chat.workload_or_default == chat.workload
    assert small.scale_to_zero and small.replica_bounds == (0, 2) and small.replica_text == "{min: 0, max: 2}"
    assert small.workload is None and small.workload_or_default.concurrency == 1  # the latency default
    assert mid.replicas == 2 and mid.replica_bounds == (2, 2) and not mid.autoscaled
    assert mid.vllm_extra_args == ["--max-num-seqs", "64"] and mid.max_model_len == 32768
    assert mid.model_revision_or_none == "a" * 40 and mid.precision == "fp8"
    # Every single-model key stays at its default: nothing else describes a model.
    assert settings.model == Settings().model and settings.workload is None


def test_single_model_keys_at_their_defaults_go_with_aim_models() -> None:
    """Pulumi hands the program every key, the unset ones with their Pulumi.yaml default (as text; objects and lists
    as JSON): that is not setting them."""
    passed = {
        key: json.dumps(spec["default"]) if isinstance(spec["default"], dict | list) else str(spec["default"]).lower()
        if isinstance(spec["default"], bool) else str(spec["default"])
        for key, spec in PROJECT.items()
        if "default" in spec
    }  # fmt: skip
    assert parse_settings({**passed, "models": json.dumps(THREE)}).multi_model
    assert parse_settings(passed).models == Settings().models


def test_names_and_adapters_at_their_limits() -> None:
    longest = "m" + "-0" * ((MODEL_NAME_MAX - 2) // 2) + "0"
    adapter = "a" + "._-" * 20 + "9z"
    assert (len(longest), len(adapter)) == (MODEL_NAME_MAX, 63)
    settings = parse_settings(
        {"models": [{"name": longest, "model": "gpt2", "loraModules": {adapter: {"model": "org/x"}}}]}
    )
    assert settings.models[0].name == longest and list(settings.models[0].lora_modules) == [adapter]


# --------------------------------------------------------------------------------------------------------------------
# Bad values: one line naming the key path, the value and what is allowed

ENTRY = {"name": "chat", "model": "Qwen/Qwen3-8B"}
DNS = "is not allowed: expected a DNS-1035 label of at most 40 characters"

BAD: list[tuple[Any, str]] = [
    ([ENTRY, {**ENTRY, "model": "Qwen/Qwen3-32B"}], "aim:models[1].name: 'chat' is not allowed: expected a name no "),
    ([{**ENTRY, "name": "Chat"}], f"aim:models[0].name: 'Chat' {DNS}"),
    ([{**ENTRY, "name": "8b"}], f"aim:models[0].name: '8b' {DNS}"),
    ([{**ENTRY, "name": "chat-"}], f"aim:models[0].name: 'chat-' {DNS}"),
    ([{**ENTRY, "name": "c" * 41}], f"aim:models[0].name: '{'c' * 41}' {DNS}"),
    ([{**ENTRY, "name": ""}], f"aim:models[0].name: '' {DNS}"),
    ([ENTRY, {"name": "b", "model": "x/y", "replicas": {"min": 3, "max": 2}}], "aim:models[1].replicas.min: 3 is "),
    ([{**ENTRY, "replicas": {"min": 0, "max": 0}}], "aim:models[0].replicas.max: 0 is not allowed: expected a whole"),
    ([{**ENTRY, "replicas": {"min": 1, "max": 65}}], "aim:models[0].replicas.max: 65 is not allowed: expected a"),
    ([{**ENTRY, "replicas": {"min": -1, "max": 2}}], "aim:models[0].replicas.min: -1 is not allowed: expected a"),
    ([{**ENTRY, "replicas": {"min": True, "max": 2}}], "aim:models[0].replicas.min: true is not allowed: expected"),
    ([{**ENTRY, "replicas": {"max": 2}}], "aim:models[0].replicas.min: not set: expected a whole number from 0"),
    ([{**ENTRY, "replicas": {"min": 1, "maxi": 2}}], "aim:models[0].replicas.maxi: unknown replicas key; did you"),
    ([{**ENTRY, "replicas": 0}], "aim:models[0].replicas: 0 is not allowed: expected auto, a whole number from 1"),
    ([{**ENTRY, "replicas": "many"}], "aim:models[0].replicas: 'many' is not allowed: expected auto, a whole number"),
    ([{**ENTRY, "replicas": None}], "aim:models[0].replicas: null is not allowed: expected auto"),
    ([{**ENTRY, "replicas": {"min": 0, "max": 2}}], "aim:models[0].replicas.min: 0 is not allowed: expected at least"),
    ([{**ENTRY, "scaleToZero": True}], "aim:models[0].scaleToZero: true is not allowed: expected false unless"),
    (
        [{**ENTRY, "scaleToZero": True, "replicas": {"min": 1, "max": 2}}],
        "aim:models[0].scaleToZero: true is not allowed: expected false unless replicas is {min: 0, max: N}",
    ),
    ([{**ENTRY, "scaleToZero": "yes"}], "aim:models[0].scaleToZero: 'yes' is not allowed: expected true or false"),
    ([{**ENTRY, "modelRevision": "v1..2"}], "aim:models[0].modelRevision: 'v1..2' is not allowed: expected empty"),
    ([{**ENTRY, "modelRevision": "my branch"}], "aim:models[0].modelRevision: 'my branch' is not allowed"),
    ([{**ENTRY, "model": "../models/x"}], "aim:models[0].model: '../models/x' is not allowed: expected a Hugging"),
    ([{**ENTRY, "model": 8}], "aim:models[0].model: 8 is not allowed: expected a valid string"),
    ([{"name": "chat"}], "aim:models[0].model: not set: expected a Hugging Face model id"),
    ([{"model": "Qwen/Qwen3-8B"}], "aim:models[0].name: not set: expected a DNS-1035 label"),
    ([{**ENTRY, "metric": "speed"}], "aim:models[0].metric: 'speed' is not allowed: expected 'throughput' or"),
    ([{**ENTRY, "precision": "fp4"}], "aim:models[0].precision: 'fp4' is not allowed: expected 'auto', 'bf16'"),
    ([{**ENTRY, "maxModelLen": 12}], "aim:models[0].maxModelLen: 12 is not allowed: expected auto or a whole"),
    ([{**ENTRY, "vllmExtraArgs": "--a 'b"}], 'aim:models[0].vllmExtraArgs: "--a \'b" is not allowed: cannot split'),
    ([{**ENTRY, "workload": {"concurrency": 0}}], "aim:models[0].workload.concurrency: 0 is not allowed: expected"),
    ([{**ENTRY, "workload": {"promptTokens": 9}}], "aim:models[0].workload.promptTokens: unknown workload key;"),
    ([{**ENTRY, "workload": "{"}], "aim:models[0].workload: '{' is not allowed: expected a JSON object of workload"),
    ([{**ENTRY, "workload": [1]}], "aim:models[0].workload: [1] is not allowed: expected a mapping of workload keys"),
    ([{**ENTRY, "replica": 2}], "aim:models[0].replica: unknown model key; did you mean replicas? expected one of"),
    ([{**ENTRY, "a\nb": 2}], "aim:models[0].'a\\nb': unknown model key; expected one of name, model,"),
    ([{**ENTRY, "loraModules": {"SQL": {"model": "o/x"}}}], "aim:models[0].loraModules: adapter name 'SQL' is not"),
    ([{**ENTRY, "loraModules": {"a=b": {"model": "o/x"}}}], "aim:models[0].loraModules: adapter name 'a=b' is not"),
    ([{**ENTRY, "loraModules": {"chat": {"model": "o/x"}}}], "aim:models[0].loraModules: adapter name 'chat' is not"),
    (
        [ENTRY, {**ENTRY, "name": "other"}],
        "aim:models[1].model: '" + ENTRY["model"] + "' is not allowed: expected a Hub id no",
    ),
    (
        [
            ENTRY,
            {"name": "b", "model": "x/y", "loraModules": {"sql": {"model": "o/x"}}},
            {**ENTRY, "name": "sql", "model": "z/w"},
        ],
        "aim:models[2].name: 'sql' is not allowed: expected a name no other model or adapter has "
        "(aim:models[1].loraModules.sql is 'sql')",
    ),
    (
        [{"name": "a", "model": "gpt2"}, {"name": "b", "model": "x/y", "loraModules": {"gpt2": {"model": "o/x"}}}],
        "aim:models[1].loraModules: adapter name 'gpt2' is not allowed: expected a name no model or other adapter "
        "has (aim:models[0].model is 'gpt2')",
    ),
    ([{**ENTRY, "loraModules": {"sql": "o/x"}}], "aim:models[0].loraModules.sql: 'o/x' is not allowed: expected a"),
    ([{**ENTRY, "loraModules": {"sql": {}}}], "aim:models[0].loraModules.sql.model: not set: expected a Hugging"),
    ([{**ENTRY, "loraModules": {"sql": {"model": "../x"}}}], "aim:models[0].loraModules.sql.model: '../x' is not"),
    (
        [{**ENTRY, "loraModules": {"sql": {"model": "o/x", "revision": "a..b"}}}],
        "aim:models[0].loraModules.sql.revision: 'a..b' is not allowed: expected empty",
    ),
    ([{**ENTRY, "loraModules": {"sql": {"model": "o/x", "rev": "1"}}}], "aim:models[0].loraModules.sql.rev: unknown"),
    ([{**ENTRY, "loraModules": ["sql"]}], "aim:models[0].loraModules: ['sql'] is not allowed: expected a mapping"),
    (["chat"], "aim:models[0]: 'chat' is not allowed: expected a mapping with at least name and model"),
    ([[]], "aim:models[0]: [] is not allowed: expected a mapping with at least name and model"),
    ({"chat": ENTRY}, 'aim:models: \'{"chat": {"name": "chat", "model": "Qwen/Qwen3-8B"}}\' is not allowed: expected'),
    ('{"name": "chat"}', 'aim:models: \'{"name": "chat"}\' is not allowed: expected a list of models'),
    ("[", "aim:models: '[' is not allowed: expected a list of models"),
    ("chat", "aim:models: 'chat' is not allowed: expected a list of models"),
    ("{}", "aim:models: '{}' is not allowed: expected a list of models"),
    (8, "aim:models: 8 is not allowed: expected a list of models"),
    ("[" * 100_000, "aim:models: '[[[[[["),
    # More digits than Python turns into an int: kept as text by the JSON reader, refused as any other text.
    (
        '[{"name": "a", "model": "x/y", "replicas": {"min": ' + "9" * 5000 + ', "max": 2}}]',
        "aim:models[0].replicas.min: '999",
    ),
]


@pytest.mark.parametrize(("value", "expected"), BAD)
def test_each_bad_model_list_is_one_line_naming_the_key_path(value: Any, expected: str) -> None:
    message = models_error(value if isinstance(value, str | int) else json.dumps(value))
    assert message.startswith(expected), message
    assert message.startswith("aim:models"), message
    assert re.search(r"is not allowed: |unknown \w+ key; |not set: expected ", message), message


@pytest.mark.parametrize(("value", "expected"), BAD[:12])
def test_a_list_from_a_yaml_stack_file_gives_the_same_line(value: Any, expected: str) -> None:
    assert models_error(value).startswith(expected)


def test_a_number_too_long_to_print_is_still_one_line() -> None:
    message = models_error([{**ENTRY, "replicas": {"min": 10**5000, "max": 2}}])
    assert message == (
        "aim:models[0].replicas.min: <int too large to show> is not allowed: expected a whole number from 0 to 64"
    )


#: A value other than its default for every single-model key.
SET_SINGLE_KEYS = {
    "model": "Qwen/Qwen3-32B",
    "modelRevision": "main",
    "metric": "latency",
    "precision": "fp8",
    "maxModelLen": "8192",
    "recipe": "qwen3-8b-mi300x-tp1-bf16-throughput",
    "vllmExtraArgs": '["--max-num-seqs", "64"]',
    "workload": '{"concurrency": 8}',
    "replicas": "2",
}


@pytest.mark.parametrize(("key", "value"), sorted(SET_SINGLE_KEYS.items()))
def test_a_single_model_key_set_beside_aim_models_is_one_line_naming_both(key: str, value: str) -> None:
    message = models_error(json.dumps(THREE), **{key: value})
    assert message.startswith(f"aim:{key}: "), message
    assert message.endswith(f"is not allowed: expected unset when aim:models is set (each model of aim:models sets "
                            f"its own {key})"), message  # fmt: skip


def test_every_single_model_key_is_checked_beside_aim_models() -> None:
    assert set(SET_SINGLE_KEYS) == set(SINGLE_MODEL_KEYS)
    for key, value in SET_SINGLE_KEYS.items():  # each value really is a setting, not the default again
        assert getattr(parse_settings({key: value}), field_keys()[key]) != getattr(Settings(), field_keys()[key])


def test_the_program_stops_at_the_line_before_any_resource() -> None:
    bad = run_stack("prod", {"aim:models": json.dumps([{**ENTRY, "replicas": {"min": 3, "max": 2}}])})
    assert (
        bad.error == "aim:models[0].replicas.min: 3 is not allowed: expected a whole number from 0 to replicas.max (2)"
    )
    assert bad.resources == []
    # The dev stack sizes its one model with aim:workload: with aim:models too, that key is named.
    both = run_stack("dev", {"aim:models": json.dumps(THREE)})
    assert both.error is not None and both.error.startswith("aim:workload: ") and "aim:models" in both.error
    assert both.resources == []


# --------------------------------------------------------------------------------------------------------------------
# Any list: a valid Settings or one AimError line

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
NAMES = st.one_of(
    st.sampled_from(["chat", "small", "mid", "a", "m" * 40, "m" * 41, "Chat", "8b", "-a", "a-", SINGLE_MODEL_NAME]),
    st.from_regex(r"[a-z][a-z0-9-]{0,12}[a-z0-9]", fullmatch=True),
    JUNK,
)
HUB_IDS = st.one_of(st.sampled_from(["Qwen/Qwen3-8B", "openai/gpt-oss-20b", "gpt2", "../x", "", "a/b/c"]), JUNK)
BOUND = st.one_of(st.integers(min_value=-1, max_value=66), st.integers(0, 9).map(str), JUNK)
REPLICAS = st.one_of(
    st.sampled_from(["auto", "AUTO", 1, 2, "3", 64, 0, 65, "x"]),
    st.fixed_dictionaries({}, optional={"min": BOUND, "max": BOUND}),
    st.dictionaries(st.sampled_from(["min", "max", "minimum", "low"]), BOUND, max_size=3),
    JUNK,
)
ADAPTERS = st.dictionaries(
    st.one_of(st.sampled_from(["sql", "chat", "gpt2", "SQL", "a=b", ""]), st.text(max_size=6)),
    st.one_of(
        st.fixed_dictionaries({"model": HUB_IDS}, optional={"revision": st.sampled_from(["", "v1", "a..b"])}), JUNK
    ),
    max_size=2,
)
OPTIONAL = {
    "modelRevision": st.sampled_from(["", "main", "a" * 40, "a..b", "x y"]),
    "metric": st.sampled_from(["throughput", "latency", "speed"]),
    "precision": st.sampled_from(["auto", "fp8", "fp4"]),
    "maxModelLen": st.one_of(st.sampled_from(["auto", 4096, "8192", 12]), JUNK),
    "recipe": st.text(max_size=8),
    "vllmExtraArgs": st.one_of(st.sampled_from([[], ["--max-num-seqs", "8"], "--a 'b", "--enforce-eager"]), JUNK),
    "workload": st.one_of(
        st.fixed_dictionaries({}, optional={"concurrency": BOUND, "inputTokens": BOUND, "requestsPerSecond": JUNK}),
        JUNK,
    ),
    "replicas": REPLICAS,
    "scaleToZero": st.one_of(st.booleans(), st.sampled_from(["true", "False", "yes"]), JUNK),
    "loraModules": st.one_of(ADAPTERS, JUNK),
}
ENTRIES = st.one_of(
    st.fixed_dictionaries({"name": NAMES, "model": HUB_IDS}, optional=OPTIONAL),  # type: ignore[arg-type]
    st.fixed_dictionaries({"name": NAMES}, optional={"model": HUB_IDS, "modle": JUNK, "": JUNK}),
    JUNK,
)
#: Valid entries (plain names, good bounds), so the property sees many complete lists too.
VALID_ENTRIES = st.builds(
    lambda name, model, bounds, zero: {
        "name": name,
        "model": model,
        "replicas": {"min": 0 if zero else min(bounds), "max": max(bounds)},
        "scaleToZero": zero,
    },
    st.from_regex(r"[a-z][a-z0-9-]{0,12}[a-z0-9]", fullmatch=True),
    st.sampled_from(["Qwen/Qwen3-8B", "openai/gpt-oss-20b", "meta-llama/Llama-3.3-70B-Instruct"]),
    st.tuples(st.integers(1, 64), st.integers(1, 64)),
    st.booleans(),
)
LISTS = st.one_of(st.lists(ENTRIES, max_size=4), st.lists(VALID_ENTRIES, max_size=4, unique_by=lambda e: e["name"]))


@given(value=st.one_of(LISTS, LISTS.map(lambda v: json.dumps(v)), JUNK, st.text(max_size=20)))
def test_any_model_list_gives_settings_or_one_line(value: Any) -> None:
    try:
        settings = parse_settings({"models": value})
    except AimError as error:
        message = str(error)
        assert type(error) is AimError and "\n" not in message and message.startswith("aim:models"), message
        assert re.search(r"is not allowed: |unknown \w+ key; |not set: expected ", message), message
        event("outcome", "error")
        return
    event("outcome", f"{len(settings.models_given)} models")
    models = settings.models
    assert len({m.name for m in models}) == len(models) >= 1
    for model in models:
        bounds = model.replica_bounds
        assert bounds is None or (0 <= bounds[0] <= bounds[1] <= 64 and bounds[1] >= 1)
        assert model.scale_to_zero == (bounds is not None and bounds[0] == 0)
        assert len(model.name) <= MODEL_NAME_MAX


# --------------------------------------------------------------------------------------------------------------------
# The example stack and the documentation's example


def test_the_multi_model_example_stack_parses() -> None:
    """Pulumi.multi.yaml, read as the engine hands it over (lists and objects as JSON): three catalogue
    models of different sizes on an existing 8 × MI300X node, all 8 GPUs at their upper bounds (each model's recipe
    chosen on its own, at its workload)."""
    config, secrets = load_stack_config("multi", ROOT)
    assert secrets == [] and config["kubernetes:context"]
    settings = parse_settings({k.removeprefix("aim:"): v for k, v in config.items() if k.startswith("aim:")})
    assert (settings.gpu, settings.gpu_count, settings.cluster_bootstrap) == ("MI300X", 8, "none")
    assert [m.name for m in settings.models] == ["chat", "small", "mid"]
    assert [m.scale_to_zero for m in settings.models] == [False, False, False]  # every model of the example stays warm
    catalogue, gpu, selector = load_model_catalogue(), load_gpus().get("MI300X"), Selector()
    gpus = 0
    for model in settings.models:
        profile = catalogue.find(model.model)
        assert profile is not None, f"{model.model} is not in the bundled catalogue"
        decision = selector.select(profile, gpu, 8, metric=model.metric, workload=model.workload)
        bounds = model.replica_bounds
        assert bounds is not None and model.workload is not None
        gpus += bounds[1] * decision.recipe.gpu_count
    assert gpus == 8, "the header says the models take all 8 GPUs at their upper bounds"


def test_the_documented_example_parses() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = page.split("\n## Several models (`aim:models`)\n", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    models = yaml.safe_load(block)["config"]["aim:models"]
    settings = parse_settings({"models": json.dumps(models)})
    assert [m.name for m in settings.models] == ["chat", "small"] and settings.models[1].scale_to_zero
    assert "aim:models[1].replicas.min: 3 is not allowed: expected a whole number from 0 to replicas.max (2)" in section
    assert models_error(json.dumps([ENTRY, {"name": "b", "model": "x/y", "replicas": {"min": 3, "max": 2}}])) == (
        "aim:models[1].replicas.min: 3 is not allowed: expected a whole number from 0 to replicas.max (2)"
    )
