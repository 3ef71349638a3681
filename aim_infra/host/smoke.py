"""Smoke test of a deployed engine: /health, the served model on /v1/models, one chat completion; one line either way.

    python -m aim_infra.host.smoke (--endpoint URL | --port-forward) --model MODEL_ID [--api-key-env AIM_API_KEY]
                              [--timeout SECONDS] [--retries N] [--namespace aim] [--deployment aim-engine]
                              [--service NAME] [--service-port 8000] [--context CTX] [--kubectl kubectl]
                              [--api-key-secret SECRET:KEY]

`--port-forward` reaches the engine the way the stack's smoke-test step does, whatever the Service type and the
NetworkPolicies: it runs `kubectl -n NAMESPACE port-forward svc/SERVICE :SERVICE_PORT` (a free local port; the
kubeconfig from $KUBECONFIG, `--context` when given), checks through it and stops it. `--api-key-secret` reads the
key from that Kubernetes Secret of the namespace (`kubectl get secret`) instead of the environment, so the stack's
step never holds the key itself.

Stdlib only (urllib, json), so it runs wherever `pulumi up` runs. The API key is read from the environment variable
named by `--api-key-env` (default AIM_API_KEY), never from the command line, so it never shows in process lists or
Pulumi state; when set it is sent as `Authorization: Bearer <key>` on /v1/* only (vLLM keeps /health open).

`--timeout` is how long /health may take to answer 200 while the engine starts (connection refused, 503 and
time-outs are retried with backoff until then); `--retries` is how often a /v1 request is retried after a transport
error or a 502/503/504. Exit 0 with one summary line on stdout; exit 1 with one line on stderr starting `aim smoke:`
that says what failed and the likely fix. Never a traceback.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence

from aim_infra.common.cli import OneLineParser, UsageError, run_program
from aim_infra.host.engine_access import (
    AccessFailure,
    Reply,
    Settings,
    access_settings,
    add_access_flags,
    call_api,
    check_models,
    json_body,
    port_forward,
    wait_healthy,
    with_key_from_secret,
)

PREFIX = "aim smoke:"
DEFAULT_TIMEOUT = 900.0
DEFAULT_RETRIES = 2
PROMPT = "Say hello in five words."
__all__ = ["Settings", "SmokeFailure", "main", "run"]


class SmokeFailure(AccessFailure):
    """A failed check: its message is the one line printed after `aim smoke:`."""


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = OneLineParser(prog="python -m aim_infra.host.smoke", description=__doc__.splitlines()[0])
    add_access_flags(parser, timeout=DEFAULT_TIMEOUT)
    parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="retries of a /v1 request on 502/503/504")
    args = parser.parse_args(argv)
    if args.retries < 0:
        raise UsageError(f"--retries {args.retries} is not allowed: expected 0 or more")
    return access_settings(args, retries=args.retries)


def check_chat(settings: Settings) -> tuple[Reply, str]:
    payload = {
        "model": settings.model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 16,
        "temperature": 0,
    }
    reply = call_api(settings, "POST", "/v1/chat/completions", payload)
    document = json_body(reply, "POST /v1/chat/completions")
    try:
        content = document["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str) or not content.strip():
        raise SmokeFailure(
            f"POST /v1/chat/completions returned no choices[0].message.content: {reply.text()}; "
            f"see {settings.logs_hint}"
        )
    return reply, content


def run(settings: Settings) -> str:
    """The three checks in order (through a port-forward when asked); the success line, or SmokeFailure."""
    if settings.port_forward:
        with port_forward(settings) as endpoint:
            line = run(dataclasses.replace(settings, endpoint=endpoint, port_forward=False))
        return line.replace(endpoint, f"svc/{settings.service} (port-forward)")
    start = time.monotonic()
    health = wait_healthy(settings)
    models = check_models(settings)
    chat, content = check_chat(settings)
    answer = " ".join(content.split())
    if len(answer) > 60:
        answer = answer[:57] + "..."
    return (
        f"{PREFIX} ok {settings.endpoint}: /health 200 ({health.seconds * 1000:.0f} ms), "
        f"/v1/models serves {settings.model} ({models.seconds * 1000:.0f} ms), "
        f"chat answered {answer!r} ({chat.seconds * 1000:.0f} ms); total {time.monotonic() - start:.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the smoke test; 0 with one line on stdout, 1 (2 for bad arguments) with one line on stderr."""
    secrets: list[str] = []

    def body() -> str:
        settings = parse_args(argv)
        secrets.append(settings.api_key)
        settings = with_key_from_secret(settings)
        secrets.append(settings.api_key)
        return run(settings)

    return run_program(PREFIX, body, usage_hint="see python -m aim_infra.host.smoke --help", secrets=secrets)


if __name__ == "__main__":
    sys.exit(main())
