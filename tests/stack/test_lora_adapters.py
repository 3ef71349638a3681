"""LoRA adapters of aim:models entries: the whole program under mocks for the 3-model example with adapters on the
chat model (dense) and on the mid model (MoE), their adapter_config.json served by the real huggingface_hub client
from tests/fake_hub.py on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from aim_infra.stack.manifests.engine_pod import model_directory
from aim_infra.stack.plan import PlanResult, kubernetes_objects
from tests.fake_hub import FakeHub, isolate_hub_client
from tests.stack.components.test_router_builders import parse, static_pairs
from tests.stack.test_manifests import CRD_GROUPS, KUBERNETES_VERSION
from tests.stack.test_multi_model import NAMESPACE, ROUTER, TO_ZERO, example_config, objects_of, run

CHAT = "meta-llama/Llama-3.3-70B-Instruct"
MID = "Qwen/Qwen3-30B-A3B"
SQL = {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": CHAT}
SUPPORT = {"r": 48, "lora_alpha": 96, "target_modules": "all-linear", "bias": "none", "use_dora": False}
TOOLS = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "base_model_name_or_path": "Qwen/Qwen3-30B-A3B-Base"}


def adapters(hub: FakeHub) -> dict[str, Any]:
    """The example's changes: two adapters on chat (one pinned to a commit), one on mid."""
    pinned = hub.repos["org/support-lora"].commit
    return {
        "chat": {
            "loraModules": {
                "sql": {"model": "org/sql-lora"},
                "support": {"model": "org/support-lora", "revision": pinned},
            }
        },
        "mid": {"loraModules": {"tools": {"model": "org/tools-lora"}}},
    }


def serve(hub: FakeHub) -> None:
    weights = {"adapter_model.safetensors": b"\0" * 64}
    hub.add_repo("org/sql-lora", {"adapter_config.json": SQL, **weights})
    hub.add_repo("org/support-lora", {"adapter_config.json": SUPPORT, **weights})
    hub.add_repo("org/tools-lora", {"adapter_config.json": TOOLS, **weights})
    hub.add_repo("org/dora-lora", {"adapter_config.json": {**SQL, "use_dora": True}})


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    """One fake Hub for the module; HF_ENDPOINT points at it and huggingface_hub uses a private, empty home."""
    fake = FakeHub().start()
    serve(fake)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_ENDPOINT", fake.url)
        isolate_hub_client(patch, tmp_path_factory.mktemp("hf-home"), offline=False)
        try:
            yield fake
        finally:
            fake.stop()


@pytest.fixture(scope="module")
def lora(hub: FakeHub) -> PlanResult:
    result = run(example_config(**adapters(hub)))
    assert result.error is None, result.error
    return result


def engine_container(result: PlanResult, name: str) -> dict[str, Any]:
    [deployment] = [m for m in objects_of(result, "Deployment") if m["metadata"]["name"] == name]
    [vllm] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm"]
    return vllm


def lora_modules(args: list[str]) -> list[dict[str, str]]:
    """The JSON values after --lora-modules, up to the next flag."""
    start = args.index("--lora-modules") + 1
    values = []
    for token in args[start:]:
        if token.startswith("-"):
            break
        values.append(json.loads(token))
    return values


def test_each_model_loads_its_adapters_from_its_cache_volume(lora: PlanResult, hub: FakeHub) -> None:
    pinned = hub.repos["org/support-lora"].commit
    chat = engine_container(lora, "chat")
    args = chat["args"]
    assert args.count("--lora-modules") == 1, "one flag with every adapter: a second one would replace the first"
    assert {"--enable-lora", "--max-loras=2", "--max-cpu-loras=2", "--max-lora-rank=64"} <= set(args)
    assert lora_modules(args) == [
        {"name": "sql", "path": model_directory("org/sql-lora", None), "base_model_name": CHAT},
        {"name": "support", "path": model_directory("org/support-lora", pinned), "base_model_name": CHAT},
    ]
    mounts = {m["mountPath"] for m in chat["volumeMounts"]}
    assert all(any(m["path"].startswith(f"{mount}/") for mount in mounts) for m in lora_modules(args))
    env = {e["name"]: e.get("value") for e in chat["env"]}
    assert json.loads(env["AIM_LORA_MODULES"]) == [
        {"name": "sql", "path": model_directory("org/sql-lora", None), "model": "org/sql-lora", "revision": None},
        {
            "name": "support",
            "path": model_directory("org/support-lora", pinned),
            "model": "org/support-lora",
            "revision": pinned,
        },
    ]
    # MoE with LoRA: AITER's fused MoE has no LoRA kernel, so the model runs Triton's experts.
    mid = engine_container(lora, "mid")
    assert {"--enable-lora", "--max-loras=1", "--max-lora-rank=8"} <= set(mid["args"])
    assert {e["name"]: e.get("value") for e in mid["env"]}["VLLM_ROCM_USE_AITER_MOE"] == "0"
    small = engine_container(lora, "small")
    assert "--enable-lora" not in small["args"] and "AIM_LORA_MODULES" not in {e["name"] for e in small["env"]}


def test_each_adapter_is_downloaded_by_its_own_job_under_the_download_policy(lora: PlanResult, hub: FakeHub) -> None:
    pinned = hub.repos["org/support-lora"].commit
    jobs = {m["metadata"]["name"]: m for m in objects_of(lora, "Job")}
    adapter_jobs = {
        name: job
        for name, job in jobs.items()
        if any(
            repo in json.dumps(job["spec"]["template"])
            for repo in ("org/sql-lora", "org/support-lora", "org/tools-lora")
        )
    }
    assert len(jobs) == 3 + 3 and len(adapter_jobs) == 3, sorted(jobs)
    support = next(job for job in adapter_jobs.values() if "org/support-lora" in json.dumps(job))
    template = json.dumps(support["spec"]["template"])
    assert model_directory("org/support-lora", pinned) in template and f"--revision {pinned}" in " ".join(
        support["spec"]["template"]["spec"]["containers"][0]["command"]
    )
    # Same pod labels as the model's own download: the one egress policy of the model covers them.
    policies = {m["metadata"]["name"]: m["spec"] for m in objects_of(lora, "NetworkPolicy")}
    egress = [spec for spec in policies.values() if "Egress" in spec.get("policyTypes", []) and spec.get("egress")]
    for job in adapter_jobs.values():
        labels = job["spec"]["template"]["metadata"]["labels"]
        selecting = [
            spec
            for spec in egress
            if spec["podSelector"].get("matchLabels")
            and all(labels.get(k) == v for k, v in spec["podSelector"]["matchLabels"].items())
        ]
        assert selecting, f"no egress policy selects {job['metadata']['name']}"


def test_the_engine_waits_for_its_adapter_downloads(lora: PlanResult) -> None:
    [chat] = [r for r in lora.of_type("kubernetes:apps/v1:Deployment") if r.name == "chat-deployment"]
    waits = {each.name for urn in chat.dependencies if (each := lora.by_urn(urn)) is not None}
    assert {"chat-download-lora-sql-job", "chat-download-lora-support-job"} <= waits, sorted(waits)


def test_every_adapter_gets_a_smoke_test_and_a_verify_command(lora: PlanResult) -> None:
    checks = {r.name: r.inputs["create"] for r in lora.of_type("command:local:Command") if "smoke" in r.name}
    for adapter in ("sql", "support"):
        command = checks[f"chat-smoke-test-lora-{adapter}-check"]
        assert f"--service {ROUTER}" in command and f"--model {adapter}" in command, command
    assert "--model tools" in checks["mid-smoke-test-lora-tools-check"]
    assert len(checks) == 3 + 3
    verify = lora.outputs["verify"]
    assert '"model": "sql"' in verify["chat-chat-lora-sql"] and '"model": "tools"' in verify["chat-mid-lora-tools"]
    assert lora.outputs["models"]["chat"]["loraAdapters"] == {"sql": "org/sql-lora", "support": "org/support-lora"}


def test_the_preview_says_what_loading_adapters_means(lora: PlanResult) -> None:
    info = [message for level, message in lora.logs if level == "info"]
    notes = [line for line in info if line.startswith("AIM note: ")]
    assert any(line.startswith("AIM note: chat: ") for line in notes), notes
    assert any("mid: MoE model with LoRA" in line for line in notes), notes
    # TOOLS was trained on the base model, not the instruct one: said, not refused.
    assert any("mid: " in line and "Qwen/Qwen3-30B-A3B-Base" in line for line in notes), notes
    [chat_args] = [line for line in info if line.startswith("AIM chat vllm args: ")]
    assert "--enable-lora" in chat_args and "--lora-modules" in chat_args


def test_every_object_with_adapters_validates(lora: PlanResult) -> None:
    for manifest in kubernetes_objects(lora):
        if str(manifest["apiVersion"]).startswith(CRD_GROUPS) or manifest["apiVersion"] == "keda.sh/v1alpha1":
            continue
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest['kind']} {manifest['metadata'].get('name')}: {error.message} at {list(error.path)}")


def test_a_static_router_lists_each_adapter_at_its_models_url(hub: FakeHub) -> None:
    result = run(example_config(**{**adapters(hub), **TO_ZERO}))
    assert result.error is None, result.error
    [router] = [m for m in objects_of(result, "Deployment") if m["metadata"]["name"] == ROUTER]
    [container] = [c for c in router["spec"]["template"]["spec"]["containers"] if c["name"] == "router"]
    pairs = dict(static_pairs(parse(container["args"])))
    chat_url = f"http://chat.{NAMESPACE}.svc:8000"
    assert pairs[CHAT] == pairs["sql"] == pairs["support"] == chat_url
    assert pairs["tools"] == pairs[MID]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        (
            {"chat": {"loraModules": {"sql": {"model": "org/no-such-lora"}}}},
            "aim:models: chat.loraModules.sql: LoRA adapter 'org/no-such-lora' not found on ",
        ),
        (
            {"chat": {"loraModules": {"sql": {"model": "org/dora-lora"}}}},
            "aim:models: chat.loraModules.sql: ",
        ),
        (
            {"chat": {"loraModules": {"sql": {"model": "org/sql-lora"}}, "vllmExtraArgs": ["--max-lora-rank=8"]}},
            "aim:models: chat.vllmExtraArgs: ",
        ),
        (
            {"chat": {"vllmExtraArgs": ["--lora-modules", "x=/tmp/x"]}},
            "aim:models: chat.vllmExtraArgs: ",
        ),
    ],
    ids=["missing", "dora", "sized-flag", "stack-flag"],
)
def test_bad_adapters_stop_the_preview_in_one_line(hub: FakeHub, changes: dict[str, Any], error: str) -> None:
    result = run(example_config(**changes))
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith(error), result.error
    assert result.resources == []


def test_an_adapter_not_cached_offline_is_one_line(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        isolate_hub_client(patch, tmp_path / "empty-home", offline=True)
        result = run(example_config(chat=adapters(hub)["chat"]))
    assert result.error is not None and result.resources == []
    assert result.error.startswith(
        "aim:models: chat.loraModules.sql: LoRA adapter 'org/sql-lora': its adapter_config.json is not in the local "
        "Hugging Face cache and HF_HUB_OFFLINE=1 forbids fetching it"
    ), result.error
