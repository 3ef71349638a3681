"""Kubernetes objects and Helm releases declared by type token, without pulumi_kubernetes' generated classes.

A resource is a type token plus properties to the Pulumi engine and the kubernetes provider: these classes send exactly
what the generated ones send (tests/stack/components/test_kube.py compares the two on the wire), from plain camelCase
manifests that tests/stack/test_manifests.py validates with `kubernetes-validate --strict` against the Kubernetes 1.30
schemas (the generated classes check nothing of a nested plain dict at run time).

Decision (measured by benchmarks/plan_time.py, 7 fresh processes each, median): keep dict manifests. With the
generated classes the program's imports take 0.79 s instead of 0.35 s (dev; prod 0.82 vs 0.37) and a whole
`run_stack` 1.09 s instead of 0.55 s (prod 1.02 vs 0.48), for the same objects and no stricter validation.
"""

from __future__ import annotations

from typing import Any

import pulumi

from aim_infra.stack import pulumi_internals
from aim_infra.stack.components import ownership_gate

#: Fields of a Secret that must stay secret in Pulumi's state, as the generated Secret class marks them.
SECRET_FIELDS = ("data", "stringData")


def _defaults(opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    """The provider version and download URL the generated classes attach, so the engine picks the same plugin."""
    return pulumi.ResourceOptions.merge(pulumi_internals.kubernetes_resource_defaults(), opts)


def owned(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with this stack's ownership annotation added: the proof, on the next `up` or to another stack,
    that this stack created the object (aim_infra/host/ownership.py)."""
    metadata = dict(manifest.get("metadata") or {})
    annotations = metadata.get("annotations") or {}
    if isinstance(annotations, dict):
        metadata["annotations"] = {**annotations, **ownership_gate.owner_annotation()}
    else:  # an Output: add the annotation once it is known
        metadata["annotations"] = pulumi.Output.from_input(annotations).apply(
            lambda known: {**(known or {}), **ownership_gate.owner_annotation()}
        )
    return {**manifest, "metadata": metadata}


def type_token(api_version: str, kind: str) -> str:
    """The provider's token for an apiVersion and kind: `apps/v1` + `Deployment` → `kubernetes:apps/v1:Deployment`
    (the core group is spelled `core`)."""
    group, _, version = api_version.rpartition("/")
    return f"kubernetes:{group or 'core'}/{version}:{kind}"


class KubernetesObject(pulumi.CustomResource):
    """One Kubernetes object from a manifest with `apiVersion`, `kind` and camelCase fields (the API's own names).

    As the generated classes do, a Secret's `data`/`stringData` are secret, and a kind that had older apiVersions
    carries their type tokens as aliases (ALIASES)."""

    metadata: pulumi.Output[Any]

    def __init__(self, name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        if not manifest.get("apiVersion") or not manifest.get("kind"):
            raise ValueError(f"{name}: a manifest needs apiVersion and kind")
        self.api_version = str(manifest["apiVersion"])
        self.kind = str(manifest["kind"])
        manifest = owned(manifest)
        properties = {"metadata": None, **manifest}
        opts = _defaults(opts)
        gate = ownership_gate.CURRENT.get()
        if gate is not None:
            gate.track(manifest)
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[gate]))
        if self.kind == "Secret" and self.api_version == "v1":
            for field in SECRET_FIELDS:
                if properties.get(field) is not None:
                    properties[field] = pulumi.Output.secret(properties[field])
            opts = pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_FIELDS))
            )
        token = type_token(self.api_version, self.kind)
        super().__init__(token, name, properties, _with_aliases(token, opts))


HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def _with_aliases(token: str, opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    """The options plus the older type tokens the generated class of `token` declares as its aliases (ALIASES)."""
    if not ALIASES.get(token):
        return opts
    aliases = [pulumi.Alias(type_=alias) for alias in ALIASES[token]]
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=aliases))


class HelmRelease(pulumi.CustomResource):
    """A `helm.sh/v3` Release: the chart is installed by the provider with Helm's own hooks and ordering."""

    status: pulumi.Output[Any]

    def __init__(self, name: str, spec: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        for key in ("name", "chart", "version", "namespace", "repositoryOpts"):
            if not spec.get(key):
                raise ValueError(f"{name}: a Helm release needs {key}")
        # `compat: "true"` is what the generated Release class always sends (provider compatibility mode).
        properties = {"status": None, **spec, "compat": "true"}
        opts = _defaults(opts)
        gate = ownership_gate.CURRENT.get()
        if gate is not None:  # its namespace is checked by the gate; Helm itself refuses a release name in use
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[gate]))
        super().__init__(HELM_RELEASE, name, properties, _with_aliases(HELM_RELEASE, opts))


#: Every Kubernetes type this stack declares, with the older type tokens its generated pulumi_kubernetes class declares
#: as aliases (so an object first created under an older apiVersion keeps its state); () where the class declares
#: none or there is no generated class (the Prometheus operator's and KEDA's CRDs). Exactly the kinds the stacks
#: declare: test_kube runs every Pulumi.<stack>.yaml and fails on a declared kind missing here or an entry no stack
#: declares, and checks each entry against the installed pulumi_kubernetes (4.34).
ALIASES: dict[str, tuple[str, ...]] = {
    "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy": (
        "kubernetes:admissionregistration.k8s.io/v1alpha1:ValidatingAdmissionPolicy",
        "kubernetes:admissionregistration.k8s.io/v1beta1:ValidatingAdmissionPolicy",
    ),
    "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding": (
        "kubernetes:admissionregistration.k8s.io/v1alpha1:ValidatingAdmissionPolicyBinding",
        "kubernetes:admissionregistration.k8s.io/v1beta1:ValidatingAdmissionPolicyBinding",
    ),
    "kubernetes:apps/v1:Deployment": (
        "kubernetes:apps/v1beta1:Deployment",
        "kubernetes:apps/v1beta2:Deployment",
        "kubernetes:extensions/v1beta1:Deployment",
    ),
    "kubernetes:batch/v1:Job": (),
    "kubernetes:core/v1:ConfigMap": (),
    "kubernetes:core/v1:Namespace": (),
    "kubernetes:core/v1:PersistentVolumeClaim": (),
    "kubernetes:core/v1:Secret": (),
    "kubernetes:core/v1:Service": (),
    "kubernetes:core/v1:ServiceAccount": (),
    HELM_RELEASE: (),
    "kubernetes:keda.sh/v1alpha1:ScaledObject": (),
    "kubernetes:monitoring.coreos.com/v1:PrometheusRule": (),
    "kubernetes:monitoring.coreos.com/v1:ServiceMonitor": (),
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": ("kubernetes:extensions/v1beta1:NetworkPolicy",),
    "kubernetes:policy/v1:PodDisruptionBudget": ("kubernetes:policy/v1beta1:PodDisruptionBudget",),
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole": (
        "kubernetes:rbac.authorization.k8s.io/v1alpha1:ClusterRole",
        "kubernetes:rbac.authorization.k8s.io/v1beta1:ClusterRole",
    ),
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding": (
        "kubernetes:rbac.authorization.k8s.io/v1alpha1:ClusterRoleBinding",
        "kubernetes:rbac.authorization.k8s.io/v1beta1:ClusterRoleBinding",
    ),
    "kubernetes:rbac.authorization.k8s.io/v1:Role": (
        "kubernetes:rbac.authorization.k8s.io/v1alpha1:Role",
        "kubernetes:rbac.authorization.k8s.io/v1beta1:Role",
    ),
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": (
        "kubernetes:rbac.authorization.k8s.io/v1alpha1:RoleBinding",
        "kubernetes:rbac.authorization.k8s.io/v1beta1:RoleBinding",
    ),
    "kubernetes:storage.k8s.io/v1:StorageClass": ("kubernetes:storage.k8s.io/v1beta1:StorageClass",),
}
