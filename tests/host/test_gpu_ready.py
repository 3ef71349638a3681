"""The GPU gate: polling logic with a fake clock, and the module against a fake Kubernetes API server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aim_infra.common.errors import AimError
from aim_infra.host import gpu_ready
from tests.stack.test_program_errors import FakeApiServer, kubeconfig, node  # noqa: F401 (kubeconfig: fixture)

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A clock that advances only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run_wait(
    answers: list[object], count: int = 8, timeout: float = 30, replicas: int = 1, one_node: bool = False
) -> tuple[list[gpu_ready.NodeView], list[str], Clock]:
    """wait() over a sequence of node listings (an AimError in the list is an unreachable API server)."""
    clock = Clock()
    said: list[str] = []
    replies = iter(answers)

    def list_nodes() -> list[object]:
        reply = next(replies, answers[-1])
        if isinstance(reply, AimError):
            raise reply
        return reply  # type: ignore[return-value]

    found = gpu_ready.wait(
        list_nodes,
        "MI300X",
        count,
        timeout,
        5,
        said.append,
        clock=clock,
        sleep=clock.sleep,
        replicas=replicas,
        one_node=one_node,
    )
    return found, said, clock


def test_ready_at_once_when_a_labelled_node_has_the_gpus() -> None:
    found, said, clock = run_wait([[node("cpu-0", None, 0), node("gpu-0", "74a1", 8)]])
    assert found == [gpu_ready.NodeView("gpu-0", 8, "MI300X")]
    assert said == [] and clock.sleeps == []


def test_waits_while_the_device_plugin_starts_and_says_what_changes() -> None:
    starting = [node("gpu-0", None, 0)]
    found, said, clock = run_wait([AimError("connection refused"), starting, starting, [node("gpu-0", "74a1", 8)]])
    assert [v.name for v in found] == ["gpu-0"]
    # one line per change of what the cluster shows, not one per poll
    assert said == ["waiting: connection refused", "waiting: no node advertises amd.com/gpu yet (1 node(s))"]
    assert clock.sleeps == [5, 5, 5]


def test_an_unlabelled_node_with_enough_devices_counts() -> None:
    found, _, _ = run_wait([[node("gpu-0", None, 8)]])
    assert found == [gpu_ready.NodeView("gpu-0", 8, None)]


def test_gives_up_after_the_timeout_naming_what_the_nodes_offer() -> None:
    with pytest.raises(AimError) as error:
        run_wait([[node("gpu-0", "74a1", 4), node("gpu-1", "74a5", 8)]], count=8, timeout=12)
    message = str(error.value)
    assert message.startswith("no node offers 8 x MI300X after 12 s (gpu-0: 4 x MI300X; gpu-1: 8 x MI325X); ")
    assert "kubectl -n kube-amd-gpu get pods" in message


def test_an_unreachable_api_server_until_the_deadline_says_so() -> None:
    with pytest.raises(AimError) as error:
        run_wait([AimError("cannot list nodes (connection refused)")], timeout=10)
    assert str(error.value) == "the cluster did not answer within 10 s: cannot list nodes (connection refused)"


def test_an_unknown_gpu_label_ends_the_wait_at_once() -> None:
    with pytest.raises(AimError) as error:
        run_wait([[node("gpu-0", "ffff", 8)]])
    assert "is not a known AMD Instinct GPU" in str(error.value)


def test_waits_for_every_replica_not_just_one() -> None:
    # 4 replicas of 2 GPUs: the first node holds 3 of them; the gate waits until the second node comes up.
    growing = [node("gpu-0", "74a1", 6)]
    found, said, clock = run_wait([growing, growing, [*growing, node("gpu-1", "74a1", 2)]], count=2, replicas=4)
    assert [v.name for v in found] == ["gpu-0", "gpu-1"]
    assert said == ["waiting: gpu-0: 6 x MI300X"] and clock.sleeps == [5, 5]


def test_replicas_are_packed_per_node() -> None:
    # 3 replicas of 4 GPUs: two nodes of 6 devices each hold one replica each (a replica never spans nodes).
    with pytest.raises(AimError) as error:
        run_wait([[node("gpu-0", "74a1", 6), node("gpu-1", "74a1", 6)]], count=4, replicas=3, timeout=5)
    assert str(error.value).startswith(
        "the nodes do not offer 3 replicas x 4 x MI300X, each replica's on one node after 5 s "
        "(gpu-0: 6 x MI300X; gpu-1: 6 x MI300X); "
    )
    found, _, _ = run_wait([[node("gpu-0", "74a1", 6), node("gpu-1", "74a1", 8)]], count=4, replicas=3)
    assert [(v.name, v.allocatable) for v in found] == [("gpu-1", 8), ("gpu-0", 6)]


def test_a_readwriteonce_cache_needs_all_replicas_on_one_node() -> None:
    spread = [node("gpu-0", "74a1", 4), node("gpu-1", "74a1", 4)]
    with pytest.raises(AimError) as error:
        run_wait([spread], count=2, replicas=4, one_node=True, timeout=5)
    assert "4 replicas x 2 x MI300X, all on one node (ReadWriteOnce model cache) after 5 s" in str(error.value)
    found, _, _ = run_wait([[*spread, node("gpu-2", "74a1", 8)]], count=2, replicas=4, one_node=True)
    assert [v.name for v in found] == ["gpu-2"]


@pytest.mark.parametrize(
    ("nodes", "count", "replicas", "one_node", "fits"),
    [
        ([8], 8, 1, False, True),
        ([8], 8, 2, False, False),
        ([8, 8], 8, 2, False, True),
        ([8, 8], 8, 2, True, False),
        ([8], 2, 4, True, True),
        ([8], 2, 5, True, False),
        ([3, 3, 3], 2, 3, False, True),
        ([3, 3, 3], 2, 4, False, False),
        ([1, 1], 1, 2, False, True),
    ],
)
def test_placement_counts(nodes: list[int], count: int, replicas: int, one_node: bool, fits: bool) -> None:
    views = [gpu_ready.NodeView(f"n{i}", devices, "MI300X") for i, devices in enumerate(nodes)]
    chosen = gpu_ready.placement(views, "MI300X", count, replicas, one_node)
    assert bool(chosen) == fits
    if fits:
        assert sum(v.allocatable // count for v in chosen) >= replicas
        assert not one_node or len(chosen) == 1


def test_module_against_a_fake_api_server(kubeconfig: Path) -> None:  # noqa: F811 (the fixture)
    FakeApiServer.nodes = [node("cpu-0", None, 0), node("gpu-0", "74a1", 8)]
    command = [sys.executable, "-m", "aim_infra.host.gpu_ready", "--gpu", "MI300X", "--count", "4"]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "ready: node gpu-0: 8 x MI300X (needs 4 x MI300X)\n"

    FakeApiServer.nodes = [node("gpu-0", "74a1", 2)]
    command += ["--timeout", "0"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == "waiting: gpu-0: 2 x MI300X\n"
    assert done.stderr.startswith("aim gpu-ready: no node offers 4 x MI300X after 0 s (gpu-0: 2 x MI300X); ")
    assert done.stderr.count("\n") == 1

    FakeApiServer.nodes = [node("gpu-0", "74a1", 8), node("gpu-1", "74a1", 8)]
    replicas = [sys.executable, "-m", "aim_infra.host.gpu_ready", "--gpu", "MI300X", "--count", "4", "--replicas", "4"]
    done = subprocess.run(replicas, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "ready: nodes gpu-0: 8 x MI300X, gpu-1: 8 x MI300X "
        "(needs 4 replicas x 4 x MI300X, each replica's on one node)\n"
    )
    done = subprocess.run(
        [*replicas, "--one-node", "--timeout", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("aim gpu-ready: the nodes do not offer 4 replicas x 4 x MI300X, all on one node")


@pytest.mark.parametrize(
    "argv",
    [
        ["--gpu", "MI300X"],
        ["--gpu", "MI300X", "--count", "0"],
        ["--gpu", "MI300X", "--count", "x"],
        ["--gpu", "MI300X", "--count", "1", "--replicas", "0"],
    ],
)
def test_bad_arguments_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_ready.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("aim gpu-ready: ") and err.count("\n") == 1
