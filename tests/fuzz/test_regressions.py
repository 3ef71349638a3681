"""Regression tests: the minimal inputs of the bugs the fuzz properties found, each now one clear error line.

Each test states the behaviour the product promises (one AimError line, or a one-line plan error and no resources)
for an input that once escaped as an exception (or, for the deepest YAML, crashed the interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from aim_infra.common.errors import AimError
from aim_infra.planning.catalogue import load_catalogue_from
from aim_infra.stack.plan import load_stack_config, run_stack
from aim_infra.stack.settings import parse_settings

ROOT = Path(__file__).resolve().parents[2]


def recipe(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "ok",
        "model": "Qwen/Qwen3-8B",
        "gpu": "MI300X",
        "gpu_count": 1,
        "tensor_parallel_size": 1,
        "precision": "bf16",
        "max_model_len": 8192,
        "metric": "throughput",
        "status": "community",
        "provenance": "test",
    }
    return {**base, **fields}


def refused_in_one_line(directory: Path) -> str:
    with pytest.raises(AimError) as error:
        load_catalogue_from(directory)
    message = str(error.value)
    assert "\n" not in message and "family.yaml" in message, message
    return message


def plan_refuses(overrides: dict[str, str]) -> None:
    result = run_stack("dev", overrides)
    assert result.error is not None and "\n" not in result.error
    assert result.resources == []


# --- stack config ---------------------------------------------------------------------------------------------------


def test_a_model_id_longer_than_a_file_name_is_one_error_line() -> None:
    plan_refuses({"aim:model": "a" * 256})


@pytest.mark.parametrize("key", ["vllmExtraArgs", "apiAllowedCidrs", "apiAllowedNamespaces"])
def test_deeply_nested_json_in_a_list_key_is_one_error_line(key: str) -> None:
    plan_refuses({f"aim:{key}": "[" * 1000 + "]" * 1000})


def test_an_integer_beyond_the_str_conversion_limit_is_one_aim_error() -> None:
    with pytest.raises(AimError):
        parse_settings({"nodePort": 10**5000})


def test_a_stack_file_with_a_huge_integer_is_one_aim_error(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.big.yaml").write_text("config:\n  aim:nodePort: " + "9" * 5000 + "\n")
    with pytest.raises(AimError):
        load_stack_config("big", tmp_path)


# --- recipe files ---------------------------------------------------------------------------------------------------


def test_a_recipe_file_with_a_huge_integer_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "family.yaml").write_text("recipes:\n- gpu_count: " + "9" * 5000 + "\n")
    refused_in_one_line(tmp_path)


@pytest.mark.parametrize("flag", ["max-num-seqs", "max-num-batched-tokens"])
def test_an_infinite_scheduler_limit_is_one_error_line(tmp_path: Path, flag: str) -> None:
    (tmp_path / "family.yaml").write_text(yaml.safe_dump({"recipes": [recipe(vllm_args={flag: float("inf")})]}))
    refused_in_one_line(tmp_path)


@pytest.mark.parametrize("flag", ["max-num-seqs", "max-num-batched-tokens"])
def test_a_scheduler_limit_beyond_float_range_is_one_error_line(tmp_path: Path, flag: str) -> None:
    (tmp_path / "family.yaml").write_text(yaml.safe_dump({"recipes": [recipe(vllm_args={flag: 10**309})]}))
    refused_in_one_line(tmp_path)


def test_a_deeply_nested_yaml_file_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIM_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "family.yaml").write_text("[" * 1000 + "]" * 1000)
    refused_in_one_line(tmp_path)


def test_a_yaml_file_nested_thirty_thousand_deep_does_not_crash_the_interpreter(tmp_path: Path) -> None:
    (tmp_path / "family.yaml").write_text("[" * 30000 + "]" * 30000)
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from aim_infra.planning.catalogue import load_catalogue_from
        from aim_infra.common.errors import AimError
        try:
            load_catalogue_from(Path({str(tmp_path)!r}))
        except AimError as error:
            print("AimError:", error)
        """
    )
    env = {**os.environ, "AIM_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-300:]}"
    assert "family.yaml" in done.stdout


def test_a_file_with_a_non_string_key_gives_the_same_answer_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIM_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "family.yaml").write_text(yaml.safe_dump({"recipes": [recipe(vllm_args={8: True})]}))

    def answer() -> str:
        try:
            return f"loaded {[r.id for r in load_catalogue_from(folder).recipes]}"
        except AimError as error:
            return f"refused: {error}"

    first, second = answer(), answer()
    assert first == second, f"{first} / then / {second}"


# --- findings that were not crashes -----------------------------------------------------------------------------------


def test_blank_values_mean_empty_and_padding_is_ignored() -> None:
    settings = parse_settings({"gpu": " MI300X ", "recipe": "   ", "model": " Qwen/Qwen3-8B "})
    assert (settings.gpu, settings.recipe, settings.model) == ("MI300X", "", "Qwen/Qwen3-8B")


def test_an_empty_secret_is_no_secret() -> None:
    result = run_stack("prod", {"aim:hfToken": "", "aim:apiKey": "  "})
    assert result.error is None, result.error
    engine_secrets = [r for r in result.of_type("kubernetes:core/v1:Secret") if "aim:infra:AimEngine" in r.urn]
    # No token Secret; the API key is the generated one (a blank aim:apiKey is no key, so one is generated).
    assert [r.name for r in engine_secrets] == ["aim-engine-api-key"]
    assert engine_secrets[0].inputs["stringData"]["VLLM_API_KEY"].startswith("plan-generated-")


@pytest.mark.parametrize("cidrs", ['["::/0"]', '["10.0.0.0/8", "0.0.0.0/0"]'])
def test_a_load_balancer_open_to_all_is_refused(cidrs: str) -> None:
    with pytest.raises(AimError, match="aim:apiAllowedCidrs"):
        parse_settings({"serviceType": "LoadBalancer", "apiAllowedCidrs": cidrs})


@pytest.mark.parametrize("value", [-5, 0, 10**9, 2.5, True])
def test_scheduler_limits_out_of_range_are_refused(tmp_path: Path, value: object) -> None:
    (tmp_path / "family.yaml").write_text(yaml.safe_dump({"recipes": [recipe(vllm_args={"max-num-seqs": value})]}))
    assert "max-num-seqs" in refused_in_one_line(tmp_path)


def test_an_unprintable_unknown_key_is_quoted() -> None:
    with pytest.raises(AimError, match=r"aim:'\\r': unknown config key"):
        parse_settings({"\r": "x"})
