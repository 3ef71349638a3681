"""AimImage: build docker/Dockerfile on a pinned ROCm vLLM base, push it, and expose its digest reference."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker as docker

from aim_infra.common.errors import AimError
from aim_infra.stack.components.host import local_command, python_module

#: The Dockerfile, relative to the build context (the repository root).
DOCKERFILE = "docker/Dockerfile"
#: Glob characters: a COPY source must name one file, so the tag covers exactly what the image holds.
_GLOB = re.compile(r"[*?\[]")


def _instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined and comment lines dropped."""
    instructions: list[str] = []
    pending = ""
    for line in dockerfile.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments may sit inside a continued instruction; they never continue one
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        instructions.append(pending + stripped)
        pending = ""
    if pending:
        instructions.append(pending)
    return instructions


def copied_files(root: Path, dockerfile: str = DOCKERFILE) -> list[str]:
    """The context files the Dockerfile's COPY instructions take into the image, in order, each one file.

    Directories, globs, ADD and the JSON form are refused with one line: they would let a file the tag does not
    cover (or one the pod never runs, such as Pulumi-only code) into the image."""
    files: list[str] = []
    for instruction in _instructions((root / dockerfile).read_text()):
        keyword, _, rest = instruction.partition(" ")
        if keyword.upper() == "ADD":
            raise AimError(f"{dockerfile}: use COPY, not ADD (`{instruction[:60]}`): the image tag covers COPY sources")
        if keyword.upper() != "COPY":
            continue
        words = shlex.split(rest)
        if any(word.startswith("--from") for word in words):
            continue  # from another build stage, not from the context
        paths = [word for word in words if not word.startswith("--")]
        if len(paths) < 2 or rest.lstrip().startswith("["):
            raise AimError(f"{dockerfile}: `{instruction[:60]}`: write COPY <file>... <destination> (no JSON form)")
        for source in paths[:-1]:
            if _GLOB.search(source) or ".." in Path(source).parts or not (root / source).is_file():
                raise AimError(
                    f"{dockerfile}: COPY source {source!r} is not one file of the build context: name the files the "
                    "pod runs one by one, so the image tag covers exactly them"
                )
            files.append(source)
    return files


def content_tag(root: Path, build_args: Mapping[str, str], dockerfile: str = DOCKERFILE) -> str:
    """A tag derived from exactly the image's inputs: the build arguments (the base image among them), the Dockerfile
    and the files it copies. An unchanged image re-uses its tag (no pod restarts for a change to Pulumi-side code);
    a changed one never overwrites a tag a running pod still refers to."""
    digest = hashlib.sha256(json.dumps(sorted(build_args.items())).encode())
    for path in [dockerfile, *sorted(set(copied_files(root, dockerfile)))]:
        content = (root / path).read_bytes()
        digest.update(f"\0{path}\0{len(content)}\0".encode())
        digest.update(content)
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
        build_args = {"BASE_IMAGE": args.base_image}
        tag = content_tag(args.context, build_args)
        self.image = docker.Image(
            name,
            image_name=f"{args.repository}:{tag}",
            build=docker.DockerBuildArgs(
                context=str(args.context),
                dockerfile=str(args.context / DOCKERFILE),
                args=build_args,
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
                    "aim_infra.host.image_cleanup",
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
