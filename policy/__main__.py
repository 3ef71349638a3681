"""Policy pack entry point run by the Pulumi CLI: serves the AIM guardrails (constructing the pack blocks)."""

from aim_policies import PACK_NAME, POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
