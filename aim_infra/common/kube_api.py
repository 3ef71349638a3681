"""The Kubernetes API through the kubeconfig the provider uses, for preview-time GPU discovery and the host steps.

The `kubernetes` client is imported inside the functions: importing this module needs only the standard library, so
the rest of `aim_infra.common` stays importable where the client is not installed (the AIM image never copies this)."""

from __future__ import annotations

import os
from typing import Any

from aim_infra.common.errors import AimError


class ClusterUnreachable(AimError):
    """No usable kubeconfig, or the API server did not answer; the message names the context and the reason."""


def _where(context: str | None) -> str:
    return f"context {context!r}" if context else "the current kubeconfig context"


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split())[:160] or type(error).__name__


def api_client(context: str | None) -> tuple[Any, Any]:
    """(ApiClient, Configuration) for kubeconfig `context` ($KUBECONFIG or ~/.kube/config), failing fast."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:  # pragma: no cover - kubernetes is in requirements.txt
        raise ClusterUnreachable(
            "the `kubernetes` package is not installed (pip install -r requirements.txt)"
        ) from None
    configuration = client.Configuration()
    try:
        # The client reads $KUBECONFIG once, at import: pass it explicitly so the current value counts.
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG") or None, context=context, client_configuration=configuration
        )
    except (ConfigException, OSError, TypeError, ValueError) as error:
        raise ClusterUnreachable(f"no usable kubeconfig for {_where(context)} ({_reason(error)})") from None
    configuration.retries = 1  # an unreachable API server should fail fast, not after urllib3's retries
    return client.ApiClient(configuration), configuration


def list_nodes(context: str | None, timeout_seconds: float = 10) -> list[object]:
    """The Node objects of the cluster behind kubeconfig `context` (the default context when None)."""
    from kubernetes import client

    api, _ = api_client(context)
    try:
        nodes = client.CoreV1Api(api).list_node(_request_timeout=timeout_seconds).items
    except Exception as error:
        raise ClusterUnreachable(f"cannot list nodes through {_where(context)} ({_reason(error)})") from None
    finally:
        api.close()
    return list(nodes)
