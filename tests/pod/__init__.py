"""Tests of the programs that run inside the engine container (aim_infra.pod)."""
