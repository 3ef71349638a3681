"""Tests of the programs that run on the Pulumi host (aim_infra.host)."""
