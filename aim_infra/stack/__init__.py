"""The Pulumi side: settings (the one reader of stack config), the decision wiring, components, outputs, the offline
plan. Imports `aim_infra.planning` and `aim_infra.common`; runs host and pod programs only by module name."""
