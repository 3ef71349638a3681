"""The image tag covers exactly the image's inputs: Pulumi-side code changes no tag, a module the pod runs does."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from aim_infra.common.errors import AimError
from aim_infra.stack.components.image import DOCKERFILE, content_tag, copied_files

ROOT = Path(__file__).resolve().parents[2]
BUILD_ARGS = {"BASE_IMAGE": "rocm/vllm:pinned"}
#: The modules the pod runs: the entrypoint's preflight and the download Job's program.
POD_ENTRY_MODULES = ("aim_infra.pod.preflight", "aim_infra.pod.download")


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """A copy of the build context's sources (what content_tag reads), safe to edit."""
    copy = tmp_path / "context"
    for folder in ("docker", "aim_infra", "recipes"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


def _module_file(root: Path, module: str) -> Path | None:
    for candidate in (root / f"{module.replace('.', '/')}.py", root / module.replace(".", "/") / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_closure(root: Path, modules: tuple[str, ...]) -> set[str]:
    """Every aim_infra file the given modules import, directly or not, at module level or inside a function."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        path = _module_file(root, module)
        if path is None or str(path.relative_to(root)) in seen:
            continue
        seen.add(str(path.relative_to(root)))
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *([node.module] if node.module else [])])
                todo += [target, *(f"{target}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
        todo = [name for name in todo if name.startswith("aim_infra")]
        # a package's __init__ runs before any of its modules
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
    return seen


def test_the_image_holds_every_module_the_pod_imports_and_no_pulumi_code() -> None:
    copied = set(copied_files(ROOT))
    needed = imported_closure(ROOT, POD_ENTRY_MODULES)
    assert needed - copied == set(), "add these to the COPY lines of docker/Dockerfile and to .dockerignore"
    assert "aim_infra/pod/download.py" in needed and "aim_infra/planning/hardware.py" in needed
    assert not [name for name in copied if name.startswith("aim_infra/stack/components/")]
    assert "recipes/gpus.yaml" in copied and "docker/aim-entrypoint.sh" in copied


def test_dockerignore_admits_exactly_the_copied_files() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    admitted = {line.removeprefix("!") for line in patterns[1:]}
    assert all(line.startswith("!") for line in patterns[1:])
    assert admitted == {DOCKERFILE, *copied_files(ROOT)}


def test_pulumi_side_code_and_unused_data_change_no_tag(context: Path) -> None:
    before = content_tag(context, BUILD_ARGS)
    assert before == content_tag(ROOT, BUILD_ARGS)  # the copy is faithful
    engine = context / "aim_infra/stack/components/engine.py"
    engine.write_text(engine.read_text() + "\n# a Pulumi-only edit\n")
    (context / "aim_infra/stack/settings.py").write_text("# rewritten\n")
    (context / "recipes/models.yaml").write_text("{}\n")  # read by the recipe engine, not by the pod
    (context / "aim_infra/new_module.py").write_text("x = 1\n")
    assert content_tag(context, BUILD_ARGS) == before


@pytest.mark.parametrize(
    "edited",
    ["aim_infra/pod/download.py", "aim_infra/planning/hardware.py", "recipes/gpus.yaml", "docker/aim-entrypoint.sh"],
)
def test_an_input_of_the_image_changes_the_tag(context: Path, edited: str) -> None:
    before = content_tag(context, BUILD_ARGS)
    path = context / edited
    path.write_bytes(path.read_bytes() + b"\n# changed\n")
    assert content_tag(context, BUILD_ARGS) != before


def test_the_dockerfile_and_build_arguments_change_the_tag(context: Path) -> None:
    before = content_tag(context, BUILD_ARGS)
    assert content_tag(context, {"BASE_IMAGE": "rocm/vllm:other"}) != before
    assert content_tag(context, {**BUILD_ARGS, "SOURCE_REVISION": "abc"}) != before
    dockerfile = context / DOCKERFILE
    dockerfile.write_text(dockerfile.read_text().replace("HF_HUB_DISABLE_PROGRESS_BARS=1", "X=1"))
    assert content_tag(context, BUILD_ARGS) != before


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("COPY aim_infra/ /opt/aim/aim_infra/", "is not one file of the build context"),
        ("COPY aim_infra/*.py /opt/aim/aim_infra/", "is not one file of the build context"),
        ("COPY ../secrets /x", "is not one file of the build context"),
        ("ADD recipes/gpus.yaml /x", "use COPY, not ADD"),
        ('COPY ["recipes/gpus.yaml", "/x"]', "no JSON form"),
    ],
)
def test_a_copy_the_tag_cannot_cover_is_refused_in_one_line(context: Path, line: str, says: str) -> None:
    dockerfile = context / DOCKERFILE
    dockerfile.write_text(dockerfile.read_text() + f"\n{line}\n")
    with pytest.raises(AimError) as error:
        content_tag(context, BUILD_ARGS)
    assert says in str(error.value) and "\n" not in str(error.value)
