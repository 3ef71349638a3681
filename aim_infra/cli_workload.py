"""Workload flags shared by `select` and `estimate`: parse them into a Workload, naming the flag on a bad value."""

from __future__ import annotations

import argparse
import math

from pydantic import ValidationError

from aim_infra.common.errors import AimError
from aim_infra.planning.workload import Workload

#: flag → Workload field. Types are checked by argparse (whole number / number); ranges by the Workload model.
FLAGS = {
    "input-tokens": "input_tokens",
    "output-tokens": "output_tokens",
    "concurrency": "concurrency",
    "requests-per-second": "requests_per_second",
    "ttft-p95-ms": "ttft_p95_ms",
    "tpot-p95-ms": "tpot_p95_ms",
    "gpu-hourly-cost": "gpu_hourly_cost",
}


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a whole number") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a finite number")
    return value


def add_workload_flags(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """The workload as flags; `required`: lengths and one load must be given (estimate), else all optional."""
    parser.add_argument("--input-tokens", type=_whole, required=required, help="prompt tokens per request")
    parser.add_argument("--output-tokens", type=_whole, required=required, help="generated tokens per request")
    load = parser.add_mutually_exclusive_group(required=required)
    load.add_argument("--concurrency", type=_whole, help="clients each keeping one request in flight (all replicas)")
    load.add_argument("--requests-per-second", type=_number, help="Poisson arrival rate over all replicas")
    parser.add_argument("--ttft-p95-ms", type=_number, default=None, help="SLO: time to first token, p95")
    parser.add_argument("--tpot-p95-ms", type=_number, default=None, help="SLO: time per output token, p95")
    parser.add_argument("--gpu-hourly-cost", type=_number, default=None, help="price of one GPU-hour (any currency)")


def workload_from_args(args: argparse.Namespace) -> Workload | None:
    """The Workload the flags describe, or None when no workload flag was given."""
    given = {field: getattr(args, flag.replace("-", "_")) for flag, field in FLAGS.items()}
    given = {field: value for field, value in given.items() if value is not None}
    if not given:
        return None
    try:
        return Workload.model_validate(given)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        location = first.get("loc", ())
        field = str(location[0]) if location else ""
        flag = next((f for f, name in FLAGS.items() if name == field), None)
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        if flag is None:
            raise AimError(f"workload flags: {message}") from None
        raise AimError(f"--{flag} {given.get(field)!r}: {message}") from None
