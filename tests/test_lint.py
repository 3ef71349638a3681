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


def test_every_module_starts_with_a_one_line_docstring() -> None:
    for path in [*(ROOT / "aim_infra").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        if path.name == "__init__.py" and not path.read_text().strip():
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, f"{path} has no module docstring"


#: Longer functions need a reason: a line `# Long: …` in the comment block right above their `def` (or decorators).
MAX_FUNCTION_LINES = 60


def long_functions(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function longer than MAX_FUNCTION_LINES with no `# Long:` reason."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
        comments = []
        row = first - 2
        while row >= 0 and lines[row].strip().startswith("#"):
            comments.append(lines[row].strip())
            row -= 1
        reason = any(comment.startswith("# Long:") for comment in comments)
        if length > MAX_FUNCTION_LINES and not reason:
            found.append((node.name, node.lineno, length))
    return found


def test_no_function_is_longer_than_60_lines_without_a_reason() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{line} {name} is {length} lines"
        for path in sorted((ROOT / "aim_infra").rglob("*.py"))
        for name, line, length in long_functions(path.read_text(encoding="utf-8"))
    ]
    assert problems == [], "split these, or say why not in a `# Long: …` comment above the def:\n" + "\n".join(problems)


def test_the_length_rule_counts_lines_and_reads_the_reason() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    assert [name for name, _, _ in long_functions(f"def f():\n{body}")] == ["f"]
    assert long_functions(f"# Long: one table, read top to bottom\ndef f():\n{body}") == []
    assert long_functions(f"# Long: one table,\n# read top to bottom\ndef f():\n{body}") == []
    assert long_functions(f"# Long: a reason\n\ndef f():\n{body}") != []  # not right above the def
    assert long_functions(f"def f():\n{body[: -len(body.splitlines()[-1]) - 1]}") == []
