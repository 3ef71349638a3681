"""The planning core: recipe engine, performance model and monitoring content.

Pure Python on data files (recipes/, calibration/): no pulumi, no network, no subprocess. Imports only
`aim_infra.common` and itself (tests/test_architecture.py enforces it)."""
