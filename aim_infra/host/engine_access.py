"""How host programs reach a deployed engine: kubectl port-forward, the API key from its Secret, /health and /v1."""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import http.client
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aim_infra.common.cli import UsageError
from aim_infra.common.contract import API_PORT
from aim_infra.common.errors import AimError
from aim_infra.host.transport import describe_transport_error

REQUEST_TIMEOUT_CAP = 120.0  # one /v1 request (a cold engine's first chat can take a while)
HEALTH_POLL_CAP = 10.0  # one /health request while waiting
BACKOFF_START = 0.2
BACKOFF_MAX = 5.0
RETRYABLE_STATUS = frozenset({502, 503, 504})
PORT_FORWARD_START = 30.0  # seconds kubectl port-forward may take to say where it listens
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")
#: `--api-key-secret` / `--hf-token-secret`: a Secret of the namespace and one of its data keys.
SECRET_REF = re.compile(r"[a-z0-9][-a-z0-9.]*:[-._a-zA-Z0-9]+")


class AccessFailure(AimError):
    """The engine could not be reached or answered wrongly: the message is the one line to print."""


class TransportError(AimError):
    """No HTTP status came back: connection refused, reset, time-out, DNS, TLS."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    seconds: float

    def text(self, limit: int = 200) -> str:
        snippet = self.body.decode("utf-8", "replace")[:limit]
        return " ".join(snippet.split()) or "(empty body)"


@dataclass(frozen=True)
class Settings:
    """Where the engine is and how to talk to it (the key itself only in memory, never on a command line)."""

    endpoint: str
    model: str
    api_key: str
    api_key_env: str
    timeout: float
    retries: int
    namespace: str
    deployment: str
    port_forward: bool = False
    service: str = ""
    service_port: int = API_PORT
    context: str = ""
    kubectl: str = "kubectl"
    api_key_secret: str = ""
    key_source: str = ""  # where the key came from when not from $api_key_env

    @property
    def logs_hint(self) -> str:
        return (
            f"kubectl -n {self.namespace} logs deploy/{self.deployment} -c vllm "
            f"(and -c model-download while the model downloads; kubectl -n {self.namespace} get pods)"
        )


def add_access_flags(parser: argparse.ArgumentParser, *, timeout: float) -> None:
    """The flags of every host program that talks to the engine: where it is, how to reach it, which key to send."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint", help="base URL of the engine, e.g. http://10.0.0.5:30080")
    where.add_argument(
        "--port-forward", action="store_true", help="reach the engine through kubectl port-forward to its Service"
    )
    parser.add_argument("--model", required=True, help="the model id the engine should serve (aim:model)")
    parser.add_argument(
        "--api-key-env", default="AIM_API_KEY", help="environment variable holding the API key (default AIM_API_KEY)"
    )
    parser.add_argument(
        "--api-key-secret", default="", help="read the API key from Secret SECRET, data key KEY, of --namespace"
    )
    parser.add_argument(
        "--timeout", type=float, default=timeout, help=f"seconds /health may take (default {timeout:g})"
    )
    parser.add_argument("--namespace", default="aim", help="the engine's namespace (default aim)")
    parser.add_argument("--deployment", default="aim-engine", help="Deployment name, for the kubectl hint")
    parser.add_argument("--service", default="", help="Service to port-forward to (default: --deployment)")
    parser.add_argument(
        "--service-port", type=int, default=API_PORT, help="the Service's API port (default %(default)s)"
    )
    parser.add_argument("--context", default="", help="kubeconfig context for kubectl (default: the current one)")
    parser.add_argument("--kubectl", default="kubectl", help="the kubectl program (default: kubectl on PATH)")


def access_settings(args: argparse.Namespace, *, retries: int) -> Settings:
    """Settings from the flags of `add_access_flags`, the key from the environment; UsageError on a bad flag."""
    if args.api_key_secret and not SECRET_REF.fullmatch(args.api_key_secret):
        raise UsageError(f"--api-key-secret {args.api_key_secret!r} is not allowed: expected SECRET:KEY")
    if not 1 <= args.service_port <= 65535:
        raise UsageError(f"--service-port {args.service_port} is not allowed: expected a port from 1 to 65535")
    endpoint = "http://127.0.0.1" if args.port_forward else args.endpoint.strip().rstrip("/")
    if endpoint.endswith("/v1"):
        endpoint = endpoint[: -len("/v1")]
    if "$" in endpoint:
        raise UsageError(
            f"--endpoint {endpoint!r} still holds a shell variable: run `pulumi stack output verify --json` and "
            "`export NODE_IP=...` (verify.nodeIp), then pass the endpoint unquoted so the shell expands it"
        )
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--endpoint {endpoint!r} is not an http(s) URL: expected e.g. http://10.0.0.5:30080")
    if not args.model.strip():
        raise UsageError("--model is empty: pass the model id the engine serves (aim:model)")
    if not args.timeout > 0:
        raise UsageError(f"--timeout {args.timeout:g} is not allowed: expected a positive number of seconds")
    return Settings(
        endpoint=endpoint,
        model=args.model.strip(),
        api_key=os.environ.get(args.api_key_env, "").strip(),
        api_key_env=args.api_key_env,
        timeout=args.timeout,
        retries=retries,
        namespace=args.namespace,
        deployment=args.deployment,
        port_forward=args.port_forward,
        service=args.service.strip() or args.deployment,
        service_port=args.service_port,
        context=args.context.strip(),
        kubectl=args.kubectl,
        api_key_secret=args.api_key_secret,
    )


def _kubectl(settings: Settings) -> list[str]:
    program = shutil.which(settings.kubectl)
    if program is None:
        raise AccessFailure(
            f"{settings.kubectl} not found on PATH: install kubectl (the engine is reached through kubectl "
            "port-forward), or run it with --endpoint"
        )
    return [program, *(["--context", settings.context] if settings.context else []), "-n", settings.namespace]


def read_secret(settings: Settings, reference: str, what: str) -> str:
    """The value of `reference` ("SECRET:KEY") in the namespace, read through kubectl when needed, never stored."""
    secret, key = reference.split(":", 1)
    argv = [*_kubectl(settings), "get", "secret", secret, "-o", "jsonpath={.data." + key.replace(".", "\\.") + "}"]
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise AccessFailure(f"cannot read Secret {secret}: {error}") from None
    if result.returncode != 0:
        detail = " ".join(result.stderr.split())[:200] or f"exit {result.returncode}"
        raise AccessFailure(f"cannot read {what} from Secret {settings.namespace}/{secret}: {detail}")
    try:
        value = base64.b64decode(result.stdout.strip(), validate=True).decode("utf-8").strip()
    except (ValueError, UnicodeDecodeError):
        raise AccessFailure(f"Secret {settings.namespace}/{secret} key {key} is not base64-encoded text") from None
    if not value:
        raise AccessFailure(f"Secret {settings.namespace}/{secret} has no key {key} (or it is empty)")
    return value


def key_from_secret(settings: Settings) -> str:
    """The API key from the Kubernetes Secret named by --api-key-secret."""
    return read_secret(settings, settings.api_key_secret, "the API key")


def with_key_from_secret(settings: Settings) -> Settings:
    """`settings` holding the key of its --api-key-secret (when one is named), and saying where it came from."""
    if not settings.api_key_secret:
        return settings
    secret_name = settings.api_key_secret.split(":", 1)[0]
    return dataclasses.replace(
        settings,
        api_key=key_from_secret(settings),
        api_key_secret="",
        key_source=f"Secret {settings.namespace}/{secret_name}",
    )


@contextlib.contextmanager
def port_forward(settings: Settings) -> Iterator[str]:
    """`kubectl port-forward` to the Service on a free local port; yields the local base URL, stops kubectl after."""
    argv = [*_kubectl(settings), "port-forward", f"svc/{settings.service}", f":{settings.service_port}"]
    shown = " ".join(argv[1:])
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except OSError as error:
        raise AccessFailure(f"cannot run kubectl {shown}: {error.strerror or error}") from None
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + PORT_FORWARD_START
        local_port = None
        while local_port is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AccessFailure(
                    f"kubectl {shown} did not start forwarding within {PORT_FORWARD_START:g} s"
                ) from None
            if line is None:
                process.wait(timeout=5)
                stderr = process.stderr.read() if process.stderr else ""
                detail = " ".join(stderr.split())[:240] or f"exit {process.returncode}"
                raise AccessFailure(
                    f"kubectl {shown} failed: {detail}; check the Service exists (kubectl -n {settings.namespace} "
                    f"get svc {settings.service}) and the kubeconfig"
                )
            match = FORWARDING.search(line)
            if match:
                local_port = int(match.group(1))
        yield f"http://127.0.0.1:{local_port}"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def request(method: str, url: str, *, headers: dict[str, str], body: bytes | None, timeout: float) -> Reply:
    """One HTTP request: a Reply for any status (errors too), TransportError when no status came back."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            data = response.read()
            return Reply(response.status, data, time.monotonic() - start)
    except urllib.error.HTTPError as error:
        try:
            data = error.read()
        except Exception:
            data = b""
        return Reply(error.code, data, time.monotonic() - start)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise TransportError(describe_transport_error(error)) from error


def wait_healthy(settings: Settings) -> Reply:
    """GET /health until 200, retrying refused connections, 5xx and time-outs with backoff until --timeout."""
    url = settings.endpoint + "/health"
    deadline = time.monotonic() + settings.timeout
    backoff = BACKOFF_START
    last = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            reply = request("GET", url, headers={}, body=None, timeout=min(HEALTH_POLL_CAP, remaining))
        except TransportError as error:
            last = str(error)
        else:
            if reply.status == 200:
                return reply
            if reply.status < 500:
                raise AccessFailure(
                    f"GET {url} returned {reply.status}: expected 200 from vLLM; check --endpoint is the engine's "
                    f"Service URL (pulumi stack output endpoint), not a path under it: {reply.text()}"
                )
            last = f"{reply.status} {reply.text(80)}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(backoff, remaining))
        backoff = min(backoff * 2, BACKOFF_MAX)
    raise AccessFailure(f"not healthy after {settings.timeout:g} s (GET {url}, last: {last}): {settings.logs_hint}")


def call_api(settings: Settings, method: str, path: str, payload: dict[str, Any] | None = None) -> Reply:
    """A /v1 request with the bearer key when set, retried on transport errors and 502/503/504; 2xx or AccessFailure."""
    url = settings.endpoint + path
    headers = {"Accept": "application/json"}
    if settings.api_key:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    body = None
    if payload is not None:
        body = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    timeout = max(5.0, min(settings.timeout, REQUEST_TIMEOUT_CAP))
    backoff = BACKOFF_START
    for attempt in range(settings.retries + 1):
        last_try = attempt == settings.retries
        try:
            reply = request(method, url, headers=headers, body=body, timeout=timeout)
        except TransportError as error:
            if last_try:
                raise AccessFailure(
                    f"{method} {url} failed: {error} (after {settings.retries + 1} attempt(s)); the engine was "
                    f"healthy a moment ago, so it may have restarted: {settings.logs_hint}"
                ) from error
        else:
            if 200 <= reply.status < 300:
                return reply
            if reply.status in (401, 403):
                source = settings.key_source or f"${settings.api_key_env}"
                sent = f"sent the key from {source}" if settings.api_key else f"no key sent: {source} is unset"
                raise AccessFailure(
                    f"{method} {url} returned {reply.status} ({sent}): the API key is wrong or missing: "
                    f"set aim:apiKey / export {settings.api_key_env}=$(pulumi config get aim:apiKey)"
                )
            if reply.status not in RETRYABLE_STATUS or last_try:
                hint = f"; see {settings.logs_hint}" if reply.status >= 500 else ""
                raise AccessFailure(f"{method} {url} returned {reply.status}: {reply.text()}{hint}")
        time.sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX)
    raise AccessFailure(f"{method} {url}: no attempt was made (--retries {settings.retries})")  # pragma: no cover


def json_body(reply: Reply, what: str) -> Any:
    try:
        return json.loads(reply.body)
    except ValueError as error:
        raise AccessFailure(f"{what} did not return JSON: {reply.text()}") from error


def check_models(settings: Settings) -> Reply:
    """GET /v1/models; AccessFailure naming the served ids unless the engine serves `settings.model`."""
    reply = call_api(settings, "GET", "/v1/models")
    document = json_body(reply, "GET /v1/models")
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise AccessFailure(f"GET /v1/models returned no model list: {reply.text()}")
    ids = [str(item.get("id")) for item in data if isinstance(item, dict)]
    if settings.model not in ids:
        served = ", ".join(repr(i) for i in ids) or "nothing"
        raise AccessFailure(
            f"the engine serves {served}, not {settings.model!r}: pass --model with the served id, or "
            f"`pulumi config set aim:model {settings.model}` and `pulumi up`"
        )
    return reply
