"""Pulumi components of the AIM Engine stack, one ComponentResource per module (token `aim:infra:<Type>`)."""
