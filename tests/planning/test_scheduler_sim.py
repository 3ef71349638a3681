"""The scheduler simulation keeps vLLM's rules: budget, running cap, chunked prefill, first token, finishing step."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from aim_infra.planning.scheduler_sim import Load, simulate


@dataclass(frozen=True)
class ConstantStep:
    """Every step takes `seconds`, whatever it carries: makes the timeline countable by hand."""

    seconds_per_step: float = 0.01

    def seconds(self, decodes: float, prefill_tokens: float, context_tokens: float, prefill_attention: float = 0.0):  # type: ignore[no-untyped-def]
        return self.seconds_per_step if decodes + prefill_tokens > 0 else 0.0


@dataclass(frozen=True)
class LinearStep:
    """base + per-token cost + per-context-token cost, like the real step function."""

    base: float = 0.005
    per_token: float = 1e-5
    per_context: float = 1e-8

    def seconds(self, decodes: float, prefill_tokens: float, context_tokens: float, prefill_attention: float = 0.0):  # type: ignore[no-untyped-def]
        return self.base + (decodes + prefill_tokens) * self.per_token + context_tokens * self.per_context


def test_one_request_takes_one_prefill_step_then_output_minus_one_decode_steps() -> None:
    result = simulate(ConstantStep(0.01), Load(100, 50, requests=1, clients=1), max_running=8, token_budget=8192)
    (times,) = result.requests
    assert times.first_token == pytest.approx(0.01)
    assert times.finish == pytest.approx(0.01 * 50)
    assert result.steps == 50
    assert result.output_tokens_per_s == pytest.approx(50 / 0.5)


def test_a_long_prompt_is_chunked_by_the_token_budget() -> None:
    result = simulate(ConstantStep(0.01), Load(1000, 2, requests=1, clients=1), max_running=8, token_budget=256)
    (times,) = result.requests
    assert times.first_token == pytest.approx(0.01 * math.ceil(1000 / 256))
    assert times.finish == pytest.approx(times.first_token + 0.01)


def test_running_set_never_exceeds_its_cap_and_every_request_finishes() -> None:
    load = Load(64, 32, requests=200, clients=50)
    result = simulate(LinearStep(), load, max_running=16, token_budget=4096)
    assert len(result.requests) == 200
    assert all(math.isfinite(t.finish) and t.finish >= t.first_token >= t.arrival for t in result.requests)
    assert result.peak_running <= 16


def test_closed_loop_keeps_exactly_its_clients_in_flight() -> None:
    # With a cap above the clients, each client resubmits on finish: in steady state every step decodes `clients`.
    result = simulate(ConstantStep(0.01), Load(16, 101, requests=40, clients=4), max_running=64, token_budget=8192)
    later = result.requests[4:]
    assert all(t.arrival == pytest.approx(result.requests[i].finish) for i, t in enumerate(later))
    assert result.peak_running == 4


def test_decode_jumps_match_step_by_step_time_with_a_growing_context() -> None:
    # The jump integrates the linearly growing step time exactly: compare with the closed form.
    step = LinearStep(base=0.001, per_token=0.0, per_context=1e-6)
    result = simulate(step, Load(10, 100, requests=1, clients=1), max_running=1, token_budget=8192)
    (times,) = result.requests
    prefill = step.seconds(0, 10, 0)
    decodes = sum(step.seconds(1, 0, 10 + 1 + j) for j in range(99))
    assert times.finish == pytest.approx(prefill + decodes, rel=1e-9)


def test_poisson_arrivals_are_reproducible_and_queue_when_overloaded() -> None:
    fast = Load(32, 16, requests=300, rate=5.0)
    a = simulate(LinearStep(), fast, max_running=64, token_budget=8192)
    b = simulate(LinearStep(), fast, max_running=64, token_budget=8192)
    assert [t.finish for t in a.requests] == [t.finish for t in b.requests]
    light = sorted(t.first_token - t.arrival for t in a.requests)
    heavy_load = Load(32, 16, requests=300, rate=5000.0)
    heavy = simulate(LinearStep(), heavy_load, max_running=4, token_budget=8192)
    waits = sorted(t.first_token - t.arrival for t in heavy.requests)
    assert waits[-1] > 10 * light[-1]


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        simulate(ConstantStep(), Load(1, 1, requests=1, clients=1), max_running=0, token_budget=10)
