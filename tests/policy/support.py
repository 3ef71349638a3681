"""Adapter from the offline plan's records to pulumi_policy's own argument classes, and a runner for the policies.

Every object the policies see is a real pulumi_policy class built directly (ResourceValidationArgs,
StackValidationArgs, PolicyResource, PolicyResourceOptions, PolicyCustomTimeouts, PolicyProviderResource): no
stand-ins are needed. Properties are wrapped with the SDK's own `unknown_checking_proxy`, as the policy server wraps
them, so the policies read the same read-only Mapping/Sequence proxies here as under `pulumi preview`.

Differences from a real run, by construction: the engine passes a resource policy the inputs after the provider's
Check and a stack policy the resources' outputs; under mocks the plan records the program's inputs and the mock
returns them as outputs, so both get the declared inputs (exactly the manifests the program writes).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

from aim_infra.stack.components.kube import type_token
from aim_infra.stack.plan import Declared, PlanResult

TEST_STACK_URN = "urn:pulumi:test::aim::"


@dataclass(frozen=True)
class Violation:
    """One report_violation call: the policy, its message and the URN it names (None = the resource validated)."""

    policy: str
    message: str
    urn: str | None


# ---------------------------------------------------------------------------------------------------------------------
# Plan records → pulumi_policy objects

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def seconds(duration: str) -> float:
    """A Go duration as the engine sends custom timeouts ("1617s", "1h20m") in seconds, as the analyzer gets them."""
    return sum(float(value) * _UNIT_SECONDS[unit] for value, unit in _DURATION_PART.findall(duration or ""))


def options(declared: Declared) -> PolicyResourceOptions:
    timeouts = declared.options.get("custom_timeouts") or {}
    return PolicyResourceOptions(
        protect=bool(declared.options.get("protect")),
        ignore_changes=list(declared.options.get("ignore_changes") or []),
        delete_before_replace=bool(declared.options.get("delete_before_replace")),
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(
            seconds(timeouts.get("create", "")),
            seconds(timeouts.get("update", "")),
            seconds(timeouts.get("delete", "")),
        ),
        additional_secret_outputs=list(declared.options.get("additional_secret_outputs") or []),
        parent=declared.parent or None,
    )


def provider_of(declared: Declared, plan: PlanResult | None) -> PolicyProviderResource | None:
    """The resource's provider (a reference is `<provider urn>::<id>`), when the plan recorded it."""
    if plan is None or not declared.provider:
        return None
    provider = plan.by_urn(declared.provider.rsplit("::", 1)[0])
    if provider is None:
        return None
    return PolicyProviderResource(provider.type, unknown_checking_proxy(provider.inputs), provider.urn, provider.name)


def resource_args(declared: Declared, plan: PlanResult | None = None) -> ResourceValidationArgs:
    """What the policy server passes a resource validation for this resource."""
    return ResourceValidationArgs(
        resource_type=declared.type,
        props=unknown_checking_proxy(declared.inputs),
        urn=declared.urn,
        name=declared.name,
        opts=options(declared),
        provider=provider_of(declared, plan),
    )


def stack_args(resources: list[Declared], plan: PlanResult | None = None) -> StackValidationArgs:
    """What the policy server passes a stack validation: every resource, parents and dependencies linked."""
    converted = {
        d.urn: PolicyResource(
            resource_type=d.type,
            props=unknown_checking_proxy(d.inputs),
            urn=d.urn,
            name=d.name,
            opts=options(d),
            provider=provider_of(d, plan),
            parent=None,
            dependencies=[],
            property_dependencies={},
        )
        for d in resources
    }
    for d in resources:
        resource = converted[d.urn]
        resource.parent = converted.get(d.parent)
        resource.dependencies.extend(converted[u] for u in d.dependencies if u in converted)
    return StackValidationArgs(list(converted.values()))


def declared(manifest: dict[str, Any], name: str | None = None) -> Declared:
    """A hand-made Kubernetes manifest as the plan would record it (type token from apiVersion and kind)."""
    token = type_token(str(manifest["apiVersion"]), str(manifest["kind"]))
    name = name or str((manifest.get("metadata") or {}).get("name") or "test-object")
    return Declared(
        urn=f"{TEST_STACK_URN}{token}::{name}",
        type=token,
        name=name,
        parent="",
        provider="",
        custom=True,
        inputs=manifest,
        dependencies=[],
        options={},
    )


# ---------------------------------------------------------------------------------------------------------------------
# Running policies


def _settle(result: Any) -> None:
    if inspect.isawaitable(result):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(result)
        finally:
            loop.close()


def run_resource_policy(policy: ResourceValidationPolicy, args: ResourceValidationArgs) -> list[Violation]:
    found: list[Violation] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(Violation(policy.name, message, urn))

    _settle(policy.validate(args, report))
    return found


def run_stack_policy(policy: StackValidationPolicy, args: StackValidationArgs) -> list[Violation]:
    found: list[Violation] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(Violation(policy.name, message, urn))

    _settle(policy.validate(args, report))
    return found


def check(resources: Iterable[Declared], policies: list[Policy], plan: PlanResult | None = None) -> list[Violation]:
    """Every resource policy on every resource, then every stack policy on the whole set: what a preview reports."""
    resources = list(resources)
    found: list[Violation] = []
    for policy in policies:
        if isinstance(policy, ResourceValidationPolicy):
            for resource in resources:
                found.extend(
                    Violation(v.policy, v.message, resource.urn)
                    for v in run_resource_policy(policy, resource_args(resource, plan))
                )
        elif isinstance(policy, StackValidationPolicy):
            found.extend(run_stack_policy(policy, stack_args(resources, plan)))
    return found


def check_plan(plan: PlanResult, policies: list[Policy]) -> list[Violation]:
    return check(plan.resources, policies, plan)


def check_manifests(*manifests: dict[str, Any], policies: list[Policy]) -> list[Violation]:
    return check([declared(m) for m in manifests], policies)
