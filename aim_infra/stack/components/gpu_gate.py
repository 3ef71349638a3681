"""GpuGate: a step that waits until the nodes offer every replica's GPUs, between the device plugin and the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_command as command

from aim_infra.stack.components.host import environment, local_command, python_module

#: How long the device plugin may take to advertise amd.com/gpu on a node (image pull, driver checks).
GPU_WAIT_SECONDS = 600


@dataclass(frozen=True)
class GpuGateArgs:
    gpu: str
    #: GPUs one engine replica needs on one node.
    count: int
    #: Engine replicas: the gate waits until the nodes hold all of them, not just one.
    replicas: int = 1
    #: All replicas on one node (a ReadWriteOnce model cache: engine.cache_affinity keeps them together).
    one_node: bool = False
    kube_context: str | None = None
    kubeconfig: pulumi.Input[str] | None = None
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class GpuGate(pulumi.ComponentResource):
    """Without it, a cluster whose device plugin never comes up shows only as a Deployment that is not ready after
    its whole start-up budget; with it, `pulumi up` stops within minutes, saying what the nodes offer instead."""

    check: command.local.Command

    def __init__(self, name: str, args: GpuGateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:GpuGate", name, None, opts)
        arguments = ["--gpu", args.gpu, "--count", str(args.count), "--timeout", str(GPU_WAIT_SECONDS)]
        if args.replicas > 1:
            arguments += ["--replicas", str(args.replicas), *(["--one-node"] if args.one_node else [])]
        if args.kube_context:
            arguments += ["--context", args.kube_context]
        self.check = local_command(
            f"{name}-check",
            self,
            create=python_module("aim_infra.host.gpu_ready", *arguments),
            env=environment(args.kubeconfig),
            depends_on=args.depends_on,
        )
        self.register_outputs({"result": self.check.stdout})
