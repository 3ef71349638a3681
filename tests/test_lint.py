"""The code base stays ruff-clean and the recipe engine never imports Pulumi."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff() -> list[str]:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: pip install -r requirements-dev.txt")
    return [found]


def test_ruff_check_is_clean() -> None:
    result = subprocess.run([*ruff(), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_recipe_engine_never_imports_pulumi() -> None:
    for path in (ROOT / "aim_infra" / "planning").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0].startswith("pulumi") for n in names), f"{path} imports {names}"


def test_every_module_starts_with_a_one_line_docstring() -> None:
    for path in [*(ROOT / "aim_infra").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        if path.name == "__init__.py" and not path.read_text().strip():
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, f"{path} has no module docstring"
