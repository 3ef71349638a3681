"""Ask the Kubernetes cluster the provider targets which AMD GPUs its nodes have (for `aim:gpu auto`)."""

from __future__ import annotations

from .recipes.detect import NodeGpus, gpus_from_nodes
from .recipes.errors import AimError

SET_BY_HAND = "set aim:gpu and aim:gpuCount (e.g. `pulumi config set aim:gpu MI300X`)"


def discover_gpus(context: str | None, timeout_seconds: int = 10) -> list[NodeGpus]:
    """GPU nodes of the cluster behind kubeconfig `context` (the default context when None)."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:  # pragma: no cover - kubernetes is a runtime requirement
        raise AimError(f"aim:gpu auto needs the `kubernetes` package; {SET_BY_HAND}") from None
    where = f"context {context!r}" if context else "the current kubeconfig context"
    try:
        api_client = config.new_client_from_config(context=context)
    except (ConfigException, OSError, TypeError, ValueError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise AimError(f"aim:gpu auto: no usable kubeconfig for {where} ({reason}); {SET_BY_HAND}") from None
    try:
        nodes = client.CoreV1Api(api_client).list_node(_request_timeout=timeout_seconds).items
    except Exception as error:
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        raise AimError(f"aim:gpu auto: cannot list nodes through {where} ({reason}); {SET_BY_HAND}") from None
    finally:
        api_client.close()
    return gpus_from_nodes(nodes)
