"""The traffic a deployment is sized for: prompt and output lengths, load (concurrency or rate) and latency targets."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from aim_infra.common.errors import AimError

#: What an unset `aim:workload` means: a chat-style request (1k prompt, 256 answer tokens) from 64 clients at once.
#: It only shapes the estimate that is printed; sizing from an SLO needs the workload set explicitly.
DEFAULT_INPUT_TOKENS = 1024
DEFAULT_OUTPUT_TOKENS = 256
DEFAULT_CONCURRENCY = 64

#: Limits that keep the simulation bounded and catch typos (a 10M-token prompt is a mistake, not a workload).
MAX_TOKENS = 1_048_576
MAX_CONCURRENCY = 100_000
MAX_REQUESTS_PER_SECOND = 10_000.0

#: A number written as text: Pulumi keeps `pulumi config set --path aim:workload.requestsPerSecond 4.5` as a string.
_WHOLE_TEXT = re.compile(r"[0-9]{1,12}")
_DECIMAL_TEXT = re.compile(r"[0-9]{1,12}(\.[0-9]{0,12})?|\.[0-9]{1,12}")


def _whole_number(low: int, high: int, optional: bool = False) -> Callable[[Any], Any]:
    """An int, a whole float (2048.0) or digits as text ("2048"); never a boolean (pydantic would take true as 1)."""
    wrong = f"expected a whole number from {low} to {high}"

    def parse(value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, str) and _WHOLE_TEXT.fullmatch(value.strip()):
            value = int(value.strip())
        elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(wrong)
        return value

    return parse


def _positive_number(high: float) -> Callable[[Any], Any]:
    """A finite number in (0, high], or one written as decimal text ("4.5"); never a boolean, NaN or infinity."""
    wrong = f"expected a number greater than 0 and at most {high:.12g}"

    def parse(value: Any) -> Any:
        if value is None:
            return None  # every such key is optional: null = unset
        if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip()):
            value = float(value.strip())
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(wrong)
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            raise ValueError(wrong) from None
        if not math.isfinite(number) or not 0 < number <= high:
            raise ValueError(wrong)
        return number

    return parse


Tokens = Annotated[int, BeforeValidator(_whole_number(1, MAX_TOKENS))]
Concurrency = Annotated[int | None, BeforeValidator(_whole_number(1, MAX_CONCURRENCY, optional=True))]


class Workload(BaseModel):
    """One workload: every request has `input_tokens` of prompt and generates `output_tokens`; the load is either
    `concurrency` clients each keeping one request in flight (a closed loop, as `vllm bench serve --max-concurrency`)
    or `requests_per_second` arriving as a Poisson process (an open loop, as `--request-rate`). Both are totals over
    all replicas. The SLO fields are optional p95 targets; `gpu_hourly_cost` (any currency per GPU-hour) adds a
    price per million output tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # The validators refuse what pydantic's lax mode would take (true as 1, "nan") with one `expected ...` rule each.
    input_tokens: Tokens = Field(default=DEFAULT_INPUT_TOKENS, ge=1, le=MAX_TOKENS, alias="inputTokens")
    output_tokens: Tokens = Field(default=DEFAULT_OUTPUT_TOKENS, ge=1, le=MAX_TOKENS, alias="outputTokens")
    concurrency: Concurrency = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    requests_per_second: Annotated[float | None, BeforeValidator(_positive_number(MAX_REQUESTS_PER_SECOND))] = Field(
        default=None, gt=0, le=MAX_REQUESTS_PER_SECOND, alias="requestsPerSecond", allow_inf_nan=False
    )
    ttft_p95_ms: Annotated[float | None, BeforeValidator(_positive_number(3_600_000))] = Field(
        default=None, gt=0, le=3_600_000, alias="ttftP95Ms", allow_inf_nan=False
    )
    tpot_p95_ms: Annotated[float | None, BeforeValidator(_positive_number(600_000))] = Field(
        default=None, gt=0, le=600_000, alias="tpotP95Ms", allow_inf_nan=False
    )
    gpu_hourly_cost: Annotated[float | None, BeforeValidator(_positive_number(1_000_000))] = Field(
        default=None, gt=0, le=1_000_000, alias="gpuHourlyCost", allow_inf_nan=False
    )

    @model_validator(mode="after")
    def _one_load(self) -> Workload:
        if self.concurrency is not None and self.requests_per_second is not None:
            raise ValueError("either concurrency or requestsPerSecond, not both (the load is one or the other)")
        if self.concurrency is None and self.requests_per_second is None:
            object.__setattr__(self, "concurrency", DEFAULT_CONCURRENCY)
        return self

    @property
    def closed_loop(self) -> bool:
        """True for a fixed number of clients (concurrency), False for Poisson arrivals (requests_per_second)."""
        return self.concurrency is not None

    @property
    def has_slo(self) -> bool:
        return self.ttft_p95_ms is not None or self.tpot_p95_ms is not None

    def load_text(self) -> str:
        if self.concurrency is not None:
            return f"{self.concurrency} concurrent"
        return f"{self.requests_per_second:g} req/s"

    def describe(self) -> str:
        """One line, e.g. `1024 in / 256 out tokens, 64 concurrent, SLO TTFT p95 ≤ 2000 ms`."""
        slo = []
        if self.ttft_p95_ms is not None:
            slo.append(f"TTFT p95 ≤ {self.ttft_p95_ms:g} ms")
        if self.tpot_p95_ms is not None:
            slo.append(f"TPOT p95 ≤ {self.tpot_p95_ms:g} ms")
        text = f"{self.input_tokens} in / {self.output_tokens} out tokens, {self.load_text()}"
        if slo:
            text += ", SLO " + " and ".join(slo)
        if self.gpu_hourly_cost is not None:
            text += f", {self.gpu_hourly_cost:g} per GPU-hour"
        return text

    def as_json(self) -> dict[str, Any]:
        """The camelCase form stack config and `--json` output use."""
        return self.model_dump(by_alias=True, exclude_none=True)


def parse_workload(raw: dict[str, Any] | None, where: str = "aim:workload") -> Workload:
    """Validate a workload mapping (stack config or CLI flags); one AimError line naming the key on failure."""
    if raw is None:
        return Workload()
    if not isinstance(raw, dict):
        raise AimError(f"{where}: {_shown(raw)} is not allowed: expected a mapping of workload keys")
    allowed = [f.alias or n for n, f in Workload.model_fields.items()]
    for key in raw:
        if not isinstance(key, str) or key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
            hint = f"did you mean {close[0]}? " if close else ""
            raise AimError(f"{where}.{_key(key)}: unknown workload key; {hint}expected one of {', '.join(allowed)}")
    try:
        return Workload.model_validate(raw)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        location = [str(p) for p in first.get("loc", ())]
        # pydantic names a field by its alias when the input used it (inputTokens), else by name (input_tokens)
        by_key = {f.alias or n: f.alias or n for n, f in Workload.model_fields.items()}
        by_key.update({n: f.alias or n for n, f in Workload.model_fields.items()})
        key = by_key.get(location[0], "") if location else ""
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        message = message.replace("Input should be", "expected", 1)
        if not message.startswith("expected"):
            message = f"expected {message}"
        if not key:  # a rule across keys (the load): show the whole mapping
            raise AimError(f"{where}: {_shown(raw)} is not allowed: {message}") from None
        value = raw.get(key, raw.get(location[0], first.get("input")))
        raise AimError(f"{where}.{key}: {_shown(value)} is not allowed: {message}") from None


def _key(key: object) -> str:
    """A key as given when it reads as one, else quoted (blanks, line breaks and non-strings stay on one line)."""
    text = key if isinstance(key, str) else repr(key)
    return text if text and text.isprintable() and not any(c.isspace() for c in text) else _shown(key)


def _shown(value: object) -> str:
    """repr() for an error line, booleans as a stack file writes them; never fails and never runs long."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    try:
        text = repr(value)
    except ValueError:  # an int beyond str()'s digit limit
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= 80 else text[:77] + "..."


#: Requests one benchmark (and the simulation that predicts it) sends: enough for the steady state to dominate the
#: warm-up, few enough to finish in minutes. Closed loop: 4 rounds of the clients; open loop: a minute of arrivals.
MIN_BENCHMARK_REQUESTS = 64
MAX_BENCHMARK_REQUESTS = 2000


def benchmark_requests(workload: Workload) -> int:
    """How many requests `aim:benchmark` sends and the estimate simulates: max(4 × concurrency, 64) for a closed
    loop, max(60 s × rate, 64) for an open loop, at most 2000."""
    if workload.concurrency is not None:
        wanted = 4 * workload.concurrency
    else:
        wanted = math.ceil(60 * float(workload.requests_per_second or 0))
    return max(MIN_BENCHMARK_REQUESTS, min(MAX_BENCHMARK_REQUESTS, wanted))


def default_workload(metric: str) -> Workload:
    """The workload an estimate assumes when none is given: 1024 in / 256 out tokens from 64 concurrent clients for
    a throughput goal; one request at a time for a latency goal (an interactive user: what TP buys is speed per
    request, and a single stream is how serving latency is conventionally quoted)."""
    return Workload(concurrency=1) if metric == "latency" else Workload()
