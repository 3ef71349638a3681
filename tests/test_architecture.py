"""The package's rooms and what each may import, enforced on the source (docs/architecture.md shows the same table).

Code is split by where it runs: the pure planning core, the Pulumi side, programs pulumi-command runs on the host and
programs that run in the AIM image. Every `import` in aim_infra is checked against its room's allowance, including
imports inside functions: a lazy import still has to be installed where the code runs.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "aim_infra"
ARCHITECTURE_DOC = ROOT / "docs" / "architecture.md"


@dataclass(frozen=True)
class Room:
    """One package and what its modules may import besides the standard library."""

    package: str
    #: aim_infra packages or modules (a prefix matches everything below it).
    internal: tuple[str, ...]
    #: Top-level names of third-party distributions.
    third_party: tuple[str, ...] = ()
    #: Standard-library modules this room must not use (I/O the room has no business doing).
    forbidden_stdlib: tuple[str, ...] = ()
    #: Third-party names allowed only inside a function, never at module level.
    lazy_third_party: tuple[str, ...] = ()


NETWORK_AND_PROCESSES = ("subprocess", "socket", "ssl", "urllib", "http", "asyncio", "multiprocessing", "ftplib")
PULUMI = ("pulumi", "pulumi_kubernetes", "pulumi_command", "pulumi_docker", "pulumi_random")
#: The planning modules the AIM image copies for the pod's GPU check (docker/Dockerfile).
POD_PLANNING = tuple(
    f"aim_infra.planning.{name}" for name in ("detect", "errors", "hardware", "paths", "precision", "yamlio")
)

#: Most specific package first: a module belongs to the first room whose package prefixes it.
ROOMS = (
    Room(
        "aim_infra.common",
        internal=("aim_infra.common",),
        lazy_third_party=("huggingface_hub", "kubernetes"),
    ),
    Room(
        "aim_infra.planning",
        # Of common, only the names and the error class: the rest of it runs tools and talks to APIs.
        internal=("aim_infra.common.contract", "aim_infra.common.errors", "aim_infra.planning"),
        third_party=("pydantic", "yaml", "numpy", "scipy"),
        forbidden_stdlib=NETWORK_AND_PROCESSES,
    ),
    Room(
        "aim_infra.pod",
        internal=("aim_infra.common", "aim_infra.pod", *POD_PLANNING),
        # pydantic and PyYAML: the planning modules above need them, and every vLLM image ships both
        # (preflight --deps-only checks it at build time). httpx2: huggingface_hub's own HTTP client.
        third_party=("huggingface_hub", "httpx2", "pydantic", "yaml"),
    ),
    Room(
        "aim_infra.host",
        internal=("aim_infra.common", "aim_infra.host", "aim_infra.planning"),
        third_party=("pydantic", "yaml", "kubernetes"),
    ),
    Room(
        # Pure builders: plain inputs in, plain dict manifests out, testable without Pulumi.
        "aim_infra.stack.manifests",
        internal=(
            "aim_infra.common",
            "aim_infra.planning",
            "aim_infra.stack.manifests",
            "aim_infra.stack.settings",
            "aim_infra.stack.components.api_proxy",
        ),
        third_party=("pydantic", "yaml"),
    ),
    Room(
        "aim_infra.stack",
        internal=("aim_infra.common", "aim_infra.planning", "aim_infra.stack"),
        third_party=(*PULUMI, "kubernetes", "pydantic", "yaml", "huggingface_hub", "httpx2"),
    ),
    Room(
        # The front door `python -m aim_infra`: the command line over planning and the offline plan.
        "aim_infra",
        internal=(
            "aim_infra.common",
            "aim_infra.planning",
            "aim_infra.stack",
            "aim_infra.cli",
            "aim_infra.cli_workload",
        ),
        third_party=("pydantic",),
    ),
)
FRONT_DOOR = {"aim_infra", "aim_infra.__main__", "aim_infra.cli", "aim_infra.cli_workload"}
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports, absolute
    line: int
    top_level: bool  # at module level (or under `if TYPE_CHECKING` / try at module level), not inside a function


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[Import]:
    """Every import in a module, relative ones resolved, each `from X import y` also as `X.y` when y is a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function |= {id(child) for child in ast.walk(node)}
    found: list[Import] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` imports the module (the package's __init__ holds only a docstring,
            # which test_package_inits_import_nothing keeps true); a name from the package imports the package.
            modules = [f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}")]
            targets = modules if len(modules) == len(node.names) else [base, *modules]
        found += [Import(name, target, node.lineno, id(node) not in in_function) for target in targets]
    return found


def _is_module(dotted: str) -> bool:
    if not dotted.startswith("aim_infra"):
        return False
    relative = Path(*dotted.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def room_of(module: str) -> Room:
    for room in ROOMS:
        if module == room.package or module.startswith(room.package + "."):
            return room
    raise AssertionError(f"{module} is in no room")


def _allowed_internal(target: str, room: Room) -> bool:
    return any(target == allowed or target.startswith(allowed + ".") for allowed in room.internal)


def violations_of(found: Import) -> str | None:
    room = room_of(found.module)
    top = found.target.split(".")[0]
    where = f"{found.module}:{found.line} imports {found.target}"
    if top == "aim_infra":
        if found.target == "aim_infra" or _allowed_internal(found.target, room):
            return None
        return f"{where}: {room.package} may import only {', '.join(room.internal)}"
    if top in STDLIB:
        if top in room.forbidden_stdlib:
            return f"{where}: {room.package} does no network or process I/O"
        return None
    if top in room.third_party:
        return None
    if top in room.lazy_third_party:
        return None if not found.top_level else f"{where}: import {top} inside the function that needs it"
    allowed = ", ".join(room.third_party) or "none"
    return f"{where}: third-party packages allowed in {room.package}: {allowed}"


def all_modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def test_every_module_is_in_a_room() -> None:
    stray = []
    for path in all_modules():
        name = module_name(path)
        if room_of(name).package == "aim_infra" and name not in FRONT_DOOR:
            stray.append(name)
    assert stray == [], "put these in common, planning, stack, host or pod (or add them to the front door on purpose)"


def test_every_import_respects_its_room() -> None:
    problems = [problem for path in all_modules() for found in imports_of(path) if (problem := violations_of(found))]
    assert problems == [], "\n".join(problems)


def test_package_inits_import_nothing() -> None:
    """Every aim_infra package's __init__ is a docstring only: importing one module never drags in its siblings."""
    for path in PACKAGE.rglob("__init__.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert not [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)], path


def test_the_stack_runs_host_and_pod_programs_by_module_name_only() -> None:
    """The stack names host and pod programs in the commands it declares; each named module must exist."""
    named = set()
    for path in (PACKAGE / "stack").rglob("*.py"):
        named |= set(re.findall(r"[\"'](aim_infra\.(?:host|pod)\.\w+)[\"']", path.read_text(encoding="utf-8")))
    assert named, "the stack runs no host or pod program by name: the pattern above no longer matches the code"
    assert [name for name in sorted(named) if not _is_module(name)] == []


@pytest.mark.parametrize(
    ("module", "target", "expected"),
    [
        ("aim_infra.planning.fit", "pulumi", "third-party packages allowed"),
        ("aim_infra.planning.fit", "subprocess", "no network or process I/O"),
        ("aim_infra.planning.fit", "aim_infra.stack.settings", "may import only"),
        ("aim_infra.host.smoke", "aim_infra.stack.cluster", "may import only"),
        ("aim_infra.stack.decide", "aim_infra.host.smoke", "may import only"),
        ("aim_infra.pod.download", "aim_infra.planning.selection", "may import only"),
        ("aim_infra.common.errors", "pydantic", "third-party packages allowed"),
        ("aim_infra.common.kube_api", "kubernetes", "inside the function"),
        ("aim_infra.stack.manifests.engine", "pulumi", "third-party packages allowed"),
    ],
)
def test_the_rules_catch_what_they_forbid(module: str, target: str, expected: str) -> None:
    problem = violations_of(Import(module, target, 1, top_level=True))
    assert problem is not None and expected in problem


def test_lazy_imports_are_allowed_only_where_said() -> None:
    assert violations_of(Import("aim_infra.common.kube_api", "kubernetes", 1, top_level=False)) is None
    assert violations_of(Import("aim_infra.common.errors", "numpy", 1, top_level=False)) is not None


def test_the_architecture_doc_shows_these_rules() -> None:
    """docs/architecture.md's table has one row per room naming exactly the internal and third-party allowances."""
    text = ARCHITECTURE_DOC.read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`aim_infra"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    for room in ROOMS:
        assert room.package in rows, f"docs/architecture.md has no row for `{room.package}`"
        internal, third_party = rows[room.package]
        shown_internal = set(re.findall(r"`(aim_infra[\w.]*)`", internal))
        assert shown_internal == set(room.internal), f"{room.package}: the doc shows {sorted(shown_internal)}"
        shown_third = set(re.findall(r"`(\w+)`", third_party))
        expected = {*room.third_party, *room.lazy_third_party}
        assert shown_third == expected, f"{room.package}: the doc shows third-party {sorted(shown_third)}"
