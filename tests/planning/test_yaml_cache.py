"""The parsed-YAML cache: same data as parsing, keyed by content, and ignored when broken or unwritable."""

from __future__ import annotations

from pathlib import Path

import pytest

from aim_infra.common.errors import AimError
from aim_infra.planning import yamlio


def test_second_read_comes_from_the_cache_and_equals_the_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIM_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "data.yaml"
    source.write_text("a: 1\nb: [x, {c: true}]\n")
    first = yamlio.read_yaml(source)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    monkeypatch.setattr(yamlio.yaml, "load", lambda *a, **k: pytest.fail("parsed again instead of using the cache"))
    assert yamlio.read_yaml(source) == first == {"a": 1, "b": ["x", {"c": True}]}


def test_changed_content_is_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIM_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "data.yaml"
    source.write_text("a: 1\n")
    assert yamlio.read_yaml(source) == {"a": 1}
    source.write_text("a: 2\n")
    assert yamlio.read_yaml(source) == {"a": 2}


def test_a_broken_cache_entry_or_unwritable_cache_falls_back_to_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("AIM_CACHE_DIR", str(cache))
    source = tmp_path / "data.yaml"
    source.write_text("a: 1\n")
    yamlio.read_yaml(source)
    for entry in cache.glob("*.json"):
        entry.write_text("{not json")
    assert yamlio.read_yaml(source) == {"a": 1}
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    monkeypatch.setenv("AIM_CACHE_DIR", str(blocked))
    assert yamlio.read_yaml(source) == {"a": 1}


def test_syntax_errors_are_never_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIM_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "bad.yaml"
    source.write_text("a: [\n")
    for _ in range(2):
        with pytest.raises(AimError, match=r"bad\.yaml: line"):
            yamlio.read_yaml(source)
    assert not list((tmp_path / "cache").glob("*.json"))
