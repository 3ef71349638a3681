"""EngineNetworkPolicy: who may reach the engine's API, and where the engine may connect to."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pulumi

from aim_infra.stack.components.kube import KubernetesObject

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server
HTTPS_PORT = 443  # the Hugging Face Hub and its CDN
#: Never reachable from the downloader, though on port 443: private networks (RFC 1918; also where cluster services,
#: nodes and cloud-internal endpoints live), link-local (cloud metadata at 169.254.169.254), CGNAT (RFC 6598, used
#: for pod networks by several CNIs), and their IPv6 counterparts (unique-local, link-local).
EXCLUDED_IPV4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")
EXCLUDED_IPV6 = ("fc00::/7", "fe80::/10")


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


@dataclass(frozen=True)
class EngineNetworkPolicyArgs:
    namespace: str
    pod_selector: dict[str, str]  # the engine pods (the Deployment's selector labels)
    api_port: int
    metrics_port: int  # the proxy's /metrics listener
    download_pod_selector: dict[str, str]  # the model download Job's pods
    allowed_cidrs: list[str] = field(default_factory=list)  # clients by address (ipBlock)
    allowed_namespaces: list[str] = field(default_factory=list)  # clients by namespace
    monitoring_namespace: str | None = None  # Prometheus's namespace when the stack scrapes the engine
    air_gapped: bool = False
    #: The cluster's pod (and service) networks, kept out of the downloader's reach like private ranges.
    cluster_cidrs: list[str] = field(default_factory=list)
    depends_on: list[pulumi.Resource] = field(default_factory=list)  # the namespace


def _namespaces(names: list[str]) -> dict[str, Any]:
    names_in = {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": names}
    return {"namespaceSelector": {"matchExpressions": [names_in]}}


class EngineNetworkPolicy(pulumi.ComponentResource):
    """Default-deny ingress and egress for the AIM namespace; the API port for the allow-lists, the metrics port for
    Prometheus; egress only for the model download pods (DNS and HTTPS to public addresses), none when air-gapped.
    The engine pods get no egress at all: vLLM runs offline from the cache volume. NetworkPolicies are additive: a
    connection is allowed when any policy selecting the pod allows it. The kubelet's probes come from the node, which
    NetworkPolicy always admits."""

    policies: dict[str, KubernetesObject]

    def __init__(self, name: str, args: EngineNetworkPolicyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:EngineNetworkPolicy", name, None, opts)
        labels = {"app.kubernetes.io/part-of": "aim", "app.kubernetes.io/managed-by": "pulumi"}
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        engine = {"matchLabels": dict(args.pod_selector)}
        self.policies = {}

        def declare(suffix: str, spec: dict[str, Any]) -> None:
            self.policies[suffix] = KubernetesObject(
                f"{name}-{suffix}",
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": {"name": f"{name}-{suffix}", "namespace": args.namespace, "labels": labels},
                    "spec": spec,
                },
                opts=child,
            )

        # Every pod of the namespace: nothing comes in and nothing goes out unless a policy below lets it.
        declare("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
        declare("default-deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})

        clients: list[dict[str, Any]] = [{"ipBlock": {"cidr": cidr}} for cidr in args.allowed_cidrs]
        if args.allowed_namespaces:
            clients.append(_namespaces(list(args.allowed_namespaces)))
        # With a NodePort the source a pod sees may be the node's address (externalTrafficPolicy Cluster SNATs it):
        # list node networks in aim:apiAllowedCidrs, or put an ingress in front and allow its namespace instead.
        declare(
            "api",
            {
                "podSelector": engine,
                "policyTypes": ["Ingress"],
                "ingress": [{"from": clients, "ports": [{"protocol": "TCP", "port": args.api_port}]}]
                if clients
                else [],
            },
        )
        if args.monitoring_namespace:
            # The proxy's metrics listener serves /metrics and nothing else.
            declare(
                "metrics",
                {
                    "podSelector": engine,
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [_namespaces([args.monitoring_namespace])],
                            "ports": [{"protocol": "TCP", "port": args.metrics_port}],
                        }
                    ],
                },
            )

        # Air-gapped: no egress policy at all; the model must already be in the cache volume.
        if not args.air_gapped:
            declare(
                "download-egress",
                {
                    "podSelector": {"matchLabels": dict(args.download_pod_selector)},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            # Cluster DNS (CoreDNS keeps the kube-dns label). A node-local DNS cache listens on a
                            # link-local address instead and would need an ipBlock.
                            "to": [
                                {
                                    "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
                                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                                }
                            ],
                            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                        },
                        # The Hub and its CDN (no stable address range): HTTPS to public addresses only.
                        {
                            "to": hub_egress_blocks(list(args.cluster_cidrs)),
                            "ports": [{"protocol": "TCP", "port": HTTPS_PORT}],
                        },
                    ],
                },
            )
        self.register_outputs({"policies": sorted(self.policies)})
