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
    engine = _Engine(step, load, cap=max(1, min(max_running, token_budget)), token_budget=token_budget)
    for _ in range(max_events):
        if not engine.advance():
            return engine.result()
    raise RuntimeError("simulation did not converge")  # a bug guard, never expected


def _arrival_times(load: Load) -> list[float]:
    """The first arrivals, latest first (pop() gives the earliest): every Poisson arrival of an open loop, or each
    client's first request of a closed loop (later ones are appended as clients finish)."""
    pending: list[float] = []
    if load.clients is not None:
        first = min(load.clients, load.requests)
        # Started together, fixed-length requests stay in lockstep for ever; real clients do not.
        pending.extend(load.stagger * i / first for i in range(first))
    else:
        rng = random.Random(load.seed)
        rate = float(load.rate or 1.0)
        clock = 0.0
        for _ in range(load.requests):
            pending.append(clock)
            clock += rng.expovariate(rate)
    pending.reverse()
    return pending


class _Engine:
    """The scheduler's state between events; `advance()` takes one event (a decode jump or a mixed step)."""

    def __init__(self, step: StepTime, load: Load, cap: int, token_budget: int) -> None:
        self.step, self.load, self.cap, self.token_budget = step, load, cap, token_budget
        self.prompt, self.output = load.input_tokens, load.output_tokens
        self.times: list[RequestTimes] = []
        self.waiting: deque[int] = deque()
        self.pending = _arrival_times(load)  # future arrival times, latest first
        self.submitted = 0
        self.prefilling: list[_Prefilling] = []
        # Heap of (step at which the request has its last token, index, step at which it started decoding).
        self.decoding: list[tuple[int, int, int]] = []
        # Context of the decoding set: Σ (prompt + 1 + steps since its first token) = context_base + n × step.
        self.context_base = 0
        self.now = 0.0
        self.step_no = 0
        self.steps = 0
        self.peak = 0

    def advance(self) -> bool:
        """One event; False once every request has finished."""
        self.arrive_until(self.now)
        running = len(self.decoding) + len(self.prefilling)
        if not self.decoding and not self.prefilling and not self.waiting:
            if not self.pending:
                return False
            self.now = self.pending[-1]
            return True
        admissible = bool(self.waiting) and running < self.cap
        if not self.prefilling and not admissible:
            self.decode_jump(running)
        else:
            self.mixed_step()
        return True

    def arrive_until(self, limit: float) -> None:
        while self.pending and self.pending[-1] <= limit:
            self.times.append(RequestTimes(arrival=self.pending.pop()))
            self.waiting.append(len(self.times) - 1)
            self.submitted += 1

    def finish(self, index: int, at: float) -> None:
        self.times[index].finish = at
        if self.load.clients is not None and self.submitted < self.load.requests:
            self.times.append(RequestTimes(arrival=at))
            self.waiting.append(len(self.times) - 1)
            self.submitted += 1

    def finish_decodes(self) -> None:
        """Retire the requests whose last token came with the current step."""
        while self.decoding and self.decoding[0][0] <= self.step_no:
            _, index, entered = heapq.heappop(self.decoding)
            self.context_base -= self.prompt + 1 - entered
            self.finish(index, self.now)

    def decode_jump(self, running: int) -> None:
        """Pure decode: jump to the next finish, or to the next arrival if it could be admitted."""
        n = len(self.decoding)
        context = self.context_base + n * self.step_no
        k = max(1, self.decoding[0][0] - self.step_no)
        first_step = self.step.seconds(n, 0, context)
        if self.pending and running < self.cap:
            until_arrival = self.pending[-1] - self.now
            k = max(1, min(k, math.ceil(until_arrival / first_step) if first_step > 0 else k))
        last_step = self.step.seconds(n, 0, context + n * (k - 1))
        self.now += k * (first_step + last_step) / 2  # step time grows linearly with the context
        self.step_no += k
        self.steps += k
        self.peak = max(self.peak, running)
        self.finish_decodes()

    def mixed_step(self) -> None:
        """A step of decodes, then prompt chunks within the budget: older prompts first, then admitted requests."""
        n = len(self.decoding)
        context = self.context_base + n * self.step_no
        budget = self.token_budget - n
        chunks: list[tuple[_Prefilling, int]] = []
        prefill_attention = 0.0
        for item in self.prefilling:
            if budget <= 0:
                break
            take = min(budget, self.prompt - item.done)
            chunks.append((item, take))
            prefill_attention += take * (item.done + take / 2)
            budget -= take
        while budget > 0 and self.waiting and len(self.decoding) + len(self.prefilling) < self.cap:
            item = _Prefilling(self.waiting.popleft())
            self.prefilling.append(item)
            take = min(budget, self.prompt)
            chunks.append((item, take))
            prefill_attention += take * take / 2
            budget -= take
        tokens = sum(take for _, take in chunks)
        self.now += self.step.seconds(n, tokens, context, prefill_attention)
        self.step_no += 1
        self.steps += 1
        self.peak = max(self.peak, len(self.decoding) + len(self.prefilling))
        for item, take in chunks:
            item.done += take
        self.start_decoding([p for p in self.prefilling if p.done >= self.prompt])
        self.finish_decodes()

    def start_decoding(self, prefilled: list[_Prefilling]) -> None:
        """Requests whose prompt is done have their first token now and start decoding (or finish, for 1 token)."""
        for item in prefilled:
            self.prefilling.remove(item)
            self.times[item.index].first_token = self.now
            if self.output <= 1:
                self.finish(item.index, self.now)
                continue
            # It enters decoding with prompt + 1 tokens of context; it has its last token after output − 1 steps.
            heapq.heappush(self.decoding, (self.step_no + self.output - 1, item.index, self.step_no))
            self.context_base += self.prompt + 1 - self.step_no

    def result(self) -> SimulationResult:
        started = min((t.arrival for t in self.times), default=0.0)
        return SimulationResult(
            requests=self.times,
            output_tokens=self.output,
            started=started,
            ended=self.now,
            steps=self.steps,
            peak_running=self.peak,
        )
