"""LocalRegistry: a pinned `registry:2` container on 127.0.0.1 whose data lives on a named Docker volume."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from aim_infra.stack.components.host import keep, local_command, script, stack_id

#: The registry image, pinned (the last release of the registry:2 line).
REGISTRY_IMAGE = "registry:2.8.3"
REGISTRY_DATA = "/var/lib/registry"
#: The data volume's label naming the stack that created it: Docker sets labels only at creation, so it proves that
#: this stack made the volume (scripts/bootstrap/registry-volume.sh checks it before use and before removal).
OWNER_LABEL = "aim.stack"


@dataclass(frozen=True)
class LocalRegistryArgs:
    port: int
    #: Keep the data volume (pushed images) on `pulumi destroy`: cleanup below `registry`.
    retain_data: bool = True
    #: Keep the registry:2 image in the local Docker engine on `pulumi destroy`: cleanup below `registry`.
    keep_image: bool = True


class LocalRegistry(pulumi.ComponentResource):
    """An image registry only this host can reach (published on 127.0.0.1), so a single-node cluster's container
    runtime pulls `localhost:<port>/...` over plain HTTP, which containerd allows for localhost."""

    endpoint: str
    container_name: str
    container: docker.Container

    def __init__(self, name: str, args: LocalRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:LocalRegistry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        image = docker.RemoteImage(f"{name}-image", name=REGISTRY_IMAGE, keep_locally=args.keep_image, opts=child)
        # Images survive a replaced container. The container itself always goes on destroy (a kept one would collide
        # with the next `pulumi up` by name); its data volume stays unless cleanup is `registry` or `all`, and even
        # then goes only with the owner label: `docker volume create` of an existing name silently returns that
        # volume, so Pulumi never deletes it itself (retained) and the owner step below decides, before creation
        # (refuse someone else's volume) and on destroy (remove only our own).
        stack = stack_id()
        volume_name = f"{name}-data"
        owner = local_command(
            f"{name}-data-owner",
            self,
            create=script("registry-volume.sh", "--stack", stack, "--claim", volume_name),
            delete=keep(f"docker volume {volume_name} (the registry's data)", "aim:cleanup registry or all removes it")
            if args.retain_data
            else script("registry-volume.sh", "--stack", stack, "--remove", volume_name),
        )
        volume = docker.Volume(
            f"{name}-data",
            name=volume_name,
            labels=[
                docker.VolumeLabelArgs(label="app.kubernetes.io/part-of", value="aim"),
                docker.VolumeLabelArgs(label=OWNER_LABEL, value=stack),
            ],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, depends_on=[owner]),
        )
        self.container = docker.Container(
            name,
            name=name,
            image=image.image_id,
            restart="always",
            must_run=True,
            ports=[docker.ContainerPortArgs(internal=5000, external=args.port, ip="127.0.0.1")],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=REGISTRY_DATA)],
            envs=["REGISTRY_STORAGE_DELETE_ENABLED=true"],
            labels=[docker.ContainerLabelArgs(label="app.kubernetes.io/part-of", value="aim")],
            opts=child,
        )
        self.endpoint = f"localhost:{args.port}"
        self.container_name = name
        self.register_outputs({"endpoint": self.endpoint, "containerId": self.container.id})
