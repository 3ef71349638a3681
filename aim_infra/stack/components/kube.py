"""Kubernetes objects and Helm releases declared by type token, without pulumi_kubernetes' generated classes.

The generated classes (`pulumi_kubernetes.core.v1` alone is ~20k lines of typed argument classes) take most of the
program's start-up to import, and every object here is written as a plain camelCase manifest anyway. A resource is a
type token plus properties to the Pulumi engine and the kubernetes provider: these classes send exactly what the
generated ones send (tests/stack/components/test_kube.py compares the two on the wire) at a fraction of the import cost.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_kubernetes import _utilities as kubernetes_package

from aim_infra.stack.components import ownership_gate

#: Fields of a Secret that must stay secret in Pulumi's state, as the generated Secret class marks them.
SECRET_FIELDS = ("data", "stringData")


def _defaults(opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    """The provider version and download URL the generated classes attach, so the engine picks the same plugin."""
    return pulumi.ResourceOptions.merge(kubernetes_package.get_resource_opts_defaults(), opts)


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
        if token in ALIASES:
            aliases = [pulumi.Alias(type_=alias) for alias in ALIASES[token]]
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=aliases))
        super().__init__(token, name, properties, opts)


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
        super().__init__("kubernetes:helm.sh/v3:Release", name, properties, opts)


#: The older type tokens each generated class of a stable API version (v1, v2) declares as aliases of its own, so an
#: object first created under an older apiVersion keeps its state. Read from pulumi_kubernetes 4.x; test_kube checks
#: the table against the installed package. (Beta and alpha apiVersions are not in it: nothing here declares them.)
ALIASES: dict[str, tuple[str, ...]] = {
    "kubernetes:admissionregistration.k8s.io/v1:MutatingAdmissionPolicy": (
        "kubernetes:admissionregistration.k8s.io/v1alpha1:MutatingAdmissionPolicy",
        "kubernetes:admissionregistration.k8s.io/v1beta1:MutatingAdmissionPolicy",
    ),
    "kubernetes:admissionregistration.k8s.io/v1:MutatingAdmissionPolicyBinding": (
        "kubernetes:admissionregistration.k8s.io/v1alpha1:MutatingAdmissionPolicyBinding",
        "kubernetes:admissionregistration.k8s.io/v1beta1:MutatingAdmissionPolicyBinding",
    ),
    "kubernetes:admissionregistration.k8s.io/v1:MutatingWebhookConfiguration": (
        "kubernetes:admissionregistration.k8s.io/v1beta1:MutatingWebhookConfiguration",
    ),
    "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy": (
        "kubernetes:admissionregistration.k8s.io/v1alpha1:ValidatingAdmissionPolicy",
        "kubernetes:admissionregistration.k8s.io/v1beta1:ValidatingAdmissionPolicy",
    ),
    "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding": (
        "kubernetes:admissionregistration.k8s.io/v1alpha1:ValidatingAdmissionPolicyBinding",
        "kubernetes:admissionregistration.k8s.io/v1beta1:ValidatingAdmissionPolicyBinding",
    ),
    "kubernetes:admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration": (
        "kubernetes:admissionregistration.k8s.io/v1beta1:ValidatingWebhookConfiguration",
    ),
    "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition": (
        "kubernetes:apiextensions.k8s.io/v1beta1:CustomResourceDefinition",
    ),
    "kubernetes:apiregistration.k8s.io/v1:APIService": (
        "kubernetes:apiregistration.k8s.io/v1beta1:APIService",
        "kubernetes:apiregistration/v1beta1:APIService",
        "kubernetes:apiregistration/v1:APIService",
    ),
    "kubernetes:apps/v1:ControllerRevision": (
        "kubernetes:apps/v1beta1:ControllerRevision",
        "kubernetes:apps/v1beta2:ControllerRevision",
    ),
    "kubernetes:apps/v1:DaemonSet": ("kubernetes:apps/v1beta2:DaemonSet", "kubernetes:extensions/v1beta1:DaemonSet"),
    "kubernetes:apps/v1:Deployment": (
        "kubernetes:apps/v1beta1:Deployment",
        "kubernetes:apps/v1beta2:Deployment",
        "kubernetes:extensions/v1beta1:Deployment",
    ),
    "kubernetes:apps/v1:ReplicaSet": ("kubernetes:apps/v1beta2:ReplicaSet", "kubernetes:extensions/v1beta1:ReplicaSet"),
    "kubernetes:apps/v1:StatefulSet": ("kubernetes:apps/v1beta1:StatefulSet", "kubernetes:apps/v1beta2:StatefulSet"),
    "kubernetes:autoscaling/v1:HorizontalPodAutoscaler": (
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
        "kubernetes:autoscaling/v2beta1:HorizontalPodAutoscaler",
        "kubernetes:autoscaling/v2beta2:HorizontalPodAutoscaler",
    ),
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": (
        "kubernetes:autoscaling/v1:HorizontalPodAutoscaler",
        "kubernetes:autoscaling/v2beta1:HorizontalPodAutoscaler",
        "kubernetes:autoscaling/v2beta2:HorizontalPodAutoscaler",
    ),
    "kubernetes:batch/v1:CronJob": ("kubernetes:batch/v1beta1:CronJob", "kubernetes:batch/v2alpha1:CronJob"),
    "kubernetes:certificates.k8s.io/v1:CertificateSigningRequest": (
        "kubernetes:certificates.k8s.io/v1beta1:CertificateSigningRequest",
    ),
    "kubernetes:certificates.k8s.io/v1:ClusterTrustBundle": (
        "kubernetes:certificates.k8s.io/v1alpha1:ClusterTrustBundle",
        "kubernetes:certificates.k8s.io/v1beta1:ClusterTrustBundle",
    ),
    "kubernetes:certificates.k8s.io/v1:PodCertificateRequest": (
        "kubernetes:certificates.k8s.io/v1beta1:PodCertificateRequest",
    ),
    "kubernetes:coordination.k8s.io/v1:Lease": ("kubernetes:coordination.k8s.io/v1beta1:Lease",),
    "kubernetes:core/v1:Event": ("kubernetes:events.k8s.io/v1:Event", "kubernetes:events.k8s.io/v1beta1:Event"),
    "kubernetes:discovery.k8s.io/v1:EndpointSlice": ("kubernetes:discovery.k8s.io/v1beta1:EndpointSlice",),
    "kubernetes:events.k8s.io/v1:Event": ("kubernetes:core/v1:Event", "kubernetes:events.k8s.io/v1beta1:Event"),
    "kubernetes:flowcontrol.apiserver.k8s.io/v1:FlowSchema": (
        "kubernetes:flowcontrol.apiserver.k8s.io/v1alpha1:FlowSchema",
        "kubernetes:flowcontrol.apiserver.k8s.io/v1beta1:FlowSchema",
        "kubernetes:flowcontrol.apiserver.k8s.io/v1beta2:FlowSchema",
        "kubernetes:flowcontrol.apiserver.k8s.io/v1beta3:FlowSchema",
    ),
    "kubernetes:flowcontrol.apiserver.k8s.io/v1:PriorityLevelConfiguration": (
        "kubernetes:flowcontrol.apiserver.k8s.io/v1alpha1:PriorityLevelConfiguration",
        "kubernetes:flowcontrol.apiserver.k8s.io/v1beta1:PriorityLevelConfiguration",
        "kubernetes:flowcontrol.apiserver.k8s.io/v1beta2:PriorityLevelConfiguration",
        "kubernetes:flowcontrol.apiserver.k8s.io/v1beta3:PriorityLevelConfiguration",
    ),
    "kubernetes:networking.k8s.io/v1:IPAddress": (
        "kubernetes:networking.k8s.io/v1alpha1:IPAddress",
        "kubernetes:networking.k8s.io/v1beta1:IPAddress",
    ),
    "kubernetes:networking.k8s.io/v1:Ingress": (
        "kubernetes:extensions/v1beta1:Ingress",
        "kubernetes:networking.k8s.io/v1beta1:Ingress",
    ),
    "kubernetes:networking.k8s.io/v1:IngressClass": ("kubernetes:networking.k8s.io/v1beta1:IngressClass",),
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": ("kubernetes:extensions/v1beta1:NetworkPolicy",),
    "kubernetes:networking.k8s.io/v1:ServiceCIDR": (
        "kubernetes:networking.k8s.io/v1alpha1:ServiceCIDR",
        "kubernetes:networking.k8s.io/v1beta1:ServiceCIDR",
    ),
    "kubernetes:node.k8s.io/v1:RuntimeClass": (
        "kubernetes:node.k8s.io/v1alpha1:RuntimeClass",
        "kubernetes:node.k8s.io/v1beta1:RuntimeClass",
    ),
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
    "kubernetes:resource.k8s.io/v1:DeviceClass": (
        "kubernetes:resource.k8s.io/v1alpha3:DeviceClass",
        "kubernetes:resource.k8s.io/v1beta1:DeviceClass",
        "kubernetes:resource.k8s.io/v1beta2:DeviceClass",
    ),
    "kubernetes:resource.k8s.io/v1:DeviceTaintRule": (
        "kubernetes:resource.k8s.io/v1alpha3:DeviceTaintRule",
        "kubernetes:resource.k8s.io/v1beta2:DeviceTaintRule",
    ),
    "kubernetes:resource.k8s.io/v1:ResourceClaim": (
        "kubernetes:resource.k8s.io/v1alpha1:ResourceClaim",
        "kubernetes:resource.k8s.io/v1alpha2:ResourceClaim",
        "kubernetes:resource.k8s.io/v1alpha3:ResourceClaim",
        "kubernetes:resource.k8s.io/v1beta1:ResourceClaim",
        "kubernetes:resource.k8s.io/v1beta2:ResourceClaim",
    ),
    "kubernetes:resource.k8s.io/v1:ResourceClaimTemplate": (
        "kubernetes:resource.k8s.io/v1alpha1:ResourceClaimTemplate",
        "kubernetes:resource.k8s.io/v1alpha2:ResourceClaimTemplate",
        "kubernetes:resource.k8s.io/v1alpha3:ResourceClaimTemplate",
        "kubernetes:resource.k8s.io/v1beta1:ResourceClaimTemplate",
        "kubernetes:resource.k8s.io/v1beta2:ResourceClaimTemplate",
    ),
    "kubernetes:resource.k8s.io/v1:ResourceSlice": (
        "kubernetes:resource.k8s.io/v1alpha2:ResourceSlice",
        "kubernetes:resource.k8s.io/v1alpha3:ResourceSlice",
        "kubernetes:resource.k8s.io/v1beta1:ResourceSlice",
        "kubernetes:resource.k8s.io/v1beta2:ResourceSlice",
    ),
    "kubernetes:scheduling.k8s.io/v1:PriorityClass": (
        "kubernetes:scheduling.k8s.io/v1alpha1:PriorityClass",
        "kubernetes:scheduling.k8s.io/v1beta1:PriorityClass",
    ),
    "kubernetes:storage.k8s.io/v1:CSIDriver": ("kubernetes:storage.k8s.io/v1beta1:CSIDriver",),
    "kubernetes:storage.k8s.io/v1:CSINode": ("kubernetes:storage.k8s.io/v1beta1:CSINode",),
    "kubernetes:storage.k8s.io/v1:CSIStorageCapacity": (
        "kubernetes:storage.k8s.io/v1beta1:CSIStorageCapacity",
        "kubernetes:storage.k8s.io/v1alpha1:CSIStorageCapacity",
    ),
    "kubernetes:storage.k8s.io/v1:StorageClass": ("kubernetes:storage.k8s.io/v1beta1:StorageClass",),
    "kubernetes:storage.k8s.io/v1:VolumeAttachment": (
        "kubernetes:storage.k8s.io/v1alpha1:VolumeAttachment",
        "kubernetes:storage.k8s.io/v1beta1:VolumeAttachment",
    ),
    "kubernetes:storage.k8s.io/v1:VolumeAttributesClass": (
        "kubernetes:storage.k8s.io/v1alpha1:VolumeAttributesClass",
        "kubernetes:storage.k8s.io/v1beta1:VolumeAttributesClass",
    ),
    "kubernetes:storagemigration.k8s.io/v1:StorageVersionMigration": (
        "kubernetes:storagemigration.k8s.io/v1alpha1:StorageVersionMigration",
        "kubernetes:storagemigration.k8s.io/v1beta1:StorageVersionMigration",
    ),
}
