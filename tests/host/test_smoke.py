"""The post-deploy smoke test against a fake OpenAI-compatible server: exit codes, one-line errors, no key leaks."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from aim_infra.host import engine_access, smoke
from tests.fake_kubectl import install_fake_kubectl, still_running
from tests.loopback_http import LoopbackServers

ROOT = Path(__file__).resolve().parents[2]
MODEL = "Qwen/Qwen3-8B"
KEY = "sk-SMOKE-secret-key-for-tests-7f3a"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@dataclass
class FakeEngine:
    """What the fake vLLM does: which model it serves, whether it wants a key, how /health and chat misbehave."""

    served: str = MODEL
    key: str = ""
    health_503_first: int = 0  # /health answers 503 this many times, then 200
    health_never: bool = False  # /health answers 503 forever
    health_delay: float = 0.0  # /health sleeps this long before answering
    chat_status: int = 200
    chat_content: str | None = "Hello there, how are you?"
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Authorization
    health_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_handler(engine: FakeEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def send(self, status: int, payload: Any) -> None:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (time-out tests)
                self.wfile.write(body)

        def authorized(self) -> bool:
            if not engine.key:
                return True
            if self.headers.get("Authorization") == f"Bearer {engine.key}":
                return True
            self.send(401, {"error": "Unauthorized"})
            return False

        def record(self) -> None:
            with engine.lock:
                engine.requests.append((self.command, self.path, self.headers.get("Authorization")))

        def do_GET(self) -> None:
            self.record()
            if self.path == "/health":
                with engine.lock:
                    engine.health_calls += 1
                    calls = engine.health_calls
                if engine.health_delay:
                    threading.Event().wait(engine.health_delay)
                if engine.health_never or calls <= engine.health_503_first:
                    self.send(503, b"")
                else:
                    self.send(200, b"")
            elif self.path == "/v1/models":
                if self.authorized():
                    self.send(200, {"object": "list", "data": [{"id": engine.served, "object": "model"}]})
            else:
                self.send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            self.record()
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v1/chat/completions":
                self.send(404, {"detail": "Not Found"})
                return
            if not self.authorized():
                return
            if engine.chat_status != 200:
                detail = "x" * 500
                self.send(engine.chat_status, {"object": "error", "message": f"EngineCore died {detail}"})
                return
            if request.get("model") != engine.served or request.get("max_tokens") != 16:
                self.send(400, {"object": "error", "message": f"bad request {request}"})
                return
            message = {"role": "assistant", "content": engine.chat_content}
            self.send(200, {"object": "chat.completion", "model": engine.served, "choices": [{"message": message}]})

    return Handler


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARS, "AIM_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def serve(no_proxy: None, loopback_only: list[str]) -> Iterator[Any]:
    """Start a fake engine on 127.0.0.1 (port 0); returns (engine, base URL)."""
    servers = LoopbackServers()

    def start(**kwargs: Any) -> tuple[FakeEngine, str]:
        engine = FakeEngine(**kwargs)
        return engine, servers.start(make_handler(engine))

    yield start
    servers.stop_all()


def run(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, str, str]:
    code = smoke.main(["--endpoint", url, "--model", MODEL, "--timeout", "2", "--retries", "1", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_failure(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 1, (out, err)
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("aim smoke: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


# --------------------------------------------------------------------------------------------------------------------
# success


def test_healthy_engine_passes_all_three_checks(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    engine, url = serve()
    code, out, err = run(capsys, url)
    assert (code, err) == (0, "")
    assert out.count("\n") == 1 and out.startswith("aim smoke: ok ")
    assert "/health 200" in out and f"/v1/models serves {MODEL}" in out and "chat answered 'Hello" in out
    assert " ms)" in out and "total" in out
    assert [(m, p) for m, p, _ in engine.requests] == [
        ("GET", "/health"),
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
    ]
    assert all(auth is None for _, _, auth in engine.requests)


def test_endpoint_with_trailing_v1_and_slash_is_accepted(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, url = serve()
    code, out, _ = run(capsys, url + "/v1/")
    assert code == 0, out


def test_health_503_then_200_is_retried(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    engine, url = serve(health_503_first=2)
    code, _, err = run(capsys, url, "--timeout", "10")
    assert (code, err) == (0, ""), err
    assert engine.health_calls == 3


def test_right_key_is_sent_on_v1_only(serve: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    engine, url = serve(key=KEY)
    monkeypatch.setenv("AIM_API_KEY", KEY)
    code, out, err = run(capsys, url)
    assert (code, err) == (0, ""), err
    assert KEY not in out
    auth = {path: header for _, path, header in engine.requests}
    assert auth == {"/health": None, "/v1/models": f"Bearer {KEY}", "/v1/chat/completions": f"Bearer {KEY}"}


def test_api_key_env_names_the_variable(serve: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    _, url = serve(key=KEY)
    monkeypatch.setenv("MY_ENGINE_KEY", KEY)
    code, _, err = run(capsys, url, "--api-key-env", "MY_ENGINE_KEY")
    assert (code, err) == (0, ""), err


# --------------------------------------------------------------------------------------------------------------------
# failures: one line on stderr, exit 1


def test_missing_key_is_401_with_the_fix(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, url = serve(key=KEY)
    code, out, err = run(capsys, url)
    assert_one_line_failure(
        code, out, err, "401", "$AIM_API_KEY is unset", "the API key is wrong or missing: set aim:apiKey / export"
    )


def test_wrong_key_is_401_and_never_printed(serve: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    _, url = serve(key=KEY)
    wrong = "sk-WRONG-key-never-printed-99"
    monkeypatch.setenv("AIM_API_KEY", wrong)
    code, out, err = run(capsys, url)
    assert_one_line_failure(code, out, err, "401", "sent the key from $AIM_API_KEY", "the API key is wrong or missing")
    assert wrong not in out + err and KEY not in out + err


def test_wrong_served_model_names_the_ids(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    engine, url = serve(served="meta-llama/Llama-3.1-8B-Instruct")
    code, out, err = run(capsys, url)
    assert_one_line_failure(code, out, err, "'meta-llama/Llama-3.1-8B-Instruct'", f"not '{MODEL}'", "aim:model")
    assert [p for _, p, _ in engine.requests] == ["/health", "/v1/models"]


def test_never_healthy_times_out_with_kubectl_logs(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, url = serve(health_never=True)
    code, out, err = run(capsys, url)
    assert_one_line_failure(
        code, out, err, "not healthy after 2 s", "last: 503", "kubectl -n aim logs deploy/aim-engine"
    )


def test_slow_health_times_out(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, url = serve(health_delay=5)
    code, out, err = run(capsys, url, "--timeout", "1", "--namespace", "llm", "--deployment", "qwen")
    assert_one_line_failure(code, out, err, "not healthy after 1 s", "timed out", "kubectl -n llm logs deploy/qwen")


def test_connection_refused_times_out(no_proxy: None, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the smoke test runs: nothing listens there
    code, out, err = run(capsys, f"http://127.0.0.1:{port}", "--timeout", "1")
    assert_one_line_failure(code, out, err, "not healthy after 1 s", "connection refused", "kubectl")


def test_chat_500_shows_status_and_200_chars_of_body(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, url = serve(chat_status=500)
    code, out, err = run(capsys, url)
    assert_one_line_failure(code, out, err, "POST", "/v1/chat/completions returned 500", "EngineCore died")
    body = err.split("returned 500: ", 1)[1].split("; see ", 1)[0]
    assert len(body) == 200


def test_chat_503_is_retried_then_fails(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    engine, url = serve(chat_status=503)
    code, out, err = run(capsys, url, "--retries", "2")
    assert_one_line_failure(code, out, err, "returned 503")
    assert [p for _, p, _ in engine.requests].count("/v1/chat/completions") == 3


def test_empty_chat_content_fails(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, url = serve(chat_content="")
    code, out, err = run(capsys, url)
    assert_one_line_failure(code, out, err, "no choices[0].message.content")


def test_not_a_vllm_endpoint_fails_fast(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, url = serve()
    code, out, err = run(capsys, url + "/somewhere")
    assert_one_line_failure(code, out, err, "returned 404", "--endpoint")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--endpoint", "http://${NODE_IP}:30080", "--model", MODEL], "NODE_IP"),
        (["--endpoint", "10.0.0.5:30080", "--model", MODEL], "not an http(s) URL"),
        (["--endpoint", "http://127.0.0.1:1", "--model", MODEL, "--timeout", "0"], "--timeout"),
        (["--model", MODEL], "--endpoint"),
    ],
)
def test_bad_arguments_are_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = smoke.main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("aim smoke: ") and needle in err, err


def test_unexpected_error_is_one_line(serve: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    _, url = serve()

    def boom(settings: smoke.Settings) -> str:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(smoke, "run", boom)
    code, out, err = run(capsys, url)
    assert_one_line_failure(code, out, err, "unexpected error: RuntimeError: boom second line")


# --------------------------------------------------------------------------------------------------------------------
# as a process: `python -m aim_infra.host.smoke`


def test_module_runs_as_a_process(serve: Any) -> None:
    _, url = serve(key=KEY)
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    command = [sys.executable, "-m", "aim_infra.host.smoke", "--endpoint", url, "--model", MODEL, "--timeout", "5"]

    ok = subprocess.run(command, cwd=ROOT, env={**env, "AIM_API_KEY": KEY}, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == "" and ok.stdout.count("\n") == 1 and ok.stdout.startswith("aim smoke: ok ")
    assert KEY not in ok.stdout + ok.stderr

    bad = subprocess.run(
        command, cwd=ROOT, env={**env, "AIM_API_KEY": KEY + "-wrong"}, capture_output=True, text=True, timeout=60
    )
    assert_one_line_failure(bad.returncode, bad.stdout, bad.stderr, "401", "the API key is wrong or missing")
    assert KEY not in bad.stdout + bad.stderr
    assert KEY not in " ".join(command)  # the key travels in the environment, never on the command line


# --------------------------------------------------------------------------------------------------------------------
# --port-forward: how the stack's smoke-test step reaches the engine (a fake kubectl on PATH)


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    return install_fake_kubectl(tmp_path, monkeypatch)


def test_port_forward_checks_through_kubectl_and_stops_it(
    serve: Any, fake_kubectl: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    engine, url = serve(key=KEY)
    log = fake_kubectl("forward", url)
    monkeypatch.setenv("AIM_API_KEY", KEY)
    code = smoke.main(
        ["--port-forward", "--model", MODEL, "--namespace", "aim-prod", "--context", "prod", "--timeout", "5"]
    )
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    assert out.startswith("aim smoke: ok svc/aim-engine (port-forward): /health 200")
    assert log.read_text() == "--context prod -n aim-prod port-forward svc/aim-engine :8000\n"
    assert [p for _, p, _ in engine.requests] == ["/health", "/v1/models", "/v1/chat/completions"]
    assert not still_running(log)


def test_port_forward_failure_is_one_line_with_kubectls_reason(
    no_proxy: None, fake_kubectl: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kubectl("fail")
    code = smoke.main(["--port-forward", "--model", MODEL, "--timeout", "5"])
    out, err = capsys.readouterr()
    assert_one_line_failure(
        code,
        out,
        err,
        'kubectl -n aim port-forward svc/aim-engine :8000 failed: error: services "aim-engine" not found',
    )


def test_port_forward_that_never_listens_times_out_and_is_stopped(
    no_proxy: None, fake_kubectl: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    log = fake_kubectl("silent")
    monkeypatch.setattr(engine_access, "PORT_FORWARD_START", 1.0)
    code = smoke.main(["--port-forward", "--model", MODEL, "--timeout", "5"])
    out, err = capsys.readouterr()
    assert_one_line_failure(code, out, err, "did not start forwarding within 1 s")
    assert not still_running(log)


def test_port_forward_without_kubectl_says_how_to_get_it(
    no_proxy: None, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    code = smoke.main(["--port-forward", "--model", MODEL, "--kubectl", "no-such-kubectl-here"])
    out, err = capsys.readouterr()
    assert_one_line_failure(code, out, err, "no-such-kubectl-here not found on PATH: install kubectl")


def test_port_forward_and_endpoint_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    code = smoke.main(["--port-forward", "--endpoint", "http://127.0.0.1:1", "--model", MODEL])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and "not allowed with argument" in err, err


def test_api_key_from_the_kubernetes_secret_is_sent_and_never_printed(
    serve: Any, fake_kubectl: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    engine, url = serve(key=KEY)
    log = fake_kubectl("forward", url)
    monkeypatch.setenv("FAKE_SECRET_B64", base64.b64encode(KEY.encode()).decode())
    argv = ["--port-forward", "--model", MODEL, "--api-key-secret", "aim-engine-api-key:VLLM_API_KEY"]
    code = smoke.main([*argv, "--timeout", "5"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    assert KEY not in out and KEY not in log.read_text()
    assert log.read_text().splitlines()[0] == ("-n aim get secret aim-engine-api-key -o jsonpath={.data.VLLM_API_KEY}")
    assert {path: header for _, path, header in engine.requests}["/v1/models"] == f"Bearer {KEY}"

    monkeypatch.setenv("FAKE_SECRET_B64", base64.b64encode(b"sk-wrong").decode())
    code = smoke.main([*argv, "--timeout", "5"])
    out, err = capsys.readouterr()
    assert_one_line_failure(code, out, err, "401 (sent the key from Secret aim/aim-engine-api-key)")


def test_missing_api_key_secret_is_one_line(
    no_proxy: None, fake_kubectl: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    fake_kubectl("forward", "http://127.0.0.1:1")
    monkeypatch.delenv("FAKE_SECRET_B64", raising=False)
    code = smoke.main(["--port-forward", "--model", MODEL, "--api-key-secret", "aim-engine-api-key:VLLM_API_KEY"])
    out, err = capsys.readouterr()
    assert_one_line_failure(
        code, out, err, "cannot read the API key from Secret aim/aim-engine-api-key: Error from server (NotFound)"
    )
