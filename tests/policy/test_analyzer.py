"""The pack through the policy SDK's own analyzer (gRPC messages in, diagnostics out), with no server started.

`pulumi_policy.policy._PolicyAnalyzerServicer` is what `PolicyPack` serves; it is private, so this module is the one
place that touches it: it checks, on the wire format the CLI sends, that the adapter in support.py sees what the
server sees, that every violation is reported MANDATORY, and that an unknown preview value gives an advisory
"can't run" note rather than a verdict.
"""

from __future__ import annotations

import runpy
import sys
from collections import Counter
from typing import Any

import pulumi_policy
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi_policy.policy import _PolicyAnalyzerServicer
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from aim_infra.stack.plan import Declared, PlanResult
from aim_infra.stack.pulumi_internals import engine_protocol
from tests.policy.support import check_plan, declared
from tests.policy.test_rules import AIM_LABELS, container, workload
from tests.policy.test_stacks import KNOWN_GAPS

ROOT_PACK = "policy"
# The engine's gRPC messages (pulumi.runtime.proto, not public: reached through the stack's one shim module).
proto = engine_protocol()


@pytest.fixture(scope="module")
def pack_arguments() -> dict[str, Any]:
    """The arguments policy/__main__.py gives PolicyPack (run as the CLI's policy host runs it)."""
    calls: list[dict[str, Any]] = []
    real = pulumi_policy.PolicyPack
    pulumi_policy.PolicyPack = lambda **kwargs: calls.append(kwargs)  # type: ignore[assignment,misc]
    try:
        runpy.run_path(ROOT_PACK, run_name="__main__")
    finally:
        pulumi_policy.PolicyPack = real  # type: ignore[misc]
        sys.modules.pop("aim_policies", None)
    [kwargs] = calls
    return kwargs


@pytest.fixture(scope="module")
def servicer(pack_arguments: dict[str, Any]) -> _PolicyAnalyzerServicer:
    """The analyzer PolicyPack would serve, built from the same arguments."""
    kwargs = pack_arguments
    return _PolicyAnalyzerServicer(kwargs["name"], "0.1.0", kwargs["policies"], kwargs["enforcement_level"])


def _struct(inputs: dict[str, Any]) -> struct_pb2.Struct:
    properties = struct_pb2.Struct()
    properties.update(inputs)
    return properties


def analyze(servicer: _PolicyAnalyzerServicer, resource: Declared) -> list[Any]:
    request = proto.AnalyzeRequest(
        type=resource.type, properties=_struct(resource.inputs), urn=resource.urn, name=resource.name
    )
    return list(servicer.Analyze(request, None).diagnostics)


def analyze_stack(servicer: _PolicyAnalyzerServicer, resources: list[Declared]) -> list[Any]:
    request = proto.AnalyzeStackRequest(
        resources=[
            proto.AnalyzerResource(
                type=r.type,
                properties=_struct(r.inputs),
                urn=r.urn,
                name=r.name,
                parent=r.parent,
                dependencies=r.dependencies,
            )
            for r in resources
        ]
    )
    return list(servicer.AnalyzeStack(request, None).diagnostics)


def test_analyzer_info_lists_every_policy_as_mandatory(servicer: _PolicyAnalyzerServicer) -> None:
    info = servicer.GetAnalyzerInfo(empty_pb2.Empty(), None)
    assert info.name == "aim-guardrails"
    assert len(info.policies) == 5
    assert {p.enforcementLevel for p in info.policies} == {proto.MANDATORY}
    stack_policies = [p.name for p in info.policies if p.policy_type == proto.PolicyType.POLICY_TYPE_STACK]
    assert stack_policies == ["aim-namespace-network-policy"]


@pytest.mark.parametrize("stack", sorted(KNOWN_GAPS))
def test_the_wire_gives_the_same_verdicts_as_the_adapter(
    stack: str, servicer: _PolicyAnalyzerServicer, pack_arguments: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    plan: PlanResult = request.getfixturevalue(stack)
    wire: Counter[tuple[str, str]] = Counter()
    for resource in plan.resources:
        for diagnostic in analyze(servicer, resource):
            assert diagnostic.enforcementLevel == proto.MANDATORY
            wire[(diagnostic.policyName, diagnostic.urn or resource.urn)] += 1
    for diagnostic in analyze_stack(servicer, plan.resources):
        assert diagnostic.enforcementLevel == proto.MANDATORY
        wire[(diagnostic.policyName, diagnostic.urn)] += 1
    adapter = Counter((v.policy, v.urn or "") for v in check_plan(plan, pack_arguments["policies"]))
    assert wire == adapter
    assert sum(wire.values()) == sum(KNOWN_GAPS[stack].values())


def test_an_unknown_image_is_an_advisory_note_during_preview(servicer: _PolicyAnalyzerServicer) -> None:
    resource = declared(workload(labels=AIM_LABELS, containers=[container("vllm", UNKNOWN_STRING_VALUE)]))
    [diagnostic] = analyze(servicer, resource)
    assert diagnostic.policyName == "aim-images-pinned"
    assert diagnostic.enforcementLevel == proto.ADVISORY
    assert "can't run policy 'aim-images-pinned'" in diagnostic.message


def test_a_violation_message_starts_with_the_description_then_names_resource_and_fix(
    servicer: _PolicyAnalyzerServicer,
) -> None:
    resource = declared(workload(labels=AIM_LABELS, containers=[container("vllm", "aim-engine:latest")]))
    [diagnostic] = analyze(servicer, resource)
    description, detail = diagnostic.message.split("\n", 1)
    assert description == diagnostic.description
    assert detail.startswith("Deployment aim/engine (Pulumi resource engine): container 'vllm' image")
    assert "@sha256:" in detail
