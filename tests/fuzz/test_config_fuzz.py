"""Property: any stack config, valid or malformed, yields a complete plan or exactly one clear error line.

Never a traceback, never a partial resource set. Overrides are random subsets of the real `aim:` keys (read from
Pulumi.yaml) with valid, plausible-but-wrong and junk values, plus misspelt and unknown keys, applied on top of the
dev stack like `pulumi preview -c`."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aim_infra.common.errors import AimError
from aim_infra.planning.catalogue import load_catalogue
from aim_infra.planning.hardware import load_gpus
from aim_infra.planning.model_profile import load_model_catalogue
from aim_infra.planning.precision import PRECISION_WISHES
from aim_infra.stack.decide import alert_thresholds, decide, replica_count
from aim_infra.stack.plan import PlanResult, load_stack_config, run_stack
from aim_infra.stack.settings import SECRET_KEYS, parse_settings

ROOT = Path(__file__).resolve().parents[2]
SPECS: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))["config"]
KEYS = sorted(SPECS)

GPUS = load_gpus()
MODELS = load_model_catalogue()
RECIPES = load_catalogue().recipes
GPU_NAMES = sorted({name for g in GPUS.gpus for name in (g.name, g.name.lower(), *g.aliases)})
MODEL_IDS = sorted({name for m in MODELS.models for name in (m.id, *m.aliases)})
RECIPE_IDS = sorted(r.id for r in RECIPES)
DIGEST = "@sha256:" + "0123456789abcdef" * 4

#: Known-good values beyond a key's Pulumi.yaml default. Keys come from Pulumi.yaml; this only adds examples (a test
#: checks every key named here is still declared there).
GOOD: dict[str, list[str]] = {
    "model": MODEL_IDS,
    "modelRevision": ["", "main", "0123456789abcdef0123456789abcdef01234567"],
    "gpu": GPU_NAMES,
    "gpuCount": ["auto", "1", "2", "4", "8", "16", "64", " 8 "],
    "metric": ["throughput", "latency"],
    "precision": list(PRECISION_WISHES),
    "maxModelLen": ["auto", "256", "2048", "4096", "8192", "32768", "131072"],
    "recipe": ["", *RECIPE_IDS],
    "vllmExtraArgs": [
        "[]",
        '["--enable-prefix-caching"]',
        '["--max-num-seqs", "64"]',
        "--max-num-seqs 128 --enable-chunked-prefill",
        "'--served-model-name' x",
        '["--swap-space", "4"]',
        '["--dtype=float8_e4m3fn"]',
        "--tensor-parallel-size=2",
    ],
    "replicas": ["auto", "1", "2", "4", "8"],
    "namespace": ["aim", "inference", "a" * 63, "team-1"],
    "serviceType": ["NodePort", "ClusterIP", "LoadBalancer"],
    "nodePort": ["0", "30000", "30080", "32767"],
    "cacheSize": ["auto", "200Gi", "1Ti", "500G", "1.5Ti"],
    "storageClass": ["", "local-path", "fast-ssd"],
    "cacheAccessMode": ["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"],
    "registryPort": ["1024", "5000", "65535"],
    "baseImage": ["rocm/vllm:rocm6.4.1_vllm_0.10.1", "rocm/vllm" + DIGEST, "docker.io/rocm/vllm:v0.11.0"],
    "image": ["", "registry.example.com/aim/aim-engine", "registry.example.com/aim/aim-engine:1.0", "x/y" + DIGEST],
    "podCidr": ["192.168.0.0/16", "10.244.0.0/16", "fd00:10::/56"],
    "renderGroupId": ["0", "110", "2147483647"],
    "apiAllowedCidrs": ['["0.0.0.0/0"]', '["10.0.0.0/8", "192.168.1.0/24"]', "10.0.0.0/8", "[]", '["fd00::/8"]'],
    "apiAllowedNamespaces": ["[]", '["ingress-nginx"]', "ingress-nginx monitoring"],
    "alertTtftP95Seconds": ["auto", "1", "2.5", "3600"],
    "alertQueueDepth": ["1", "32", "100000"],
    "alertKvCacheUsage": ["0.5", "0.9", "1", "0.001"],
    "alertThroughputFraction": ["0.25", "1", "0.01"],
    "alertGpuMemoryUsage": ["0.97", "0.8", "1"],
    "workload": [
        "{}",
        '{"inputTokens": 1024, "outputTokens": 256, "concurrency": 32, "ttftP95Ms": 2000}',
        '{"inputTokens": 2048, "outputTokens": 512, "requestsPerSecond": 4.5, "tpotP95Ms": 50, "gpuHourlyCost": 2.5}',
        '{"inputTokens": "8192", "outputTokens": "1", "concurrency": "1"}',
        '{"inputTokens": 1048576, "outputTokens": 1048576, "concurrency": 100000}',
        '{"requestsPerSecond": "0.01", "ttftP95Ms": "3600000", "tpotP95Ms": 600000}',
    ],
    "hfToken": ["hf_0123456789abcdefABCDEF"],
    "apiKey": ["sk-0123456789"],
    "grafanaAdminPassword": ["correct horse battery staple"],
}

#: Plausible-but-wrong strings any key might receive.
JUNK = [
    "",
    " ",
    "\t",
    "\n",
    "null",
    "None",
    "undefined",
    "true",
    "false",
    "yes",
    "on",
    "0",
    "-0",
    "-1",
    "+5",
    "1.5",
    "1e3",
    "1e309",
    "nan",
    "inf",
    "-inf",
    "0x10",
    "1_000",
    "١٢",
    "½",
    "99999999999999999999999999999999",
    "{}",
    "[]",
    "[",
    "]",
    "{",
    '{"a": 1}',
    '["a", 1]',
    "[null]",
    "[true]",
    "[[]]",
    "[1e400]",
    '"quoted"',
    "'single'",
    "'unclosed",
    "latest",
    "rocm/vllm:latest",
    "rocm/vllm",
    "rocm/vllm:",
    "image@sha256:abc",
    "UPPER/Case:Tag",
    "10.0.0.0/33",
    "10.0.0.1/8",
    "300.1.1.1/8",
    "::/129",
    "0.0.0.0/0",
    "::/0",
    "a b",
    "$(id)",
    "`id`",
    "; rm -rf /",
    "../..",
    "/etc/passwd",
    "~",
    "\x00",
    "\u2028",
    "\ufeff",
    "é",
    "日本語",
    "🚀",
    "ＭＩ３００Ｘ",
    "MI300X\n",
    " MI300X ",
    "auto ",
    "AUTO",
    "Auto",
    "Traceback (most recent call last):",
    "KeyError: 'x'",
]

TYPE_JUNK = {
    "boolean": ["yes", "no", "1", "0", "y", "enabled", "tru", "True!", '"true"'],
    "integer": ["-1", "65536", "32768", "99999", "1.0", "3e4", "0b11", "2147483648", "-2147483649", "٣٠٠٨٠"],
    "array": ['{"a": "b"}', "[1, [2]]", '[{"a": 1}]', "[1, 2", '"--flag"', "[false]", "[[[[[]]]]]"],
    "string": ["auto", "default", "*", "%s", "{{ .Values }}"],
    "object": [
        "[]",
        "[1024, 256]",
        '"{}"',
        "{",
        "inputTokens: 1024",
        '{"inputTokens": true}',
        '{"concurrency": 0}',
        '{"concurrency": 8, "requestsPerSecond": 1}',
        '{"promptTokens": 1024}',
        '{"inputTokens": "abc"}',
        '{"ttftP95Ms": NaN}',
        '{"inputTokens": 1e999}',
        '{"inputTokens": {"a": 1}}',
        '{"outputTokens": ' + "9" * 5000 + "}",
        '{"a\\nb": 1}',
    ],
}

WORKLOAD_KEYS = ["inputTokens", "outputTokens", "concurrency", "requestsPerSecond", "ttftP95Ms", "tpotP95Ms"]


def workload_json() -> st.SearchStrategy[str]:
    """Random workload objects as Pulumi hands them over (JSON): real and misspelt keys, any JSON-ish value."""
    key = st.one_of(st.sampled_from([*WORKLOAD_KEYS, "gpuHourlyCost", "inputtokens", "rps"]), printable_text(8))
    value = st.one_of(
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.integers(min_value=0, max_value=10**7).map(str),
        printable_text(8),
        st.lists(st.integers(), max_size=2),
    )
    return st.dictionaries(key, value, max_size=4).map(json.dumps)


def printable_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=max_size)


def long_string() -> st.SearchStrategy[str]:
    """Long and very long strings, on their own or after a sensible prefix (a model org, an image repository)."""
    return st.builds(
        lambda prefix, char, count: prefix + char * count,
        st.sampled_from(["", "Qwen/", "org/", "rocm/vllm:", "10.0.0.0/", "--", "auto"]),
        st.sampled_from(["a", "Z", "9", "-", ".", "_", "/", " ", "é", "["]),
        st.integers(min_value=60, max_value=5000),
    )


def nested_json() -> st.SearchStrategy[str]:
    return st.integers(min_value=1, max_value=3000).map(lambda depth: "[" * depth + "]" * depth)


def valid_value(key: str) -> st.SearchStrategy[str]:
    spec = SPECS[key]
    kind, default = spec.get("type", "object"), spec.get("default")  # Pulumi.yaml declares objects untyped
    if kind == "boolean":
        typed: st.SearchStrategy[str] = st.sampled_from(["true", "false", "True", "FALSE", " true "])
    elif kind == "object":
        typed = st.just(json.dumps(default))
    elif kind == "array":
        typed = st.just(json.dumps(default if default is not None else []))
    elif default is not None:
        typed = st.just(str(default))
    else:  # secrets have no default: any printable token
        typed = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=40)
    return st.one_of(typed, st.sampled_from(GOOD[key])) if key in GOOD else typed


def wrong_value(key: str) -> st.SearchStrategy[str]:
    kind = SPECS[key].get("type", "object")
    return st.one_of(
        st.sampled_from(JUNK),
        st.sampled_from(TYPE_JUNK[kind]),
        *([workload_json()] if kind == "object" else []),
        printable_text(40),
        st.integers(min_value=-(10**40), max_value=10**40).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
        long_string(),
        nested_json(),
        # a known-good value of another key (plausible, wrong place)
        st.sampled_from(sorted({v for values in GOOD.values() for v in values})),
    )


def value_for(key: str) -> st.SearchStrategy[str]:
    return st.one_of(valid_value(key), valid_value(key), wrong_value(key))


def misspelt(key: str, mutation: int, position: int) -> str:
    index = position % max(len(key), 1)
    variants = [
        key.lower(),
        key.upper(),
        key[:index] + key[index + 1 :],  # a letter dropped
        key[:index] + key[index] + key[index:],  # a letter doubled
        key + "s",
        re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(),  # snake_case
        re.sub(r"(?<!^)([A-Z])", r"-\1", key).lower(),  # kebab-case
        f"aim:{key}",  # the namespace twice
        f" {key}",
        f"{key}.value",
    ]
    return variants[mutation % len(variants)]


unknown_keys = st.one_of(
    st.builds(misspelt, st.sampled_from(KEYS), st.integers(0, 9), st.integers(0, 40)),
    st.text(string.ascii_letters + string.digits + "_-.:/ ", max_size=30),
    printable_text(20),
)


@st.composite
def config_overrides(draw: st.DrawFn) -> dict[str, str]:
    """`aim:` overrides on top of the dev stack: a coherent base (a catalogue recipe's model/GPU/count) some of the
    time, then a random subset of real keys with valid or wrong values, then sometimes unknown keys."""
    overrides: dict[str, str] = {}
    if draw(st.booleans()):
        recipe = draw(st.sampled_from(RECIPES))
        overrides.update(
            {
                "model": recipe.model,
                "gpu": recipe.gpu,
                "gpuCount": str(draw(st.sampled_from([recipe.gpu_count, 8]))),
                "recipe": draw(st.sampled_from(["", recipe.id])),
                "metric": recipe.metric,
            }
        )
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=8, unique=True))
    all_valid = draw(st.integers(0, 9)) < 4  # 40 %: every value is a valid one (mostly complete plans)
    for key in keys:
        overrides[key] = draw(valid_value(key) if all_valid else value_for(key))
    if not all_valid and draw(st.integers(0, 9)) < 3:  # misspelt and unknown keys
        for key in draw(st.lists(unknown_keys, min_size=1, max_size=2)):
            overrides[key] = draw(value_for(draw(st.sampled_from(KEYS))))
    return {f"aim:{key}": value for key, value in overrides.items()}


# --------------------------------------------------------------------------------------------------------------------
# What a good outcome looks like

CLASS_NAME = re.compile(r"Traceback|\b[A-Z][A-Za-z0-9]*(Error|Exception|Warning)\b")
KEY_NAMED = re.compile(r"aim:([A-Za-z0-9_.:/ -]*)")


def assert_one_clear_line(error: str, config: dict[str, str]) -> None:
    """Non-empty, one line, no Python exception class names, and it names an aim: key or the model/GPU/recipe/vLLM
    argument it is about."""
    assert error and error.strip() == error, repr(error)
    assert len(error.splitlines()) == 1, repr(error)
    for match in CLASS_NAME.finditer(error):  # allowed only where the error quotes the user's own input
        assert any(match.group(0) in value for value in config.values()) or any(
            match.group(0) in key for key in config
        ), f"Python exception text in the error line: {error!r}"
    lowered = error.lower()
    subjects = [
        *(f"aim:{key}".lower() for key in SPECS),
        *(k.lower() for k in config if k.startswith("aim:")),  # an unknown key is named as given,
        *(f"aim:{k[4:]!r}".lower() for k in config if k.startswith("aim:")),  # or quoted when it has blanks
        "vllm extra argument",
    ]
    for key in ("aim:model", "aim:gpu", "aim:recipe"):
        value = config.get(key, "")
        subjects.append(repr(value).lower())
        if len(value.strip()) >= 3:  # shorter ones would match anything
            subjects.append(value.strip().lower())
    normalised = (" ".join(s.split()) for s in subjects)  # AimError collapses whitespace, so an echoed value too
    assert any(s and s in lowered for s in normalised), f"the error names no aim: key, model, GPU or recipe: {error!r}"


def assert_complete_plan(result: PlanResult) -> None:
    deployments = [r for r in result.of_type("kubernetes:apps/v1:Deployment") if r.name == "aim-engine-deployment"]
    assert len(deployments) == 1, [r.name for r in result.resources]
    for resource in result.resources:
        if resource.type.startswith("kubernetes:"):
            parent = result.by_urn(resource.parent)
            assert parent is not None and not parent.custom, f"{resource.type} {resource.name} has no parent component"
    assert {"recipe", "vllmArgs"} <= set(result.outputs), sorted(result.outputs)
    assert result.outputs["vllmArgs"], result.outputs["vllmArgs"]


def kind(error: str) -> str:
    """A coarse label of an error line for --hypothesis-show-statistics: the key or the phrase it starts with."""
    named = KEY_NAMED.match(error)
    return named.group(0).split(":")[1][:24] if named else " ".join(error.split()[:2])[:30]


# Examples, deadline, randomness and database come from the profile tests/conftest.py loads (quick by default, ci's
# 1000 random examples under AIM_TESTS_FULL=1). The autouse sealed_off fixture only isolates, so one per test (not
# per example) is enough; large and slow examples are the point of a fuzz test.
FUZZ = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

DEV_CONFIG, _ = load_stack_config("dev")


@FUZZ
@given(overrides=config_overrides())
def test_any_config_gives_a_complete_plan_or_one_clear_error_line(overrides: dict[str, str]) -> None:
    """The whole Pulumi program under mocks, exactly as `python -m aim_infra plan` runs it."""
    result = run_stack("dev", overrides)
    if result.error is None:
        assert_complete_plan(result)
        event("plan", "complete")
    else:
        assert_one_clear_line(result.error, {**DEV_CONFIG, **overrides})
        assert result.resources == [], f"{len(result.resources)} resources declared despite: {result.error}"
        event("error", kind(result.error))


#: Values a YAML stack file can hold besides strings (parse_settings takes them as they are).
yaml_typed = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.one_of(st.text(max_size=12), st.integers(), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)


@FUZZ
@given(
    overrides=config_overrides(),
    typed=st.dictionaries(st.sampled_from(KEYS).map(lambda key: f"aim:{key}"), yaml_typed, max_size=2),
)
def test_any_config_passes_validation_and_selection_or_raises_one_aim_error(
    overrides: dict[str, str], typed: dict[str, Any]
) -> None:
    """The program's whole pre-resource path (settings → model, GPU, recipe decision → replicas → alert thresholds)
    without Pulumi: it succeeds or raises exactly AimError with one clear line. Here values may also be YAML-typed
    (numbers, booleans, lists, null), as parse_settings accepts them from a stack file."""
    raw = {k.removeprefix("aim:"): v for k, v in {**DEV_CONFIG, **overrides, **typed}.items() if k.startswith("aim:")}
    config = {f"aim:{k}": v if isinstance(v, str) else repr(v) for k, v in raw.items()}  # as an error line shows it
    secrets = {k for k in raw if k in SECRET_KEYS}
    try:
        parsed = parse_settings({k: v for k, v in raw.items() if k not in SECRET_KEYS}, secrets)
        decision, _ = decide(parsed, None)
        replicas, decision = replica_count(parsed, decision)
        alert_thresholds(parsed, decision)
    except AimError as error:
        assert type(error) is AimError
        assert_one_clear_line(str(error), config)
        event("error", kind(str(error)))
        return
    assert replicas >= 1 and decision.vllm_args
    event("decision", "ok")


def test_good_values_name_only_declared_keys() -> None:
    assert set(GOOD) <= set(SPECS), set(GOOD) - set(SPECS)
    assert set(SECRET_KEYS) <= set(SPECS)
