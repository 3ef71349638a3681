"""The Grafana dashboards are sound JSON models whose PromQL parses and uses only current vLLM names and aim: rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aim_infra.planning.monitoring import dashboards, metric_catalogue, names

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD_NAMES = sorted(dashboards.DASHBOARDS)

#: Concrete values for the template variables, so that every expression can be handed to promtool as real PromQL.
VARIABLE_VALUES = {
    "namespace": "aim-serving",
    "recipe": "llama-3-1-8b-instruct-mi300x-tp1",
    "model": "meta-llama_Llama-3.1-8B-Instruct",
    "model_name": "meta-llama/Llama-3.1-8B-Instruct",
    "pod": "llama-3-1-8b-0",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "3h",
}
#: `$name`, `${name}` or `${name:format}`; `$1` (a label_replace group reference) is no variable.
VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)")
GRAFANA_BUILTINS = frozenset(name for name in VARIABLE_VALUES if name.startswith("__"))

AIM_SERIES = re.compile(r"\baim:[A-Za-z0-9_:]+")
VLLM_METRIC = re.compile(r"\bvllm:[A-Za-z0-9_:]+")


def _vllm_catalogue() -> tuple[frozenset[str], frozenset[str]]:
    """(current, removed) vLLM V1 metric names, from the shared catalogue (vllm_metrics.yaml)."""
    return metric_catalogue.CURRENT, metric_catalogue.REMOVED


def _base_name(metric: str) -> str:
    """A histogram's name without the `_bucket`/`_sum`/`_count` suffix of its series."""
    for suffix in ("_bucket", "_sum", "_count"):
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in _panels(dashboard) if panel["type"] != "row"]


def _variable_queries(dashboard: dict[str, Any]) -> list[str]:
    """The series selectors inside the query variables' `label_values(selector, label)`."""
    selectors = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"{variable['name']}: not a label_values(selector, label) query: {query}"
        selectors.append(match.group(1))
    return selectors


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and variable selectors."""
    exprs = [target["expr"] for panel in _data_panels(dashboard) for target in panel["targets"]]
    return exprs + _variable_queries(dashboard)


def _substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in VARIABLE_VALUES, f"no test value for variable ${name} in {expr}"
        return VARIABLE_VALUES[name]

    return VARIABLE.sub(value, expr)


#: Every dashboard as a single-model stack ships it and as a stack of several models (aim:models) does.
VARIANTS = [(name, per_model) for name in DASHBOARD_NAMES for per_model in (False, True)]


@pytest.fixture(scope="module", params=VARIANTS, ids=[f"{n}-{'per-model' if p else 'single'}" for n, p in VARIANTS])
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    name, per_model = request.param
    return json.loads(dashboards.dashboard_json(name, per_model=per_model))


def _by_title(dashboard: dict[str, Any], fragment: str) -> dict[str, Any]:
    found = [panel for panel in _data_panels(dashboard) if fragment.lower() in panel["title"].lower()]
    assert len(found) == 1, f"expected one panel titled like {fragment!r}, found {[p['title'] for p in found]}"
    return found[0]


# ---------------------------------------------------------------- the JSON model


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_dashboard_json_is_compact_sorted_deterministic_and_round_trips(name: str) -> None:
    text = dashboards.dashboard_json(name)
    model = dashboards.DASHBOARDS[name]()
    assert text == dashboards.dashboard_json(name)
    assert json.loads(text) == json.loads(json.dumps(model)) == model
    assert text == json.dumps(model, sort_keys=True, separators=(",", ":"))


def test_file_names_are_configmap_keys_and_uids_are_unique() -> None:
    uids = [dashboards.DASHBOARDS[name]()["uid"] for name in DASHBOARD_NAMES]
    assert len(set(uids)) == len(uids)
    for name in DASHBOARD_NAMES:
        assert re.fullmatch(r"[-._a-zA-Z0-9]+\.json", name), name
    assert dashboards.recipe_performance_dashboard()["uid"] == "aim-recipe-performance"
    assert dashboards.vllm_serving_dashboard()["uid"] == "aim-vllm-serving"


def test_an_unknown_dashboard_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match=re.escape("aim-vllm-serving.json")):
        dashboards.dashboard_json("nope.json")


def test_dashboard_has_uid_title_schema_version_and_datasource_variable(dashboard: dict[str, Any]) -> None:
    assert re.fullmatch(r"[-a-z0-9]{1,40}", dashboard["uid"])
    assert dashboard["title"].startswith("AIM Engine / ")
    assert dashboard["schemaVersion"] == dashboards.SCHEMA_VERSION == 41
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_panels_have_unique_ids_units_descriptions_and_fit_the_grid(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids)), ids
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["y"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in _data_panels(dashboard):
        assert panel["description"].strip(), panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_target_queries_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    for panel in _data_panels(dashboard):
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["datasource"]["type"] == "prometheus", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_every_variable_used_is_defined(dashboard: dict[str, Any]) -> None:
    defined = {variable["name"] for variable in dashboard["templating"]["list"]} | GRAFANA_BUILTINS
    texts = [*_expressions(dashboard), *(panel["title"] for panel in _panels(dashboard))]
    for text in texts:
        for match in VARIABLE.finditer(text):
            assert (match.group(1) or match.group(2)) in defined, f"{match.group(0)} in {text}"


# ---------------------------------------------------------------- PromQL and metric names


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian package `prometheus`)"
        if os.environ.get("AIM_TESTS_REQUIRE_TOOLS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    promtool = _promtool()
    rules = []
    for name, per_model in VARIANTS:
        prefix = (
            "dashboard_check:" + re.sub(r"\W", "_", name.removesuffix(".json")) + (":per_model" if per_model else "")
        )
        model = dashboards.DASHBOARDS[name](per_model=per_model)
        for index, expr in enumerate(_expressions(model)):
            concrete = _substitute(expr)
            assert "$" not in concrete.replace("$1", ""), concrete
            rules.append({"record": f"{prefix}:q{index}", "expr": concrete})
    assert len(rules) > 60
    rules_file = tmp_path / "dashboard-queries.rules.yml"
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboard-queries", "rules": rules}]}, indent=1))
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout + result.stderr


def test_every_vllm_metric_is_a_current_v1_name(dashboard: dict[str, Any]) -> None:
    current, removed = _vllm_catalogue()
    used = {metric for expr in _expressions(dashboard) for metric in VLLM_METRIC.findall(expr)}
    for metric in used:
        assert metric not in removed and _base_name(metric) not in removed, f"{metric} was removed from vLLM"
        assert metric in current or _base_name(metric) in current, f"{metric} is no current vLLM V1 metric"


def test_the_vllm_dashboard_uses_no_removed_name_anywhere() -> None:
    _, removed = _vllm_catalogue()
    text = dashboards.dashboard_json("aim-vllm-serving.json")
    assert not [metric for metric in removed if metric in text]


def test_every_aim_series_is_a_names_constant(dashboard: dict[str, Any]) -> None:
    constants = {value for value in vars(names).values() if isinstance(value, str) and value.startswith("aim:")}
    for expr in _expressions(dashboard):
        for series in AIM_SERIES.findall(expr):
            assert series in constants, f"{series} is not declared in aim_infra/planning/monitoring/names.py"


# ---------------------------------------------------------------- what the dashboards show

RECIPE_PANELS = {
    "Generation throughput": {
        names.GENERATION_TOKENS_RATE,
        names.ESTIMATE_OUTPUT_TOKENS_LOW,
        names.ESTIMATE_OUTPUT_TOKENS_HIGH,
        names.ESTIMATE_AT_LOAD_LOW,
    },
    "TTFT": {names.TTFT_P50, names.TTFT_P95, names.ESTIMATE_TTFT_P95_LOW, names.ESTIMATE_TTFT_P95_HIGH},
    "ITL": {names.ITL_P50, names.ITL_P95, names.ESTIMATE_TPOT_P95_LOW, names.ESTIMATE_TPOT_P95_HIGH},
    "Estimate at the workload": {
        names.ESTIMATE_OUTPUT_TOKENS_LOW,
        names.ESTIMATE_OUTPUT_TOKENS,
        names.ESTIMATE_OUTPUT_TOKENS_HIGH,
    },
    "Max running sequences": {names.ESTIMATE_MAX_RUNNING},
    "Queue": {names.REQUESTS_WAITING, names.REQUESTS_RUNNING},
    "KV cache": {names.KV_CACHE_USAGE},
    "Request rate": {names.REQUESTS_RATE},
    "HTTP error": {names.HTTP_ERROR_RATIO},
    "Preemptions": {names.PREEMPTIONS_RATE},
    "GPUs in use": {names.GPUS_IN_USE},
    "GPU utilisation": {names.GPU_GFX_ACTIVITY, names.POD_RECIPE_INFO},
    "GPU memory": {names.GPU_USED_VRAM, names.GPU_TOTAL_VRAM, names.POD_RECIPE_INFO},
}


@pytest.mark.parametrize(("title", "series"), sorted(RECIPE_PANELS.items()))
def test_the_recipe_dashboard_has_each_panel_with_its_series(title: str, series: set[str]) -> None:
    panel = _by_title(dashboards.recipe_performance_dashboard(), title)
    exprs = " ".join(target["expr"] for target in panel["targets"])
    for name in series:
        assert re.search(re.escape(name) + r"(?![A-Za-z0-9_:])", exprs), f"{title}: {name} missing from {exprs}"


def test_recipe_panels_repeat_per_recipe_and_filter_by_namespace_and_recipe() -> None:
    model = dashboards.recipe_performance_dashboard()
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    assert f"label_values({names.POD_RECIPE_INFO}" in variables["recipe"]["definition"]
    assert variables["recipe"]["multi"] and variables["recipe"]["includeAll"]
    assert [panel.get("repeat") for panel in model["panels"] if panel["type"] == "row"] == ["recipe"]
    for panel in _data_panels(model):
        for target in panel["targets"]:
            assert 'namespace=~"$namespace"' in target["expr"] and 'recipe=~"$recipe"' in target["expr"]


@pytest.mark.parametrize("title", ["Generation throughput", "TTFT", "ITL"])
def test_estimates_are_drawn_dashed_beside_the_measurements(title: str) -> None:
    panel = _by_title(dashboards.recipe_performance_dashboard(), title)
    estimates = [t["refId"] for t in panel["targets"] if "aim:recipe_estimate:" in t["expr"]]
    measured = [t["refId"] for t in panel["targets"] if "aim:recipe_estimate:" not in t["expr"]]
    assert estimates and measured
    dashed = [override["matcher"]["options"] for override in panel["fieldConfig"]["overrides"]]
    assert dashed == estimates
    assert "(calibrated range)" in panel["title"]
    for target in panel["targets"]:
        if target["refId"] in estimates:
            assert target["legendFormat"].startswith("estimate (calibrated range)"), target["legendFormat"]


def test_the_throughput_panel_shows_the_low_end_at_the_observed_load_averaged_like_the_alert() -> None:
    panel = _by_title(dashboards.recipe_performance_dashboard(), "Generation throughput")
    [at_load] = [t["expr"] for t in panel["targets"] if names.ESTIMATE_AT_LOAD_LOW in t["expr"]]
    assert at_load.startswith("avg_over_time(") and at_load.endswith("[5m])")


def test_no_dashboard_mentions_the_old_roofline() -> None:
    for name in DASHBOARD_NAMES:
        text = dashboards.dashboard_json(name).lower()
        for gone in ("roofline", "decode_tokens_per_second", "single_stream", "max_concurrent_sequences"):
            assert gone not in text, (name, gone)


def test_kv_cache_panels_show_the_0_to_1_gauge_as_percent() -> None:
    for model in (dashboards.recipe_performance_dashboard(), dashboards.vllm_serving_dashboard()):
        for panel in _data_panels(model):
            if "KV cache" in panel["title"]:
                assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit", panel["title"]


@pytest.mark.parametrize("title", ["GPU utilisation", "GPU memory"])
def test_gpu_panels_say_they_need_the_device_metrics_exporter(title: str) -> None:
    panel = _by_title(dashboards.recipe_performance_dashboard(), title)
    assert "device-metrics-exporter" in panel["description"]
    for target in panel["targets"]:
        assert "exported_pod" in target["expr"] and "on (namespace, pod)" in target["expr"]


VLLM_PANELS = {
    "E2E request latency": "vllm:e2e_request_latency_seconds_bucket",
    "Token throughput": "vllm:generation_tokens_total",
    "Inter-token latency": "vllm:inter_token_latency_seconds_bucket",
    "Time to first token": "vllm:time_to_first_token_seconds_bucket",
    "Scheduler state": "vllm:num_requests_waiting",
    "KV cache usage": "vllm:kv_cache_usage_perc",
    "Prompt length": "vllm:request_prompt_tokens_bucket",
    "Generation length": "vllm:request_generation_tokens_bucket",
    "Finish reasons": "finished_reason",
    "Queue time": "vllm:request_queue_time_seconds_bucket",
    "Prefill and decode": "vllm:request_decode_time_seconds_bucket",
    "Prefix cache hit rate": "vllm:prefix_cache_hits_total",
    "Preemptions": "vllm:num_preemptions_total",
}


@pytest.mark.parametrize(("title", "needle"), sorted(VLLM_PANELS.items()))
def test_the_vllm_dashboard_has_each_panel(title: str, needle: str) -> None:
    model = dashboards.vllm_serving_dashboard()
    found = [panel for panel in _data_panels(model) if panel["title"].startswith(title)]
    assert found, f"no panel titled {title!r}"
    assert any(needle in target["expr"] for panel in found for target in panel["targets"]), title


def test_the_vllm_dashboard_filters_by_model_namespace_and_pod() -> None:
    model = dashboards.vllm_serving_dashboard()
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    assert variables["model_name"]["definition"].startswith("label_values(vllm:num_requests_running")
    assert {"namespace", "model_name", "pod"} <= set(variables)
    for panel in _data_panels(model):
        for target in panel["targets"]:
            for selector in ('namespace=~"$namespace"', 'model_name=~"$model_name"', 'pod=~"$pod"'):
                assert selector in target["expr"], f"{panel['title']}: {target['expr']}"
    heatmaps = [panel for panel in _data_panels(model) if panel["type"] == "heatmap"]
    assert len(heatmaps) == 2 and all(panel["targets"][0]["format"] == "heatmap" for panel in heatmaps)


def test_per_model_recipe_rows_repeat_per_model_picked_from_a_multi_value_variable() -> None:
    model = dashboards.recipe_performance_dashboard(per_model=True)
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    assert variables["model"]["multi"] and variables["model"]["includeAll"]
    assert (
        variables["model"]["definition"] == f'label_values({names.POD_RECIPE_INFO}{{namespace=~"$namespace"}}, model)'
    )
    assert 'model=~"$model"' in variables["recipe"]["definition"]
    rows = [panel for panel in model["panels"] if panel["type"] == "row"]
    assert [(panel["title"], panel.get("repeat")) for panel in rows] == [("Model $model", "model")]
    for panel in _data_panels(model):
        for target in panel["targets"]:
            for selector in ('namespace=~"$namespace"', 'model=~"$model"', 'recipe=~"$recipe"'):
                assert selector in target["expr"], f"{panel['title']}: {target['expr']}"
    # The same panels as the single-model dashboard, only filtered by model as well.
    single = _data_panels(dashboards.recipe_performance_dashboard())
    assert [panel["title"] for panel in _data_panels(model)] == [panel["title"] for panel in single]


def test_per_model_vllm_headline_stats_repeat_per_selected_model() -> None:
    model = dashboards.vllm_serving_dashboard(per_model=True)
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    assert variables["model_name"]["multi"] and variables["model_name"]["includeAll"]
    first = model["panels"][0]
    assert first["type"] == "row" and first.get("repeat") == "model_name" and "$model_name" in first["title"]
    # The repeated row holds the headline stats, up to the next (plain) row.
    following = model["panels"][1:]
    stats = following[: next(i for i, panel in enumerate(following) if panel["type"] == "row")]
    assert stats and {panel["type"] for panel in stats} == {"stat"}
    assert [panel.get("repeat") for panel in model["panels"] if panel["type"] == "row"][1:] == [None] * 4
    single = dashboards.vllm_serving_dashboard()
    assert [p["title"] for p in _data_panels(model)] == [p["title"] for p in _data_panels(single)]


def test_the_single_model_dashboards_have_no_per_model_rows() -> None:
    for name in DASHBOARD_NAMES:
        text = dashboards.dashboard_json(name)
        assert text == dashboards.dashboard_json(name, per_model=False)
        model = json.loads(text)
        assert "model" not in {variable["name"] for variable in model["templating"]["list"]}
        # Compact JSON escapes the selector's quotes: `model=~\"$model\"`.
        assert '$model"' not in text.replace("\\", "") and "Model $" not in text
    assert [p.get("repeat") for p in dashboards.vllm_serving_dashboard()["panels"] if p["type"] == "row"] == [None] * 4
