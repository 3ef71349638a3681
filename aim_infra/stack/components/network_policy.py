"""EngineNetworkPolicy: who may reach the engine's API, and where the engine may connect to."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from aim_infra.stack.components.kube import KubernetesObject
from aim_infra.stack.manifests.network_policy import network_policy, policy_specs


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


class EngineNetworkPolicy(pulumi.ComponentResource):
    """Default-deny ingress and egress for the AIM namespace; the API port for the allow-lists, the metrics port for
    Prometheus; egress only for the model download pods (DNS and HTTPS to public addresses), none when air-gapped.
    The engine pods get no egress at all: vLLM runs offline from the cache volume. NetworkPolicies are additive: a
    connection is allowed when any policy selecting the pod allows it. The kubelet's probes come from the node, which
    NetworkPolicy always admits."""

    policies: dict[str, KubernetesObject]

    def __init__(self, name: str, args: EngineNetworkPolicyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:EngineNetworkPolicy", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        specs = policy_specs(
            pod_selector=args.pod_selector,
            api_port=args.api_port,
            metrics_port=args.metrics_port,
            download_pod_selector=args.download_pod_selector,
            allowed_cidrs=list(args.allowed_cidrs),
            allowed_namespaces=list(args.allowed_namespaces),
            monitoring_namespace=args.monitoring_namespace,
            air_gapped=args.air_gapped,
            cluster_cidrs=list(args.cluster_cidrs),
        )
        self.policies = {
            suffix: KubernetesObject(
                f"{name}-{suffix}", network_policy(f"{name}-{suffix}", args.namespace, spec), opts=child
            )
            for suffix, spec in specs.items()
        }
        self.register_outputs({"policies": sorted(self.policies)})
