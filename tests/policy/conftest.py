"""Fixtures for policy tests: one mock run of the real program per stack configuration, shared within a module."""

from __future__ import annotations

import pytest

from aim_infra.stack.plan import PlanResult, run_stack

#: prod with its API behind a LoadBalancer restricted (by config) to a private network.
PROD_LOAD_BALANCER = {"aim:serviceType": "LoadBalancer", "aim:apiAllowedCidrs": '["10.0.0.0/8"]'}


def _run(stack: str, overrides: dict[str, str] | None = None) -> PlanResult:
    result = run_stack(stack, overrides)
    assert result.error is None, result.error
    return result


@pytest.fixture(scope="module")
def dev() -> PlanResult:
    return _run("dev")


@pytest.fixture(scope="module")
def prod() -> PlanResult:
    return _run("prod", {"aim:hfToken": "hf_TESTtokenVALUE_0123456789abcdef"})


@pytest.fixture(scope="module")
def prod_load_balancer() -> PlanResult:
    return _run("prod", {"aim:hfToken": "hf_TESTtokenVALUE_0123456789abcdef", **PROD_LOAD_BALANCER})
