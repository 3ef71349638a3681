"""The ownership gate: the check against a fake Kubernetes API on 127.0.0.1, and the gate as the program declares it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aim_infra.host.ownership import OWNER_ANNOTATION
from aim_infra.stack.plan import PlanResult, run_stack

ROOT = Path(__file__).resolve().parents[2]
OWNER = "aim/dev"
COMMAND_TYPE = "command:local:Command"

DISCOVERY = {
    "/api/v1": [("namespaces", "Namespace", False), ("persistentvolumeclaims", "PersistentVolumeClaim", True)],
    "/apis/apps/v1": [("deployments", "Deployment", True), ("deployments/scale", "Scale", True)],
    "/apis/storage.k8s.io/v1": [("storageclasses", "StorageClass", False)],
}


class FakeApi(BaseHTTPRequestHandler):
    """Serves discovery for a few group/versions (no monitoring.coreos.com: its CRDs are not installed) and the
    objects in `objects` (path → annotations); everything else is 404. `status` forces an answer for every path."""

    objects: ClassVar[dict[str, dict[str, str]]] = {}
    status: ClassVar[int] = 200
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        FakeApi.seen.append(path)
        if self.status != 200:
            self.answer(self.status, {"kind": "Status", "code": self.status})
        elif path in DISCOVERY:
            resources = [{"name": n, "kind": k, "namespaced": ns} for n, k, ns in DISCOVERY[path]]
            self.answer(200, {"kind": "APIResourceList", "resources": resources})
        elif path in self.objects:
            self.answer(200, {"metadata": {"name": path.rsplit("/", 1)[1], "annotations": self.objects[path]}})
        else:
            self.answer(404, {"kind": "Status", "code": 404})

    def answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Path]:
    FakeApi.objects, FakeApi.status, FakeApi.seen = {}, 200, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig(f"http://127.0.0.1:{server.server_port}"))
    yield path
    server.shutdown()


def kubeconfig(server: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": server}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
    )


OBJECTS = [
    {"apiVersion": "v1", "kind": "Namespace", "name": "aim"},
    {"apiVersion": "v1", "kind": "Namespace", "name": "monitoring"},
    {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "aim", "name": "aim-engine-model-cache"},
    {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "aim", "name": "aim-engine"},
    {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "name": "local-path"},
    {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "namespace": "aim", "name": "aim-engine"},
]


def check(kubeconfig_path: Path, *extra: str, objects: list[dict[str, str]] = OBJECTS) -> subprocess.CompletedProcess:
    argv = [
        sys.executable,
        "-m",
        "aim_infra.host.ownership",
        "--owner",
        OWNER,
        "--objects",
        json.dumps(objects),
        *extra,
    ]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path)}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def one_line(done: subprocess.CompletedProcess, code: int) -> str:
    assert done.returncode == code, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def test_nothing_there_yet_passes_and_asks_for_each_object(api: Path) -> None:
    done = check(api)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("owned: ") and "6 objects" in done.stdout
    assert (
        "/api/v1/namespaces/aim" in FakeApi.seen
        and "/api/v1/namespaces/aim/persistentvolumeclaims/" + ("aim-engine-model-cache") in FakeApi.seen
    )
    assert "/apis/storage.k8s.io/v1/storageclasses/local-path" in FakeApi.seen
    # The ServiceMonitor kind is not served yet (no CRD), so no object of it is asked for.
    assert "/apis/monitoring.coreos.com/v1" in FakeApi.seen
    assert not [p for p in FakeApi.seen if "servicemonitors" in p]


def test_objects_kept_by_this_stack_are_taken_back(api: Path) -> None:
    mine = {OWNER_ANNOTATION: OWNER}
    FakeApi.objects = {
        "/api/v1/namespaces/aim": mine,
        "/api/v1/namespaces/aim/persistentvolumeclaims/aim-engine-model-cache": mine,
    }
    assert check(api).returncode == 0


def test_a_namespace_someone_else_made_stops_the_stack(api: Path) -> None:
    FakeApi.objects = {"/api/v1/namespaces/monitoring": {"team": "platform"}, "/api/v1/namespaces/aim": {}}
    line = one_line(check(api), 1)
    assert line.startswith("aim ownership: Namespace aim (not created by an AIM stack); Namespace monitoring")
    assert f"{OWNER_ANNOTATION}={OWNER}" in line and "aim:monitoring" in line and "aim:namespace" in line


def test_another_stacks_object_is_not_ours_either(api: Path) -> None:
    FakeApi.objects = {"/apis/storage.k8s.io/v1/storageclasses/local-path": {OWNER_ANNOTATION: "aim/prod"}}
    line = one_line(check(api), 1)
    assert "StorageClass local-path (created by stack aim/prod)" in line


def test_an_unreachable_or_forbidden_api_creates_nothing(api: Path, tmp_path: Path) -> None:
    FakeApi.status = 403
    assert "cannot read it" in one_line(check(api), 1)
    dead = tmp_path / "dead"
    dead.write_text(kubeconfig("http://127.0.0.1:9"))
    line = one_line(check(dead, "--timeout", "3"), 1)
    assert line.startswith("aim ownership: cannot check which objects exist, so nothing is created:")


@pytest.mark.parametrize(
    ("extra", "objects", "needle"),
    [
        (["--owner", "no-slash"], OBJECTS, "--owner 'no-slash' is not allowed"),
        ([], [{"kind": "Namespace"}], "--objects: not a JSON list"),
    ],
)
def test_bad_arguments_are_one_line(api: Path, extra: list[str], objects: list[dict[str, str]], needle: str) -> None:
    assert needle in one_line(check(api, *extra, objects=objects), 2)


# --------------------------------------------------------------------------------------------------------------------
# the gate as the program declares it (mocks)


@pytest.fixture(scope="module")
def dev() -> PlanResult:
    result = run_stack("dev")
    assert result.error is None, result.error
    return result


def gate_objects(result: PlanResult) -> list[dict[str, str]]:
    command = result.named(COMMAND_TYPE, "ownership-check")
    argv = shlex.split(command.inputs["create"])
    assert argv[:4] == ["$AIM_PYTHON", "-m", "aim_infra.host.ownership", "--owner"] or argv[1:4] == [
        "-m",
        "aim_infra.host.ownership",
        "--owner",
    ]
    assert argv[argv.index("--owner") + 1] == f"aim/{result.stack}"
    return json.loads(argv[argv.index("--objects") + 1])


def test_the_gate_lists_every_object_and_each_carries_the_mark(dev: PlanResult) -> None:
    objects = gate_objects(dev)
    declared = [r for r in dev.resources if r.custom and r.type.startswith("kubernetes:") and "helm.sh" not in r.type]
    assert declared and len(objects) == len(declared)
    listed = {(o["kind"], o.get("namespace"), o["name"]) for o in objects}
    for resource in declared:
        metadata = resource.inputs["metadata"]
        assert metadata["annotations"][OWNER_ANNOTATION] == "aim/dev", resource.name
        assert (resource.inputs["kind"], metadata.get("namespace"), metadata["name"]) in listed, resource.name
    # The shared namespaces an add-on installs into are among them: they are never taken over.
    assert {("Namespace", None, "monitoring"), ("Namespace", None, "kube-amd-gpu")} <= listed


def test_every_kubernetes_object_waits_for_the_gate_and_the_gate_for_the_cluster(dev: PlanResult) -> None:
    check_step = dev.named(COMMAND_TYPE, "ownership-check")
    for resource in dev.resources:
        if resource.custom and resource.type.startswith("kubernetes:"):
            assert check_step.urn in resource.dependencies, resource.name  # the component stands for its step
    # ... and the check waits for the cluster the stack bootstraps (its last host step).
    bootstrap = dev.named("aim:infra:ClusterBootstrap", "cluster")
    bootstrap_steps = {r.urn for r in dev.resources if r.parent == bootstrap.urn}
    assert bootstrap_steps and bootstrap_steps <= set(check_step.dependencies)
    # A changed set of objects runs the check again.
    assert check_step.inputs["triggers"] == [json.dumps(gate_objects(dev), separators=(",", ":"))]
