"""Joint planning: several models' recipes and replicas chosen together and packed onto nodes, with the real selector,
the bundled catalogue and the performance model (no mocks)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aim_infra.common.errors import AimError
from aim_infra.planning import packing
from aim_infra.planning.explain import packing_table, table
from aim_infra.planning.hardware import load_gpus
from aim_infra.planning.model_profile import load_model_catalogue
from aim_infra.planning.packing import JointPlan, ModelRequest, NodeInventory, plan_models
from aim_infra.planning.selection import Selector
from aim_infra.planning.workload import Workload

SELECTOR = Selector()
MODELS = load_model_catalogue()
MI300X = load_gpus().get("MI300X")

CHAT = "meta-llama/Llama-3.3-70B-Instruct"  # TP 2 on MI300X (catalogue)
SMALL = "meta-llama/Llama-3.1-8B-Instruct"  # TP 1 (catalogue)
CODER = "Qwen/Qwen2.5-7B-Instruct"  # TP 1 (catalogue)
TINY = "Qwen/Qwen2.5-0.5B-Instruct"  # no catalogue recipe: generated, the size of an embedding model
WIDE = "Qwen/Qwen3-235B-A22B"  # TP 4 (catalogue)

#: Chat traffic whose SLO one TP-2 replica misses and two meet (checked in test_slo_first_...).
CHAT_LOAD = Workload(concurrency=64, ttft_p95_ms=2000, tpot_p95_ms=60)
SMALL_LOAD = Workload(concurrency=32, ttft_p95_ms=500, tpot_p95_ms=30)
TINY_LOAD = Workload(input_tokens=512, output_tokens=16, concurrency=16, ttft_p95_ms=300)


def model(name: str, model_id: str, **fields: Any) -> ModelRequest:
    return ModelRequest(name=name, profile=MODELS.get(model_id), **fields)


def nodes(**free: int) -> list[NodeInventory]:
    return [NodeInventory(node=name.replace("_", "-"), gpu="MI300X", free_gpus=count) for name, count in free.items()]


def check_invariants(plan: JointPlan, given_nodes: list[NodeInventory]) -> None:
    """What every plan must satisfy: each replica whole on one node that had room, no node over-committed, and the
    free counts what is left."""
    offered = {n.node: n.free_gpus for n in given_nodes}
    placed = dict.fromkeys(offered, 0)
    claimed = dict.fromkeys(offered, 0)
    for m in plan.models:
        recipe = m.decision.recipe
        assert m.gpus_per_replica == recipe.tensor_parallel_size * recipe.pipeline_parallel_size
        assert m.decision.replicas == m.replicas == len(m.placement) >= 1
        assert m.decision.estimate.replicas == m.replicas
        assert m.max_replicas == m.replicas + len(m.reserved)
        assert m.min_replicas <= m.replicas
        if m.wanted_max is not None:
            assert m.max_replicas <= m.wanted_max
        for node in m.placement:
            assert m.gpus_per_replica <= offered[node]  # a replica's GPUs are all on this one node
            placed[node] += m.gpus_per_replica
            claimed[node] += m.gpus_per_replica
        for node in m.reserved:
            claimed[node] += m.gpus_per_replica
    for node, free in offered.items():
        assert placed[node] <= claimed[node] <= free, f"{node} over-committed"
        assert plan.free_after_placement[node] == free - placed[node]
        assert plan.free[node] == free - claimed[node]


# --- fits ----------------------------------------------------------------------------------------------------------
def test_chat_small_and_an_embedding_sized_model_share_one_mi300x_node() -> None:
    given_nodes = nodes(node_a=8)
    plan = plan_models(
        [
            model("chat", CHAT, workload=CHAT_LOAD, max_replicas=3),
            model("small", SMALL, workload=SMALL_LOAD, max_replicas=2),
            model("embed", TINY, workload=TINY_LOAD, max_replicas=2),
        ],
        given_nodes,
        SELECTOR,
    )
    check_invariants(plan, given_nodes)
    chat, small, embed = plan.models
    assert [m.name for m in plan.models] == ["chat", "small", "embed"]
    assert chat.decision.recipe.id == "llama-3.3-70b-mi300x-tp2-bf16-throughput"
    assert (chat.replicas, chat.gpus_per_replica) == (2, 2)
    assert (small.replicas, small.gpus_per_replica) == (1, 1)
    assert embed.decision.recipe.status == "generated"
    assert (embed.replicas, embed.gpus_per_replica) == (1, 1)
    assert all(m.meets_slo for m in plan.models)
    assert plan.gpus_placed == 6
    # The 2 GPUs left are reserved for scaling up: chat's third TP-2 replica takes them, so the others cannot scale.
    assert (chat.max_replicas, small.max_replicas, embed.max_replicas) == (3, 1, 1)
    assert plan.free == {"node-a": 0}
    assert plan.notes == [
        "small can scale to 1 of the 2 replicas asked: the nodes have no room for more 1-GPU replicas",
        "embed can scale to 1 of the 2 replicas asked: the nodes have no room for more 1-GPU replicas",
    ]
    # The selector's one-node notes (GPUs left unused, replicas sized for one node) do not survive joint planning.
    assert not any(
        "stay unused" in note or note.startswith("sized for") for m in plan.models for note in m.decision.notes
    )


def test_exact_fit_uses_all_eight_gpus() -> None:
    given_nodes = nodes(node_a=8)
    plan = plan_models(
        [
            model("chat", CHAT, min_replicas=2, max_replicas=2),
            model("small", SMALL, min_replicas=2, max_replicas=2),
            model("coder", CODER, min_replicas=2, max_replicas=2),
        ],
        given_nodes,
        SELECTOR,
    )
    check_invariants(plan, given_nodes)
    assert [(m.replicas, m.gpus_per_replica) for m in plan.models] == [(2, 2), (2, 1), (2, 1)]
    assert plan.gpus_placed == 8
    assert plan.free_after_placement == plan.free == {"node-a": 0}
    assert all(m.max_replicas == 2 and not m.scale_limited for m in plan.models)
    assert plan.notes == []


def test_models_without_a_maximum_share_the_spare_gpus() -> None:
    given_nodes = nodes(node_a=8)
    plan = plan_models([model("small", SMALL), model("coder", CODER)], given_nodes, SELECTOR)
    check_invariants(plan, given_nodes)
    small, coder = plan.models
    assert (small.replicas, coder.replicas) == (1, 1)
    # One replica each per round: 6 spare GPUs become 3 more of each, not 6 of the first.
    assert (small.max_replicas, coder.max_replicas) == (4, 4)
    assert plan.free == {"node-a": 0}


def test_scale_to_zero_still_reserves_one_replica() -> None:
    plan = plan_models([model("small", SMALL, min_replicas=0, max_replicas=2)], nodes(node_a=1), SELECTOR)
    small = plan.model("small")
    assert (small.min_replicas, small.replicas, small.max_replicas) == (0, 1, 1)
    assert small.placement == ("node-a",)
    assert small.scale_limited


# --- does not fit --------------------------------------------------------------------------------------------------
def test_impossible_names_each_model_its_need_and_what_is_free() -> None:
    with pytest.raises(AimError) as caught:
        plan_models(
            [model("chat", CHAT, min_replicas=3), model("coder", CODER, min_replicas=3)], nodes(node_a=8), SELECTOR
        )
    assert str(caught.value) == (
        "aim:models: chat needs 3 × 2 GPUs (TP 2) and coder needs 3 × 1 GPUs (TP 1), but the nodes offer "
        "node-a 8 free (MI300X): drop a model, lower min replicas, or choose smaller recipes"
    )


def test_impossible_when_the_total_is_enough_but_replicas_cannot_be_split_over_nodes() -> None:
    # 12 GPUs free and 3 × 4 wanted, but each node holds one TP-4 replica: a replica never spans two nodes.
    with pytest.raises(AimError) as caught:
        plan_models([model("wide", WIDE, min_replicas=3)], nodes(node_a=6, node_b=6), SELECTOR)
    assert str(caught.value) == (
        "aim:models: wide needs 3 × 4 GPUs (TP 4), but the nodes offer node-a 6 free, node-b 6 free (MI300X): "
        "drop a model, lower min replicas, or choose smaller recipes"
    )


def test_one_model_too_big_for_any_node_gets_its_own_line() -> None:
    with pytest.raises(AimError) as caught:
        plan_models(
            [
                model("chat", CHAT),
                model("big", "deepseek-ai/DeepSeek-R1", recipe_id="deepseek-r1-mi300x-tp8-fp8-throughput"),
            ],
            nodes(node_a=4, node_b=4),
            SELECTOR,
        )
    message = str(caught.value)
    assert message.startswith(
        "aim:models: model big needs 8 GPUs per replica (TP 8) but no node has more than 4 free: "
        "node-a 4 free, node-b 4 free (MI300X); recipe deepseek-r1-mi300x-tp8-fp8-throughput cannot serve"
    )
    assert "\n" not in message


def test_a_model_too_big_in_its_precision_says_so_and_what_would_fit() -> None:
    with pytest.raises(AimError) as caught:
        plan_models([model("big", "meta-llama/Llama-3.1-405B-Instruct", precision="bf16")], nodes(node_a=4), SELECTOR)
    message = str(caught.value)
    assert message.startswith("aim:models: model big needs 8 GPUs per replica (TP 8) but no node has more than 4 free")
    assert "bf16 needs ≥ 8 × MI300X" in message


def test_a_search_cut_short_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # Chat meeting its SLO (2 × 2 GPUs) does not fit beside 6 small replicas: the search must go on to 1 × 2.
    requests = [model("chat", CHAT, workload=CHAT_LOAD), model("small", SMALL, min_replicas=6)]
    monkeypatch.setattr(packing, "MAX_SEARCH_STEPS", 2)
    with pytest.raises(AimError) as caught:
        plan_models(requests, nodes(node_a=8), SELECTOR)
    assert "(the search stopped after 2 steps): drop a model" in str(caught.value)
    monkeypatch.setattr(packing, "MAX_SEARCH_STEPS", 4)
    plan = plan_models(requests, nodes(node_a=8), SELECTOR)
    assert plan.search_cut
    assert plan.notes[0].startswith("the search stopped after 4 steps: this is the best plan it found")


# --- nodes ---------------------------------------------------------------------------------------------------------
def test_two_nodes_each_take_a_whole_replica() -> None:
    given_nodes = nodes(node_b=6, node_a=6)
    plan = plan_models([model("wide", WIDE, min_replicas=2)], given_nodes, SELECTOR)
    check_invariants(plan, given_nodes)
    wide = plan.model("wide")
    assert wide.gpus_per_replica == 4
    assert wide.placement == ("node-a", "node-b")
    assert plan.free == {"node-a": 2, "node-b": 2}


def test_an_slo_one_node_cannot_meet_is_met_across_two() -> None:
    load = Workload(concurrency=160, ttft_p95_ms=2000, tpot_p95_ms=55)
    profile = MODELS.get(CHAT)
    with pytest.raises(AimError, match="no recipe meets the workload"):
        SELECTOR.select(profile, MI300X, 8, workload=load)  # the single-model selector sizes within one node
    given_nodes = nodes(node_a=8, node_b=8)
    plan = plan_models([model("chat", CHAT, workload=load, max_replicas=8)], given_nodes, SELECTOR)
    check_invariants(plan, given_nodes)
    chat = plan.model("chat")
    assert chat.meets_slo
    assert chat.gpus > 8
    assert set(chat.placement) == {"node-a", "node-b"}
    assert chat.slo_replicas == chat.replicas


# --- goals in order --------------------------------------------------------------------------------------------------
def test_slo_first_a_plan_meeting_it_beats_a_cheaper_one_that_misses() -> None:
    plan = plan_models([model("chat", CHAT, workload=CHAT_LOAD, min_replicas=1)], nodes(node_a=8), SELECTOR)
    chat = plan.model("chat")
    assert chat.meets_slo
    assert (chat.replicas, chat.gpus_per_replica) == (2, 2)
    # One replica would be cheaper (2 GPUs, not 4), and misses the SLO: the plan did not take it.
    cheaper = SELECTOR.with_replicas(chat.decision, 1)
    assert cheaper.estimate.gpu_count < chat.decision.estimate.gpu_count
    assert not cheaper.estimate.meets_slo
    assert chat.min_replicas == 1  # the autoscaler may still scale down to the floor asked for


def test_when_the_slo_cannot_fit_the_plan_says_so_and_stays_as_close_as_it_can() -> None:
    given_nodes = nodes(node_a=8)
    plan = plan_models(
        [model("chat", CHAT, workload=CHAT_LOAD), model("small", SMALL, min_replicas=5)], given_nodes, SELECTOR
    )
    check_invariants(plan, given_nodes)
    chat = plan.model("chat")
    assert not chat.meets_slo
    assert (chat.replicas, chat.slo_replicas) == (1, 2)
    assert plan.notes[0].startswith("chat misses its SLO with 1 replica(s) (TPOT p95 ~")
    assert plan.notes[0].endswith("it needs 2 (4 GPUs): no room for them")
    headers, rows = packing_table(plan)
    assert dict(zip(headers, rows[0], strict=True))["SLO"] == "MISSED"


def test_fewest_gpus_when_every_slo_is_met() -> None:
    # Llama 3.3 70B on MI300X: TP 2 (throughput) and TP 8 (latency) both serve one stream; TP 2 needs fewer GPUs.
    plan = plan_models([model("chat", CHAT, min_replicas=1, max_replicas=1)], nodes(node_a=8), SELECTOR)
    chat = plan.model("chat")
    assert chat.decision.recipe.id == "llama-3.3-70b-mi300x-tp2-bf16-throughput"
    assert chat.gpus == 2


def test_same_input_same_plan_whatever_the_node_order() -> None:
    requests = [
        model("chat", CHAT, workload=CHAT_LOAD, max_replicas=4),
        model("small", SMALL, workload=SMALL_LOAD),
        model("embed", TINY, workload=TINY_LOAD, max_replicas=3),
    ]

    def shape(plan: JointPlan) -> list[tuple[object, ...]]:
        return [
            (m.name, m.decision.recipe.id, m.replicas, m.max_replicas, m.placement, m.reserved, m.decision.estimate)
            for m in plan.models
        ] + [(plan.free_after_placement, plan.free)]

    first = plan_models(requests, nodes(node_a=8, node_b=4), SELECTOR)
    again = plan_models(requests, nodes(node_a=8, node_b=4), SELECTOR)
    swapped = plan_models(requests, list(reversed(nodes(node_a=8, node_b=4))), SELECTOR)
    assert shape(first) == shape(again) == shape(swapped)
    assert table(*packing_table(first)) == table(*packing_table(swapped))


# --- the preview table ---------------------------------------------------------------------------------------------
def test_packing_table_shows_recipe_gpus_bounds_estimate_and_placement() -> None:
    plan = plan_models(
        [model("chat", CHAT, workload=CHAT_LOAD, max_replicas=4), model("small", SMALL)],
        nodes(node_a=4, node_b=6),
        SELECTOR,
    )
    headers, rows = packing_table(plan)
    assert headers == ("MODEL", "RECIPE", "GPUS", "REPLICAS", "TOK/S", "TTFT P95 MS", "TPOT P95 MS", "SLO", "NODES")
    chat, small = (dict(zip(headers, row, strict=True)) for row in rows)
    assert chat["MODEL"] == "chat" and chat["RECIPE"] == "llama-3.3-70b-mi300x-tp2-bf16-throughput"
    assert chat["GPUS"] == "4 = 2 × 2 (TP 2)"
    assert chat["REPLICAS"] == "2–4"
    assert chat["NODES"] == "node-a ×2; reserved node-b ×2"
    assert chat["SLO"] == "met"
    estimate = plan.model("chat").decision.estimate
    low, high = estimate.ranges["tpot_p95_ms"]
    assert chat["TPOT P95 MS"] == f"~{estimate.tpot_p95_ms:,.1f} ({low:,.1f}–{high:,.1f})"
    assert str(chat["TOK/S"]).startswith(f"~{estimate.output_tokens_per_s:,.0f} (")
    assert small["REPLICAS"] == "1–2 (auto)"  # the one GPU left once chat's maximum is reserved
    assert small["SLO"] == "none set"
    assert small["NODES"] == "node-b ×1; reserved node-b ×1"
    assert plan.free_text() == "node-a 0 free, node-b 0 free (MI300X)"
    assert len(table(headers, rows).splitlines()) == 3


# --- bad input -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Chat", "chat_1", "-chat", "chat-", "a" * 64, "", "chat.v1"])
def test_a_name_that_is_not_a_dns_label_is_one_line(name: str) -> None:
    with pytest.raises(AimError) as caught:
        model(name, SMALL)
    assert str(caught.value) == (
        f"aim:models: name {name!r} is not allowed: expected a DNS-1123 label (lower-case letters, digits and '-', "
        "starting and ending with a letter or digit, at most 63 characters): it names the model's URL and objects"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "aim:models: chat: min_replicas 3 is above max_replicas 2"),
        ({"max_replicas": 0}, "aim:models: chat: max_replicas 0 is not allowed: expected greater than or equal to 1"),
        ({"min_replicas": -1}, "aim:models: chat: min_replicas -1 is not allowed"),
        ({"min_replicas": True}, "aim:models: chat: min_replicas true is not allowed: expected a valid integer"),
        ({"max_replicas": "2"}, "aim:models: chat: max_replicas '2' is not allowed: expected a valid integer"),
        ({"replicas": 2}, "aim:models: chat: replicas: unknown key; expected one of name, profile,"),
    ],
)
def test_bad_replica_bounds_are_one_line(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(AimError) as caught:
        model("chat", SMALL, **fields)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_duplicate_model_names_are_one_line() -> None:
    with pytest.raises(AimError) as caught:
        plan_models([model("chat", CHAT), model("chat", SMALL)], nodes(node_a=8), SELECTOR)
    assert str(caught.value) == (
        "aim:models: name 'chat' is used twice: expected one name per model (it names the model's URL and objects)"
    )


@pytest.mark.parametrize(
    ("given_nodes", "message"),
    [
        ([], "aim:models: no GPU nodes to plan on"),
        (nodes(node_a=0, node_b=0), "aim:models: no node has a free GPU: node-a 0 free, node-b 0 free (MI300X)"),
        (
            [*nodes(node_a=8), NodeInventory(node="node-b", gpu="MI355X", free_gpus=8)],
            "aim:models: the nodes have different GPU types (node-a MI300X, node-b MI355X): joint planning takes nodes "
            "of one type",
        ),
        (nodes(node_a=8) * 2, "aim:models: node 'node-a' is listed twice"),
        ([NodeInventory(node="node-a", gpu="MI999", free_gpus=8)], "aim:models: node node-a: unknown GPU 'MI999'"),
    ],
)
def test_bad_nodes_are_one_line(given_nodes: list[NodeInventory], message: str) -> None:
    with pytest.raises(AimError) as caught:
        plan_models([model("small", SMALL)], given_nodes, SELECTOR)
    assert str(caught.value).startswith(message)


def test_bad_node_fields_are_one_line() -> None:
    with pytest.raises(AimError) as caught:
        NodeInventory(node="node-a", gpu="MI300X", free_gpus=-1)
    assert str(caught.value) == (
        "aim:models: node node-a: free_gpus -1 is not allowed: expected greater than or equal to 0"
    )


def test_no_models_is_one_line() -> None:
    with pytest.raises(AimError, match=r"^aim:models: no models: list at least one$"):
        plan_models([], nodes(node_a=8), SELECTOR)


def test_a_selector_error_names_the_model() -> None:
    with pytest.raises(AimError) as caught:
        plan_models([model("small", SMALL, extra_args=("--no-such-flag",))], nodes(node_a=8), SELECTOR)
    assert str(caught.value).startswith("aim:models: model small: vllm extra argument --no-such-flag: not a flag")


# --- property --------------------------------------------------------------------------------------------------------
POOL = [
    (SMALL, None, None),
    (CODER, None, None),
    (CHAT, None, None),
    (TINY, None, None),
    (CHAT, CHAT_LOAD, None),
    (WIDE, None, "qwen3-235b-a22b-mi300x-tp4-bf16-throughput"),
]


def packs(sizes: list[int], free: list[int]) -> bool:
    """Exhaustively: can replicas of these sizes be placed, each whole on one node? (Independent of the planner's
    first-fit decreasing: every node is tried for every replica, nodes with equal room once.)"""

    def place(index: int, left: list[int]) -> bool:
        if index == len(sizes):
            return True
        tried = set()
        for node, room in enumerate(left):
            if room >= sizes[index] and room not in tried:
                tried.add(room)
                left[node] -= sizes[index]
                if place(index + 1, left):
                    return True
                left[node] += sizes[index]
        return False

    return place(0, list(free))


def check_refusal(message: str, free: list[int], models: int) -> None:
    """A refusal is one line of one of three kinds, and is right: a replica bigger than every node, no free GPU at
    all, or the least each model needs (its floor of replicas of its smallest recipe) fits no placement."""
    assert "\n" not in message and message.startswith("aim:models: ")
    too_big = re.search(r"needs (\d+) GPUs per replica", message)
    needs = re.findall(r"(\S+) needs (\d+) × (\d+) GPUs", message)
    if too_big:
        event("refused: a replica is too big for any node")
        assert int(too_big.group(1)) > max(free)
    elif needs:
        event("refused: the least needs do not fit")
        assert len(needs) == models
        assert not packs([int(size) for _, replicas, size in needs for _ in range(int(replicas))], free)
    else:
        event("refused: no free GPU")
        assert message.startswith("aim:models: no node has a free GPU") and not any(free)


@st.composite
def requests_strategy(draw: st.DrawFn) -> list[ModelRequest]:
    picks = draw(st.lists(st.sampled_from(range(len(POOL))), min_size=1, max_size=3))
    requests = []
    for index, pick in enumerate(picks):
        model_id, workload, recipe_id = POOL[pick]
        low = draw(st.none() | st.integers(0, 3))
        high = draw(st.none() | st.integers(max(low or 1, 1), 4))
        requests.append(
            model(f"m{index}", model_id, workload=workload, recipe_id=recipe_id, min_replicas=low, max_replicas=high)
        )
    return requests


@settings(suppress_health_check=[HealthCheck.too_slow])  # examples: the profile's (tests/conftest.py)
@given(
    free=st.lists(st.integers(0, 8), min_size=1, max_size=3),
    requests=requests_strategy(),
)
def test_any_plan_fits_its_nodes_and_keeps_each_replica_on_one_node(
    free: list[int], requests: list[ModelRequest]
) -> None:
    given_nodes = [NodeInventory(node=f"node-{i}", gpu="MI300X", free_gpus=count) for i, count in enumerate(free)]
    try:
        plan = plan_models(requests, given_nodes, SELECTOR)
    except AimError as error:
        check_refusal(str(error), free, len(requests))
        return
    event("planned")
    check_invariants(plan, given_nodes)
    assert [m.name for m in plan.models] == [r.name for r in requests]
