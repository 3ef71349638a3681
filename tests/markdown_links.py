"""Markdown as GitHub renders it, for the doc tests: heading anchors and the relative links of a page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
#: [text](target) or [text](target "title"); images too (a leading `!` changes nothing about the target).
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
#: A code span: matching backtick runs, over at most single line breaks (a blank line ends the paragraph).
CODE_SPAN = re.compile(r"(`+)(?:(?!\1)[^\n]|\n(?!\n))+?\1")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def outside_fences(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks (``` or ~~~)."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        marker = re.match(r"`{3,}|~{3,}", stripped)
        if marker:
            if fence is None:
                fence = marker.group(0)
            elif stripped.startswith(fence):
                fence = None
            continue
        if fence is None:
            lines.append((number, line))
    return lines


def prose_lines(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code, with inline code spans blanked out (a link inside code is no link). A code span may
    run over a line break within its paragraph, so spans are found in the whole text, not line by line."""
    kept = dict(outside_fences(text))
    lines = text.splitlines()
    prose = "\n".join(kept.get(number, "") for number in range(1, len(lines) + 1))
    prose = CODE_SPAN.sub(lambda span: re.sub(r"[^\n]", " ", span.group(0)), prose)
    return [(number, line) for number, line in enumerate(prose.split("\n"), start=1) if number in kept]


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup dropped, lower case, punctuation but '-' and '_' removed, each
    space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a page; a repeated heading gets GitHub's -1, -2, … suffixes."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in outside_fences(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match is None:
            continue
        base = github_anchor(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


@dataclass(frozen=True)
class Link:
    page: Path
    line: int
    target: str

    @property
    def file(self) -> Path:
        """The file the link points at (the page itself for `#anchor`)."""
        path = self.target.split("#", 1)[0]
        return self.page if not path else (self.page.parent / path).resolve()

    @property
    def anchor(self) -> str | None:
        return self.target.split("#", 1)[1] if "#" in self.target else None


def relative_links(page: Path) -> list[Link]:
    """Every link of a page that points into the repository (not http(s):, mailto: or another scheme)."""
    links = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        for match in LINK.finditer(line):
            target = match.group(1)
            if not EXTERNAL.match(target):
                links.append(Link(page, number, target))
    return links


def problem(link: Link, root: Path) -> str | None:
    """Why a relative link does not resolve, or None when it does."""
    where = f"{link.page.relative_to(root)}:{link.line}: ({link.target})"
    if not link.file.exists():
        return f"{where}: no such file"
    if root not in (link.file, *link.file.parents):
        return f"{where}: outside the repository"
    if link.anchor is not None:
        if link.file.suffix != ".md" or link.file.is_dir():
            return f"{where}: an anchor into a file that is no markdown page"
        if link.anchor not in anchors(link.file):
            return f"{where}: {link.file.relative_to(root)} has no heading #{link.anchor}"
    return None
