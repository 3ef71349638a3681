"""The AIM namespace's NetworkPolicies as plain manifests: default deny, the API and metrics ports, download egress."""

from __future__ import annotations

import ipaddress
from typing import Any

from aim_infra.common import contract

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server
HTTPS_PORT = 443  # the Hugging Face Hub and its CDN
DNS_PORT = 53
#: Never reachable from the downloader, though on port 443: private networks (RFC 1918; also where cluster services,
#: nodes and cloud-internal endpoints live), link-local (cloud metadata at 169.254.169.254), CGNAT (RFC 6598, used
#: for pod networks by several CNIs), and their IPv6 counterparts (unique-local, link-local).
EXCLUDED_IPV4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")
EXCLUDED_IPV6 = ("fc00::/7", "fe80::/10")
#: The labels of every policy (not pods: nothing selects policies).
POLICY_LABELS = {contract.PART_OF_LABEL: contract.PART_OF, contract.MANAGED_BY_LABEL: contract.MANAGED_BY}


def hub_egress_blocks(cluster_cidrs: list[str]) -> list[dict[str, Any]]:
    """ipBlocks for "the internet": everything except the ranges above and the cluster's own pod/service networks
    (added when not already inside an excluded range; an `except` entry must lie inside its `cidr`)."""
    v4 = [ipaddress.ip_network(c) for c in EXCLUDED_IPV4]
    v6 = [ipaddress.ip_network(c) for c in EXCLUDED_IPV6]
    for text in cluster_cidrs:
        network = ipaddress.ip_network(text, strict=False)
        group = v4 if network.version == 4 else v6
        if network.prefixlen and not any(network.subnet_of(known) for known in group):  # type: ignore[arg-type]
            group.append(network)
    return [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": [str(n) for n in v4]}},
        {"ipBlock": {"cidr": "::/0", "except": [str(n) for n in v6]}},
    ]


def namespaces_peer(names: list[str]) -> dict[str, Any]:
    names_in = {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": names}
    return {"namespaceSelector": {"matchExpressions": [names_in]}}


def api_ingress(
    pod_selector: dict[str, str], api_port: int, allowed_cidrs: list[str], allowed_namespaces: list[str]
) -> dict[str, Any]:
    """The API port for the allow-lists (clients by address, clients by namespace); none listed admits nobody.
    With a NodePort the source a pod sees may be the node's address (externalTrafficPolicy Cluster SNATs it): list
    node networks in aim:apiAllowedCidrs, or put an ingress in front and allow its namespace instead."""
    clients: list[dict[str, Any]] = [{"ipBlock": {"cidr": cidr}} for cidr in allowed_cidrs]
    if allowed_namespaces:
        clients.append(namespaces_peer(list(allowed_namespaces)))
    return {
        "podSelector": {"matchLabels": dict(pod_selector)},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": clients, "ports": [{"protocol": "TCP", "port": api_port}]}] if clients else [],
    }


def metrics_ingress(pod_selector: dict[str, str], metrics_port: int, monitoring_namespace: str) -> dict[str, Any]:
    """Prometheus's namespace to the proxy's metrics listener, which serves /metrics and nothing else."""
    return {
        "podSelector": {"matchLabels": dict(pod_selector)},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [namespaces_peer([monitoring_namespace])],
                "ports": [{"protocol": "TCP", "port": metrics_port}],
            }
        ],
    }


def download_egress(download_pod_selector: dict[str, str], cluster_cidrs: list[str]) -> dict[str, Any]:
    """The download pods' only way out: cluster DNS, and HTTPS to public addresses (the Hub and its CDN have no
    stable address range)."""
    # CoreDNS keeps the kube-dns label. A node-local DNS cache listens on a link-local address instead and would need
    # an ipBlock.
    cluster_dns = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    return {
        "podSelector": {"matchLabels": dict(download_pod_selector)},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [cluster_dns],
                "ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}],
            },
            {"to": hub_egress_blocks(list(cluster_cidrs)), "ports": [{"protocol": "TCP", "port": HTTPS_PORT}]},
        ],
    }


def policy_specs(
    *,
    pod_selector: dict[str, str],
    api_port: int,
    metrics_port: int,
    download_pod_selector: dict[str, str],
    allowed_cidrs: list[str],
    allowed_namespaces: list[str],
    monitoring_namespace: str | None,
    air_gapped: bool,
    cluster_cidrs: list[str],
) -> dict[str, dict[str, Any]]:
    """Every policy's spec by name suffix, in declaration order. The engine pods get no egress at all (vLLM runs
    offline from the cache volume); NetworkPolicies are additive, so a connection is allowed when any policy
    selecting the pod allows it."""
    # Every pod of the namespace: nothing comes in and nothing goes out unless a policy below lets it.
    specs = {
        "default-deny-ingress": {"podSelector": {}, "policyTypes": ["Ingress"]},
        "default-deny-egress": {"podSelector": {}, "policyTypes": ["Egress"]},
        "api": api_ingress(pod_selector, api_port, allowed_cidrs, allowed_namespaces),
    }
    if monitoring_namespace:
        specs["metrics"] = metrics_ingress(pod_selector, metrics_port, monitoring_namespace)
    # Air-gapped: no egress policy at all; the model must already be in the cache volume.
    if not air_gapped:
        specs["download-egress"] = download_egress(download_pod_selector, cluster_cidrs)
    return specs


def network_policy(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(POLICY_LABELS)},
        "spec": spec,
    }
