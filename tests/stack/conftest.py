"""Fixtures for stack tests: one mock run of the real program per stack file, shared read-only within a module."""

from __future__ import annotations

import pytest

from aim_infra.stack.plan import PlanResult, run_stack

SECRET_TOKEN = "hf_TESTtokenVALUE_0123456789abcdef"
SECRET_KEY = "sk-test-api-key-abcdef0123456789"


@pytest.fixture(scope="module")
def dev() -> PlanResult:
    result = run_stack("dev")
    assert result.error is None, result.error
    return result


@pytest.fixture(scope="module")
def prod() -> PlanResult:
    result = run_stack("prod", {"aim:hfToken": SECRET_TOKEN, "aim:apiKey": SECRET_KEY})
    assert result.error is None, result.error
    return result
