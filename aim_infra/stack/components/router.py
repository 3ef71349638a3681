"""ModelRouter: one OpenAI endpoint in front of every model's engines (the vLLM production-stack router).

The objects are built by the pure functions of aim_infra.stack.manifests.router; this component only declares them,
in dependency order, with their options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from aim_infra.common.contract import API_PORT
from aim_infra.stack.components import api_proxy
from aim_infra.stack.components.kube import KubernetesObject
from aim_infra.stack.manifests import router as objects
from aim_infra.stack.manifests.engine import API_KEY_DATA_KEY
from aim_infra.stack.manifests.network_policy import network_policy
from aim_infra.stack.manifests.router import DEFAULT_ROUTER_IMAGE, Interceptor, RouterNames, StaticBackend


@dataclass(frozen=True)
class ModelRouterArgs:
    namespace: str  # the engines' namespace: the router discovers the engine pods there
    #: The stack's API key, the one the engines check: the router sends it to them and its proxy checks clients'.
    api_key: pulumi.Input[str]
    routing_logic: str = "roundrobin"  # one of manifests.router.ROUTING_LOGICS
    session_key: str | None = None  # the header that names a session, for routing logic `session`
    replicas: int = 1
    image: str = DEFAULT_ROUTER_IMAGE
    api_proxy_image: str = api_proxy.DEFAULT_PROXY_IMAGE
    service_type: str = "NodePort"
    node_port: int = 0
    #: Clients by address: the NetworkPolicy's ipBlocks and a LoadBalancer's source ranges.
    allowed_cidrs: list[str] = field(default_factory=list)
    allowed_namespaces: list[str] = field(default_factory=list)  # clients by namespace
    monitoring_namespace: str | None = None  # Prometheus's namespace, admitted to the metrics port
    #: The API server's addresses, to narrow the router's egress to them; empty = its ports at any address.
    api_server_cidrs: list[str] = field(default_factory=list)
    #: Static discovery of these models instead of watching the engine pods (when some model scales to zero: see
    #: manifests.router); None = Kubernetes discovery.
    static_backends: list[StaticBackend] | None = None
    #: The KEDA HTTP add-on's interceptor, which the router reaches for the models that scale to zero.
    interceptor: Interceptor | None = None
    depends_on: list[pulumi.Resource] = field(default_factory=list)  # the namespace


class ModelRouter(pulumi.ComponentResource):
    """The router, its API proxy, its RBAC, Services and NetworkPolicies. The Kubernetes provider comes in through
    `opts`. The router needs no engine to start: it discovers them as they become ready, or (static discovery) sends
    each request to its model's Service. Static discovery reads nothing from the API server: no Role, no binding."""

    service_account: KubernetesObject
    role: KubernetesObject | None
    role_binding: KubernetesObject | None
    secret: KubernetesObject
    proxy_config_map: KubernetesObject
    deployment: KubernetesObject
    service: KubernetesObject
    metrics_service: KubernetesObject
    disruption_budget: KubernetesObject | None
    policies: dict[str, KubernetesObject]
    selector_labels: dict[str, str]
    labels: dict[str, str]
    #: "<Secret>:<data key>" of the API key, for steps that read it from the cluster (the smoke test).
    api_key_secret_ref: str
    #: The endpoint inside the cluster.
    url: str

    def __init__(self, name: str, args: ModelRouterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:ModelRouter", name, None, opts)
        names = RouterNames(name, args.namespace)
        # A bad routing choice or a configured key the proxy cannot check fails here, as one line at preview.
        objects.routing_args(args.routing_logic, args.session_key)
        if args.static_backends is not None:
            objects.static_discovery_args(args.static_backends)
        if isinstance(args.api_key, str):
            objects.key_check_config(args.api_key)
        self.selector_labels = objects.selector_labels(name)
        self.labels = labels = objects.router_labels(name)
        self.api_key_secret_ref = f"{names.secret}:{API_KEY_DATA_KEY}"
        self.url = f"http://{names.workload}.{args.namespace}.svc:{API_PORT}"
        after = list(args.depends_on)
        child = pulumi.ResourceOptions(parent=self, depends_on=after)

        self.service_account = KubernetesObject(f"{name}-sa", objects.service_account(names, labels), opts=child)
        self.role = self.role_binding = None
        if args.static_backends is None:  # only a router that watches the engine pods reads the API server
            self.role = KubernetesObject(f"{name}-role", objects.role(names, labels), opts=child)
            self.role_binding = KubernetesObject(
                f"{name}-role-binding",
                objects.role_binding(names, labels),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*after, self.role, self.service_account]),
            )
        data = pulumi.Output.from_input(args.api_key).apply(objects.secret_data)
        self.secret = KubernetesObject(names.secret, objects.secret(names, labels, data), opts=child)
        config = objects.proxy_config()
        self.proxy_config_map = KubernetesObject(
            names.proxy_config, objects.proxy_config_map(names, labels, config), opts=child
        )
        self.deployment = self._deployment(names, args, config, after)
        service = objects.api_service(
            names, labels, service_type=args.service_type, node_port=args.node_port, allowed_cidrs=args.allowed_cidrs
        )
        self.service = KubernetesObject(f"{name}-service", service, opts=child)
        metrics = objects.metrics_service(names, labels)
        self.metrics_service = KubernetesObject(f"{name}-metrics-service", metrics, opts=child)
        budget = objects.disruption_budget(names, labels, args.replicas)
        self.disruption_budget = None if budget is None else KubernetesObject(f"{name}-pdb", budget, opts=child)
        self.policies = self._policies(names, args, child)
        self.register_outputs({"namespace": args.namespace, "deployment": name, "service": name, "url": self.url})

    def _deployment(
        self, names: RouterNames, args: ModelRouterArgs, config: str, after: list[pulumi.Resource]
    ) -> KubernetesObject:
        """The Deployment, after everything its pods mount or run as; `pulumi up` waits for its rollout."""
        template = objects.pod_template(
            names,
            self.labels,
            image=args.image,
            proxy_image=args.api_proxy_image,
            proxy_config=config,
            logic=args.routing_logic,
            session_key=args.session_key,
            backends=args.static_backends,
        )
        binding = [self.role_binding] if self.role_binding is not None else []
        waits_for: list[Any] = [self.service_account, *binding, self.secret, self.proxy_config_map]
        return KubernetesObject(
            f"{names.instance}-deployment",
            objects.deployment(names, self.labels, replicas=args.replicas, template=template),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*waits_for, *after]),
        )

    def _policies(
        self, names: RouterNames, args: ModelRouterArgs, child: pulumi.ResourceOptions
    ) -> dict[str, KubernetesObject]:
        specs = objects.policy_specs(
            names,
            allowed_cidrs=list(args.allowed_cidrs),
            allowed_namespaces=list(args.allowed_namespaces),
            monitoring_namespace=args.monitoring_namespace,
            api_server_cidrs=list(args.api_server_cidrs),
            discovers=args.static_backends is None,
            interceptor=args.interceptor,
        )
        return {
            suffix: KubernetesObject(
                f"{names.instance}-{suffix}",
                network_policy(f"{names.instance}-{suffix}", names.namespace, spec),
                opts=child,
            )
            for suffix, spec in specs.items()
        }
