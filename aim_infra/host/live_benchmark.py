"""Benchmark a deployed engine at its workload with GuideLLM and print the measured figures next to the estimate.

    python -m aim_infra.host.live_benchmark (--endpoint URL | --port-forward) --model MODEL_ID --estimate JSON|@FILE
        [--recipe-id ID] [--tokenizer NAME_OR_DIR] [--revision REV] [--num-prompts N] [--max-seconds SECONDS]
        [--timeout SECONDS] [--api-key-env AIM_API_KEY] [--api-key-secret SECRET:KEY] [--hf-token-secret SECRET:KEY]
        [--namespace aim] [--service aim-engine] [--service-port 8000] [--context CTX] [--kubectl kubectl]
        [--out RESULT.json]

`--estimate` is the stack's estimate (`decision.summary()["estimate"]`: the figures, their ranges, the calibration,
the workload and the layout), as JSON text or `@FILE`. The workload decides the load: `concurrency` clients in a
closed loop, or `requestsPerSecond` Poisson arrivals; `--num-prompts` defaults to the rule the estimate simulates
(recipes.workload.benchmark_requests: max(4 × concurrency, 64), or max(60 s × rate, 64), at most 2000).
`--max-seconds` (default 1800) stops a run that takes longer; what did not finish counts as cut off.

The engine is reached as the smoke test reaches it (`--port-forward` through kubectl, or `--endpoint`); the API key
comes from the environment (`--api-key-env`) or the engine's Secret (`--api-key-secret`), the Hugging Face token for
the tokenizer from `--hf-token-secret` or $HF_TOKEN; neither is ever on a command line. The tokenizer is the
model's (`--tokenizer` overrides: a Hub id or a local directory).

Prints ONE JSON object on stdout: measured, estimate, ratio (measured / estimate), within_range, workload (with
numPrompts), layout, model, recipe_id, load_generator, engine_version, measured_at; `--out` writes it to a file for
`python -m aim_infra calibrate --add`. Exit 1 with one line on stderr starting `aim benchmark:` when the engine
cannot be reached, refuses the key, GuideLLM fails or every request failed; exit 2 for bad arguments.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aim_infra.common.cli import OneLineParser, UsageError, run_program
from aim_infra.common.errors import AimError
from aim_infra.host import guidellm_run
from aim_infra.host.engine_access import (
    SECRET_REF,
    AccessFailure,
    Settings,
    TransportError,
    access_settings,
    add_access_flags,
    check_models,
    json_body,
    port_forward,
    read_secret,
    request,
    wait_healthy,
    with_key_from_secret,
)
from aim_infra.planning.benchmark_result import METRICS, Estimate, compare, parse_estimate
from aim_infra.planning.workload import benchmark_requests

PREFIX = "aim benchmark:"
DEFAULT_HEALTH_TIMEOUT = 300.0
DEFAULT_MAX_SECONDS = 1800.0
MAX_NUM_PROMPTS = 100_000


@dataclass(frozen=True)
class Options:
    """What to run beyond reaching the engine: the estimate to compare with and how to load the engine."""

    estimate: Estimate
    recipe_id: str
    tokenizer: str
    revision: str | None
    num_prompts: int
    max_seconds: float
    hf_token_secret: str
    out: Path | None


def _estimate(text: str) -> Estimate:
    source = "--estimate"
    if text.startswith("@"):
        source = f"--estimate {text}"
        try:
            text = Path(text[1:]).read_text()
        except OSError as error:
            raise UsageError(f"{source}: cannot read the file: {error.strerror or error}") from None
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise UsageError(f"{source} is not JSON ({error}): pass decision.summary()['estimate'] or @FILE") from None
    try:
        return parse_estimate(raw, where=source)
    except AimError as error:
        raise UsageError(str(error)) from None


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, Options]:
    parser = OneLineParser(prog="python -m aim_infra.host.live_benchmark", description=__doc__.splitlines()[0])
    add_access_flags(parser, timeout=DEFAULT_HEALTH_TIMEOUT)
    parser.add_argument("--estimate", required=True, help="the stack's estimate as JSON, or @FILE")
    parser.add_argument("--recipe-id", default="", help="the recipe the engine runs (recorded in the result)")
    parser.add_argument("--tokenizer", default="", help="tokenizer: Hub id or local directory (default: --model)")
    parser.add_argument("--revision", default="", help="Hub revision of the tokenizer (aim:modelRevision)")
    parser.add_argument("--num-prompts", type=int, default=0, help="requests to send (default: the estimate's rule)")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, help="stop the run after this")
    parser.add_argument("--hf-token-secret", default="", help="read HF_TOKEN for the tokenizer from SECRET:KEY")
    parser.add_argument("--out", type=Path, default=None, help="also write the result JSON to this file")
    args = parser.parse_args(argv)
    access = access_settings(args, retries=2)
    if args.hf_token_secret and not SECRET_REF.fullmatch(args.hf_token_secret):
        raise UsageError(f"--hf-token-secret {args.hf_token_secret!r} is not allowed: expected SECRET:KEY")
    if not 0 < args.max_seconds <= 86_400:
        raise UsageError(f"--max-seconds {args.max_seconds:g} is not allowed: expected 1 to 86400 seconds")
    if not 0 <= args.num_prompts <= MAX_NUM_PROMPTS:
        raise UsageError(f"--num-prompts {args.num_prompts} is not allowed: expected 1 to {MAX_NUM_PROMPTS}")
    estimate = _estimate(args.estimate)
    options = Options(
        estimate=estimate,
        recipe_id=args.recipe_id,
        tokenizer=args.tokenizer.strip() or access.model,
        revision=args.revision.strip() or None,
        num_prompts=args.num_prompts or benchmark_requests(estimate.parsed_workload()),
        max_seconds=args.max_seconds,
        hf_token_secret=args.hf_token_secret,
        out=args.out,
    )
    return access, options


def engine_version(access: Settings) -> str | None:
    """`vLLM <version>` from the engine's /version, or None when it does not say."""
    headers = {"Authorization": f"Bearer {access.api_key}"} if access.api_key else {}
    try:
        reply = request("GET", access.endpoint + "/version", headers=headers, body=None, timeout=10)
    except TransportError:
        return None
    if reply.status != 200:
        return None
    try:
        found = json_body(reply, "GET /version").get("version")
    except (AccessFailure, AttributeError):
        return None
    return f"vLLM {found}" if isinstance(found, str) and found.strip() else None


def result_document(
    *,
    measured: dict[str, Any],
    options: Options,
    model: str,
    load_generator: str,
    version: str | None,
    measured_at: datetime.datetime,
) -> dict[str, Any]:
    """The one JSON object the program prints: measured next to estimated, with the ratio and the range check."""
    estimate = options.estimate
    figures = estimate.figures()
    ratio, within_range = compare(measured, figures, estimate.range)
    return {
        "measured": measured,
        "estimate": {
            **figures,
            "range": {key: list(estimate.range[key]) for key in METRICS},
            "calibration": estimate.calibration.model_dump(),
        },
        "ratio": ratio,
        "within_range": within_range,
        "workload": {**estimate.parsed_workload().as_json(), "numPrompts": options.num_prompts},
        "layout": estimate.layout.model_dump(),
        "model": model,
        "recipe_id": options.recipe_id,
        "load_generator": load_generator,
        "engine_version": version,
        "measured_at": measured_at.astimezone(datetime.UTC).isoformat(timespec="seconds"),
    }


def run(access: Settings, options: Options, hf_token: str = "") -> dict[str, Any]:
    """Check the engine answers, run GuideLLM against it, compare; the result, or AccessFailure/GeneratorError."""
    load_generator = guidellm_run.version()
    if access.port_forward:
        with port_forward(access) as endpoint:
            return run(dataclasses.replace(access, endpoint=endpoint, port_forward=False), options, hf_token)
    wait_healthy(access)
    check_models(access)  # a wrong key or model fails here, in a second, not after GuideLLM's start-up
    version = engine_version(access)
    plan = guidellm_run.Plan(
        target=access.endpoint,
        model=access.model,
        workload=options.estimate.parsed_workload(),
        num_prompts=options.num_prompts,
        tokenizer=options.tokenizer,
        revision=options.revision,
        max_seconds=options.max_seconds,
    )
    with tempfile.TemporaryDirectory(prefix="aim-benchmark-") as workdir:  # 0700: the scenario holds the key
        report = guidellm_run.run(plan, Path(workdir), api_key=access.api_key, hf_token=hf_token)
    try:
        measured = guidellm_run.measured_from_report(report)
    except guidellm_run.GeneratorError as error:
        raise guidellm_run.GeneratorError(f"{error}; see {access.logs_hint}") from None
    # GuideLLM 0.8.1 can end a replay while the last response is on its way: the engine served it, the report
    # counts it nowhere. Say so rather than let the counts silently disagree with --num-prompts.
    reported = measured["requests_completed"] + measured["requests_failed"] + measured["requests_incomplete"]
    measured["requests_unreported"] = max(0, options.num_prompts - reported)
    return result_document(
        measured=measured,
        options=options,
        model=access.model,
        load_generator=load_generator,
        version=version,
        measured_at=datetime.datetime.now(datetime.UTC),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 with the JSON on stdout, 1 (2 for bad arguments) with one line on stderr."""
    secrets: list[str] = []

    def body() -> str:
        access, options = parse_args(argv)
        secrets.append(access.api_key)
        access = with_key_from_secret(access)
        secrets.append(access.api_key)
        hf_token = ""
        if options.hf_token_secret:
            hf_token = read_secret(access, options.hf_token_secret, "the Hugging Face token")
            secrets.append(hf_token)
        document = run(access, options, hf_token)
        if options.out is not None:
            try:
                options.out.write_text(json.dumps(document, indent=2) + "\n")
            except OSError as error:
                raise AccessFailure(f"cannot write --out {options.out}: {error.strerror or error}") from None
        return json.dumps(document)

    return run_program(PREFIX, body, usage_hint="see python -m aim_infra.host.live_benchmark --help", secrets=secrets)


if __name__ == "__main__":
    sys.exit(main())
