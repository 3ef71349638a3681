"""Every alert's `runbook` annotation names a runbook paragraph of README.md, and every paragraph an alert."""

from __future__ import annotations

import re

from aim_infra.planning.monitoring import rules
from tests.planning.monitoring.support import ROOT, STACKS, stack_rules

README = ROOT / "README.md"


def runbook_text() -> str:
    """README's "Runbooks" part: from its heading to the next second-level section."""
    text = README.read_text(encoding="utf-8")
    return text.split("#### Runbooks", 1)[1].split("\n## ", 1)[0]


def headings() -> list[str]:
    return re.findall(r"^##### (\S+)\s*$", runbook_text(), flags=re.MULTILINE)


def test_every_alert_has_a_runbook_paragraph_and_every_paragraph_an_alert() -> None:
    anchors = headings()
    assert len(anchors) == len(set(anchors)), "duplicate runbook headings"
    for stack in STACKS:
        alerts = stack_rules(stack).alert_group()["rules"]
        runbooks = [alert["annotations"]["runbook"] for alert in alerts]
        assert sorted(runbooks) == sorted(anchors), stack
    assert set(rules.RUNBOOKS.values()) == set(anchors)


def test_runbook_paragraphs_say_what_it_means_what_to_check_and_what_to_do() -> None:
    sections = re.split(r"^##### ", runbook_text(), flags=re.MULTILINE)[1:]
    for section in sections:
        anchor = section.split("\n", 1)[0].strip()
        for part in ("**Means:**", "**Check:**", "**Do:**"):
            assert part in section, f"{anchor}: no {part}"
        assert "kubectl" in section or "PromQL" in section, f"{anchor}: no command to run"
