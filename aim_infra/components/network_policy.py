"""EngineNetworkPolicy: who may reach the engine's API, and where the engine may connect to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from .kube import KubernetesObject

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server
HTTPS_PORT = 443  # the Hugging Face Hub and its CDN


@dataclass(frozen=True)
class EngineNetworkPolicyArgs:
    namespace: str
    pod_selector: dict[str, str]  # the engine pods (the Deployment's selector labels)
    api_port: int
    allowed_cidrs: list[str] = field(default_factory=list)  # clients by address (ipBlock)
    allowed_namespaces: list[str] = field(default_factory=list)  # clients by namespace
    monitoring_namespace: str | None = None  # Prometheus's namespace when the stack scrapes the engine
    air_gapped: bool = False
    depends_on: list[pulumi.Resource] = field(default_factory=list)  # the namespace


def _namespaces(names: list[str]) -> dict[str, Any]:
    names_in = {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": names}
    return {"namespaceSelector": {"matchExpressions": [names_in]}}


class EngineNetworkPolicy(pulumi.ComponentResource):
    """Default-deny ingress for the AIM namespace, the API port for the allow-lists (and Prometheus), and egress for
    DNS and HTTPS only, or none when air-gapped. NetworkPolicies are additive: a connection is allowed when any policy
    selecting the pod allows it. The kubelet's probes come from the node, which NetworkPolicy always admits."""

    policies: dict[str, KubernetesObject]

    def __init__(self, name: str, args: EngineNetworkPolicyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:EngineNetworkPolicy", name, None, opts)
        labels = {"app.kubernetes.io/part-of": "aim", "app.kubernetes.io/managed-by": "pulumi"}
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        api_port = [{"protocol": "TCP", "port": args.api_port}]
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

        # Every pod of the namespace: nothing comes in unless a policy below lets it.
        declare("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})

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
                "ingress": [{"from": clients, "ports": api_port}] if clients else [],
            },
        )
        if args.monitoring_namespace:
            # /metrics is served on the API port and a NetworkPolicy cannot filter by path: Prometheus's namespace
            # can therefore reach the whole API port (the /v1 endpoints still need the API key when one is set).
            declare(
                "metrics",
                {
                    "podSelector": engine,
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [_namespaces([args.monitoring_namespace])], "ports": api_port}],
                },
            )

        egress: list[dict[str, Any]] = []
        if not args.air_gapped:
            egress = [
                {
                    # Cluster DNS (CoreDNS keeps the kube-dns label). A node-local DNS cache listens on a link-local
                    # address instead and would need an ipBlock.
                    "to": [
                        {
                            "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                },
                # Model downloads: HTTPS to any address (the Hub's CDN has no stable address range).
                {"ports": [{"protocol": "TCP", "port": HTTPS_PORT}]},
            ]
        # Air-gapped: an Egress policy without rules allows nothing; the model must already be in the cache volume.
        declare("egress", {"podSelector": engine, "policyTypes": ["Egress"], "egress": egress})
        self.register_outputs({"policies": sorted(self.policies)})
