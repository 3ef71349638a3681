"""A real Prometheus scrapes a fake vLLM and a fake kube-state-metrics on 127.0.0.1 and evaluates the rules: the
`aim:` series appear with the recipe's labels and plausible values."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from aim_infra.planning.monitoring import names, rules
from tests.planning.monitoring.support import StackRules, expected_low, stack_rules, tool

# Slow (a real Prometheus server, ~8 s): promtool checks the same rules in the quick run
# (test_rules_promtool.py); CI (AIM_TESTS_FULL=1) scrapes for real.
pytestmark = pytest.mark.slow

EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"
NODE = "gpu-node-1"
WAIT_SECONDS = 30


class FakeVllm:
    """vLLM V1's /metrics as the OpenAI server exposes it: counters grow on every scrape."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.scrapes = 0
        self.lock = threading.Lock()

    def render(self) -> str:
        with self.lock:
            self.scrapes += 1
            n = self.scrapes
        base = f'model_name="{self.model}",engine="0"'
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{base}}} 7.0",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{base}}} 3.0",
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{{{base}}} 0.42",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{base}}} {500.0 * n}",
            f"vllm:generation_tokens_created{{{base}}} 1.7e9",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{base}}} {1000.0 * n}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
            f'vllm:request_success_total{{{base},finished_reason="stop"}} {2.0 * n}',
            f'vllm:request_success_total{{{base},finished_reason="length"}} {1.0 * n}',
            f'vllm:request_success_total{{{base},finished_reason="abort"}} 0.0',
            "# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.",
            "# TYPE vllm:num_preemptions_total counter",
            f"vllm:num_preemptions_total{{{base}}} {float(n // 2)}",
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig",
            "# TYPE vllm:cache_config_info gauge",
            'vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="0",gpu_memory_utilization="0.9"} 1.0',
        ]
        # Three requests finish per scrape: TTFT in (0.1, 0.25] s, inter-token latency in (0.01, 0.025] s,
        # end to end in (5, 10] s.
        lines += self.histogram("vllm:time_to_first_token_seconds", (0.1, 0.25, 1.0, 5.0), 1, 3 * n, 0.2)
        lines += self.histogram("vllm:inter_token_latency_seconds", (0.01, 0.025, 0.05, 0.1), 1, 3 * n, 0.02)
        lines += self.histogram("vllm:e2e_request_latency_seconds", (1.0, 5.0, 10.0, 20.0), 2, 3 * n, 7.0)
        # prometheus-fastapi-instrumentator's counter on the same port, status codes grouped.
        lines += [
            "# HELP http_requests_total Total number of requests by method, status and handler.",
            "# TYPE http_requests_total counter",
            f'http_requests_total{{handler="/v1/chat/completions",method="POST",status="2xx"}} {10.0 * n}',
            f'http_requests_total{{handler="/v1/chat/completions",method="POST",status="5xx"}} {1.0 * n}',
        ]
        return "\n".join(lines) + "\n"

    def histogram(self, name: str, bounds: tuple[float, ...], first: int, count: int, each: float) -> list[str]:
        """`count` observations of `each`, all in the bucket (bounds[first-1], bounds[first]]."""
        base = f'model_name="{self.model}",engine="0"'
        out = [f"# HELP {name} Histogram.", f"# TYPE {name} histogram"]
        for index, bound in enumerate(bounds):
            out.append(f'{name}_bucket{{{base},le="{bound}"}} {float(count if index >= first else 0)}')
        out.append(f'{name}_bucket{{{base},le="+Inf"}} {float(count)}')
        out.append(f"{name}_count{{{base}}} {float(count)}")
        out.append(f"{name}_sum{{{base}}} {count * each}")
        return out


def fake_ksm(ctx: StackRules, pod: str) -> Callable[[], str]:
    """kube-state-metrics' view of the engine pod: its allow-listed labels, its GPU request, its phase."""
    ksm = names.KSM_LABEL
    labels = (
        f'namespace="{ctx.namespace}",pod="{pod}",uid="0d5c",'
        f'{ksm["aim.amd.com/recipe"]}="{ctx.labels["recipe"]}",{ksm["aim.amd.com/model"]}="{ctx.labels["model"]}",'
        f'{ksm["aim.amd.com/gpu"]}="{ctx.labels["gpu"]}",{ksm["app.kubernetes.io/instance"]}="{ctx.deployment}"'
    )
    text = "\n".join(
        [
            "# HELP kube_pod_labels Kubernetes labels converted to Prometheus labels.",
            "# TYPE kube_pod_labels gauge",
            f"kube_pod_labels{{{labels}}} 1",
            "# HELP kube_pod_container_resource_requests The number of requested request resource by a container.",
            "# TYPE kube_pod_container_resource_requests gauge",
            f'kube_pod_container_resource_requests{{namespace="{ctx.namespace}",pod="{pod}",uid="0d5c",'
            f'container="{rules.ENGINE_CONTAINER}",node="{NODE}",resource="{rules.GPU_RESOURCE}",unit="integer"}} '
            f"{ctx.decision.recipe.gpu_count}",
            "# HELP kube_pod_status_phase The pods current phase.",
            "# TYPE kube_pod_status_phase gauge",
            *(
                f'kube_pod_status_phase{{namespace="{ctx.namespace}",pod="{pod}",uid="0d5c",phase="{phase}"}} '
                f"{1 if phase == 'Running' else 0}"
                for phase in ("Pending", "Succeeded", "Failed", "Unknown", "Running")
            ),
        ]
    )
    return lambda: text + "\n"


@dataclass
class Served:
    url: str
    server: ThreadingHTTPServer


def serve(body: Callable[[], str]) -> Served:
    """An HTTP server on 127.0.0.1 answering /metrics with `body()`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            payload = body().encode()
            self.send_response(200)
            self.send_header("Content-Type", EXPOSITION)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return Served(f"{host}:{port}", server)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = get_json(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


@dataclass
class RunningPrometheus:
    url: str
    log: Path

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])


@pytest.fixture
def prometheus(
    tmp_path: Path, loopback_only: list[str]
) -> Iterator[tuple[RunningPrometheus, StackRules, str, FakeVllm]]:
    """Prometheus scraping a fake engine pod (target labels namespace/pod, as the ServiceMonitor relabels them)
    and a fake kube-state-metrics (honor_labels), every second, with the stack's rules loaded."""
    binary = tool("prometheus")
    ctx = stack_rules("dev")
    pod = f"{ctx.deployment}-7c9d8f6b5-x2k4q"
    fake = FakeVllm(ctx.settings.model)
    engine = serve(fake.render)
    ksm = serve(fake_ksm(ctx, pod))
    (tmp_path / "rules.yaml").write_text(rules.rule_file(ctx.groups()), encoding="utf-8")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [
            {
                "job_name": ctx.deployment,
                "static_configs": [
                    {"targets": [engine.url], "labels": {"namespace": ctx.namespace, "pod": pod}},
                ],
            },
            {"job_name": "kube-state-metrics", "honor_labels": True, "static_configs": [{"targets": [ksm.url]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    running = RunningPrometheus(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{running.log_tail()}")
            try:
                with urllib.request.urlopen(f"{running.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready after 15 s:\n{running.log_tail()}")
            time.sleep(0.2)
        yield running, ctx, pod, fake
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for served in (engine, ksm):
            served.server.shutdown()
            served.server.server_close()


#: The series the test waits for; each must come out with one sample carrying the recipe's labels.
EXPECTED = (
    names.POD_RECIPE_INFO,
    names.GENERATION_TOKENS_RATE,
    names.PROMPT_TOKENS_RATE,
    names.REQUESTS_RATE,
    names.HTTP_ERROR_RATIO,
    names.TTFT_P50,
    names.TTFT_P95,
    names.ITL_P95,
    names.E2E_P95,
    names.KV_CACHE_USAGE,
    names.REQUESTS_WAITING,
    names.REQUESTS_RUNNING,
    names.PREEMPTIONS_RATE,
    names.GPUS_IN_USE,
    names.ESTIMATE_OUTPUT_TOKENS_LOW,
    names.ESTIMATE_TTFT_P95_HIGH,
    names.ESTIMATE_AT_LOAD_LOW,
    names.RECIPE_REPLICAS,
)


def test_real_prometheus_records_aim_series_with_recipe_labels(
    prometheus: tuple[RunningPrometheus, StackRules, str, FakeVllm],
) -> None:
    server, ctx, pod, fake = prometheus
    found: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        for record in EXPECTED:
            if record not in found:
                result = query(server.url, record)
                # histogram_quantile and rates give NaN until two scrapes are in: wait for a number.
                if result and all(sample["value"][1] not in ("NaN", "+Inf", "-Inf") for sample in result):
                    found[record] = result
        if len(found) == len(EXPECTED):
            break
        time.sleep(0.5)
    missing = [record for record in EXPECTED if record not in found]
    targets = get_json(f"{server.url}/api/v1/targets")["data"]["activeTargets"]
    health = [(t["labels"].get("job"), t["health"], t.get("lastError")) for t in targets]
    assert not missing, f"not recorded within {WAIT_SECONDS} s: {missing}; targets {health}\n{server.log_tail()}"

    recipe = {"namespace": ctx.namespace, **ctx.labels}
    values: dict[str, float] = {}
    for record, result in found.items():
        assert len(result) == 1, (record, result)
        labels = {k: v for k, v in result[0]["metric"].items() if k != "__name__"}
        expected = {**recipe, "pod": pod} if record == names.POD_RECIPE_INFO else recipe
        assert labels == expected, record
        values[record] = float(result[0]["value"][1])

    estimate = ctx.summary["estimate"]
    assert values[names.POD_RECIPE_INFO] == 1
    assert values[names.KV_CACHE_USAGE] == pytest.approx(0.42)
    assert values[names.REQUESTS_RUNNING] == 7
    assert values[names.REQUESTS_WAITING] == 3
    assert values[names.GPUS_IN_USE] == ctx.decision.recipe.gpu_count
    # The fake adds 500 generated and 1000 prompt tokens per scrape. Seconds into a 5-minute window, rate() still
    # divides the increase by the whole window: everything generated so far over 300 s, times at most 2 for
    # rate()'s extrapolation by half a scrape interval at either end of the few samples there are.
    assert 0 < values[names.GENERATION_TOKENS_RATE] <= 2 * 500 * fake.scrapes / 300
    assert values[names.PROMPT_TOKENS_RATE] == pytest.approx(2 * values[names.GENERATION_TOKENS_RATE], rel=0.05)
    assert values[names.REQUESTS_RATE] > 0
    assert values[names.PREEMPTIONS_RATE] >= 0
    assert values[names.HTTP_ERROR_RATIO] == pytest.approx(1 / 11, rel=0.05)
    assert 0.1 < values[names.TTFT_P50] <= values[names.TTFT_P95] <= 0.25
    assert 0.01 < values[names.ITL_P95] <= 0.025
    assert 5 < values[names.E2E_P95] <= 10
    assert values[names.ESTIMATE_OUTPUT_TOKENS_LOW] == pytest.approx(estimate["range"]["output_tokens_per_s"][0])
    assert values[names.ESTIMATE_TTFT_P95_HIGH] == pytest.approx(estimate["range"]["ttft_p95_ms"][1] / 1000)
    # The fake engine runs 7 requests: the low end of the estimate at that load, worked out by the promtool tests.
    assert values[names.ESTIMATE_AT_LOAD_LOW] == pytest.approx(expected_low(estimate, [7]))
    assert values[names.RECIPE_REPLICAS] == ctx.replicas

    # The alert group loaded too, and nothing is on fire for this healthy engine.
    groups = get_json(f"{server.url}/api/v1/rules")["data"]["groups"]
    assert {g["name"] for g in groups} == {g["name"] for g in ctx.groups()}
    assert all(rule.get("health") != "err" for g in groups for rule in g["rules"]), groups
