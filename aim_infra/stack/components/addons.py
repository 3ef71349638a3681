"""Cluster add-ons in one component: Calico, metrics-server, local-path storage, AMD GPU plugin, Prometheus stack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

import pulumi
from pulumi import ResourceOptions

from aim_infra.common.contract import RECIPE_POD_LABELS
from aim_infra.stack.components.host import stack_id
from aim_infra.stack.components.kube import HelmRelease, KubernetesObject

# Re-exported for __main__.py (LOCAL_PATH_DATA_DIR) and tests/test_bootstrap_scripts.py (local_path_config).
from aim_infra.stack.manifests.addon_objects import LOCAL_PATH_DATA_DIR as LOCAL_PATH_DATA_DIR
from aim_infra.stack.manifests.addon_objects import local_path_config as local_path_config
from aim_infra.stack.manifests.addon_plan import ClusterAddonsArgs, PlannedChild, install_plan, resolve

if TYPE_CHECKING:
    import pulumi_random

#: Pod labels kube-state-metrics exports on kube_pod_labels, so vLLM series join to their recipe (monitoring/names.py).
KSM_POD_LABELS = RECIPE_POD_LABELS


class ClusterAddons(pulumi.ComponentResource):
    """The cluster's add-ons, each toggled by its args flag; Calico (when on) goes first, everything else after it.

    What is installed, in which order and after what, is `install_plan` (aim_infra/stack/manifests/addon_plan.py, pure
    and tested without Pulumi); this component declares that list, child by child, and nothing else.

    Public attributes: `releases` (keys: calico, metrics_server, amd_gpu_plugin, monitoring, device_metrics_exporter,
    keda, keda_http — only those on), `ready` (what workloads should depend on), `storage_class_name`,
    `monitoring_namespace`, `monitoring_release_name`. The Kubernetes provider comes through `opts` and is inherited
    by every child."""

    releases: dict[str, HelmRelease]
    namespaces: dict[str, KubernetesObject]
    ready: list[pulumi.Resource]
    storage_class: KubernetesObject | None
    storage_class_name: str | None
    monitoring_namespace: str | None
    monitoring_release_name: str | None

    def __init__(self, name: str, args: ClusterAddonsArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:ClusterAddons", name, None, opts)
        plan = install_plan(args, stack=stack_id(), pod_labels=KSM_POD_LABELS)
        declared: dict[str, pulumi.Resource] = {}
        for child in plan.children:
            declared[child.key] = self._declare(f"{name}-{child.key}", child, declared)

        self.releases = {chart: cast(HelmRelease, declared[key]) for chart, key in plan.releases.items()}
        self.namespaces = {addon: cast(KubernetesObject, declared[key]) for addon, key in plan.namespaces.items()}
        self.ready = [declared[key] for key in plan.ready]
        self.storage_class = cast(KubernetesObject, declared[plan.storage_class]) if plan.storage_class else None
        self.storage_class_name = plan.storage_class_name
        self.monitoring_namespace = plan.monitoring_namespace
        self.monitoring_release_name = plan.monitoring_release_name
        self.register_outputs(
            {
                "release_names": plan.release_names,
                "storage_class_name": self.storage_class_name,
                "monitoring_namespace": self.monitoring_namespace,
                "monitoring_release_name": self.monitoring_release_name,
            }
        )

    def _declare(self, name: str, child: PlannedChild, declared: Mapping[str, pulumi.Resource]) -> pulumi.Resource:
        """One planned child, after the children it names (all declared before it: the plan is in install order)."""
        opts = ResourceOptions(parent=self, depends_on=[declared[key] for key in child.after])
        if child.kind == "release":
            return HelmRelease(name, dict(child.body), opts=opts)
        if child.kind == "password":
            import pulumi_random  # only needed (and imported) when a password is generated

            return pulumi_random.RandomPassword(name, **child.body, opts=opts)
        generated = cast("Mapping[str, pulumi_random.RandomPassword]", declared)
        return KubernetesObject(name, resolve(child.body, lambda key: generated[key].result), opts=opts)
