"""Tests of aim_infra.common, the standard-library modules every room shares."""
