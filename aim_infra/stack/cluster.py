"""Ask the Kubernetes cluster the provider targets (or this host) which AMD GPUs it has, for `aim:gpu auto`."""

from __future__ import annotations

import os

from aim_infra.common.errors import AimError
from aim_infra.common.kube_api import ClusterUnreachable, list_nodes
from aim_infra.planning.detect import NodeGpus, gpus_from_nodes
from aim_infra.planning.hardware import GpuSpec

SET_BY_HAND = "set aim:gpu and aim:gpuCount (e.g. `pulumi config set aim:gpu MI300X`)"


def discover_gpus(context: str | None, timeout_seconds: int = 10) -> list[NodeGpus]:
    """GPU nodes of the cluster behind kubeconfig `context` (the default context when None)."""
    try:
        nodes = list_nodes(context, timeout_seconds)
    except ClusterUnreachable as error:
        raise AimError(f"aim:gpu/aim:gpuCount auto: {error}; {SET_BY_HAND}") from None
    return gpus_from_nodes(nodes)


def discover_host_gpus() -> tuple[GpuSpec, int]:
    """The GPUs of this host (amd-smi, else rocm-smi), for `aim:gpu auto` when the stack makes this host the cluster
    (clusterBootstrap kubeadm): before `kubeadm init` there are no nodes to ask."""
    from aim_infra.common.gpu_tools import read_gpu_tool
    from aim_infra.planning.detect import gpus_from_tool_output

    try:
        output, _, _ = read_gpu_tool(os.environ, where="on this host")
        spec, count, _ = gpus_from_tool_output(output)
    except AimError as error:
        raise AimError(f"aim:gpu/aim:gpuCount auto: cannot read this host's GPUs ({error}); {SET_BY_HAND}") from None
    return spec, count
