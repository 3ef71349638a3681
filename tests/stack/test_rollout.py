"""Rollouts that keep serving, storage and scheduling that agree, persistent compile caches: the declared objects."""

from __future__ import annotations

from typing import Any

import pytest

from aim_infra.stack.manifests.engine_pod import COMPILE_CACHE_MOUNT, cache_affinity
from aim_infra.stack.manifests.sizing import POD_START_SLACK_SECONDS
from aim_infra.stack.plan import Declared, PlanResult, run_stack

from .test_manifests import validate_all

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
JOB = "kubernetes:batch/v1:Job"
COMMAND = "command:local:Command"
CACHE_LABEL = "aim.amd.com/model-cache"
PVC = "aim-engine-model-cache"
FOUR_REPLICAS = {"aim:gpuCount": "8", "aim:replicas": "4"}


def run(overrides: dict[str, str]) -> PlanResult:
    result = run_stack("dev", overrides)
    assert result.error is None, result.error
    return result


@pytest.fixture(scope="module")
def single() -> PlanResult:
    return run({"aim:replicas": "1"})


@pytest.fixture(scope="module")
def four_rwo() -> PlanResult:
    return run(FOUR_REPLICAS)


@pytest.fixture(scope="module")
def four_rwx() -> PlanResult:
    return run({**FOUR_REPLICAS, "aim:cacheAccessMode": "ReadWriteMany"})


def deployment(result: PlanResult) -> Declared:
    return result.named(DEPLOYMENT, "aim-engine-deployment")


def pod(result: PlanResult) -> dict[str, Any]:
    return deployment(result).inputs["spec"]["template"]


def vllm(result: PlanResult) -> dict[str, Any]:
    return next(c for c in pod(result)["spec"]["containers"] if c["name"] == "vllm")


def download_pod(result: PlanResult) -> dict[str, Any]:
    [job] = result.of_type(JOB)
    return job.inputs["spec"]["template"]


def rollout_lines(result: PlanResult) -> list[str]:
    return [message for _, message in result.logs if message.startswith("AIM rollout:")]


def gate_command(result: PlanResult) -> str:
    return result.named(COMMAND, "gpu-ready-check").inputs["create"]


# --------------------------------------------------------------------------------------------------------------------
# strategy and disruption budget


def test_one_replica_recreates_and_preview_says_the_downtime(single: PlanResult) -> None:
    spec = deployment(single).inputs["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert single.of_type(PDB) == []  # a PDB on one replica would block every node drain
    [line] = rollout_lines(single)
    budget = vllm(single)["startupProbe"]["failureThreshold"] * vllm(single)["startupProbe"]["periodSeconds"]
    assert f"downtime of up to {budget} s (the startup budget" in line
    assert "aim:replicas 2 or more" in line


def test_several_replicas_roll_one_pod_at_a_time_with_no_spare_gpus(four_rwo: PlanResult) -> None:
    spec = deployment(four_rwo).inputs["spec"]
    assert spec["replicas"] == 4
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    [pdb] = four_rwo.of_type(PDB)
    assert pdb.inputs["spec"] == {"maxUnavailable": 1, "selector": spec["selector"]}
    [line] = rollout_lines(four_rwo)
    assert "RollingUpdate one pod at a time" in line and "3 of 4 replicas keep serving" in line


def test_the_progress_deadline_outlasts_one_pods_start_up(single: PlanResult, four_rwo: PlanResult) -> None:
    for result in (single, four_rwo):
        probe = vllm(result)["startupProbe"]
        startup = probe["failureThreshold"] * probe["periodSeconds"]
        # Kubernetes' default of 600 s would call a healthy start-up a failed rollout (and end Pulumi's wait); every
        # pod that becomes ready restarts the clock, so one start-up plus scheduling and pull is enough.
        assert deployment(result).inputs["spec"]["progressDeadlineSeconds"] == startup + POD_START_SLACK_SECONDS


def test_pulumi_waits_for_each_pod_of_a_rolling_update(single: PlanResult, four_rwo: PlanResult) -> None:
    def update_timeout(result: PlanResult) -> str:
        return deployment(result).options["custom_timeouts"]["update"]

    deadline = deployment(single).inputs["spec"]["progressDeadlineSeconds"]
    assert update_timeout(single) == f"{deadline}s"
    assert update_timeout(four_rwo) == f"{4 * deadline}s"


# --------------------------------------------------------------------------------------------------------------------
# storage and scheduling


def test_readwriteonce_keeps_every_pod_of_the_cache_on_one_node(four_rwo: PlanResult) -> None:
    template = pod(four_rwo)
    assert template["metadata"]["labels"][CACHE_LABEL] == PVC
    term = {"labelSelector": {"matchLabels": {CACHE_LABEL: PVC}}, "topologyKey": "kubernetes.io/hostname"}
    affinity = template["spec"]["affinity"]
    assert affinity["podAffinity"] == {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    assert "nodeAffinity" in affinity  # the GPU type stays
    # The download Job's pod mounts the same cache: it carries the label, so the term finds it too.
    assert download_pod(four_rwo)["metadata"]["labels"][CACHE_LABEL] == PVC
    # ... and it must land on that node as well, or a RWO volume attached to the engine's node never mounts in it.
    assert download_pod(four_rwo)["spec"]["affinity"]["podAffinity"] == affinity["podAffinity"]
    assert "--one-node" in gate_command(four_rwo)


def test_readwritemany_needs_no_affinity(four_rwx: PlanResult) -> None:
    affinity = pod(four_rwx)["spec"]["affinity"]
    assert "podAffinity" not in affinity and "nodeAffinity" in affinity
    assert "podAffinity" not in (download_pod(four_rwx)["spec"].get("affinity") or {})
    assert "--replicas 4" in gate_command(four_rwx) and "--one-node" not in gate_command(four_rwx)


@pytest.mark.parametrize(
    ("mode", "expected"), [("ReadWriteOnce", True), ("ReadWriteMany", False), ("ReadWriteOncePod", False)]
)
def test_cache_affinity_per_access_mode(mode: str, expected: bool) -> None:
    assert (cache_affinity("c", mode) is not None) is expected


@pytest.mark.parametrize(
    ("stack", "overrides", "replicas"),
    [
        ("dev", {"aim:gpuCount": "8", "aim:replicas": "2"}, "2 replicas (aim:replicas is 2)"),
        # prod's aim:replicas auto fills its node with several replicas
        ("prod", {"aim:apiKey": "k" * 32}, "replicas (aim:replicas auto fills one node with"),
    ],
)
def test_readwriteoncepod_with_several_replicas_is_one_line_before_any_resource(
    stack: str, overrides: dict[str, str], replicas: str
) -> None:
    result = run_stack(stack, {**overrides, "aim:cacheAccessMode": "ReadWriteOncePod"})
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith("aim:cacheAccessMode: 'ReadWriteOncePod' is not allowed with ")
    assert replicas in result.error and "ReadWriteMany" in result.error
    assert result.resources == []


def test_readwriteoncepod_with_one_replica_is_fine() -> None:
    result = run({"aim:replicas": "1", "aim:cacheAccessMode": "ReadWriteOncePod"})
    assert "podAffinity" not in pod(result)["spec"]["affinity"]


def test_the_gpu_gate_counts_every_replica(single: PlanResult, four_rwo: PlanResult) -> None:
    assert "--count 1" in gate_command(four_rwo) and "--replicas 4" in gate_command(four_rwo)
    assert "--replicas" not in gate_command(single)


# --------------------------------------------------------------------------------------------------------------------
# compile caches


def test_compile_caches_live_on_a_writable_subfolder_of_the_cache_volume(single: PlanResult) -> None:
    container = vllm(single)
    env = {e["name"]: e.get("value") for e in container["env"]}
    for name in ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR"):
        assert env[name].startswith(f"{COMPILE_CACHE_MOUNT}/")
    assert env["MIOPEN_USER_DB_PATH"].startswith(f"{COMPILE_CACHE_MOUNT}/miopen")
    assert env["MIOPEN_CUSTOM_CACHE_DIR"].startswith(f"{COMPILE_CACHE_MOUNT}/miopen")
    assert len({env[n] for n in env if n.endswith(("_ROOT", "_DIR", "_PATH")) and n != "AIM_MODEL_DIR"}) >= 5
    # AITER would import only from AITER_JIT_DIR and rebuild the modules the image ships prebuilt.
    assert "AITER_JIT_DIR" not in env
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True  # the weights stay read-only
    cache = mounts[COMPILE_CACHE_MOUNT]
    assert cache["name"] == "model-cache" and not cache.get("readOnly")
    assert cache["subPath"] == ".compile-cache/MI300X"  # per GPU type
    volumes = {v["name"]: v for v in pod(single)["spec"]["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == PVC


def test_multi_replica_objects_validate(four_rwo: PlanResult, four_rwx: PlanResult) -> None:
    assert validate_all(four_rwo) >= 8 and validate_all(four_rwx) >= 8
