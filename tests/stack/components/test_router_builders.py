"""The model router's pure builders called directly (no Pulumi): its flags against the pinned router's parser, its
RBAC, its pod, its policies, every manifest through `kubernetes-validate --strict`, and its proxy run for real."""

from __future__ import annotations

import datetime
import re
import socket
import string
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aim_infra.common import contract
from aim_infra.common.errors import AimError
from aim_infra.stack.components import api_proxy
from aim_infra.stack.manifests import engine as engine_objects
from aim_infra.stack.manifests import network_policy
from aim_infra.stack.manifests import router as objects
from aim_infra.stack.manifests.addon_pins import KEDA_HTTP_ADDON, ROUTER_PIN
from aim_infra.stack.manifests.addon_values import http_addon_interceptor_labels
from aim_infra.stack.manifests.autoscaling import HTTP_ADDON_INTERCEPTOR_PORT, wake_url
from aim_infra.stack.manifests.router import Interceptor, RouterNames, StaticBackend
from policy.aim_policies import image_problem
from tests.stack.components.test_engine_builders import validate
from tests.stack.test_closed_by_default import FakeVllm, free_port, nginx_binary, nginx_serving

ROOT = Path(__file__).resolve().parents[3]
NAMES = RouterNames("aim-router", "aim")
LABELS = objects.router_labels(NAMES.instance)
KEY = "sk-test-api-key-abcdef0123456789"

#: Every option of the pinned router's command line, written out by hand from its parser at
#: https://github.com/vllm-project/production-stack/blob/vllm-stack-0.1.12/src/vllm_router/parsers/parser.py
#: (tag vllm-stack-0.1.12, commit 66b60661aa3052810859a417559e9e830772a091), plus the three options of
#: src/vllm_router/experimental/semantic_cache_integration.py that it adds. Each option maps to what its value must
#: be: a type, a tuple of choices, or None for a switch that takes no value.
ROUTER_OPTIONS: dict[str, type | tuple[str, ...] | None] = {
    "--host": str,
    "--port": int,
    "--root-path": str,
    "--service-discovery": ("static", "k8s", "external-only"),
    "--k8s-service-discovery-type": ("pod-ip", "service-name"),
    "--static-backends": str,
    "--static-models": str,
    "--static-aliases": str,
    "--static-model-types": str,
    "--static-model-labels": str,
    "--static-backend-health-checks": None,
    "--static-backend-health-check-interval": int,
    "--static-backend-health-check-timeout-seconds": int,
    "--k8s-port": int,
    "--k8s-namespace": str,
    "--k8s-label-selector": str,
    "--k8s-watcher-timeout-seconds": int,
    "--backend-health-check-timeout-seconds": int,
    "--routing-logic": (
        "roundrobin",
        "session",
        "kvaware",
        "prefixaware",
        "disaggregated_prefill",
        "disaggregated_prefill_orchestrated",
    ),
    "--lmcache-controller-port": int,
    "--lmcache-controller-reply-port": int,
    "--lmcache-controller-heartbeat-port": int,
    "--session-key": str,
    "--callbacks": str,
    "--request-rewriter": ("noop",),
    "--enable-batch-api": None,
    "--file-storage-class": ("local_file",),
    "--file-storage-path": str,
    "--batch-processor": ("local",),
    "--engine-stats-interval": int,
    "--request-stats-window": int,
    "--log-stats": None,
    "--log-stats-interval": int,
    "--dynamic-config-yaml": str,
    "--dynamic-config-json": str,
    "--version": None,
    "--feature-gates": str,
    "--log-level": ("critical", "error", "warning", "info", "debug", "trace"),
    "--log-format": ("text", "json"),
    "--sentry-dsn": str,
    "--sentry-traces-sample-rate": float,
    "--sentry-profile-session-sample-rate": float,
    "--otel-endpoint": str,
    "--otel-service-name": str,
    "--otel-secure": None,
    "--prefill-model-labels": str,
    "--decode-model-labels": str,
    "--kv-aware-threshold": int,
    "--prefix-min-match-length": int,
    "--max-instance-failover-reroute-attempts": int,
    "--lmcache-health-check-interval": int,
    "--lmcache-worker-timeout": int,
    "--external-providers-config": str,
    "--semantic-cache-model": str,
    "--semantic-cache-dir": str,
    "--semantic-cache-threshold": float,
}


def parse(args: list[str]) -> dict[str, str | None]:
    """The options as the pinned parser reads them (each `--flag value`, or a switch alone); fails on anything else."""
    found: dict[str, str | None] = {}
    tokens = iter(args)
    for token in tokens:
        assert token in ROUTER_OPTIONS, f"{token}: not an option of the pinned router"
        assert token not in found, f"{token} given twice"
        kind = ROUTER_OPTIONS[token]
        if kind is None:
            found[token] = None
            continue
        value = next(tokens, None)
        assert value is not None and not value.startswith("--"), f"{token} needs a value"
        if isinstance(kind, tuple):
            assert value in kind, f"{token} {value}: not one of {kind}"
        else:
            try:
                kind(value)  # as the parser's `type=` reads it
            except ValueError:
                pytest.fail(f"{token} {value}: not a {kind.__name__}")
        found[token] = value
    return found


def routed(logic: str = "roundrobin", session_key: str | None = None) -> dict[str, str | None]:
    return parse(objects.router_args(NAMES.namespace, logic=logic, session_key=session_key))


#: Three models in static discovery: a warm one at its engine Service, a scale-to-zero one with two LoRA adapters at
#: its wake hostname (the interceptor), and another warm one.
BACKENDS = [
    StaticBackend(("meta-llama/Llama-3.3-70B-Instruct",), objects.service_url("chat", NAMES.namespace)),
    StaticBackend(("Qwen/Qwen3-8B", "sql", "support"), wake_url(NAMES.namespace, "small")),
    StaticBackend(("Qwen/Qwen3-30B-A3B",), objects.service_url("mid", NAMES.namespace)),
]
INTERCEPTOR = Interceptor(
    namespace=KEDA_HTTP_ADDON.namespace,
    pod_labels=http_addon_interceptor_labels(KEDA_HTTP_ADDON.release_name),
    port=HTTP_ADDON_INTERCEPTOR_PORT,
    engines=("small",),
)


def router_keeps(url: str) -> bool:
    """Whether the pinned router keeps a backend URL, written from utils.validate_url at vllm-stack-0.1.12 (a URL it
    rejects is dropped with a warning, which unpairs its two lists): http or https, then a hostname of dotted labels
    (letters, digits, '-', '_') whose last label is two or more letters, or `localhost`, or a dotted IPv4 address,
    then an optional numeric port and an optional path."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or "," in url:
        return False
    host, _, port = parts.netloc.partition(":")
    if port and not port.isdigit():
        return False
    labels = host.split(".")
    if host == "localhost" or (len(labels) == 4 and all(label.isdigit() and len(label) <= 3 for label in labels)):
        return True
    label_chars = set(string.ascii_letters + string.digits + "-_")
    named = len(labels) >= 2 and all(label and set(label) <= label_chars for label in labels)
    return named and labels[-1].isascii() and labels[-1].isalpha() and len(labels[-1]) >= 2


def static_pairs(options: dict[str, str | None]) -> list[tuple[str, str]]:
    """The (served name, URL) pairs the router builds from its two lists (it zips them, one entry per name)."""
    backends, models = str(options["--static-backends"]).split(","), str(options["--static-models"]).split(",")
    assert len(backends) == len(models), "the two lists pair up entry by entry"
    return list(zip(models, backends, strict=True))


def deployment_for(replicas: int = 1, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "image": objects.DEFAULT_ROUTER_IMAGE,
        "proxy_image": api_proxy.DEFAULT_PROXY_IMAGE,
        "proxy_config": objects.proxy_config(),
        "logic": "roundrobin",
        "session_key": None,
        **overrides,
    }
    template = objects.pod_template(NAMES, LABELS, **arguments)
    return validate(objects.deployment(NAMES, LABELS, replicas=replicas, template=template))


def pod_spec(**overrides: Any) -> dict[str, Any]:
    return deployment_for(**overrides)["spec"]["template"]["spec"]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in spec["containers"] if c["name"] == name]
    return found


# ------------------------------------------------------------------------------------------ flags and routing


def test_the_router_discovers_every_models_engine_pods_by_pod_ip() -> None:
    options = routed()
    assert options == {
        "--host": "127.0.0.1",
        "--port": str(contract.ROUTER_INTERNAL_PORT),
        "--service-discovery": "k8s",
        "--k8s-service-discovery-type": "pod-ip",
        "--k8s-namespace": NAMES.namespace,
        "--k8s-label-selector": contract.ENGINE_DISCOVERY_SELECTOR,
        "--k8s-port": str(contract.API_PORT),
        "--routing-logic": "roundrobin",
        "--engine-stats-interval": "15",
        "--request-stats-window": "60",
        "--log-format": "json",
    }
    # The selector matches every model's engine pods (whatever the instance), never the download's or the router's.
    key, _, value = contract.ENGINE_DISCOVERY_SELECTOR.partition("=")
    for instance in ("chat", "small", "embed"):
        assert engine_objects.selector_labels(instance)[key] == value
    assert objects.selector_labels(NAMES.instance)[key] != value
    assert value != contract.DOWNLOAD_APP_NAME


def test_static_discovery_pairs_every_served_name_with_its_models_url() -> None:
    options = parse(objects.router_args(NAMES.namespace, logic="roundrobin", session_key=None, backends=BACKENDS))
    assert options["--service-discovery"] == "static"
    assert static_pairs(options) == [
        ("meta-llama/Llama-3.3-70B-Instruct", "http://chat.aim.svc:8000"),
        ("Qwen/Qwen3-8B", "http://small-wake.aim.svc:8080"),
        ("sql", "http://small-wake.aim.svc:8080"),  # each LoRA adapter is its model's URL again
        ("support", "http://small-wake.aim.svc:8080"),
        ("Qwen/Qwen3-30B-A3B", "http://mid.aim.svc:8000"),
    ]
    assert all(router_keeps(url) for _, url in static_pairs(options))
    # Nothing of Kubernetes discovery, and no health checks: they send no API key and would wake a model at zero.
    assert not any(option.startswith(("--k8s-", "--static-backend-health")) for option in options)
    assert {key: options[key] for key in ("--host", "--port", "--routing-logic", "--log-format")} == {
        "--host": "127.0.0.1",
        "--port": str(contract.ROUTER_INTERNAL_PORT),
        "--routing-logic": "roundrobin",
        "--log-format": "json",
    }


@pytest.mark.parametrize(
    ("backends", "names"),
    [
        ([], "at least one model"),
        ([StaticBackend(("a",), "http://chat:8000")], "'http://chat:8000' is not one the router accepts"),
        ([StaticBackend(("a",), "http://chat.aim.svc:8000,http://x.aim.svc:1")], "is not one the router accepts"),
        ([StaticBackend((), "http://chat.aim.svc:8000")], "serves no model name"),
        ([StaticBackend(("a,b",), "http://chat.aim.svc:8000")], "'a,b'"),
        ([StaticBackend(("a",), "http://c.aim.svc:8000"), StaticBackend(("a",), "http://d.aim.svc:8000")], "twice"),
    ],
)
def test_a_static_list_the_router_would_misread_is_one_line(backends: list[StaticBackend], names: str) -> None:
    with pytest.raises(AimError) as raised:
        objects.router_args(NAMES.namespace, logic="roundrobin", session_key=None, backends=backends)
    message = str(raised.value)
    assert names in message and "\n" not in message


def test_the_url_check_catches_what_the_router_would_drop() -> None:
    for url in ("http://chat.aim.svc:8000", "https://a.example.com", "http://localhost:8000", "http://10.0.0.1:80"):
        assert router_keeps(url), url
    for url in ("http://chat:8000", "ftp://chat.aim.svc", "http://chat.aim.svc:http", "http://chat.aim.s1", "x"):
        assert not router_keeps(url), url
    assert not objects.BACKEND_URL.fullmatch("http://chat:8000")


def test_session_routing_passes_its_header() -> None:
    options = routed("session", "x-session-id")
    assert (options["--routing-logic"], options["--session-key"]) == ("session", "x-session-id")


@pytest.mark.parametrize(
    ("logic", "session_key", "names"),
    [
        ("session", None, "session key"),
        ("session", "", "session key"),
        ("session", "session_id", "'session_id'"),  # nginx drops headers with underscores
        ("session", "x session", "'x session'"),
        ("roundrobin", "x-session-id", "'x-session-id'"),
        ("kvaware", None, "roundrobin, session"),
        ("latest", None, "'latest'"),
    ],
)
def test_a_bad_routing_choice_is_one_line(logic: str, session_key: str | None, names: str) -> None:
    with pytest.raises(AimError) as raised:
        objects.router_args(NAMES.namespace, logic=logic, session_key=session_key)
    message = str(raised.value)
    assert names in message and "\n" not in message


def test_the_option_table_catches_what_the_router_would_refuse() -> None:
    parse(["--routing-logic", "session", "--session-key", "x", "--otel-secure"])
    for bad in (["--no-such-option", "1"], ["--routing-logic", "random"], ["--port", "http"], ["--k8s-port"]):
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            parse(bad)


# ------------------------------------------------------------------------------------------------- the image


def test_the_router_image_is_pinned_with_its_evidence() -> None:
    image = objects.DEFAULT_ROUTER_IMAGE
    assert image == f"lmcache/lmstack-router:{ROUTER_PIN.tag}@{ROUTER_PIN.digest}"
    assert ROUTER_PIN.tag != "latest" and re.fullmatch(r"v\d+\.\d+\.\d+", ROUTER_PIN.tag)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", ROUTER_PIN.digest)
    # The release workflow at the chart's tag pushes the router as v<chart version>.
    chart_version = ROUTER_PIN.tag.removeprefix("v")
    evidence = ROUTER_PIN.evidence
    assert evidence.url == (
        "https://github.com/vllm-project/production-stack/blob/"
        f"vllm-stack-{chart_version}/.github/workflows/helm-release.yml"
    )
    assert datetime.date.fromisoformat(evidence.checked_on) <= datetime.date(2026, 12, 6)
    # The policy pack's rule for AIM workloads (digest-pinned images) admits both containers.
    spec = pod_spec()
    assert {c["image"] for c in spec["containers"]} == {image, api_proxy.DEFAULT_PROXY_IMAGE}
    assert all(image_problem(c["image"], require_digest=True) is None for c in spec["containers"])


# ----------------------------------------------------------------------------------------------------- RBAC


def test_the_router_may_only_read_pods_in_its_namespace() -> None:
    role = validate(objects.role(NAMES, LABELS))
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == NAMES.namespace
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = validate(objects.role_binding(NAMES, LABELS))
    assert binding["metadata"]["namespace"] == NAMES.namespace
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAMES.role}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAMES.workload, "namespace": NAMES.namespace}]
    account = validate(objects.service_account(NAMES, LABELS))
    assert account["metadata"]["name"] == pod_spec()["serviceAccountName"]


def test_only_the_router_container_holds_the_token() -> None:
    spec = pod_spec()
    assert spec["automountServiceAccountToken"] is False
    assert objects.service_account(NAMES, LABELS)["automountServiceAccountToken"] is False
    mounted = {c["name"]: {m["name"] for m in c["volumeMounts"]} for c in spec["containers"]}
    assert objects.TOKEN_VOLUME in mounted[contract.ROUTER_CONTAINER]
    assert objects.TOKEN_VOLUME not in mounted[api_proxy.PROXY_CONTAINER]
    router = container(spec, contract.ROUTER_CONTAINER)
    [token_mount] = [m for m in router["volumeMounts"] if m["name"] == objects.TOKEN_VOLUME]
    # Where the kubernetes client's in-cluster configuration reads the token and the CA.
    assert token_mount == {"name": objects.TOKEN_VOLUME, "mountPath": objects.TOKEN_MOUNT, "readOnly": True}
    [volume] = [v for v in spec["volumes"] if v["name"] == objects.TOKEN_VOLUME]
    paths = [next(iter(s.values())) for s in volume["projected"]["sources"]]
    assert paths[0]["path"] == "token" and paths[1]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_a_static_router_holds_no_token_and_no_key() -> None:
    """Static discovery reads nothing from the API server and calls no engine on its own: the router container gets
    neither the service account token nor the API key (clients' own Authorization headers travel on)."""
    spec = pod_spec(backends=BACKENDS)  # validated with kubernetes-validate --strict
    router = container(spec, contract.ROUTER_CONTAINER)
    assert router["args"] == objects.router_args(
        NAMES.namespace, logic="roundrobin", session_key=None, backends=BACKENDS
    )
    assert objects.TOKEN_VOLUME not in {v["name"] for v in spec["volumes"]}
    assert all(m["name"] != objects.TOKEN_VOLUME for c in spec["containers"] for m in c["volumeMounts"])
    assert spec["automountServiceAccountToken"] is False
    assert "VLLM_API_KEY" not in {e["name"] for e in router["env"]}
    # The proxy's key check is the same as with Kubernetes discovery.
    discovering = pod_spec()
    assert container(spec, api_proxy.PROXY_CONTAINER) == container(discovering, api_proxy.PROXY_CONTAINER)
    assert "VLLM_API_KEY" in {e["name"] for e in container(discovering, contract.ROUTER_CONTAINER)["env"]}


# -------------------------------------------------------------------------------------------------- the pod


def test_the_router_runs_behind_the_proxy_without_privileges() -> None:
    spec = pod_spec()
    assert spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    for each in spec["containers"]:
        context = each["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert {"cpu", "memory"} <= each["resources"]["limits"].keys()  # the policy pack's limits rule
        assert "amd.com/gpu" not in each["resources"]["limits"]
        # The writable places are emptyDirs on /tmp.
        tmp = [m for m in each["volumeMounts"] if m["mountPath"] == "/tmp"]
        [volume] = [v for v in spec["volumes"] if v["name"] == tmp[0]["name"]]
        assert "emptyDir" in volume
    router = container(spec, contract.ROUTER_CONTAINER)
    assert "ports" not in router  # 127.0.0.1 only; the proxy owns the pod's ports
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert router[probe]["httpGet"] == {"path": "/health", "port": contract.API_PORT}
    startup = router["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == objects.STARTUP_BUDGET_SECONDS
    env = {e["name"]: e for e in router["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": NAMES.secret, "key": "VLLM_API_KEY"}
    assert env["HOME"]["value"] == "/tmp"
    proxy = container(spec, api_proxy.PROXY_CONTAINER)
    assert {p["name"]: p["containerPort"] for p in proxy["ports"]} == {
        "http": contract.API_PORT,
        "metrics": contract.METRICS_PORT,
    }
    # The proxy mounts only the key check from the Secret, never the bare key.
    [check] = [v for v in spec["volumes"] if v["name"] == objects.KEY_CHECK_VOLUME]
    assert check["secret"]["items"] == [{"key": objects.KEY_CHECK_FILE, "path": objects.KEY_CHECK_FILE}]
    assert {"name": objects.KEY_CHECK_VOLUME, "mountPath": objects.KEY_CHECK_DIR, "readOnly": True} in proxy[
        "volumeMounts"
    ]


def test_the_labels_keep_the_router_apart_from_the_engines() -> None:
    deployment = deployment_for()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == objects.selector_labels(NAMES.instance)
    assert objects.selector_labels(NAMES.instance).items() <= pod_labels.items()
    assert pod_labels[contract.COMPONENT_LABEL] == contract.ROUTER_COMPONENT
    assert pod_labels[contract.PART_OF_LABEL] == contract.PART_OF
    # No recipe label: the recipe admission policy and the policy pack's recipe rules never match the router.
    assert contract.RECIPE_LABEL not in pod_labels and contract.RECIPE_LABEL not in deployment["metadata"]["labels"]
    assert not objects.engine_selector().items() <= pod_labels.items()


def test_a_changed_proxy_config_rolls_the_pods() -> None:
    first = deployment_for()["spec"]["template"]["metadata"]["annotations"]
    other = deployment_for(proxy_config="# changed\n")["spec"]["template"]["metadata"]["annotations"]
    key = contract.PROXY_CONFIG_HASH_ANNOTATION
    assert first[key] != other[key]


@pytest.mark.parametrize("replicas", [1, 3])
def test_an_update_keeps_the_endpoint_up(replicas: int) -> None:
    deployment = deployment_for(replicas=replicas)
    assert deployment["spec"]["replicas"] == replicas
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    budget = objects.disruption_budget(NAMES, LABELS, replicas)
    assert (budget is None) is (replicas == 1)
    if budget is not None:
        assert validate(budget)["spec"]["selector"]["matchLabels"] == objects.selector_labels(NAMES.instance)


# ------------------------------------------------------------------------------------------ the other objects


def test_every_router_object_validates() -> None:
    manifests = [
        objects.service_account(NAMES, LABELS),
        objects.role(NAMES, LABELS),
        objects.role_binding(NAMES, LABELS),
        objects.secret(NAMES, LABELS, objects.secret_data(KEY)),
        objects.proxy_config_map(NAMES, LABELS, objects.proxy_config()),
        deployment_for(replicas=2),
        objects.disruption_budget(NAMES, LABELS, 2),
        objects.api_service(NAMES, LABELS, service_type="NodePort", node_port=30081),
        objects.api_service(NAMES, LABELS, service_type="LoadBalancer", allowed_cidrs=["10.0.0.0/8"]),
        objects.metrics_service(NAMES, LABELS),
    ]
    specs = objects.policy_specs(
        NAMES,
        allowed_cidrs=["10.20.0.0/16"],
        allowed_namespaces=["gateway"],
        monitoring_namespace="monitoring",
        api_server_cidrs=["192.168.1.10/32"],
    )
    manifests += [network_policy.network_policy(f"{NAMES.instance}-{s}", NAMES.namespace, v) for s, v in specs.items()]
    kinds = []
    for manifest in manifests:
        assert manifest is not None
        validate(manifest)
        assert manifest["metadata"]["namespace"] == NAMES.namespace
        kinds.append(manifest["kind"])
    assert kinds.count("Service") == 3 and kinds.count("NetworkPolicy") == 4
    assert len(set(kinds)) == 9


def test_the_secret_holds_the_key_and_the_proxys_check_of_it() -> None:
    data = objects.secret_data(KEY)
    assert data[engine_objects.API_KEY_DATA_KEY] == KEY
    assert f'"Bearer {KEY}"' in data[objects.KEY_CHECK_FILE]


@pytest.mark.parametrize("bad", ["has space", 'quote"d', "dollar$x", "semi;colon", "brace}", "new\nline", ""])
def test_a_key_the_proxy_cannot_check_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(AimError) as raised:
        objects.key_check_config(bad)
    message = str(raised.value)
    assert "Bearer token" in message and "\n" not in message
    assert not bad or bad not in message


def test_the_services_expose_the_proxy_ports() -> None:
    api = objects.api_service(NAMES, LABELS, service_type="NodePort", node_port=30081)
    assert api["spec"]["ports"] == [
        {"name": "http", "port": contract.API_PORT, "targetPort": "http", "protocol": "TCP", "nodePort": 30081}
    ]
    balancer = objects.api_service(NAMES, LABELS, service_type="LoadBalancer", allowed_cidrs=["10.0.0.0/8"])
    assert balancer["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
    metrics = objects.metrics_service(NAMES, LABELS)
    assert metrics["spec"]["type"] == "ClusterIP"
    assert metrics["spec"]["ports"] == [
        {"name": "metrics", "port": contract.METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert api["spec"]["selector"] == metrics["spec"]["selector"] == objects.selector_labels(NAMES.instance)


# ---------------------------------------------------------------------------------------------------- policies


@pytest.mark.parametrize(("monitoring", "api_server"), [("monitoring", ["192.168.1.10/32"]), (None, [])])
def test_the_policies_admit_what_the_router_needs_and_no_more(monitoring: str | None, api_server: list[str]) -> None:
    allow: dict[str, Any] = {"allowed_cidrs": ["10.20.0.0/16"], "allowed_namespaces": ["gateway"]}
    specs = objects.policy_specs(NAMES, monitoring_namespace=monitoring, api_server_cidrs=api_server, **allow)
    assert set(specs) == {"api", "egress", "to-engines"} | ({"metrics"} if monitoring else set())
    router = {"matchLabels": objects.selector_labels(NAMES.instance)}
    engines = {"matchLabels": objects.engine_selector()}
    # Clients reach the router exactly as the engine's own policy lets them reach a single model.
    engine_specs = network_policy.policy_specs(
        pod_selector=engine_objects.selector_labels("chat"),
        api_port=contract.API_PORT,
        metrics_port=contract.METRICS_PORT,
        download_pod_selector={},
        monitoring_namespace=monitoring,
        air_gapped=True,
        cluster_cidrs=[],
        **allow,
    )
    assert specs["api"]["podSelector"] == router
    assert specs["api"]["ingress"] == engine_specs["api"]["ingress"]
    if monitoring:
        assert specs["metrics"]["ingress"] == engine_specs["metrics"]["ingress"]
    # The router reaches every engine's API port, and the engines admit the router there.
    egress = specs["egress"]
    assert egress["podSelector"] == router and egress["policyTypes"] == ["Egress"]
    to_engines, to_api_server, to_dns = egress["egress"]
    assert to_engines == {"to": [{"podSelector": engines}], "ports": [{"protocol": "TCP", "port": contract.API_PORT}]}
    assert [p["port"] for p in to_api_server["ports"]] == [443, 6443]
    assert to_api_server.get("to") == ([{"ipBlock": {"cidr": c}} for c in api_server] or None)
    assert {p["port"] for p in to_dns["ports"]} == {53}
    inbound = specs["to-engines"]
    assert inbound["podSelector"] == engines
    assert inbound["ingress"] == [
        {"from": [{"podSelector": router}], "ports": [{"protocol": "TCP", "port": contract.API_PORT}]}
    ]


def test_a_static_router_reaches_the_interceptor_and_not_the_api_server() -> None:
    specs = objects.policy_specs(
        NAMES,
        allowed_cidrs=["10.20.0.0/16"],
        allowed_namespaces=[],
        monitoring_namespace="monitoring",
        api_server_cidrs=["192.168.1.10/32"],
        discovers=False,
        interceptor=INTERCEPTOR,
    )
    assert set(specs) == {"api", "egress", "to-engines", "from-interceptor", "metrics"}
    for suffix, spec in specs.items():
        validate(network_policy.network_policy(f"{NAMES.instance}-{suffix}", NAMES.namespace, spec))
    interceptor = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
        "podSelector": {"matchLabels": http_addon_interceptor_labels("keda-add-ons-http")},
    }
    to_engines, to_interceptor, to_dns = specs["egress"]["egress"]
    assert to_engines["ports"] == [{"protocol": "TCP", "port": contract.API_PORT}]
    assert to_interceptor == {"to": [interceptor], "ports": [{"protocol": "TCP", "port": 8080}]}
    assert {p["port"] for p in to_dns["ports"]} == {53}
    # The API server is not reachable: nothing in the egress names its ports.
    assert not {443, 6443} & {p["port"] for rule in specs["egress"]["egress"] for p in rule["ports"]}
    # Only the scale-to-zero models' engines admit the interceptor, on their API port.
    inbound = specs["from-interceptor"]
    assert inbound["podSelector"] == {
        "matchLabels": objects.engine_selector(),
        "matchExpressions": [{"key": contract.INSTANCE_LABEL, "operator": "In", "values": ["small"]}],
    }
    assert inbound["ingress"] == [{"from": [interceptor], "ports": [{"protocol": "TCP", "port": contract.API_PORT}]}]
    # Everything else is as with Kubernetes discovery.
    discovering = objects.policy_specs(
        NAMES,
        allowed_cidrs=["10.20.0.0/16"],
        allowed_namespaces=[],
        monitoring_namespace="monitoring",
        api_server_cidrs=["192.168.1.10/32"],
    )
    assert {key: specs[key] for key in ("api", "to-engines", "metrics")} == {
        key: discovering[key] for key in ("api", "to-engines", "metrics")
    }
    assert discovering["egress"]["egress"][0] == to_engines
    with pytest.raises(AimError, match="forwards to no engine"):
        objects.engines_from_interceptor(Interceptor("keda", {}, 8080))


# -------------------------------------------------------------------------------------------- the proxy, run


def test_nginx_accepts_the_declared_config(tmp_path: Path) -> None:
    nginx = nginx_binary()
    declared = objects.proxy_config()
    check = f"{objects.KEY_CHECK_DIR}/{objects.KEY_CHECK_FILE}"
    assert f"include {check};" in declared
    (tmp_path / "key-check.conf").write_text(objects.key_check_config(KEY))
    conf = tmp_path / "nginx.conf"
    conf.write_text(declared.replace(check, str(tmp_path / "key-check.conf")))
    checked = subprocess.run([nginx, "-t", "-e", "stderr", "-c", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr


@pytest.fixture(scope="module")
def running_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, FakeVllm]]:
    """The router's proxy config on free ports, in front of a fake router that answers every path with its name."""
    nginx = nginx_binary()
    upstream = FakeVllm()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    work = tmp_path_factory.mktemp("router-nginx")
    (work / "key-check.conf").write_text(objects.key_check_config(KEY))
    api, metrics = free_port(), free_port()
    conf = work / "nginx.conf"
    config = objects.proxy_config(
        key_check=str(work / "key-check.conf"),
        api_port=api,
        metrics_port=metrics,
        upstream_port=upstream.server_address[1],
        listen_host="127.0.0.1",
        temp_dir=str(work),
        workers=1,
    )
    conf.write_text(config)
    try:
        with nginx_serving(nginx, conf, api):
            yield api, metrics, upstream
    finally:
        upstream.shutdown()


def get(port: int, path: str, authorization: str | None = None) -> int:
    """A raw GET (the path exactly as written) with an optional Authorization header; the status code."""
    header = f"Authorization: {authorization}\r\n" if authorization is not None else ""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: aim\r\n{header}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("path", ["/v1/models", "/v1/chat/completions", "/v1/files", "/v1/batches"])
def test_v1_needs_the_key_before_it_reaches_the_router(running_proxy: tuple[int, int, FakeVllm], path: str) -> None:
    api, _, upstream = running_proxy
    before = len(upstream.seen)
    for wrong in (None, "", f"Bearer {KEY}x", f"bearer {KEY}", f"Bearer {KEY.upper()}", KEY, f"Basic {KEY}"):
        assert get(api, path, wrong) == 401, wrong
    assert upstream.seen[before:] == []
    assert get(api, path, f"Bearer {KEY}") == 200
    assert upstream.seen[before:] == [path]


@pytest.mark.parametrize(
    "path",
    [
        "/sleep",
        "/wake_up",
        "/is_sleeping",
        "/engines",
        "/version",
        "/metrics",
        "/tokenize",
        "/detokenize",
        "/rerank",
        "/score",
        "/docs",
        "/v1",
        "/v1/../engines",
        "/v1/%2e%2e/sleep",
        "/metrics/../v1/models",
    ],
)
def test_the_routers_other_routes_are_never_reached(running_proxy: tuple[int, int, FakeVllm], path: str) -> None:
    api, metrics, upstream = running_proxy
    before = len(upstream.seen)
    assert get(api, path, f"Bearer {KEY}") == 404, path
    assert get(api, path) == 404, path
    if path != "/metrics":
        assert get(metrics, path) == 404, path
    assert upstream.seen[before:] == []


def test_health_and_metrics_need_no_key(running_proxy: tuple[int, int, FakeVllm]) -> None:
    api, metrics, upstream = running_proxy
    assert get(api, "/health") == 200 and upstream.seen[-1] == "/health"
    assert get(metrics, "/metrics") == 200 and upstream.seen[-1] == "/metrics"
    assert get(metrics, "/v1/models", f"Bearer {KEY}") == 404


def test_the_builders_never_import_pulumi() -> None:
    check = "import sys, aim_infra.stack.manifests.router; print(sorted(m for m in sys.modules if 'pulumi' in m))"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
