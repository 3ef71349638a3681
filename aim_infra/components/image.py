"""AimImage: build docker/Dockerfile on a pinned ROCm vLLM base, push it, and expose its digest reference."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker as docker

from .host import local_command, python_module

#: What goes into the image: a change to any of these files gives a new tag (and a new digest).
IMAGE_SOURCES = ("docker", "aim_infra", "recipes")
IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def content_tag(root: Path, base_image: str) -> str:
    """A tag derived from the image's inputs, so an unchanged tree re-uses its image and a changed one never
    overwrites a tag a running pod still refers to."""
    digest = hashlib.sha256(base_image.encode())
    for folder in IMAGE_SOURCES:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and not IGNORED_PARTS & set(path.parts) and path.suffix != ".pyc":
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class AimImageArgs:
    repository: str
    base_image: str
    context: Path
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    #: cleanup `images` and above: `pulumi destroy` removes the image from the local Docker engine and the registry.
    remove_on_destroy: bool = False
    #: The local registry's container, garbage-collected after the image's manifest is deleted from it.
    registry_container: pulumi.Input[str] | None = None
    #: The repository is the stack's own (in its local registry): remove earlier builds' tags of it too.
    owns_repository: bool = False


class AimImage(pulumi.ComponentResource):
    """The AIM Engine image: the base vLLM image plus our recipe engine, preflight check and model downloader."""

    image: docker.Image
    reference: pulumi.Output[str]

    def __init__(self, name: str, args: AimImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aim:infra:AimImage", name, None, opts)
        tag = content_tag(args.context, args.base_image)
        self.image = docker.Image(
            name,
            image_name=f"{args.repository}:{tag}",
            build=docker.DockerBuildArgs(
                context=str(args.context),
                dockerfile=str(args.context / "docker" / "Dockerfile"),
                args={"BASE_IMAGE": args.base_image},
                platform="linux/amd64",
            ),
            skip_push=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        # The workload pulls by digest: a tag can move, a digest cannot.
        self.reference = self.image.repo_digest
        if args.remove_on_destroy:
            # docker.Image leaves the image behind on delete; this step's delete removes it (best effort: a registry
            # that is already gone is a warning, never a stuck destroy).
            tagged = f"{args.repository}:{tag}"
            delete = pulumi.Output.all(self.reference, args.registry_container).apply(
                lambda values: python_module(
                    "aim_infra.image_cleanup",
                    "--image",
                    tagged,
                    "--digest",
                    str(values[0]).rsplit("@", 1)[-1],
                    *(["--registry-container", str(values[1])] if values[1] else []),
                    *(["--all-tags"] if args.owns_repository else []),
                )
            )
            local_command(
                f"{name}-cleanup",
                self,
                create=f"echo 'pulumi destroy will remove {tagged} (aim:cleanup)'",
                delete=delete,
                depends_on=[self.image, *args.depends_on],
            )
        self.register_outputs({"reference": self.reference, "tag": tag})
