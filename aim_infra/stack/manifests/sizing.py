"""How much the engine gets and how long it may take: pod resources, cache and /dev/shm sizes, rollout and budgets."""

from __future__ import annotations

import math
from typing import Any

from aim_infra.planning.selection import Decision

GIB = 2**30
# Planning assumptions for time budgets (documented in README "Timeouts").
LOAD_BYTES_PER_SECOND = 200e6  # weights read from the cache volume into GPU memory
DOWNLOAD_BYTES_PER_SECOND = 50e6  # a conservative Hub download rate
ENGINE_STARTUP_SECONDS = 600  # compile, HIP graph capture, AITER warm-up
PROBE_PERIOD_SECONDS = 10
#: Scheduling and image pull of one new pod (a ROCm vLLM image is tens of GB on a node that lacks it).
POD_START_SLACK_SECONDS = 600


def cache_quantity(decision: Decision) -> str:
    """Checkpoint bytes plus 15 % and 10 GiB of headroom (tokenizer, partial downloads, a second revision's delta)."""
    return f"{math.ceil(decision.model.checkpoint_bytes * 1.15 / GIB) + 10}Gi"


def startup_budget_seconds(decision: Decision) -> int:
    """How long vLLM may take from container start to a healthy /health: weights load plus engine start-up."""
    load = decision.model.checkpoint_bytes / LOAD_BYTES_PER_SECOND
    return int(math.ceil((ENGINE_STARTUP_SECONDS + load) / PROBE_PERIOD_SECONDS) * PROBE_PERIOD_SECONDS)


def rolls_pod_by_pod(replicas: int) -> bool:
    """Several replicas roll one pod at a time (the others keep serving); a single replica is replaced in place."""
    return replicas > 1


def deployment_strategy(replicas: int) -> dict[str, Any]:
    """RollingUpdate with maxSurge 0 and maxUnavailable 1 for several replicas: a pod's GPUs are freed before its
    successor asks for them, so a rollout needs no spare GPUs and never leaves fewer than replicas - 1 serving (a
    failed new pod stalls the rollout there). One replica keeps Recreate: a surge pod would need a second set of GPUs
    the node may not have, so a change to the pod means downtime for one start-up budget."""
    if rolls_pod_by_pod(replicas):
        return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    return {"type": "Recreate"}


def progress_deadline_seconds(decision: Decision) -> int:
    """The Deployment's progressDeadlineSeconds: one pod's start-up budget plus scheduling and pull. Kubernetes' default
    (600 s) is shorter than most start-up budgets, so a healthy rollout would be reported as failed
    (ProgressDeadlineExceeded, which also ends Pulumi's wait); every pod that becomes ready restarts the clock."""
    return startup_budget_seconds(decision) + POD_START_SLACK_SECONDS


def rollout_timeout_seconds(decision: Decision, replicas: int = 1) -> int:
    """What `pulumi up` waits for the Deployment: the download Job has already finished (the Deployment depends on
    it); a rolling update replaces the pods one after another, so each replica gets one progress deadline."""
    steps = replicas if rolls_pod_by_pod(replicas) else 1
    return steps * progress_deadline_seconds(decision)


def shm_gib(decision: Decision) -> int:
    """/dev/shm for RCCL and vLLM's worker IPC: grows with the GPUs one replica spans."""
    return max(8, 4 * decision.recipe.gpu_count)


def pod_resources(decision: Decision) -> dict[str, dict[str, str]]:
    """CPU and memory sized from the layout: host memory stages weights while loading and backs /dev/shm."""
    gpus = decision.recipe.gpu_count
    cpu_request = 4 + 2 * gpus
    memory_request = 16 + 8 * gpus + shm_gib(decision)
    return {
        "requests": {"cpu": str(cpu_request), "memory": f"{memory_request}Gi", "amd.com/gpu": str(gpus)},
        "limits": {"cpu": str(2 * cpu_request), "memory": f"{2 * memory_request}Gi", "amd.com/gpu": str(gpus)},
    }


def download_timeout_seconds(decision: Decision) -> int:
    """What `pulumi up` waits for the model download Job: the checkpoint at a conservative rate plus 10 minutes."""
    return int(decision.model.checkpoint_bytes / DOWNLOAD_BYTES_PER_SECOND + 600)
