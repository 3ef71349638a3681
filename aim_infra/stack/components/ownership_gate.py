"""OwnershipGate: a step before every Kubernetes object that stops `pulumi up` if one of them exists and is not ours."""

from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command

from aim_infra.common.contract import OWNER_ANNOTATION, owner_value
from aim_infra.stack.components.host import environment, local_command, python_module

#: The gate of the program being run: KubernetesObject registers with it (one per program run, also under mocks).
CURRENT: contextvars.ContextVar[OwnershipGate | None] = contextvars.ContextVar("aim_ownership_gate", default=None)


def owner_annotation() -> dict[str, str]:
    """The annotation every object of this stack carries."""
    return {OWNER_ANNOTATION: owner_value(pulumi.get_project(), pulumi.get_stack())}


@dataclass(frozen=True)
class OwnershipGateArgs:
    kube_context: str | None = None
    kubeconfig: pulumi.Input[str] | None = None
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class OwnershipGate(pulumi.ComponentResource):
    """Declared before any Kubernetes object; every KubernetesObject declared afterwards adds itself to the list the
    check reads and waits for it. `seal()` at the end of the program closes the list."""

    check: command.local.Command

    def __init__(self, name: str, args: OwnershipGateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:OwnershipGate", name, None, opts)
        self.owner = owner_value(pulumi.get_project(), pulumi.get_stack())
        self._objects: list[dict[str, str]] = []
        self._sealed = False
        # Resolved when the engine runs the step, which is after the whole program body has declared its objects.
        objects = pulumi.Output.from_input(None).apply(lambda _: self._object_list())
        arguments: list[str] = ["--owner", self.owner]
        if args.kube_context:
            arguments += ["--context", args.kube_context]
        self.check = local_command(
            f"{name}-check",
            self,
            create=objects.apply(
                lambda listed: python_module("aim_infra.host.ownership", *arguments, "--objects", listed)
            ),
            env=environment(args.kubeconfig),
            depends_on=args.depends_on,
            # Checked again whenever the stack declares a different set of objects (a new add-on, namespace, ...).
            triggers=[objects],
        )
        CURRENT.set(self)
        self.register_outputs({"objects": objects})

    def track(self, manifest: dict[str, Any]) -> None:
        if self._sealed:
            raise RuntimeError("a Kubernetes object was declared after OwnershipGate.seal()")
        metadata = manifest.get("metadata") or {}
        entry = {"apiVersion": manifest["apiVersion"], "kind": manifest["kind"], "name": metadata.get("name")}
        if metadata.get("namespace"):
            entry["namespace"] = metadata["namespace"]
        if not all(isinstance(value, str) for value in entry.values()):
            # The check runs before the object exists, so its name must be known when the program is written.
            raise TypeError(f"{entry}: an object's apiVersion, kind, namespace and name must be plain strings")
        self._objects.append(entry)

    def seal(self) -> None:
        self._sealed = True
        CURRENT.set(None)

    def _object_list(self) -> str:
        if not self._sealed:
            raise RuntimeError("OwnershipGate.seal() was not called at the end of the program")
        unique = {json.dumps(entry, sort_keys=True) for entry in self._objects}
        return json.dumps([json.loads(entry) for entry in sorted(unique)], separators=(",", ":"))
