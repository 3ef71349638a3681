"""Programs pulumi-command runs on the machine that runs Pulumi (`python -m aim_infra.host.<program>`): GPU gate,
ownership check, smoke test, benchmark, image cleanup. They may use the planning core; never pulumi or the stack."""
