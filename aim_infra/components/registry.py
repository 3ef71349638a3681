"""LocalRegistry: a pinned `registry:2` container on 127.0.0.1 whose data lives on a named Docker volume."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

#: The registry image, pinned (the last release of the registry:2 line).
REGISTRY_IMAGE = "registry:2.8.3"
REGISTRY_DATA = "/var/lib/registry"


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
        # with the next `pulumi up` by name); its data volume stays unless cleanup is `registry` or `all`.
        volume = docker.Volume(
            f"{name}-data",
            name=f"{name}-data",
            labels=[docker.VolumeLabelArgs(label="app.kubernetes.io/part-of", value="aim")],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_data),
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
