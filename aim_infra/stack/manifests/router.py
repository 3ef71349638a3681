"""The model router's objects as plain manifests: one OpenAI endpoint in front of every model's engines.

The router is the vLLM production-stack router (addon_pins.ROUTER_PIN). We declare its Deployment ourselves instead of
installing its chart, which would also bring engines, CRDs and a LoRA controller we do not use. It routes each request
by its OpenAI `model` field, in one of two discovery modes:
- Kubernetes discovery (no model scales to zero): it watches the engine pods of its namespace by pod IP, so it needs a
  Role that reads pods, and asks each ready pod for `/v1/models` with the stack's API key (LoRA adapter names
  included). Unready and terminating pods drop out of the rotation.
- Static discovery (some model scales to zero): a pod that does not exist cannot be discovered, and the KEDA HTTP
  add-on's interceptor, which holds a request while its model wakes, routes by hostname only. So the router gets a
  fixed list of (served name, URL) pairs (StaticBackend): a warm model's engine Service, or a scale-to-zero model's
  own hostname for the interceptor (autoscaling.wake_url). No Role, no token, no API key in the router process: it
  discovers nothing. The Service balances a model's replicas, over its ready endpoints.

Its pod has the same shape as the engine's. The router listens on 127.0.0.1 only. The API proxy sidecar
(components/api_proxy) forwards `/v1/…` and `/health` to it and nothing else. The router's admin routes (`/sleep`,
`/wake_up`, `/is_sleeping`, `/engines`, `/version`) cannot be reached from outside the pod: its `/sleep` and
`/wake_up` would forward to any engine with the router's own key. The proxy also checks the API key on
`/v1`. vLLM checks it on every request the router forwards, because the client's Authorization header goes along,
but the router answers `/v1/models`, `/v1/files` and `/v1/batches` itself and checks nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aim_infra.common import contract
from aim_infra.common.errors import AimError
from aim_infra.stack.components import api_proxy
from aim_infra.stack.manifests import network_policy
from aim_infra.stack.manifests.addon_pins import ROUTER_PIN
from aim_infra.stack.manifests.engine import API_KEY_DATA_KEY, SKIP_AWAIT
from aim_infra.stack.manifests.engine_pod import GPU_TOLERATION, TERMINATION_GRACE_SECONDS

DEFAULT_ROUTER_IMAGE = ROUTER_PIN.reference
#: The routing logics offered. roundrobin takes the next ready replica of the requested model. session sends every
#: request of one session (a header) to the same replica, through a consistent-hash ring, so that replica's prefix
#: cache is reused; requests without the header go to the replica with the fewest requests per second. The router's
#: other logics need an LMCache controller (kvaware), prefill/decode pools (disaggregated_*), or route on prompt
#: prefixes only within one router replica (prefixaware).
ROUTING_LOGICS = ("roundrobin", "session")
#: How often the router scrapes each engine's /metrics, and the window of its own request statistics (the chart's
#: defaults). The QPS fallback of session routing uses the request statistics.
ENGINE_STATS_INTERVAL_SECONDS = 15
REQUEST_STATS_WINDOW_SECONDS = 60
#: An HTTP header name nginx passes on unchanged. nginx drops headers with underscores (`underscores_in_headers off`),
#: so a session header spelled with one would never reach the router.
SESSION_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
#: A Bearer token (RFC 6750 b64token): none of these characters is special in a double-quoted nginx string.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
#: The image's python:3.12-slim base has no user of its own; any non-root uid runs the router's virtualenv.
ROUTER_USER_ID = 65532
ROUTER_TMP_VOLUME = "router-tmp"
PROXY_CONFIG_VOLUME = "api-proxy-config"
#: The nginx snippet that checks the API key, from the router's Secret; mounted into the proxy container only.
KEY_CHECK_VOLUME = "api-key-check"
KEY_CHECK_DIR = "/etc/aim-proxy-key"
KEY_CHECK_FILE = "key-check.conf"
#: The service account token, projected into the router container only: the proxy sidecar never gets it.
TOKEN_VOLUME = "kube-api-access"
TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
#: What the kubelet sets when it projects the token itself; the kubernetes client rereads the file as it rotates.
TOKEN_EXPIRATION_SECONDS = 3607
#: The API server's ports. 443 is the `kubernetes` Service's port, which a CNI that applies policy before
#: load-balancing compares. 6443 is kube-apiserver's own port (kubeadm, k3s, RKE2), which a CNI that applies policy
#: after it compares (Calico, Cilium).
API_SERVER_PORTS = (443, 6443)
#: The router's start-up: importing its optional extras (LMCache, vLLM, torch) takes most of it.
STARTUP_BUDGET_SECONDS = 300
PROBE_PERIOD_SECONDS = 5
#: A backend URL as the pinned router's parser keeps it (utils.validate_url at vllm-stack-0.1.12; a URL it rejects is
#: skipped with a warning, and then its URL and model lists no longer pair up): http(s), a dotted hostname whose last
#: label is letters only (or localhost, or an IPv4 address), an optional port. A bare Service name is not one: the
#: URLs name `<service>.<namespace>.svc`. No comma: the lists are comma-separated.
BACKEND_URL = re.compile(r"https?://(?:[A-Za-z0-9_-]+\.)+[A-Za-z]{2,}(?::[0-9]{1,5})?")


@dataclass(frozen=True)
class StaticBackend:
    """One model as static discovery lists it: the names clients ask for it by (the OpenAI `model` field: its Hub id,
    then its LoRA adapters' names) and the URL the router sends them to."""

    names: tuple[str, ...]
    url: str


@dataclass(frozen=True)
class Interceptor:
    """The KEDA HTTP add-on's interceptor as the router's NetworkPolicies see it: its namespace, its pods' labels, the
    proxy port the router reaches, and the engine instances it forwards to (the models that scale to zero)."""

    namespace: str
    pod_labels: Mapping[str, str]
    port: int
    engines: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class RouterNames:
    """Where the router's objects live and every object name derived from the component's name, each spelled once."""

    instance: str
    namespace: str

    @property
    def workload(self) -> str:
        """The Deployment, its API Service and the service account."""
        return self.instance

    @property
    def role(self) -> str:
        """The Role and its RoleBinding."""
        return f"{self.instance}-pod-reader"

    @property
    def proxy_config(self) -> str:
        return f"{self.instance}-api-proxy"

    @property
    def secret(self) -> str:
        """The API key (for discovery) and the proxy's key check."""
        return f"{self.instance}-api-key"

    @property
    def metrics_service(self) -> str:
        return f"{self.instance}-metrics"


def selector_labels(instance: str) -> dict[str, str]:
    """The Deployment's selector (also the Services', the PDB's and the router's NetworkPolicies')."""
    return {contract.NAME_LABEL: contract.ROUTER_APP_NAME, contract.INSTANCE_LABEL: instance}


def router_labels(instance: str) -> dict[str, str]:
    return {
        **selector_labels(instance),
        contract.COMPONENT_LABEL: contract.ROUTER_COMPONENT,
        contract.PART_OF_LABEL: contract.PART_OF,
        contract.MANAGED_BY_LABEL: contract.MANAGED_BY,
    }


def engine_selector() -> dict[str, str]:
    """Every model's engine pods, whatever their instance: what the router discovers and may reach."""
    return {contract.NAME_LABEL: contract.ENGINE_APP_NAME}


# ---------------------------------------------------------------------------------------------- the router's flags


def routing_args(logic: str, session_key: str | None) -> list[str]:
    """`--routing-logic` (and `--session-key` for session routing). A bad combination is an AimError here, where it
    is one line at preview, instead of the router's exit at start-up."""
    if logic not in ROUTING_LOGICS:
        raise AimError(f"router routing logic {logic!r} is not supported; use one of: {', '.join(ROUTING_LOGICS)}")
    if logic != "session":
        if session_key:
            raise AimError(
                f"router session key {session_key!r} is used only with routing logic 'session', not {logic!r}"
            )
        return ["--routing-logic", logic]
    if not session_key:
        raise AimError(
            "router routing logic 'session' needs a session key: the request header that names a session, "
            "e.g. x-session-id"
        )
    if not SESSION_KEY.fullmatch(session_key):
        raise AimError(
            f"router session key {session_key!r} is not an HTTP header name the proxy passes on: letters, digits "
            "and '-' only (nginx drops headers with '_'), at most 64 characters"
        )
    return ["--routing-logic", logic, "--session-key", session_key]


def service_url(service: str, namespace: str, port: int = contract.API_PORT) -> str:
    """A warm model's backend URL for static discovery: its engine Service, on the API port (the engines' proxy)."""
    return f"http://{service}.{namespace}.svc:{port}"


def static_discovery_args(backends: Sequence[StaticBackend]) -> list[str]:
    """`--service-discovery static` and its two lists, which the router zips pair by pair: one entry per served name,
    a model's URL repeated for each of its names. No `--static-backend-health-checks`: they POST a real completion
    without an Authorization header (refused by the engines' key check) and would wake a model at zero replicas."""
    if not backends:
        raise AimError("router: static discovery needs at least one model to route to")
    urls: list[str] = []
    served: list[str] = []
    for backend in backends:
        if not BACKEND_URL.fullmatch(backend.url):
            raise AimError(
                f"router: backend URL {backend.url!r} is not one the router accepts: http://<host>.<namespace>.svc:<port>"
            )
        if not backend.names:
            raise AimError(f"router: backend {backend.url} serves no model name")
        for name in backend.names:
            if not name or "," in name or name in served:
                raise AimError(f"router: served name {name!r} is empty, has a comma or is listed twice")
            served.append(name)
            urls.append(backend.url)
    return [
        "--service-discovery",
        "static",
        "--static-backends",
        ",".join(urls),
        "--static-models",
        ",".join(served),
    ]


def kubernetes_discovery_args(namespace: str) -> list[str]:
    """Kubernetes discovery of every model's engine pods by pod IP, on the engines' API port (their proxy, which checks
    the key the router sends)."""
    return [
        "--service-discovery",
        "k8s",
        "--k8s-service-discovery-type",
        "pod-ip",
        "--k8s-namespace",
        namespace,
        # Without a selector the router would probe every ready pod of the namespace, its own included.
        "--k8s-label-selector",
        contract.ENGINE_DISCOVERY_SELECTOR,
        "--k8s-port",
        str(contract.API_PORT),
    ]


def router_args(
    namespace: str, *, logic: str, session_key: str | None, backends: Sequence[StaticBackend] | None = None
) -> list[str]:
    """The router's command line (the image's entrypoint is `vllm-router`): Kubernetes discovery, or static discovery
    of `backends` when given."""
    discovery = kubernetes_discovery_args(namespace) if backends is None else static_discovery_args(backends)
    return [
        "--host",
        "127.0.0.1",  # only the proxy in this pod reaches the router
        "--port",
        str(contract.ROUTER_INTERNAL_PORT),
        *discovery,
        *routing_args(logic, session_key),
        # The engines serve /metrics on their metrics port only, so these scrapes of the API port get a 404 and are
        # logged (through the interceptor too: autoscaling.WAKE_PATH_PREFIX); nothing the two routing logics above
        # decide reads them.
        "--engine-stats-interval",
        str(ENGINE_STATS_INTERVAL_SECONDS),
        "--request-stats-window",
        str(REQUEST_STATS_WINDOW_SECONDS),
        "--log-format",
        "json",
    ]


# ---------------------------------------------------------------------------------------------- RBAC and secrets


def service_account(names: RouterNames, labels: dict[str, str]) -> dict[str, Any]:
    """No token mounted by default: the pod projects one into the router container only (token_volume)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": names.workload, "namespace": names.namespace, "labels": labels},
        "automountServiceAccountToken": False,
    }


def role(names: RouterNames, labels: dict[str, str]) -> dict[str, Any]:
    """Read the pods of this namespace: list and watch for discovery, get for the router's check of an engine's
    sleep mode. No `patch`: the router patches pods only to label engines it puts to sleep through `/sleep`, which
    the proxy never forwards (we do not use vLLM's sleep mode)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": names.role, "namespace": names.namespace, "labels": labels},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }


def role_binding(names: RouterNames, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": names.role, "namespace": names.namespace, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.role},
        "subjects": [{"kind": "ServiceAccount", "name": names.workload, "namespace": names.namespace}],
    }


def key_check_config(api_key: str) -> str:
    """The nginx snippet the proxy includes in its /v1/ location: the exact header vLLM's own check compares. The
    message never shows the key."""
    if not BEARER_TOKEN.fullmatch(api_key):
        raise AimError(
            "the API key must be a Bearer token for the router's proxy to check it: letters, digits and - . _ ~ + / "
            "only, optionally ending in ="
        )
    return (
        "# Rendered by aim_infra.stack.manifests.router: the API key, checked before anything reaches the router.\n"
        f'if ($http_authorization != "Bearer {api_key}") {{\n'
        '    return 401 \'{"error": "missing or invalid API key"}\';\n'
        "}\n"
    )


def secret_data(api_key: str) -> dict[str, str]:
    """The router's Secret: the key for its discovery calls (environment) and the proxy's key check (a file)."""
    return {API_KEY_DATA_KEY: api_key, KEY_CHECK_FILE: key_check_config(api_key)}


def secret(names: RouterNames, labels: dict[str, str], data: Any) -> dict[str, Any]:
    """`data` is secret_data's result, or an opaque value that resolves to it (the key is a secret Output)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": names.secret, "namespace": names.namespace, "labels": labels},
        "type": "Opaque",
        "stringData": data,
    }


def proxy_config(*, key_check: str = f"{KEY_CHECK_DIR}/{KEY_CHECK_FILE}", **listeners: Any) -> str:
    """The API proxy's nginx.conf in front of the router: the engine's, plus the key check on /v1. `listeners`
    overrides api_proxy.proxy_config's ports and paths (tests run it on free ports against a fake router)."""
    ports = {
        "api_port": contract.API_PORT,
        "metrics_port": contract.METRICS_PORT,
        "upstream_port": contract.ROUTER_INTERNAL_PORT,
    }
    return api_proxy.proxy_config(**{**ports, **listeners}, key_check=key_check)


def proxy_config_map(names: RouterNames, labels: dict[str, str], config: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names.proxy_config, "namespace": names.namespace, "labels": labels},
        "data": {api_proxy.CONFIG_FILE: config},
    }


# ------------------------------------------------------------------------------------------------------ the pod


def router_probes() -> dict[str, dict[str, Any]]:
    """Start-up, readiness and liveness on /health through the proxy (the router listens on 127.0.0.1 only). The
    router answers 503 there when its discovery watch or its stats thread has died."""
    health = {"httpGet": {"path": "/health", "port": contract.API_PORT}}
    return {
        "startupProbe": {
            **health,
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": STARTUP_BUDGET_SECONDS // PROBE_PERIOD_SECONDS,
        },
        "readinessProbe": {**health, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3},
    }


def router_container(
    names: RouterNames,
    *,
    image: str,
    logic: str,
    session_key: str | None,
    backends: Sequence[StaticBackend] | None = None,
) -> dict[str, Any]:
    """The router. With Kubernetes discovery it holds the API key and the service account token; with static
    discovery (`backends`) neither: it reads nothing from the API server and forwards each client's own key."""
    discovers = backends is None
    # The router sends it as Bearer to every engine's /v1/models when discovering them.
    key = {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": names.secret, "key": API_KEY_DATA_KEY}}}
    token = {"name": TOKEN_VOLUME, "mountPath": TOKEN_MOUNT, "readOnly": True}
    return {
        "name": contract.ROUTER_CONTAINER,
        "image": image,
        "args": router_args(names.namespace, logic=logic, session_key=session_key, backends=backends),
        "env": [
            *([key] if discovers else []),
            # The image has no home for a uid of its own: the libraries it imports cache under $HOME.
            {"name": "HOME", "value": "/tmp"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": ROUTER_USER_ID,
            "runAsGroup": ROUTER_USER_ID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # The chart's request is 400m and 1000Mi. Importing vLLM and LMCache at start takes most of that memory.
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
        "volumeMounts": [{"name": ROUTER_TMP_VOLUME, "mountPath": "/tmp"}, *([token] if discovers else [])],
        **router_probes(),
    }


def proxy_container(image: str) -> dict[str, Any]:
    """The engine's API proxy sidecar, plus the key check it includes."""
    container = api_proxy.proxy_container(
        image=image,
        config_map_volume=PROXY_CONFIG_VOLUME,
        api_port=contract.API_PORT,
        metrics_port=contract.METRICS_PORT,
    )
    check = {"name": KEY_CHECK_VOLUME, "mountPath": KEY_CHECK_DIR, "readOnly": True}
    return {**container, "volumeMounts": [*container["volumeMounts"], check]}


def token_volume() -> dict[str, Any]:
    """What the kubelet would mount with automountServiceAccountToken, as a volume only the router mounts."""
    namespace = {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
    return {
        "name": TOKEN_VOLUME,
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_EXPIRATION_SECONDS}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [namespace]}},
            ],
        },
    }


def pod_volumes(names: RouterNames, *, token: bool = True) -> list[dict[str, Any]]:
    """The pod's volumes; the service account token only for a router that discovers pods (`token`)."""
    key_check = {"secretName": names.secret, "items": [{"key": KEY_CHECK_FILE, "path": KEY_CHECK_FILE}]}
    return [
        *api_proxy.proxy_volumes(PROXY_CONFIG_VOLUME, names.proxy_config),
        {"name": KEY_CHECK_VOLUME, "secret": {**key_check, "defaultMode": 0o444}},
        {"name": ROUTER_TMP_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}},
        *([token_volume()] if token else []),
    ]


def pod_template(
    names: RouterNames,
    labels: dict[str, str],
    *,
    image: str,
    proxy_image: str,
    proxy_config: str,
    logic: str,
    session_key: str | None,
    backends: Sequence[StaticBackend] | None = None,
) -> dict[str, Any]:
    """The router pod: the router and the API proxy. It tolerates the GPU nodes' taint, so a cluster of GPU nodes
    only still runs it; it requests no GPU. `backends`: static discovery of these (router_container)."""
    return {
        "metadata": {
            "labels": labels,
            # The proxy reads its config only at start: a changed config rolls the pods.
            "annotations": {
                contract.PROXY_CONFIG_HASH_ANNOTATION: hashlib.sha256(proxy_config.encode()).hexdigest()[:16]
            },
        },
        "spec": {
            "serviceAccountName": names.workload,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "tolerations": [dict(GPU_TOLERATION)],
            "containers": [
                router_container(names, image=image, logic=logic, session_key=session_key, backends=backends),
                proxy_container(proxy_image),
            ],
            "volumes": pod_volumes(names, token=backends is None),
        },
    }


def deployment(names: RouterNames, labels: dict[str, str], *, replicas: int, template: Any) -> dict[str, Any]:
    """Rolls one new pod in before an old one goes, so the endpoint stays up through an update."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": names.workload, "namespace": names.namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": selector_labels(names.instance)},
            "template": template,
        },
    }


def disruption_budget(names: RouterNames, labels: dict[str, str], replicas: int) -> dict[str, Any] | None:
    """One voluntary eviction at a time for several replicas; None for one (a drain must be able to move it)."""
    if replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": names.workload, "namespace": names.namespace, "labels": labels},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(names.instance)}},
    }


# ---------------------------------------------------------------------------------------------------- Services


def api_service(
    names: RouterNames,
    labels: dict[str, str],
    *,
    service_type: str,
    node_port: int = 0,
    allowed_cidrs: list[str] | None = None,
) -> dict[str, Any]:
    """The one endpoint: the proxy's `http` port, exposed as the engine's API Service is (a LoadBalancer admits only
    `allowed_cidrs`)."""
    port: dict[str, Any] = {"name": "http", "port": contract.API_PORT, "targetPort": "http", "protocol": "TCP"}
    if service_type == "NodePort" and node_port:
        port["nodePort"] = node_port
    spec: dict[str, Any] = {"type": service_type, "selector": selector_labels(names.instance), "ports": [port]}
    if service_type == "LoadBalancer":
        spec["loadBalancerSourceRanges"] = list(allowed_cidrs or [])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": names.workload, "namespace": names.namespace, "labels": labels, "annotations": SKIP_AWAIT},
        "spec": spec,
    }


def metrics_service(names: RouterNames, labels: dict[str, str]) -> dict[str, Any]:
    """The router's /metrics (through the proxy's metrics listener) on a ClusterIP Service of its own, never on the
    API's NodePort or load balancer."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.metrics_service,
            "namespace": names.namespace,
            "labels": labels,
            "annotations": SKIP_AWAIT,
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(names.instance),
            "ports": [{"name": "metrics", "port": contract.METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


# ----------------------------------------------------------------------------------------------- NetworkPolicies


def router_egress(
    router: dict[str, str],
    api_server_cidrs: list[str],
    *,
    discovers: bool = True,
    interceptor: Interceptor | None = None,
) -> dict[str, Any]:
    """The router's only ways out: the engine pods' API port (directly, or through their Services), the API server
    for a router that discovers pods (`discovers`), the HTTP add-on's interceptor proxy when some model scales to zero
    (`interceptor`), and cluster DNS. With no `api_server_cidrs` the API server's ports are open to any address,
    because the address a policy compares depends on the CNI (the Service's ClusterIP, or the control plane's own
    address)."""
    cluster_dns = {
        "namespaceSelector": {"matchLabels": {network_policy.NAMESPACE_NAME_LABEL: "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    dns_ports = [
        {"protocol": "UDP", "port": network_policy.DNS_PORT},
        {"protocol": "TCP", "port": network_policy.DNS_PORT},
    ]
    rules: list[dict[str, Any]] = [
        {
            "to": [{"podSelector": {"matchLabels": engine_selector()}}],
            "ports": [{"protocol": "TCP", "port": contract.API_PORT}],
        }
    ]
    if discovers:
        api_server: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": port} for port in API_SERVER_PORTS]}
        if api_server_cidrs:
            api_server["to"] = [{"ipBlock": {"cidr": cidr}} for cidr in api_server_cidrs]
        rules.append(api_server)
    if interceptor is not None:
        rules.append({"to": [interceptor_peer(interceptor)], "ports": [{"protocol": "TCP", "port": interceptor.port}]})
    rules.append({"to": [cluster_dns], "ports": dns_ports})
    return {"podSelector": {"matchLabels": dict(router)}, "policyTypes": ["Egress"], "egress": rules}


def interceptor_peer(interceptor: Interceptor) -> dict[str, Any]:
    """The interceptor's pods, by their namespace's name (set by the API server) and the labels their chart sets."""
    return {
        "namespaceSelector": {"matchLabels": {network_policy.NAMESPACE_NAME_LABEL: interceptor.namespace}},
        "podSelector": {"matchLabels": dict(interceptor.pod_labels)},
    }


def engines_from_router(router: dict[str, str]) -> dict[str, Any]:
    """Every engine pod's API port for the router pods (the engines' own policy admits only the allowed clients)."""
    return {
        "podSelector": {"matchLabels": engine_selector()},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"podSelector": {"matchLabels": dict(router)}}],
                "ports": [{"protocol": "TCP", "port": contract.API_PORT}],
            }
        ],
    }


def engines_from_interceptor(interceptor: Interceptor) -> dict[str, Any]:
    """The API port of the scale-to-zero models' engine pods (and no other's) for the interceptor, which forwards the
    requests it held to their Services. The engines' proxy still checks the client's key, which the interceptor
    passes on."""
    if not interceptor.engines:
        raise AimError("router: the interceptor forwards to no engine; no policy to admit it")
    instances = {"key": contract.INSTANCE_LABEL, "operator": "In", "values": sorted(interceptor.engines)}
    return {
        "podSelector": {"matchLabels": engine_selector(), "matchExpressions": [instances]},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [interceptor_peer(interceptor)],
                "ports": [{"protocol": "TCP", "port": contract.API_PORT}],
            }
        ],
    }


def policy_specs(
    names: RouterNames,
    *,
    allowed_cidrs: list[str],
    allowed_namespaces: list[str],
    monitoring_namespace: str | None,
    api_server_cidrs: list[str],
    discovers: bool = True,
    interceptor: Interceptor | None = None,
) -> dict[str, dict[str, Any]]:
    """The router's policies by name suffix, on top of the namespace's default deny (network_policy.policy_specs):
    clients reach the router's API port as they reach a single model's (the same allow-lists), Prometheus its metrics
    port, and the router reaches the engines, the API server (when it `discovers` pods) and DNS. With an
    `interceptor` (some model scales to zero) the router also reaches it, and it reaches those models' engines."""
    router = selector_labels(names.instance)
    specs = {
        "api": network_policy.api_ingress(router, contract.API_PORT, allowed_cidrs, allowed_namespaces),
        "egress": router_egress(router, api_server_cidrs, discovers=discovers, interceptor=interceptor),
        "to-engines": engines_from_router(router),
    }
    if interceptor is not None:
        specs["from-interceptor"] = engines_from_interceptor(interceptor)
    if monitoring_namespace:
        specs["metrics"] = network_policy.metrics_ingress(router, contract.METRICS_PORT, monitoring_namespace)
    return specs
