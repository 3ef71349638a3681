"""Ask the Kubernetes cluster the provider targets (or this host) which AMD GPUs it has, for `aim:gpu auto`."""

from __future__ import annotations

import os

from aim_infra.common.errors import AimError
from aim_infra.planning.detect import NodeGpus, gpus_from_nodes
from aim_infra.planning.hardware import GpuSpec

SET_BY_HAND = "set aim:gpu and aim:gpuCount (e.g. `pulumi config set aim:gpu MI300X`)"


def discover_gpus(context: str | None, timeout_seconds: int = 10) -> list[NodeGpus]:
    """GPU nodes of the cluster behind kubeconfig `context` (the default context when None)."""
    return gpus_from_nodes(list_nodes(context, timeout_seconds))


def list_nodes(context: str | None, timeout_seconds: int = 10) -> list[object]:
    """The Node objects of the cluster behind kubeconfig `context` ($KUBECONFIG or ~/.kube/config)."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:  # pragma: no cover - kubernetes is a runtime requirement
        raise AimError(f"aim:gpu auto needs the `kubernetes` package; {SET_BY_HAND}") from None
    where = f"context {context!r}" if context else "the current kubeconfig context"
    configuration = client.Configuration()
    try:
        # The client reads $KUBECONFIG once, at import: pass it explicitly so the current value counts.
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG") or None, context=context, client_configuration=configuration
        )
    except (ConfigException, OSError, TypeError, ValueError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise AimError(
            f"aim:gpu/aim:gpuCount auto: no usable kubeconfig for {where} ({reason}); {SET_BY_HAND}"
        ) from None
    configuration.retries = 1  # an unreachable API server should fail the preview fast, not after urllib3's retries
    api_client = client.ApiClient(configuration)
    try:
        nodes = client.CoreV1Api(api_client).list_node(_request_timeout=timeout_seconds).items
    except Exception as error:
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        raise AimError(
            f"aim:gpu/aim:gpuCount auto: cannot list nodes through {where} ({reason}); {SET_BY_HAND}"
        ) from None
    finally:
        api_client.close()
    return list(nodes)


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
