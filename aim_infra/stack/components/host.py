"""How the stack runs programs on the host where `pulumi up` runs: repository scripts and our Python modules."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Protocol

import pulumi
import pulumi_command as command

#: The project checkout: commands run from here, so scripts are named by their path in the repository.
PROJECT_ROOT = Path(__file__).resolve().parents[3]
BOOTSTRAP_SCRIPTS = "scripts/bootstrap"
#: Environment variable that holds the Python of the Pulumi program (the project's virtualenv), so a command runs
#: our modules with the packages `pulumi up` itself has.
PYTHON_VARIABLE = "AIM_PYTHON"


def script(name: str, *arguments: str) -> str:
    """`bash scripts/bootstrap/<name> ARGS`, quoted for /bin/sh."""
    return shlex.join(["bash", f"{BOOTSTRAP_SCRIPTS}/{name}", *arguments])


def python_module(module: str, *arguments: str) -> str:
    """`"$AIM_PYTHON" -m <module> ARGS`, quoted for /bin/sh."""
    return f'"${PYTHON_VARIABLE}" -m ' + shlex.join([module, *arguments])


class ReachesEngine(Protocol):
    """The args of a component whose host program talks to the engine (SmokeTestArgs, LiveBenchmarkArgs)."""

    @property
    def namespace(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def service_port(self) -> int: ...
    @property
    def model_id(self) -> str: ...
    @property
    def kube_context(self) -> str | None: ...
    @property
    def api_key_secret(self) -> str | None: ...


def port_forward_arguments(args: ReachesEngine) -> list[str]:
    """How a host program (smoke test, benchmark) reaches the engine: kubectl port-forward to its Service, and the
    API key ("<Secret>:<data key>") read from the cluster when the program runs, so no command holds it."""
    arguments = ["--port-forward", "--namespace", args.namespace, "--service", args.service]
    arguments += ["--deployment", args.service, "--service-port", str(args.service_port), "--model", args.model_id]
    if args.kube_context:
        arguments += ["--context", args.kube_context]
    if args.api_key_secret:
        arguments += ["--api-key-secret", args.api_key_secret]
    return arguments


def stack_id() -> str:
    """`<project>/<stack>`: what the host markers record as their creator (the cluster's, the local-path volumes',
    the registry volume's), so cleanup removes only what this stack created."""
    return f"{pulumi.get_project()}/{pulumi.get_stack()}"


def keep(what: str, how_to_remove: str) -> str:
    """A delete step that only says what stays and how to remove it, so `pulumi destroy` shows each kept thing."""
    return shlex.join(["echo", f"kept: {what} ({how_to_remove})"])


def environment(kubeconfig: pulumi.Input[str] | None = None) -> dict[str, pulumi.Input[str]]:
    """The variables every command gets: our Python, and the kubeconfig when the stack made the cluster."""
    env: dict[str, pulumi.Input[str]] = {PYTHON_VARIABLE: sys.executable}
    if kubeconfig is not None:
        env["KUBECONFIG"] = kubeconfig
    return env


def local_command(
    name: str,
    parent: pulumi.Resource,
    *,
    create: pulumi.Input[str],
    delete: pulumi.Input[str] | None = None,
    env: dict[str, pulumi.Input[str]] | None = None,
    depends_on: list[pulumi.Resource] | None = None,
    triggers: list[pulumi.Input[str]] | None = None,
    secret_outputs: list[str] | None = None,
) -> command.local.Command:
    """A `command.local.Command` run from the project checkout with our environment, as a component's child."""
    return command.local.Command(
        name,
        create=create,
        delete=delete,
        dir=str(PROJECT_ROOT),
        environment=env if env is not None else environment(),
        triggers=triggers,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on, additional_secret_outputs=secret_outputs),
    )
