"""LiveBenchmark: after the rollout (and the smoke test), load the endpoint at the workload; measured vs estimated."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command

from aim_infra.stack.components.host import environment, local_command, port_forward_arguments, python_module

#: The Deployment is ready when this runs, so /health should answer at once; this covers a pod that restarts.
HEALTH_WAIT_SECONDS = 300
#: A run that takes longer stops there (what did not finish counts as cut off), so `pulumi up` cannot hang on it.
MAX_SECONDS = 1800


@dataclass(frozen=True)
class LiveBenchmarkArgs:
    namespace: str
    service: str
    service_port: int
    model_id: str
    #: The stack's estimate (`decision.summary()["estimate"]`): figures, ranges, calibration, workload, layout.
    estimate: dict[str, Any]
    #: What makes the benchmark run again: a new recipe, decision, image or workload is a new thing to measure.
    recipe_id: str
    decision_hash: str
    image: pulumi.Input[str]
    workload: dict[str, Any]
    model_revision: str | None = None
    #: "<Secret>:<data key>" holding the API key in the namespace, when the API needs one.
    api_key_secret: str | None = None
    #: "<Secret>:<data key>" holding HF_TOKEN, for a gated model's tokenizer.
    hf_token_secret: str | None = None
    kube_context: str | None = None
    kubeconfig: pulumi.Input[str] | None = None
    depends_on: list[pulumi.Resource] = field(default_factory=list)


def parse_result(stdout: str | None) -> dict[str, Any]:
    """The program's JSON line as a dict; {} before it ran (preview) or when it printed nothing."""
    text = (stdout or "").strip()
    if not text:
        return {}
    try:
        found = json.loads(text.splitlines()[-1])
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


class LiveBenchmark(pulumi.ComponentResource):
    """`pulumi up` benchmarks the live endpoint with GuideLLM (`python -m aim_infra.host.live_benchmark`) and keeps the
    measured figures next to the estimate as `result`; it fails with the program's one line when it cannot measure.

    Like the smoke test it goes through `kubectl port-forward` and reads the API key (and the Hugging Face token for
    the tokenizer) from the engine's Secrets when it runs, so neither the command nor the state holds them.
    """

    run: command.local.Command
    result: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: LiveBenchmarkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:LiveBenchmark", name, None, opts)
        arguments = port_forward_arguments(args)
        arguments += ["--recipe-id", args.recipe_id, "--estimate", json.dumps(args.estimate, sort_keys=True)]
        arguments += ["--timeout", str(HEALTH_WAIT_SECONDS), "--max-seconds", str(MAX_SECONDS)]
        if args.model_revision:
            arguments += ["--revision", args.model_revision]
        if args.hf_token_secret:
            arguments += ["--hf-token-secret", args.hf_token_secret]
        self.run = local_command(
            f"{name}-run",
            self,
            create=python_module("aim_infra.host.live_benchmark", *arguments),
            env=environment(args.kubeconfig),
            depends_on=args.depends_on,
            # A replacement measures again; there is nothing to undo, so no delete.
            triggers=[
                args.recipe_id,
                args.decision_hash,
                args.image,
                json.dumps(args.workload, sort_keys=True, separators=(",", ":")),
            ],
        )
        self.result = self.run.stdout.apply(parse_result)
        self.register_outputs({"result": self.result})
