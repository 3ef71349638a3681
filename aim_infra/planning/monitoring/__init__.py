"""Monitoring content of the AIM Engine stack (pure Python, no Pulumi): recording rules, alerts and dashboards."""
