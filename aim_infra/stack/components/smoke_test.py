"""SmokeTest: after the engine is ready, /health, /v1/models and one chat completion through kubectl port-forward."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_command as command

from aim_infra.stack.components.host import environment, local_command, port_forward_arguments, python_module

#: The Deployment is ready when this runs, so /health should answer at once; this covers a pod that restarts.
HEALTH_WAIT_SECONDS = 300


@dataclass(frozen=True)
class SmokeTestArgs:
    namespace: str
    service: str
    service_port: int
    model_id: str
    #: What makes the test run again: a new recipe or a new image is a new engine.
    recipe_id: str
    decision_hash: str
    image: pulumi.Input[str]
    #: "<Secret>:<data key>" holding the API key in the namespace, when the API needs one.
    api_key_secret: str | None = None
    kube_context: str | None = None
    kubeconfig: pulumi.Input[str] | None = None
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class SmokeTest(pulumi.ComponentResource):
    """`pulumi up` fails with the smoke test's one line when the engine does not answer as it should.

    The check goes through `kubectl port-forward` to the Service, so it works for every service type and is not
    subject to the API NetworkPolicy (port-forward enters the pod's network namespace). The API key is read from the
    engine's Secret when the check runs, so neither the command nor the state holds it.
    """

    check: command.local.Command

    def __init__(self, name: str, args: SmokeTestArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:SmokeTest", name, None, opts)
        arguments = port_forward_arguments(args)
        arguments += ["--timeout", str(HEALTH_WAIT_SECONDS)]
        self.check = local_command(
            f"{name}-check",
            self,
            create=python_module("aim_infra.host.smoke", *arguments),
            env=environment(args.kubeconfig),
            depends_on=args.depends_on,
            # A replacement re-runs the check; there is nothing to undo, so no delete.
            triggers=[args.recipe_id, args.decision_hash, args.image],
        )
        self.register_outputs({"result": self.check.stdout})
