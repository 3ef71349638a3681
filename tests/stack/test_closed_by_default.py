"""Closed by default: a generated API key shown only as a secret, an nginx proxy that forwards only /v1, /health and
/metrics (run for real against a fake vLLM on 127.0.0.1), no egress for the engine, the model download as a Job."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aim_infra.common.errors import AimError
from aim_infra.stack.components.api_proxy import DEFAULT_PROXY_IMAGE, proxy_config
from aim_infra.stack.manifests.model_download import job_suffix
from aim_infra.stack.plan import SECRET_OUTPUT, PlanResult, kubernetes_objects, run_stack
from aim_infra.stack.settings import parse_settings

from .conftest import SECRET_KEY
from .test_guardrails import VAP, admit, deployment_manifest, only, proxy

REQUIRE_TOOLS = os.environ.get("AIM_TESTS_REQUIRE_TOOLS") == "1"
JOB = "kubernetes:batch/v1:Job"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"


def pod_spec(result: PlanResult) -> dict[str, Any]:
    return deployment_manifest(result)["spec"]["template"]["spec"]


def container(result: PlanResult, name: str) -> dict[str, Any]:
    return next(c for c in pod_spec(result)["containers"] if c["name"] == name)


def manifest(result: PlanResult, kind: str, name: str) -> dict[str, Any]:
    return next(m for m in kubernetes_objects(result) if m["kind"] == kind and m["metadata"]["name"] == name)


# --- 1. the API key ---------------------------------------------------------------------------------------------------


def test_a_key_is_generated_when_none_is_configured_and_exported_only_as_a_secret(dev: PlanResult) -> None:
    assert "aim:apiKey" not in dev.config
    [generated] = [r for r in dev.of_type(RANDOM_PASSWORD) if r.name == "aim-engine-api-key-value"]
    assert generated.inputs["length"] >= 32 and "aim:infra:AimEngine" in generated.urn
    secret = dev.named("kubernetes:core/v1:Secret", "aim-engine-api-key")
    assert secret.inputs["stringData"] == {"VLLM_API_KEY": f"plan-generated-{generated.name}"}
    assert secret.options["additional_secret_outputs"] == ["data", "stringData"]
    # Exported, but only as a secret: the plan (like `pulumi stack output`) shows `[secret]`.
    assert dev.outputs["apiKey"] == SECRET_OUTPUT
    assert f"plan-generated-{generated.name}" not in str(dev.outputs)
    verify = dev.outputs["verify"]
    assert verify["apiKey"] == "export AIM_API_KEY=$(pulumi stack output apiKey --show-secrets)"
    assert "Authorization: Bearer $AIM_API_KEY" in verify["models"] and "Bearer $AIM_API_KEY" in verify["chat"]
    env = {e["name"]: e for e in container(dev, "vllm")["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "aim-engine-api-key", "key": "VLLM_API_KEY"}


def test_a_configured_key_is_used_and_nothing_is_generated(prod: PlanResult) -> None:
    assert not [r for r in prod.of_type(RANDOM_PASSWORD) if r.name == "aim-engine-api-key-value"]
    secret = prod.named("kubernetes:core/v1:Secret", "aim-engine-api-key")
    assert secret.inputs["stringData"] == {"VLLM_API_KEY": SECRET_KEY}
    assert prod.outputs["apiKey"] == SECRET_OUTPUT and SECRET_KEY not in str(prod.outputs)


# --- 2. the proxy, as declared ----------------------------------------------------------------------------------------


def test_vllm_listens_on_loopback_behind_the_proxy(dev: PlanResult) -> None:
    spec = pod_spec(dev)
    vllm = container(dev, "vllm")
    assert "--host=127.0.0.1" in vllm["args"] and "--port=8080" in vllm["args"]
    assert not any(a.startswith("--host=0") for a in vllm["args"]) and "ports" not in vllm
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"] == {"path": "/health", "port": 8000}  # the proxy's /health
    sidecar = proxy(deployment_manifest(dev))
    assert sidecar["image"] == DEFAULT_PROXY_IMAGE and "@sha256:" in sidecar["image"]
    assert sidecar["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9400, "protocol": "TCP"},
    ]
    assert sidecar["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 101,
        "runAsGroup": 101,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["api-proxy-config"] == {"name": "api-proxy-config", "configMap": {"name": "aim-engine-api-proxy"}}
    assert "emptyDir" in volumes["proxy-tmp"]
    service = manifest(dev, "Service", "aim-engine")["spec"]
    assert service["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}
    ]
    metrics = manifest(dev, "Service", "aim-engine-metrics")["spec"]
    assert metrics["type"] == "ClusterIP" and [p["targetPort"] for p in metrics["ports"]] == ["metrics"]
    # A changed proxy config rolls the pods (nginx reads it only at start).
    annotations = deployment_manifest(dev)["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["aim.amd.com/api-proxy-config-hash"]) == 16


def test_the_declared_proxy_config_is_the_rendered_one(dev: PlanResult) -> None:
    declared = manifest(dev, "ConfigMap", "aim-engine-api-proxy")["data"]["nginx.conf"]
    assert declared == proxy_config(api_port=8000, metrics_port=9400)
    assert "proxy_buffering off;" in declared and "proxy_http_version 1.1;" in declared
    assert "proxy_read_timeout 3600s;" in declared and "listen 8000;" in declared and "listen 9400;" in declared


def test_the_proxy_image_is_configurable_pinned_and_admitted() -> None:
    mirror = "mirror.example.com/nginx/nginx-unprivileged:1.30.4-alpine-slim@sha256:" + "cd" * 32
    result = run_stack("dev", {"aim:apiProxyImage": mirror})
    assert result.error is None, result.error
    deployment = deployment_manifest(result)
    assert proxy(deployment)["image"] == mirror
    assert admit(only(result, VAP).inputs["spec"], deployment).allowed
    for bad in ("nginxinc/nginx-unprivileged:1.30.4-alpine-slim", "nginx:latest", "Bad Image"):
        with pytest.raises(AimError) as error:
            parse_settings({"apiProxyImage": bad})
        message = str(error.value)
        assert message.startswith(f"aim:apiProxyImage: '{bad}' is not allowed: expected a digest-pinned")
        assert "\n" not in message


# --- 2. the proxy, run for real ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeVllm(http.server.ThreadingHTTPServer):
    """Answers every path with its own name (so the test sees what reached vLLM); /v1/stream streams two chunks with
    a pause the test controls, to prove the proxy does not buffer."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), FakeHandler)


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeVllm

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        if self.path == "/v1/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for data in (b"data: first-token\n\n", b"data: [DONE]\n\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                self.server.release.wait(10)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = f"vllm {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        if REQUIRE_TOOLS:
            pytest.fail("nginx is not installed (AIM_TESTS_REQUIRE_TOOLS=1: .ci/run installs it)")
        pytest.skip("nginx is not installed")
    return found


def root_flags() -> list[str]:
    # As root, nginx's workers would switch to `nobody`, who cannot use the test's private temp directory.
    return ["-g", "user root;"] if os.geteuid() == 0 else []


@contextlib.contextmanager
def nginx_serving(nginx: str, conf: Path, port: int) -> Iterator[None]:
    """nginx running `conf` until it accepts connections on `port` (or the test fails with its stderr), then stopped."""
    process = subprocess.Popen(
        [nginx, "-e", "stderr", "-c", str(conf), *root_flags()], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start: {process.stderr.read().decode() if process.stderr else ''}")
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def running_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, FakeVllm]]:
    nginx = nginx_binary()
    upstream = FakeVllm()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    work = tmp_path_factory.mktemp("nginx")
    api, metrics = free_port(), free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        proxy_config(
            api_port=api,
            metrics_port=metrics,
            upstream_port=upstream.server_address[1],
            listen_host="127.0.0.1",
            temp_dir=str(work),
            workers=1,
        )
    )
    try:
        with nginx_serving(nginx, conf, api):
            yield api, metrics, upstream
    finally:
        upstream.shutdown()


def get(port: int, path: str) -> tuple[int, bytes]:
    """A raw GET (the path exactly as written: no client-side normalisation of `..` or `%2e`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: aim\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_nginx_accepts_the_declared_config(dev: PlanResult, tmp_path: Path) -> None:
    nginx = nginx_binary()
    conf = tmp_path / "nginx.conf"
    conf.write_text(manifest(dev, "ConfigMap", "aim-engine-api-proxy")["data"]["nginx.conf"])
    checked = subprocess.run([nginx, "-t", "-e", "stderr", "-c", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr


@pytest.mark.parametrize(
    "path",
    ["/v1/models", "/v1/chat/completions", "/v1/completions?x=1", "/health"],
)
def test_the_api_port_forwards_the_key_guarded_routes_and_health(
    running_proxy: tuple[int, int, FakeVllm], path: str
) -> None:
    api, _, upstream = running_proxy
    status, body = get(api, path)
    assert (status, body) == (200, f"vllm {path}".encode())
    assert upstream.seen[-1] == path


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/invocations",
        "/pooling",
        "/score",
        "/rerank",
        "/tokenize",
        "/detokenize",
        "/version",
        "/docs",
        "/openapi.json",
        "/ping",
        "/v1",  # not under /v1/
        "/v1/../metrics",
        "/v1/%2e%2e/metrics",
        "/metrics/../v1/models",  # normalises into /v1/, but vLLM would see the raw path: its /metrics mount
        "/x/../v1/models",
        "/healthz",
    ],
)
def test_every_other_route_is_404_and_never_reaches_vllm(running_proxy: tuple[int, int, FakeVllm], path: str) -> None:
    api, _, upstream = running_proxy
    before = len(upstream.seen)
    status, _ = get(api, path)
    assert status == 404, path
    assert upstream.seen[before:] == []


def test_the_metrics_port_serves_only_metrics(running_proxy: tuple[int, int, FakeVllm]) -> None:
    _, metrics, upstream = running_proxy
    assert get(metrics, "/metrics") == (200, b"vllm /metrics")
    before = len(upstream.seen)
    for path in ("/v1/models", "/health", "/metrics/../v1/models", "/tokenize"):
        assert get(metrics, path)[0] == 404, path
    assert upstream.seen[before:] == []


def test_a_stream_reaches_the_client_while_vllm_is_still_writing(running_proxy: tuple[int, int, FakeVllm]) -> None:
    """End to end through the proxy (nginx would pass these small chunks on even with buffering on: the directive
    itself is asserted on the declared config above, where it matters for slow clients and large responses)."""
    api, _, upstream = running_proxy
    upstream.release.clear()
    with socket.create_connection(("127.0.0.1", api), timeout=5) as s:
        s.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: aim\r\nConnection: close\r\n\r\n")
        data = b""
        # The first token arrives while vLLM is still holding the rest of the response back.
        while b"first-token" not in data:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        assert b"[DONE]" not in data
        upstream.release.set()
        while chunk := s.recv(65536):
            data += chunk
    assert b"[DONE]" in data and data.startswith(b"HTTP/1.1 200")


# --- 3. egress and the download Job -----------------------------------------------------------------------------------


def test_the_download_is_a_job_the_deployment_waits_for(prod: PlanResult) -> None:
    assert "initContainers" not in pod_spec(prod)
    [job] = prod.of_type(JOB)
    settings = prod.config
    suffix = job_suffix(settings["aim:model"], settings.get("aim:modelRevision") or None)
    assert job.inputs["metadata"]["name"] == f"aim-engine-download-{suffix}"
    assert job.inputs["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"
    spec = job.inputs["spec"]
    assert "ttlSecondsAfterFinished" not in spec and spec["backoffLimit"] >= 1
    pod = spec["template"]
    assert pod["metadata"]["labels"]["aim.amd.com/model-cache"] == "aim-engine-model-cache"
    assert not {"app.kubernetes.io/name": "aim-engine"}.items() <= pod["metadata"]["labels"].items()
    [download] = pod["spec"]["containers"]
    assert download["command"][:3] == ["python3", "-m", "aim_infra.pod.download"]
    assert download["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert download["image"] == container(prod, "vllm")["image"]
    env = {e["name"]: e for e in download["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "aim-engine-hf-token", "key": "HF_TOKEN"}
    assert job.options["custom_timeouts"]["create"].endswith("s") and job.options["delete_before_replace"]
    # The Deployment depends on the download component, so Pulumi rolls it out only after the Job completed.
    deployment = prod.named("kubernetes:apps/v1:Deployment", "aim-engine-deployment")
    component = prod.by_urn(job.parent)
    assert component is not None and component.type == "aim:infra:ModelDownload"
    assert job.urn in deployment.dependencies
    pvc = prod.named("kubernetes:core/v1:PersistentVolumeClaim", "aim-engine-model-cache")
    assert pvc.urn in job.dependencies


def test_a_new_model_or_revision_is_a_new_job() -> None:
    assert job_suffix("Qwen/Qwen3-8B", None) != job_suffix("Qwen/Qwen3-8B", "0123abcd")
    assert job_suffix("Qwen/Qwen3-8B", None) != job_suffix("Qwen/Qwen3-32B", None)
    assert job_suffix("Qwen/Qwen3-8B", "main") == job_suffix("Qwen/Qwen3-8B", "main")


def test_the_engine_runs_offline_without_usage_stats(dev: PlanResult, prod: PlanResult) -> None:
    for result in (dev, prod):
        env = {e["name"]: e.get("value") for e in container(result, "vllm")["env"]}
        assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_NO_USAGE_STATS"] == "1" and env["DO_NOT_TRACK"] == "1"
