"""Load vllm_metrics.yaml: the vLLM V1 metric names rules and dashboards may use, and the removed ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CATALOGUE_FILE = Path(__file__).resolve().with_name("vllm_metrics.yaml")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
KINDS = ("gauges", "counters", "histograms", "info")


@dataclass(frozen=True)
class VllmMetrics:
    """Current metric names by kind, and removed names with what replaced them (None: nothing)."""

    gauges: frozenset[str]
    counters: frozenset[str]
    histograms: frozenset[str]
    info: frozenset[str]
    removed: dict[str, str | None]

    @property
    def current(self) -> frozenset[str]:
        return self.gauges | self.counters | self.histograms | self.info

    def series_names(self) -> frozenset[str]:
        """Every name that appears on /metrics: histograms as their `_bucket`, `_sum` and `_count` series."""
        expanded = {base + suffix for base in self.histograms for suffix in HISTOGRAM_SUFFIXES}
        return self.gauges | self.counters | self.info | frozenset(expanded)

    def is_current(self, name: str) -> bool:
        """A series name of a current metric (a histogram's base name also counts: `histogram_quantile` docs use it)."""
        return name in self.current or name in self.series_names()

    def replacement(self, name: str) -> str | None:
        return self.removed.get(name)


def _names(data: dict[str, Any], key: str, path: Path) -> frozenset[str]:
    values = data.get(key) or []
    if not isinstance(values, list) or not all(isinstance(v, str) and v.startswith("vllm:") for v in values):
        raise ValueError(f"{path}: current.{key} must be a list of vllm: metric names")
    return frozenset(values)


def load_vllm_metrics(path: Path = CATALOGUE_FILE) -> VllmMetrics:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("current"), dict):
        raise ValueError(f"{path}: expected `current:` and `removed:` mappings")
    current = data["current"]
    unknown = set(current) - set(KINDS)
    if unknown:
        raise ValueError(f"{path}: unknown kinds {sorted(unknown)} under current (expected {', '.join(KINDS)})")
    removed: dict[str, str | None] = {}
    for entry in data.get("removed") or []:
        if not isinstance(entry, dict) or not str(entry.get("name", "")).startswith("vllm:"):
            raise ValueError(f"{path}: removed entries need a vllm: `name` (and optional `replacement`)")
        replacement = entry.get("replacement")
        removed[str(entry["name"])] = None if replacement is None else str(replacement)
    metrics = VllmMetrics(
        gauges=_names(current, "gauges", path),
        counters=_names(current, "counters", path),
        histograms=_names(current, "histograms", path),
        info=_names(current, "info", path),
        removed=removed,
    )
    clash = metrics.series_names() & set(removed)
    if clash:
        raise ValueError(f"{path}: listed as current and removed: {sorted(clash)}")
    return metrics


_DEFAULT = load_vllm_metrics()
#: The default catalogue's current metric names (histograms by base name) and removed names, for simple lookups.
CURRENT: frozenset[str] = _DEFAULT.current
REMOVED: frozenset[str] = frozenset(_DEFAULT.removed)
