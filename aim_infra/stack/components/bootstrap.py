"""ClusterBootstrap: make this host a single-node kubeadm cluster, one idempotent script per pulumi-command step."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command

from aim_infra.stack.components.host import keep, local_command, script, stack_id


@dataclass(frozen=True)
class ClusterBootstrapArgs:
    pod_cidr: str
    kubeconfig_path: str
    #: Port of the stack's local registry, mirrored into containerd as localhost:<port>; None without a registry.
    registry_port: int | None
    #: cleanup `all`: `pulumi destroy` resets the cluster (kubeadm reset) and removes the host settings files.
    reset_on_destroy: bool = False
    #: cleanup `registry` or `all`: `pulumi destroy` removes containerd's mirror entry for the registry.
    remove_mirror_on_destroy: bool = False
    #: local-path-provisioner's data directory when the stack installs it: the reset removes the volumes left there
    #: that are this stack's (claims of `local_path_namespace`, with the marker the stack's provisioner writes).
    local_path_dir: str | None = None
    #: The namespace of the stack's own claims (the engine's): only their local-path volumes are removed.
    local_path_namespace: str | None = None

    def __post_init__(self) -> None:
        if (self.local_path_dir is None) != (self.local_path_namespace is None):
            raise ValueError("ClusterBootstrapArgs: local_path_dir and local_path_namespace go together")


@dataclass(frozen=True)
class HostStep:
    """One bootstrap step: its name suffix and the commands its create and delete run."""

    suffix: str
    create: str
    delete: str
    #: Outputs kept encrypted in the state.
    secret_outputs: tuple[str, ...] = ()


def bootstrap_steps(args: ClusterBootstrapArgs, stack: str) -> list[HostStep]:
    """The steps in order, each run after the one before it. A delete undoes its step only at the cleanup level that
    asks for it (`reset_on_destroy`, `remove_mirror_on_destroy`); otherwise it only reports what is kept."""
    steps = [
        HostStep(
            "host-preflight",
            script("host-preflight.sh"),
            script("host-preflight.sh", "--undo")
            if args.reset_on_destroy
            else keep("swap off, kernel modules and sysctls", "aim:cleanup all removes their files"),
        ),
        HostStep(
            "containerd",
            script("containerd-config.sh"),
            keep("the containerd config.toml (SystemdCgroup, registry config_path)", "other workloads may use it"),
        ),
    ]
    if args.registry_port is not None:
        port = str(args.registry_port)
        steps.append(
            HostStep(
                "registry-mirror",
                script("containerd-registry-mirror.sh", port),
                script("containerd-registry-mirror.sh", "--remove", port)
                if args.remove_mirror_on_destroy
                else keep(f"containerd mirror for localhost:{port}", "aim:cleanup registry or all removes it"),
            )
        )
    init = ["--stack", stack, "--pod-cidr", args.pod_cidr, "--kubeconfig", args.kubeconfig_path, "--single-node"]
    reset = ["--stack", stack, "--kubeconfig", args.kubeconfig_path]
    if args.local_path_dir and args.local_path_namespace:
        reset += ["--local-path-dir", args.local_path_dir, "--local-path-namespace", args.local_path_namespace]
    steps.append(
        HostStep(
            "kubeadm",
            script("kubeadm-init.sh", *init),
            script("kubeadm-reset.sh", *reset)
            if args.reset_on_destroy
            else keep("the kubeadm cluster", "aim:cleanup all resets it"),
            # kubeadm prints a bootstrap join token; whatever reaches the outputs is kept encrypted in the state.
            secret_outputs=("stdout", "stderr"),
        )
    )
    return steps


class ClusterBootstrap(pulumi.ComponentResource):
    """Host preflight → containerd for kubeadm → the local registry as containerd mirror → `kubeadm init`.

    Each step is a `command.local.Command` whose create runs a script from `scripts/bootstrap/` (each is idempotent
    and has a `--check` dry run), so a second `pulumi up` changes nothing and any change of inputs simply re-runs
    it. No step has triggers: a replacement would run the old step's delete, and for `kubeadm init` that is a
    cluster reset. What a delete does depends on `aim:cleanup`; below `all` it only reports what is kept.
    Both kubeadm scripts get the stack's id: init records it in a marker on the host when it creates the cluster and
    refuses a cluster without it; the reset removes only what a marker proves this stack created.
    """

    kubeconfig: pulumi.Output[str]
    cluster: command.local.Command

    def __init__(self, name: str, args: ClusterBootstrapArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:ClusterBootstrap", name, None, opts)
        commands: list[command.local.Command] = []
        for step in bootstrap_steps(args, stack_id()):
            commands.append(
                local_command(
                    f"{name}-{step.suffix}",
                    self,
                    create=step.create,
                    delete=step.delete,
                    depends_on=[*commands[-1:]],  # the step before
                    secret_outputs=list(step.secret_outputs) or None,
                )
            )
        self.cluster = commands[-1]  # kubeadm
        # Known once the cluster step has run: the Kubernetes provider (and so every object) waits for it.
        self.kubeconfig = self.cluster.id.apply(lambda _: args.kubeconfig_path)
        self.register_outputs({"kubeconfig": self.kubeconfig})
