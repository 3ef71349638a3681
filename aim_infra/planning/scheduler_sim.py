"""A discrete-event simulation of one vLLM V1 engine's scheduler: continuous batching with chunked prefill.

Each step schedules every running decode (one token each) first, then spends what is left of the token budget
(`--max-num-batched-tokens`) on prompt chunks, oldest request first, admitting waiting requests while the running
set is below its cap (`--max-num-seqs`, the batch budget and the KV cache at the workload's lengths). A request's
first token comes with the step that finishes its prompt. Steps in which nothing but decoding happens are taken
in one jump up to the next finish or arrival, so a run costs time per request, not per token.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Protocol


class StepTime(Protocol):
    def seconds(
        self, decodes: float, prefill_tokens: float, context_tokens: float, prefill_attention: float = 0.0
    ) -> float: ...


@dataclass(frozen=True, slots=True)
class Load:
    """What arrives: a closed loop of `clients` (each resubmits when its request finishes) or Poisson arrivals at
    `rate` per second; `requests` in all. Every request has the same prompt and output lengths."""

    input_tokens: int
    output_tokens: int
    requests: int
    clients: int | None = None
    rate: float | None = None
    seed: int = 20261205
    stagger: float = 0.0  # closed loop: the clients' first requests spread evenly over this many seconds


@dataclass(slots=True)
class RequestTimes:
    arrival: float
    first_token: float = math.nan
    finish: float = math.nan


@dataclass(slots=True)
class SimulationResult:
    """Per-request times and the run's span; summary statistics are computed by the caller."""

    requests: list[RequestTimes]
    output_tokens: int
    started: float
    ended: float
    steps: int
    peak_running: int

    @property
    def output_tokens_per_s(self) -> float:
        span = self.ended - self.started
        return self.output_tokens * len(self.requests) / span if span > 0 else 0.0


@dataclass(slots=True)
class _Prefilling:
    index: int
    done: int = 0


def simulate(
    step: StepTime, load: Load, max_running: int, token_budget: int, max_events: int = 2_000_000
) -> SimulationResult:
    """Run `load` through one engine whose step time is `step.seconds(...)`."""
    if max_running < 1 or token_budget < 1:
        raise ValueError("max_running and token_budget must be at least 1")
    prompt, output = load.input_tokens, load.output_tokens
    cap = max(1, min(max_running, token_budget))
    times: list[RequestTimes] = []
    waiting: deque[int] = deque()
    pending: list[float] = []  # future arrival times, ascending (open loop) — closed loop appends as clients finish
    submitted = 0

    if load.clients is not None:
        first = min(load.clients, load.requests)
        # Started together, fixed-length requests stay in lockstep for ever; real clients do not.
        pending.extend(load.stagger * i / first for i in range(first))
        pending.reverse()
    else:
        rng = random.Random(load.seed)
        rate = float(load.rate or 1.0)
        clock = 0.0
        for _ in range(load.requests):
            pending.append(clock)
            clock += rng.expovariate(rate)
        pending.reverse()  # pop() from the end = the earliest

    prefilling: list[_Prefilling] = []
    # Heap of (step at which the request has its last token, index, step at which it started decoding).
    decoding: list[tuple[int, int, int]] = []
    # Context of the decoding set: Σ (prompt + 1 + steps since its first token) = context_base + n × step.
    context_base = 0
    now = 0.0
    step_no = 0
    steps = 0
    events = 0
    peak = 0

    def arrive_until(limit: float) -> None:
        nonlocal submitted
        while pending and pending[-1] <= limit:
            times.append(RequestTimes(arrival=pending.pop()))
            waiting.append(len(times) - 1)
            submitted += 1

    def finish(index: int, at: float) -> None:
        nonlocal submitted
        times[index].finish = at
        if load.clients is not None and submitted < load.requests:
            times.append(RequestTimes(arrival=at))
            waiting.append(len(times) - 1)
            submitted += 1

    while True:
        events += 1
        if events > max_events:
            raise RuntimeError("simulation did not converge")  # a bug guard, never expected
        arrive_until(now)
        running = len(decoding) + len(prefilling)
        if not decoding and not prefilling and not waiting:
            if not pending:
                break
            now = pending[-1]
            continue
        n = len(decoding)
        context = context_base + n * step_no
        admissible = bool(waiting) and running < cap
        if not prefilling and not admissible:
            # Pure decode: jump to the next finish, or to the next arrival if it could be admitted.
            last = decoding[0][0]
            k = max(1, last - step_no)
            first_step = step.seconds(n, 0, context)
            if pending and running < cap:
                until_arrival = pending[-1] - now
                k = max(1, min(k, math.ceil(until_arrival / first_step) if first_step > 0 else k))
            last_step = step.seconds(n, 0, context + n * (k - 1))
            duration = k * (first_step + last_step) / 2  # step time grows linearly with the context
            now += duration
            step_no += k
            steps += k
            peak = max(peak, running)
            while decoding and decoding[0][0] <= step_no:
                _, index, entered = heapq.heappop(decoding)
                context_base -= prompt + 1 - entered
                finish(index, now)
            continue
        # A mixed step: decodes, then prompt chunks within the budget.
        budget = token_budget - n
        chunks: list[tuple[_Prefilling, int]] = []
        prefill_attention = 0.0
        for item in prefilling:
            if budget <= 0:
                break
            take = min(budget, prompt - item.done)
            chunks.append((item, take))
            prefill_attention += take * (item.done + take / 2)
            budget -= take
        while budget > 0 and waiting and len(decoding) + len(prefilling) < cap:
            item = _Prefilling(waiting.popleft())
            prefilling.append(item)
            take = min(budget, prompt)
            chunks.append((item, take))
            prefill_attention += take * take / 2
            budget -= take
        tokens = sum(take for _, take in chunks)
        duration = step.seconds(n, tokens, context, prefill_attention)
        now += duration
        step_no += 1
        steps += 1
        peak = max(peak, len(decoding) + len(prefilling))
        for item, take in chunks:
            item.done += take
        for item in [p for p in prefilling if p.done >= prompt]:
            prefilling.remove(item)
            times[item.index].first_token = now
            if output <= 1:
                finish(item.index, now)
                continue
            # It enters decoding with prompt + 1 tokens of context; it has its last token after output − 1 steps.
            heapq.heappush(decoding, (step_no + output - 1, item.index, step_no))
            context_base += prompt + 1 - step_no
        while decoding and decoding[0][0] <= step_no:
            _, index, entered = heapq.heappop(decoding)
            context_base -= prompt + 1 - entered
            finish(index, now)
    started = min((t.arrival for t in times), default=0.0)
    return SimulationResult(
        requests=times,
        output_tokens=output,
        started=started,
        ended=now,
        steps=steps,
        peak_running=peak,
    )
