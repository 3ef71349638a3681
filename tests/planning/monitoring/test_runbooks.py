"""Every alert's `runbook` annotation points at a runbook of docs/monitoring.md, and every runbook at an alert."""

from __future__ import annotations

import re

from aim_infra.planning.monitoring import rules
from tests.markdown_links import anchors
from tests.planning.monitoring.support import ROOT, STACKS, stack_rules

PAGE = ROOT / rules.RUNBOOK_PAGE


def runbook_text() -> str:
    """The page's "Runbooks" section: from its heading to the next second-level section (or the end)."""
    text = PAGE.read_text(encoding="utf-8")
    assert "\n## Runbooks\n" in text, f"{rules.RUNBOOK_PAGE} has no '## Runbooks' section"
    return text.split("\n## Runbooks\n", 1)[1].split("\n## ", 1)[0]


def headings() -> list[str]:
    return re.findall(r"^### (\S+)\s*$", runbook_text(), flags=re.MULTILINE)


def test_the_runbook_page_is_docs_monitoring() -> None:
    assert rules.RUNBOOK_PAGE == "docs/monitoring.md" and PAGE.is_file()


def test_every_alert_has_a_runbook_and_every_runbook_an_alert() -> None:
    runbooks = headings()
    assert runbooks, "no runbook headings"
    assert len(runbooks) == len(set(runbooks)), "duplicate runbook headings"
    page_anchors = anchors(PAGE)
    assert set(runbooks) <= page_anchors, "a runbook heading is not its own anchor"
    expected = sorted(f"{rules.RUNBOOK_PAGE}#{heading}" for heading in runbooks)
    for stack in STACKS:
        alerts = stack_rules(stack).alert_group()["rules"]
        links = [alert["annotations"]["runbook"] for alert in alerts]
        assert sorted(links) == expected, stack
    assert sorted(rules.RUNBOOKS.values()) == expected
    assert set(rules.RUNBOOKS) == {alert["alert"] for alert in stack_rules(STACKS[0]).alert_group()["rules"]}


def test_runbook_paragraphs_say_what_it_means_what_to_check_and_what_to_do() -> None:
    sections = re.split(r"^### ", runbook_text(), flags=re.MULTILINE)[1:]
    assert len(sections) == len(headings())
    for section in sections:
        anchor = section.split("\n", 1)[0].strip()
        for part in ("**Means:**", "**Check:**", "**Do:**"):
            assert part in section, f"{anchor}: no {part}"
        assert "kubectl" in section or "PromQL" in section, f"{anchor}: no command to run"
