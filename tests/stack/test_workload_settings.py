"""aim:workload (an object, handed over as JSON) and aim:benchmark: good values parse, every bad one is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from aim_infra.common.errors import AimError
from aim_infra.planning.workload import DEFAULT_CONCURRENCY, Workload
from aim_infra.stack.plan import load_stack_config, run_stack
from aim_infra.stack.settings import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = "inputTokens, outputTokens, concurrency, requestsPerSecond, ttftP95Ms, tpotP95Ms, gpuHourlyCost"
WHOLE_TOKENS = "is not allowed: expected a whole number from 1 to 1048576"
WHOLE_CLIENTS = "is not allowed: expected a whole number from 1 to 100000"
A_JSON_OBJECT = 'is not allowed: expected a JSON object of workload keys, e.g. {"inputTokens": 2048'


def workload_of(value: Any) -> Workload | None:
    return parse_settings({"workload": value}).workload


@pytest.mark.parametrize("given", [None, "", "  ", "{}", " {} ", {}])
def test_unset_or_empty_workload_is_none_and_the_default_applies(given: Any) -> None:
    settings = parse_settings({} if given is None else {"workload": given})
    assert settings.workload is None
    default = settings.workload_or_default
    assert (default.input_tokens, default.output_tokens, default.concurrency) == (1024, 256, DEFAULT_CONCURRENCY)
    assert default.requests_per_second is None and not default.has_slo and default.gpu_hourly_cost is None
    latency = parse_settings({"metric": "latency"}).workload_or_default
    assert latency.concurrency == 1  # a latency goal's default: one request at a time


def test_json_string_and_mapping_give_the_same_workload() -> None:
    mapping = {"inputTokens": 2048, "outputTokens": 512, "concurrency": 128, "ttftP95Ms": 2000, "tpotP95Ms": 50}
    from_json = workload_of(json.dumps(mapping))
    assert from_json is not None and from_json == workload_of(mapping)
    assert (from_json.input_tokens, from_json.output_tokens, from_json.concurrency) == (2048, 512, 128)
    assert (from_json.ttft_p95_ms, from_json.tpot_p95_ms) == (2000.0, 50.0) and from_json.closed_loop
    assert parse_settings({"workload": json.dumps(mapping)}).workload_or_default == from_json


def test_rate_cost_and_numbers_written_as_text() -> None:
    # `pulumi config set --path` keeps anything but an integer as a string, so "4.5" must read as 4.5.
    open_loop = workload_of({"inputTokens": "2048", "requestsPerSecond": "4.5", "gpuHourlyCost": "2.5"})
    assert open_loop is not None and not open_loop.closed_loop and open_loop.concurrency is None
    assert (open_loop.input_tokens, open_loop.requests_per_second, open_loop.gpu_hourly_cost) == (2048, 4.5, 2.5)
    whole = workload_of('{"inputTokens": 2048.0, "concurrency": " 16 ", "tpotP95Ms": 20}')
    assert whole is not None and (whole.input_tokens, whole.concurrency, whole.tpot_p95_ms) == (2048, 16, 20.0)
    assert isinstance(whole.input_tokens, int) and whole.describe().startswith(
        "2048 in / 256 out tokens, 16 concurrent"
    )


BAD: list[tuple[Any, str]] = [
    ('{"concurrency": 0}', "aim:workload.concurrency: 0 " + WHOLE_CLIENTS),
    ('{"concurrency": true}', "aim:workload.concurrency: true " + WHOLE_CLIENTS),
    ({"concurrency": False}, "aim:workload.concurrency: false " + WHOLE_CLIENTS),
    ('{"concurrency": 100001}', "aim:workload.concurrency: 100001 " + WHOLE_CLIENTS),
    ('{"concurrency": 1.5}', "aim:workload.concurrency: 1.5 " + WHOLE_CLIENTS),
    ('{"inputTokens": "abc"}', "aim:workload.inputTokens: 'abc' " + WHOLE_TOKENS),
    ('{"inputTokens": "12.5"}', "aim:workload.inputTokens: '12.5' " + WHOLE_TOKENS),
    ('{"inputTokens": -1}', "aim:workload.inputTokens: -1 " + WHOLE_TOKENS),
    ('{"inputTokens": null}', "aim:workload.inputTokens: null " + WHOLE_TOKENS),
    ('{"outputTokens": [256]}', "aim:workload.outputTokens: [256] " + WHOLE_TOKENS),
    ('{"outputTokens": {"max": 256}}', "aim:workload.outputTokens: {'max': 256} " + WHOLE_TOKENS),
    ('{"outputTokens": ' + "9" * 5000 + "}", "aim:workload.outputTokens: '99999999"),
    ('{"inputTokens": 1e999}', "aim:workload.inputTokens: inf " + WHOLE_TOKENS),
    (
        '{"requestsPerSecond": NaN}',
        "aim:workload.requestsPerSecond: nan is not allowed: expected a number greater than 0 and at most 10000",
    ),
    ('{"requestsPerSecond": 0}', "aim:workload.requestsPerSecond: 0 is not allowed: expected a number greater than 0"),
    ('{"requestsPerSecond": "fast"}', "aim:workload.requestsPerSecond: 'fast' is not allowed: expected a number"),
    ('{"ttftP95Ms": Infinity}', "aim:workload.ttftP95Ms: inf is not allowed: expected a number greater than 0 and"),
    ('{"ttftP95Ms": true}', "aim:workload.ttftP95Ms: true is not allowed: expected a number greater than 0"),
    ('{"tpotP95Ms": "1e3"}', "aim:workload.tpotP95Ms: '1e3' is not allowed: expected a number greater than 0"),
    ('{"gpuHourlyCost": -2.5}', "aim:workload.gpuHourlyCost: -2.5 is not allowed: expected a number greater than 0"),
    (
        '{"concurrency": 8, "requestsPerSecond": 4.5}',
        "aim:workload: {'concurrency': 8, 'requestsPerSecond': 4.5} is not allowed: expected either concurrency or "
        "requestsPerSecond, not both",
    ),
    (
        '{"concurency": 8}',
        f"aim:workload.concurency: unknown workload key; did you mean concurrency? expected one of {ALLOWED}",
    ),
    ('{"x\\ny": 1}', f"aim:workload.'x\\ny': unknown workload key; expected one of {ALLOWED}"),
    ('{"inputTokens": 10', "aim:workload: '{\"inputTokens\": 10' " + A_JSON_OBJECT),
    ("[1024, 256]", "aim:workload: [1024, 256] is not allowed: expected a mapping of workload keys"),
    ("2048", "aim:workload: 2048 is not allowed: expected a mapping of workload keys"),
    ("true", "aim:workload: true is not allowed: expected a mapping of workload keys"),
    (True, "aim:workload: true is not allowed: expected a mapping of workload keys"),
    ("inputTokens: 2048", "aim:workload: 'inputTokens: 2048' " + A_JSON_OBJECT),
    ("[" * 100_000, "aim:workload: '[[[[[[[["),
    ('{"inputTokens": ' + "[" * 100_000 + "]" * 100_000 + "}", 'aim:workload: \'{"inputTokens": [[[['),
    ({"inputTokens": 10**5000}, "aim:workload.inputTokens: <int too large to show> " + WHOLE_TOKENS),
]


@pytest.mark.parametrize(("given", "expected"), BAD)
def test_bad_workload_is_one_line_naming_key_value_and_rule(given: Any, expected: str) -> None:
    with pytest.raises(AimError) as error:
        parse_settings({"workload": given})
    message = str(error.value)
    assert "\n" not in message and len(message) < 400, message
    assert message.startswith(expected), message
    assert "is not allowed: expected" in message or "unknown workload key; " in message, message


def test_an_unknown_nested_key_lists_every_allowed_key() -> None:
    with pytest.raises(AimError) as error:
        parse_settings({"workload": {"inputTokens": 10, "promptTokens": 10}})
    message = str(error.value)
    assert message.startswith("aim:workload.promptTokens: unknown workload key;"), message
    assert all(alias in message for alias in ALLOWED.split(", ")), message


KEYS = [*ALLOWED.split(", "), "inputtokens", "rps"]
JSONISH = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=10),
        st.integers(min_value=0, max_value=2_000_000).map(str),
        st.floats(min_value=0, max_value=2e6).map(str),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)
WORKLOADS = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), JSONISH, max_size=5)


@given(value=st.one_of(WORKLOADS, WORKLOADS.map(json.dumps), JSONISH, JSONISH.map(json.dumps), st.text(max_size=40)))
def test_any_workload_value_parses_or_is_one_line(value: Any) -> None:
    try:
        workload = parse_settings({"workload": value}).workload_or_default
    except AimError as error:
        message = str(error)
        assert "\n" not in message and message.startswith("aim:workload"), message
        assert "is not allowed: expected" in message or "unknown workload key; " in message, message
        return
    assert 1 <= workload.input_tokens <= 1_048_576 and 1 <= workload.output_tokens <= 1_048_576
    assert (workload.concurrency is None) != (workload.requests_per_second is None)


@pytest.mark.parametrize(("given", "expected"), [("true", True), ("FALSE", False), (True, True), (" false ", False)])
def test_benchmark_is_a_boolean(given: Any, expected: bool) -> None:
    assert parse_settings({"benchmark": given}).benchmark is expected
    assert Settings().benchmark is False


@pytest.mark.parametrize("given", ["yes", "1", "on", "", '{"enabled": true}'])
def test_bad_benchmark_is_one_line(given: str) -> None:
    # YAML 1.1 booleans (yes/on) get a hint after the rule: Pulumi's reader passes them on as text.
    with pytest.raises(
        AimError, match=r"^aim:benchmark: .* is not allowed: expected true or false( \(yes/no/on/off .*\))?$"
    ):
        parse_settings({"benchmark": given})


def test_dev_stack_sets_a_realistic_workload_that_plan_passes_as_json() -> None:
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    assert dev["aim:workload"] == {"inputTokens": 1024, "outputTokens": 256, "concurrency": 32, "ttftP95Ms": 2000}
    config, _ = load_stack_config("dev")
    workload = parse_settings({"workload": config["aim:workload"]}).workload
    assert workload is not None and workload.as_json() == dev["aim:workload"]


def test_the_whole_program_takes_a_workload_override_or_stops_at_one_line() -> None:
    good = run_stack(
        "dev", {"aim:workload": '{"inputTokens": 2048, "requestsPerSecond": 4.5}', "aim:benchmark": "true"}
    )
    assert good.error is None and good.resources
    bad = run_stack("dev", {"aim:workload": '{"inputTokens": 2048, "concurrency": true}'})
    assert bad.error == f"aim:workload.concurrency: true {WHOLE_CLIENTS}" and bad.resources == []


def test_plan_cli_takes_a_workload_override() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "aim_infra", "plan", "--stack", "dev", "--config"]
    ok = subprocess.run(
        [*command, 'aim:workload={"inputTokens": 2048, "outputTokens": 512, "concurrency": 128}'],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [*command, 'aim:workload={"inputTokens": "abc"}'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.strip() == f"error: aim:workload.inputTokens: 'abc' {WHOLE_TOKENS}", (
        bad.stderr
    )
