"""README.md and docs/: every relative link resolves (file, and heading when given), and the README stays short."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.markdown_links import Link, anchors, github_anchor, problem, relative_links

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 220


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    problems = [found for link in relative_links(page) if (found := problem(link, ROOT))]
    assert problems == [], "\n".join(problems)


def test_readme_stays_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail to docs/ (at most {README_MAX_LINES})"


def test_readme_links_every_docs_page() -> None:
    linked = {link.file for link in relative_links(README)}
    assert DOCS, "docs/ has no pages"
    assert [page.name for page in DOCS if page.resolve() not in linked] == []


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_every_docs_page_opens_with_a_title_and_a_one_line_purpose(page: Path) -> None:
    paragraphs = page.read_text(encoding="utf-8").split("\n\n")
    assert paragraphs[0].startswith("# ") and "\n" not in paragraphs[0].strip(), f"{page.name}: no title first"
    purpose = paragraphs[1].strip()
    assert purpose and not purpose.startswith(("#", "-", "|", "`", ">")), f"{page.name}: no purpose line"
    assert len(purpose.splitlines()) <= 2, f"{page.name}: the purpose is one sentence, not a paragraph"


def test_anchors_follow_github_rules() -> None:
    assert github_anchor("Checking the estimate after deploy (`aim:benchmark`)") == (
        "checking-the-estimate-after-deploy-aimbenchmark"
    )
    assert github_anchor("Data files (`recipes/`)") == "data-files-recipes"
    assert github_anchor("Guardrails: the policy pack (`policy/`)") == "guardrails-the-policy-pack-policy"
    assert github_anchor("AIM Engine / vLLM serving") == "aim-engine--vllm-serving"
    assert github_anchor("aim-engine_down") == "aim-engine_down"


def test_the_checker_catches_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n## Same\n\n## Same\n\n```\n## not a heading\n[in code](missing.md)\n```\n"
        "[ok](#same-1) [`code` text](../README.md) [gone](#not-a-heading) [file](missing.md) "
        "[web](https://example.com/x.md) `[span](nowhere.md)` `a span\nover two lines [no](link.md)` [after](#same)\n",
        encoding="utf-8",
    )
    (tmp_path / "README.md").write_text("# Readme\n", encoding="utf-8")
    assert anchors(page) == {"page", "same", "same-1"}
    links = relative_links(page)
    assert [link.target for link in links] == ["#same-1", "../README.md", "#not-a-heading", "missing.md", "#same"]
    assert [problem(link, tmp_path) is None for link in links] == [True, True, False, False, True]
    assert problem(Link(page, 1, "../README.md#nope"), tmp_path) is not None
