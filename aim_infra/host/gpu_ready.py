"""Wait until the nodes offer the GPUs every replica needs, so `pulumi up` stops with a reason, not a Pending pod.

    python -m aim_infra.host.gpu_ready --gpu MI300X --count 8 [--replicas 2 [--one-node]] [--context CTX]
        [--timeout 600]

Runs as a pulumi-command step between the AMD GPU device plugin and the engine Deployment. It lists the nodes through
the same kubeconfig as the Kubernetes provider ($KUBECONFIG or ~/.kube/config, `--context`) until the nodes can hold
REPLICAS replicas of COUNT allocatable `amd.com/gpu` each (a replica's GPUs are on one node: a node with A devices
holds A // COUNT replicas), of the GPU type the recipe was chosen for when the node labeller has labelled them.
`--one-node` (a ReadWriteOnce model cache, whose pods share one node) needs all replicas on one node.
Exit 0 with one `ready:` line; exit 1 with one line starting `aim gpu-ready:` that says what the cluster
shows instead and which command explains it. A progress line is printed when what the cluster shows changes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aim_infra.common.cli import OneLineParser, UsageError, run_program
from aim_infra.common.errors import AimError

PREFIX = "aim gpu-ready:"
PLUGIN_HINT = "check the device plugin: kubectl -n kube-amd-gpu get pods; kubectl describe node | grep -A3 amd.com/gpu"


@dataclass(frozen=True)
class NodeView:
    """What one node shows about AMD GPUs: allocatable count, and the labelled type when the labeller ran."""

    name: str
    allocatable: int
    gpu: str | None

    def describe(self) -> str:
        kind = self.gpu or "unlabelled"
        return f"{self.name}: {self.allocatable} x {kind}"


def node_views(nodes: Sequence[object]) -> list[NodeView]:
    """Every node with its allocatable amd.com/gpu and, when the labeller has labelled it, its GPU type."""
    from aim_infra.planning.detect import gpus_from_nodes, node_gpu_counts

    labelled = {found.node: found.gpu.name for found in gpus_from_nodes(nodes)}
    return [NodeView(name, count, labelled.get(name)) for name, count in node_gpu_counts(nodes)]


def placement(views: list[NodeView], gpu: str, count: int, replicas: int = 1, one_node: bool = False) -> list[NodeView]:
    """The nodes that hold `replicas` replicas of `count` GPUs each (empty when they do not): each replica needs its
    GPUs on one node; with `one_node` all replicas share a single node."""
    fitting = [v for v in views if v.allocatable >= count and v.gpu in (None, gpu)]
    # A labelled match is better evidence than an unlabelled node with enough devices.
    fitting.sort(key=lambda v: (v.gpu != gpu, -v.allocatable))
    if one_node:
        return next(([v] for v in fitting if v.allocatable // count >= replicas), [])
    chosen: list[NodeView] = []
    for view in fitting:
        if sum(v.allocatable // count for v in chosen) >= replicas:
            break
        chosen.append(view)
    return chosen if sum(v.allocatable // count for v in chosen) >= replicas else []


def verdict(
    views: list[NodeView], gpu: str, count: int, replicas: int = 1, one_node: bool = False
) -> tuple[list[NodeView], str]:
    """(the nodes that fit, empty when none do; a one-line account of what the cluster shows)."""
    chosen = placement(views, gpu, count, replicas, one_node)
    if chosen:
        return chosen, ", ".join(v.describe() for v in chosen)
    if not views:
        return [], "the cluster has no nodes"
    with_gpus = [v for v in views if v.allocatable]
    if not with_gpus:
        return [], f"no node advertises amd.com/gpu yet ({len(views)} node(s))"
    return [], "; ".join(v.describe() for v in with_gpus)


def need(gpu: str, count: int, replicas: int = 1, one_node: bool = False) -> str:
    """What the replicas need, as said in the ready and timeout lines."""
    if replicas == 1:
        return f"{count} x {gpu}"
    where = "all on one node (ReadWriteOnce model cache)" if one_node else "each replica's on one node"
    return f"{replicas} replicas x {count} x {gpu}, {where}"


def wait(
    list_nodes: Callable[[], Sequence[object]],
    gpu: str,
    count: int,
    timeout: float,
    interval: float,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    replicas: int = 1,
    one_node: bool = False,
) -> list[NodeView]:
    """Poll until the nodes fit every replica; AimError with the last account when `timeout` passes."""
    deadline = clock() + timeout
    last_account = ""
    last_error = ""
    while True:
        try:
            nodes = list_nodes()
            last_error = ""
        except AimError as error:  # the API server may still be starting: keep asking until the deadline
            nodes, last_error = None, str(error)
        # A node label naming an unknown GPU is not going to change: that AimError ends the wait at once.
        found, account = verdict(node_views(nodes), gpu, count, replicas, one_node) if nodes is not None else ([], "")
        if found:
            return found
        shown = account or last_error
        if shown != last_account:
            say(f"waiting: {shown}")
            last_account = shown
        if clock() >= deadline:
            if last_error:
                raise AimError(f"the cluster did not answer within {timeout:g} s: {last_error}")
            offers = "no node offers" if replicas == 1 else "the nodes do not offer"
            raise AimError(
                f"{offers} {need(gpu, count, replicas, one_node)} after {timeout:g} s ({account}); {PLUGIN_HINT}"
            )
        sleep(min(interval, max(0.0, deadline - clock())))


def main(argv: Sequence[str] | None = None) -> int:
    """Wait for the GPUs; 0 with the `ready:` line on stdout, 1 (2 for bad arguments) with one line on stderr."""
    parser = OneLineParser(prog="python -m aim_infra.host.gpu_ready", add_help=True)
    parser.add_argument("--gpu", required=True, help="GPU type the recipe was chosen for, e.g. MI300X")
    parser.add_argument("--count", required=True, type=int, help="GPUs one replica needs on one node")
    parser.add_argument("--replicas", type=int, default=1, help="engine replicas, each needing COUNT (default 1)")
    parser.add_argument("--one-node", action="store_true", help="all replicas on one node (ReadWriteOnce cache)")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")

    def body() -> str:
        args = parser.parse_args(argv)
        if args.count < 1 or args.replicas < 1 or args.timeout < 0 or args.interval <= 0:
            raise UsageError("--count and --replicas must be ≥ 1, --timeout ≥ 0 and --interval > 0")

        from aim_infra.common.kube_api import list_nodes

        def say(line: str) -> None:
            print(line, flush=True)

        nodes = wait(
            lambda: list_nodes(args.context),
            args.gpu,
            args.count,
            args.timeout,
            args.interval,
            say,
            replicas=args.replicas,
            one_node=args.one_node,
        )
        where = "node" if len(nodes) == 1 else "nodes"
        shown = ", ".join(node.describe() for node in nodes)
        return f"ready: {where} {shown} (needs {need(args.gpu, args.count, args.replicas, args.one_node)})"

    return run_program(PREFIX, body)


if __name__ == "__main__":
    sys.exit(main())
