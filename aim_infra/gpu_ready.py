"""Wait until a node offers the GPUs the recipe needs, so `pulumi up` stops with a reason instead of a Pending pod.

    python -m aim_infra.gpu_ready --gpu MI300X --count 8 [--context CTX] [--timeout 600] [--interval 5]

Runs as a pulumi-command step between the AMD GPU device plugin and the engine Deployment. It lists the nodes through
the same kubeconfig as the Kubernetes provider ($KUBECONFIG or ~/.kube/config, `--context`) until one node has at
least COUNT allocatable `amd.com/gpu`, and, when the node labeller has labelled it, of the GPU type the recipe was
chosen for. Exit 0 with one `ready:` line; exit 1 with one line starting `aim gpu-ready:` that says what the cluster
shows instead and which command explains it. A progress line is printed when what the cluster shows changes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .one_line_args import OneLineParser, UsageError
from .recipes.errors import AimError

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
    from .recipes.detect import gpus_from_nodes, node_gpu_counts

    labelled = {found.node: found.gpu.name for found in gpus_from_nodes(nodes)}
    return [NodeView(name, count, labelled.get(name)) for name, count in node_gpu_counts(nodes)]


def verdict(views: list[NodeView], gpu: str, count: int) -> tuple[NodeView | None, str]:
    """(the node that fits or None, a one-line account of what the cluster shows)."""
    fitting = [v for v in views if v.allocatable >= count and v.gpu in (None, gpu)]
    # A labelled match is better evidence than an unlabelled node with enough devices.
    fitting.sort(key=lambda v: (v.gpu != gpu, -v.allocatable))
    if fitting:
        return fitting[0], fitting[0].describe()
    if not views:
        return None, "the cluster has no nodes"
    with_gpus = [v for v in views if v.allocatable]
    if not with_gpus:
        return None, f"no node advertises amd.com/gpu yet ({len(views)} node(s))"
    return None, "; ".join(v.describe() for v in with_gpus)


def wait(
    list_nodes: Callable[[], Sequence[object]],
    gpu: str,
    count: int,
    timeout: float,
    interval: float,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> NodeView:
    """Poll until a node fits; AimError with the last account when `timeout` passes."""
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
        found, account = verdict(node_views(nodes), gpu, count) if nodes is not None else (None, "")
        if found is not None:
            return found
        shown = account or last_error
        if shown != last_account:
            say(f"waiting: {shown}")
            last_account = shown
        if clock() >= deadline:
            if last_error:
                raise AimError(f"the cluster did not answer within {timeout:g} s: {last_error}")
            raise AimError(f"no node offers {count} x {gpu} after {timeout:g} s ({account}); {PLUGIN_HINT}")
        sleep(min(interval, max(0.0, deadline - clock())))


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m aim_infra.gpu_ready", add_help=True)
    parser.add_argument("--gpu", required=True, help="GPU type the recipe was chosen for, e.g. MI300X")
    parser.add_argument("--count", required=True, type=int, help="GPUs one replica needs on one node")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")
    try:
        args = parser.parse_args(argv)
        if args.count < 1 or args.timeout < 0 or args.interval <= 0:
            raise UsageError("--count must be ≥ 1, --timeout ≥ 0 and --interval > 0")
    except UsageError as error:
        print(f"{PREFIX} {error}", file=sys.stderr)
        return 2

    from .cluster import list_nodes

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        node = wait(lambda: list_nodes(args.context), args.gpu, args.count, args.timeout, args.interval, say)
    except AimError as error:
        print(f"{PREFIX} {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PREFIX} interrupted", file=sys.stderr)
        return 1
    say(f"ready: node {node.describe()} (needs {args.count} x {args.gpu})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
