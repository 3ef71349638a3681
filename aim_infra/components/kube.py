"""Kubernetes objects and Helm releases declared by type token, without pulumi_kubernetes' generated classes.

The generated classes (`pulumi_kubernetes.core.v1` alone is ~20k lines of typed argument classes) take most of the
program's start-up to import, and every object here is written as a plain camelCase manifest anyway. A resource is a
type token plus properties to the Pulumi engine and the kubernetes provider: these classes send exactly what the
generated ones send (tests/components/test_kube.py compares the two on the wire) at a fraction of the import cost.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_kubernetes import _utilities as kubernetes_package

#: Fields of a Secret that must stay secret in Pulumi's state, as the generated Secret class marks them.
SECRET_FIELDS = ("data", "stringData")


def _defaults(opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    """The provider version and download URL the generated classes attach, so the engine picks the same plugin."""
    return pulumi.ResourceOptions.merge(kubernetes_package.get_resource_opts_defaults(), opts)


def type_token(api_version: str, kind: str) -> str:
    """The provider's token for an apiVersion and kind: `apps/v1` + `Deployment` → `kubernetes:apps/v1:Deployment`
    (the core group is spelled `core`)."""
    group, _, version = api_version.rpartition("/")
    return f"kubernetes:{group or 'core'}/{version}:{kind}"


class KubernetesObject(pulumi.CustomResource):
    """One Kubernetes object from a manifest with `apiVersion`, `kind` and camelCase fields (the API's own names)."""

    metadata: pulumi.Output[Any]

    def __init__(self, name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        if not manifest.get("apiVersion") or not manifest.get("kind"):
            raise ValueError(f"{name}: a manifest needs apiVersion and kind")
        self.api_version = str(manifest["apiVersion"])
        self.kind = str(manifest["kind"])
        properties = {"metadata": None, **manifest}
        opts = _defaults(opts)
        if self.kind == "Secret" and self.api_version == "v1":
            for field in SECRET_FIELDS:
                if properties.get(field) is not None:
                    properties[field] = pulumi.Output.secret(properties[field])
            opts = pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_FIELDS))
            )
        super().__init__(type_token(self.api_version, self.kind), name, properties, opts)


class HelmRelease(pulumi.CustomResource):
    """A `helm.sh/v3` Release: the chart is installed by the provider with Helm's own hooks and ordering."""

    status: pulumi.Output[Any]

    def __init__(self, name: str, spec: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        for key in ("name", "chart", "version", "namespace", "repositoryOpts"):
            if not spec.get(key):
                raise ValueError(f"{name}: a Helm release needs {key}")
        # `compat: "true"` is what the generated Release class always sends (provider compatibility mode).
        properties = {"status": None, **spec, "compat": "true"}
        super().__init__("kubernetes:helm.sh/v3:Release", name, properties, _defaults(opts))
