"""Bad config stops the real program before any resource with one line; `gpu: auto` reads a (fake) API server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from aim_infra.stack.plan import run_stack

BAD_CONFIG = [
    ({"aim:gpuCount": "many"}, "aim:gpuCount: 'many' is not allowed: expected auto or a whole number from 1 to 64"),
    ({"aim:metric": "cheap"}, "aim:metric: 'cheap' is not allowed"),
    ({"aim:gpu": "H100"}, "unknown GPU 'H100': expected one of MI210"),
    ({"aim:model": "nobody/unknown-model", "HF_HUB_OFFLINE": "1"}, "nobody/unknown-model"),
    ({"aim:precision": "fp8", "aim:gpu": "MI250"}, "MI250 (gfx90a) has no fp8 path"),
    ({"aim:model": "meta-llama/Llama-3.1-405B-Instruct"}, "nothing can serve meta-llama/Llama-3.1-405B-Instruct on 1"),
    ({"aim:recipe": "no-such-recipe"}, "unknown recipe 'no-such-recipe'"),
    ({"aim:vllmExtraArgs": '["--swap-space", "4"]'}, "vllm extra argument --swap-space"),
    ({"aim:maxModelLen": "1000000"}, "max_model_len 1000000: expected 256 to 40960"),
    ({"aim:replicas": "4"}, "aim:replicas 4: only 1 fit on one node"),
    ({"aim:baseImage": "rocm/vllm:latest"}, "aim:baseImage: 'rocm/vllm:latest' is not allowed"),
    ({"aim:nodePort": "99"}, "aim:nodePort: '99' is not allowed: expected 0 (assigned) or a port from 30000"),
    ({"aim:modle": "x"}, "aim:modle: unknown config key; did you mean aim:model?"),
    # Issue #11: each of these was accepted, or refused for the wrong reason, before.
    ({"aim:cacheSize": "10"}, "aim:cacheSize: '10' is not allowed: expected auto or a Kubernetes quantity of at"),
    ({"aim:cacheSize": "20Gi"}, "aim:cacheSize: '20Gi' is not allowed: expected at least 28Gi for Qwen/Qwen3-8B"),
    ({"aim:storageClass": "Bad Class"}, "aim:storageClass: 'Bad Class' is not allowed: expected empty"),
    ({"aim:podCidr": "10.0.0.1/32"}, "aim:podCidr: '10.0.0.1/32' is not allowed: expected an IPv4 prefix from /8"),
    ({"aim:modelRevision": "main; rm -rf /"}, "aim:modelRevision: 'main; rm -rf /' is not allowed"),
    ({"aim:vllmExtraArgs": "--bogus-flag-xyz=1"}, "vllm extra argument --bogus-flag-xyz: not a flag of vLLM 0.23.0"),
    ({"aim:vllmExtraArgs": "--use-v2-block-manager"}, "vllm extra argument --use-v2-block-manager: removed from"),
    ({"aim:vllmExtraArgs": "-tp 2"}, "vllm extra argument -tp: set by the recipe"),
    ({"aim:gpuCount": "64"}, "gpu count 64 (aim:gpuCount / --gpu-count): expected 1 to 8, the most MI300X one node"),
    (
        {"aim:vllmExtraArgs": "--trust-remote-code"},
        "aim:modelRevision: unset is not allowed: expected a 40-hex commit sha, because aim:vllmExtraArgs runs "
        "--trust-remote-code (the repository's Python code runs in the vLLM pod next to the API key); find the commit "
        "at https://huggingface.co/Qwen/Qwen3-8B/commits/main",
    ),
    (
        {"aim:vllmExtraArgs": "--trust-remote-code", "aim:modelRevision": "main"},
        "aim:modelRevision: 'main' is not allowed: expected a 40-hex commit sha",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD_CONFIG)
def test_bad_config_declares_nothing_and_says_one_line(
    overrides: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if overrides.pop("HF_HUB_OFFLINE", None):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_stack("dev", overrides)
    assert result.error is not None
    assert "\n" not in result.error
    assert expected in result.error, result.error
    assert result.resources == []


class FakeApiServer(BaseHTTPRequestHandler):
    """Answers `GET /api/v1/nodes` like a Kubernetes API server with two labelled GPU nodes and a CPU node."""

    nodes: ClassVar[list[dict[str, object]]] = []

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/api/v1/nodes":
            self.send_error(404)
            return
        body = json.dumps({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": self.nodes}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def node(name: str, device_id: str | None, gpus: int) -> dict[str, object]:
    labels = {"kubernetes.io/hostname": name}
    if device_id:
        labels["amd.com/gpu.device-id"] = device_id
    allocatable = {"cpu": "192", "memory": "2Ti", **({"amd.com/gpu": str(gpus)} if gpus else {})}
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": allocatable, "capacity": allocatable},
    }


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [{"name": "kubernetes-admin@kubernetes", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "kubernetes-admin@kubernetes",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    yield path
    server.shutdown()


def test_gpu_auto_reads_labels_and_allocatable_from_the_cluster(kubeconfig: Path) -> None:
    FakeApiServer.nodes = [node("cpu-0", None, 0), node("gpu-0", "74a5", 8), node("gpu-1", "74a1", 4)]
    result = run_stack("dev", {"aim:gpu": "auto", "aim:gpuCount": "auto", "aim:clusterBootstrap": "none"})
    assert result.error is None, result.error
    assert result.outputs["recipe"]["gpu"] == "MI325X"
    assert result.outputs["recipe"]["gpus_available"] == 8


def test_gpu_auto_with_no_labelled_node_says_what_to_set(kubeconfig: Path) -> None:
    FakeApiServer.nodes = [node("cpu-0", None, 0)]
    result = run_stack("dev", {"aim:gpu": "auto", "aim:clusterBootstrap": "none"})
    assert result.error is not None and "set aim:gpu and aim:gpuCount" in result.error
    assert result.resources == []


def test_gpu_auto_with_an_unreachable_cluster_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "kubernetes-admin@kubernetes", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "kubernetes-admin@kubernetes",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    result = run_stack("dev", {"aim:gpu": "auto", "aim:clusterBootstrap": "none"})
    assert result.error is not None and result.error.startswith("aim:gpu/aim:gpuCount auto: cannot list nodes")
    assert "set aim:gpu and aim:gpuCount" in result.error and "\n" not in result.error
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    result = run_stack("dev", {"aim:gpu": "auto", "aim:clusterBootstrap": "none"})
    assert result.error is not None and "no usable kubeconfig" in result.error


def test_a_recipe_that_runs_remote_code_needs_a_pinned_commit() -> None:
    """Kimi-K2's catalogue recipes run --trust-remote-code: refused unpinned, planned with a 40-hex revision."""
    kimi = {"aim:model": "moonshotai/Kimi-K2-Instruct"}
    refused = run_stack("prod", kimi)
    assert refused.error is not None and refused.resources == []
    assert refused.error.startswith("aim:modelRevision: unset is not allowed: expected a 40-hex commit sha, because "
                                    "recipe kimi-k2-"), refused.error  # fmt: skip
    assert "git ls-remote https://huggingface.co/moonshotai/Kimi-K2-Instruct refs/heads/main" in refused.error
    pinned = run_stack("prod", {**kimi, "aim:modelRevision": "0" * 40})
    assert pinned.error is None, pinned.error
    assert "--trust-remote-code" in pinned.outputs["vllmArgs"]


def test_the_checked_in_stacks_run_no_remote_code() -> None:
    for stack in ("dev", "prod"):
        result = run_stack(stack)
        assert result.error is None, result.error
        assert "--trust-remote-code" not in result.outputs["vllmArgs"], stack


def test_aim_model_never_reads_a_local_folder_nor_suggests_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tests` is a folder here and a valid-looking Hub id: the stack asks the Hub (offline: refused), not the disk."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_stack("dev", {"aim:model": "tests"})
    assert result.error is not None and "'tests'" in result.error and "\n" not in result.error
    assert "local model directory" not in result.error
