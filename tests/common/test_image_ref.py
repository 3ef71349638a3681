"""Image references split once by Docker's rules, and every former split in the code gives the same answers."""

from __future__ import annotations

import pytest

from aim_infra.common.image_ref import ImageRef
from aim_infra.host import image_cleanup
from aim_infra.stack import settings
from aim_infra.stack.components import guardrails

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "path", "tag", "digest"),
    [
        # Docker Hub short names: no registry here (nothing is rewritten to docker.io/library)
        ("aim-engine", None, "aim-engine", None, None),
        ("aim-engine:1", None, "aim-engine", "1", None),
        ("org/aim-engine:latest", None, "org/aim-engine", "latest", None),
        ("rocm/vllm:rocm7.14.0_cdna_ubuntu24.04", None, "rocm/vllm", "rocm7.14.0_cdna_ubuntu24.04", None),
        ("docker.io/library/ubuntu:24.04", "docker.io", "library/ubuntu", "24.04", None),
        # registries, with and without a port: a `:` before the last `/` is a port, never a tag
        ("registry.example.com/aim/aim-engine:1.0", "registry.example.com", "aim/aim-engine", "1.0", None),
        ("reg.example.com:5000/team/aim:1.0", "reg.example.com:5000", "team/aim", "1.0", None),
        ("localhost:5000/x:tag", "localhost:5000", "x", "tag", None),
        ("localhost/aim-engine:1", "localhost", "aim-engine", "1", None),
        ("127.0.0.1:5001/team/aim-engine:v1.2_3", "127.0.0.1:5001", "team/aim-engine", "v1.2_3", None),
        ("localhost:5000/aim-engine", "localhost:5000", "aim-engine", None, None),
        # one component is a repository, so its `:` is a tag, as Docker reads `localhost:5000`
        ("localhost:5000", None, "localhost", "5000", None),
        ("localhost", None, "localhost", None, None),
        # digests, alone and after a tag
        (f"aim@{DIGEST}", None, "aim", None, DIGEST),
        (f"localhost:5000/aim-engine@{DIGEST}", "localhost:5000", "aim-engine", None, DIGEST),
        (f"reg.example.com:5000/team/aim:1.0@{DIGEST}", "reg.example.com:5000", "team/aim", "1.0", DIGEST),
        # odd input still splits, never raises: each caller validates the parts it needs
        ("", None, "", None, None),
        ("aim-engine:", None, "aim-engine", "", None),
        ("aim@", None, "aim", None, ""),
        (":tag", None, "", "tag", None),
    ],
)
def test_parts(text: str, registry: str | None, path: str, tag: str | None, digest: str | None) -> None:
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.path, ref.tag, ref.digest) == (registry, path, tag, digest)
    assert ref.repository == (f"{registry}/{path}" if registry else path)
    assert str(ref) == text


def test_a_first_component_is_a_registry_only_by_its_dot_colon_or_localhost() -> None:
    assert ImageRef.parse("team/aim:1").registry is None
    assert ImageRef.parse("my.team/aim:1").registry == "my.team"
    assert ImageRef.parse("team:80/aim:1").registry == "team:80"
    assert ImageRef.parse("localhostx/aim:1").registry is None


# --------------------------------------------------------------------------------------------------------------------
# the call sites that split references themselves before, against those splits, kept here as the oracle


def old_guardrails_repository(reference: str) -> str:
    name = reference.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def old_settings_pinned(reference: str) -> bool:
    if "@sha256:" in reference:
        return True
    last = reference.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] != "latest"


def old_plan_repository(image_name: str) -> str:
    return image_name.rsplit(":", 1)[0]


def old_image_ls_split(line: str) -> tuple[str, str]:
    name, _, tag = line.strip().rpartition(":")
    return name, tag


#: Every reference the guardrails, settings, image_cleanup and plan tests use, and the defaults they read.
USED = [
    f"reg.example.com:5000/team/aim:1.0@{DIGEST}",
    f"localhost:5000/aim-engine@{DIGEST}",
    "localhost:5000/aim-engine",
    "aim:1.0",
    "rocm/vllm:latest",
    "rocm/vllm",
    "rocm/vllm:pinned",
    "rocm/vllm:other",
    "ghcr.io/x/aim:latest",
    "ghcr.io/x/aim:1.0",
    f"ghcr.io/x/aim@{DIGEST}",
    "reg.example.com/aim/engine",
    settings.DEFAULT_BASE_IMAGE,
    settings.DEFAULT_PROXY_IMAGE,
    "localhost:5000/aim-engine:1a2b3c4d5e6f",
    "127.0.0.1:5001/team/aim-engine:v1.2_3",
    "registry.example.com/aim/aim-engine:1.0",
    "registry.example.com:5000/aim-engine:1",
    "aim-engine:1",
    "org/aim-engine:latest",
    "localhost/aim-engine:1",
    "127.0.0.2:5000/aim:1",
    "localhost:5000/a__b/c--d.e:T",
]


@pytest.mark.parametrize("reference", USED)
def test_guardrails_repository_is_unchanged(reference: str) -> None:
    assert guardrails.image_repository(reference) == old_guardrails_repository(reference)


#: What the settings' validator lets through to the pinned check: references IMAGE_REF admits, or none at all.
ADMITTED = [reference for reference in USED if settings.IMAGE_REF.fullmatch(reference)]


@pytest.mark.parametrize("reference", [*ADMITTED, ""])
def test_settings_pinned_is_unchanged(reference: str) -> None:
    assert settings._pinned(reference) is old_settings_pinned(reference)


def test_the_pinned_check_sees_most_of_the_references() -> None:
    assert len(ADMITTED) >= len(USED) - 2
    assert [settings._pinned(r) for r in ("rocm/vllm", "rocm/vllm:latest", "rocm/vllm:1", f"x:latest@{DIGEST}")] == [
        False,
        False,
        True,
        True,
    ]


@pytest.mark.parametrize("reference", [r for r in USED if ImageRef.parse(r).tag and not ImageRef.parse(r).digest])
def test_the_plans_image_repository_is_unchanged_for_a_tagged_name(reference: str) -> None:
    # docker.Image's imageName always carries the content tag (stack/components/image.py)
    assert ImageRef.parse(reference).repository == old_plan_repository(reference)


def test_an_untagged_name_keeps_its_registry_port() -> None:
    # the old split took a port for a tag
    assert old_plan_repository("localhost:5000/aim-engine") == "localhost"
    assert ImageRef.parse("localhost:5000/aim-engine").repository == "localhost:5000/aim-engine"


@pytest.mark.parametrize("reference", [r for r in USED if ImageRef.parse(r).tag and not ImageRef.parse(r).digest])
def test_image_cleanup_parses_as_before(reference: str) -> None:
    ref = image_cleanup.parse_image(reference)
    repository, tag = old_image_ls_split(reference)
    first, _, rest = repository.partition("/")
    domain = first if rest and ("." in first or ":" in first or first == "localhost") else None
    assert ref == image_cleanup.Reference(repository, domain, rest if domain else repository, tag)


@pytest.mark.parametrize(
    "line",
    [
        "localhost:5000/aim-engine:1a2b3c4d5e6f",
        "aim-engine:1",
        "org/aim-engine:latest",
        "<none>:<none>",
        "localhost:5000/aim-engine:<none>",
        "registry.example.com:5000/team/aim:v1",
    ],
)
def test_docker_image_ls_lines_split_as_before(line: str) -> None:
    ref = ImageRef.parse(line)
    assert (ref.repository, ref.tag) == old_image_ls_split(line)
