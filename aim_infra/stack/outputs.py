"""What the stack tells its user: the decision as preview log lines, the endpoint, and ready-to-paste commands."""

from __future__ import annotations

import shlex
from collections.abc import Collection

from aim_infra.common.contract import API_PORT, ENGINE_CONTAINER, INSTANCE_LABEL, ROUTER_CONTAINER
from aim_infra.planning.explain import capacity_rows, estimate_lines, packing_table, table
from aim_infra.planning.packing import JointPlan
from aim_infra.planning.selection import Decision
from aim_infra.planning.workload import benchmark_requests
from aim_infra.stack.manifests.autoscaling import (
    POLLING_INTERVAL_SECONDS,
    RESPONSE_HEADER_TIMEOUT_SECONDS,
    SCALE_TO_ZERO_COOLDOWN_SECONDS,
    cold_start_seconds,
    scale_down_window_seconds,
    scale_up_period_seconds,
    target_concurrency,
)
from aim_infra.stack.manifests.sizing import (
    POD_START_SLACK_SECONDS,
    progress_deadline_seconds,
    rolls_pod_by_pod,
    startup_budget_seconds,
)
from aim_infra.stack.settings import StackConfig

NODE_IP_COMMAND = (
    "export NODE_IP=$(kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type==\"InternalIP\")].address}')"
)


def decision_log_lines(decision: Decision, replicas: int) -> list[str]:
    """The lines `pulumi preview` shows before anything is created: choice, layout, fit, estimate, alternatives."""
    recipe, fit = decision.recipe, decision.fit
    kind = f"{recipe.status}, fallback" if decision.fallback else recipe.status
    lines = [
        f"AIM recipe: {recipe.id} [{kind}] for {decision.model.id} on {decision.gpus_available} × {decision.gpu.name} "
        f"(goal: {decision.metric})",
        f"AIM layout: {replicas} replica(s) × {recipe.gpu_count} GPU, TP {recipe.tensor_parallel_size} "
        f"PP {recipe.pipeline_parallel_size}, {recipe.precision} weights, KV cache {recipe.kv_cache_dtype}, "
        f"max_model_len {recipe.max_model_len}",
        f"AIM memory per GPU: weights {fit.weights_gib_per_gpu:.1f} GiB, KV cache {fit.kv_cache_gib_per_gpu:.1f} GiB, "
        f"overhead {fit.overhead_gib_per_gpu:.1f} GiB; {fit.max_concurrent_sequences} concurrent 2k-token requests",
        *(f"AIM {line[:10].strip()}: {line[10:].strip()}" for line in estimate_lines(decision)),
        f"AIM vllm args: {shlex.join(decision.vllm_args)}",
    ]
    # The capacity table: every candidate with its GPUs, replicas, tokens/s, TTFT/TPOT p95 and why it lost.
    headers, rows = capacity_rows(decision)
    lines += [f"AIM capacity: {line}" for line in table(headers, rows[:12], max_width=400).splitlines()]
    if len(rows) > 12:
        lines.append(f"AIM capacity: … {len(rows) - 12} more candidates (python -m aim_infra select … shows all)")
    lines += [f"AIM note: {note}" for note in decision.notes]
    lines.append(rollout_line(decision, replicas))
    return lines


def joint_plan_log_lines(plan: JointPlan, autoscaled: Collection[str] = ()) -> list[str]:
    """The lines `pulumi preview` shows for several models (aim:models): the GPUs placed and reserved, the packing
    table (model, recipe, GPUs, replicas min–max, estimate at its workload, SLO, node placement), what every model's
    vLLM runs with, how the `autoscaled` models scale (and the cold start of those that scale to zero, with what that
    does to the router), the plan's notes and what stays free."""
    nodes = ", ".join(f"{n.node} ({n.free_gpus} free)" for n in plan.nodes)
    lines = [
        f"AIM models: {len(plan.models)} on {nodes} × {plan.gpu.name}: {plan.gpus_placed} GPUs placed, "
        f"{plan.gpus_reserved} more reserved for scaling up"
    ]
    lines += [f"AIM packing: {line}" for line in table(*packing_table(plan), max_width=400).splitlines()]
    lines += [f"AIM {m.name} vllm args: {shlex.join(m.decision.vllm_args)}" for m in plan.models]
    for m in plan.models:
        if m.name in autoscaled:
            budget = startup_budget_seconds(m.decision)
            lines.append(
                f"AIM autoscaling {m.name}: KEDA keeps {m.min_replicas}–{m.max_replicas} replicas, adding some when "
                f"they hold more than {target_concurrency(m.decision.estimate)} requests each (running + waiting: what "
                "one replica sustains within its SLO) or the fullest KV cache is full; up: at most doubling per "
                f"{scale_up_period_seconds(budget)} s (the startup budget), down: one a minute after "
                f"{scale_down_window_seconds(budget)} s below target"
            )
    # An autoscaled model's floor is 0 exactly when it scales to zero (settings and the ScaledObject insist).
    cold = [m for m in plan.models if m.name in autoscaled and m.min_replicas == 0]
    lines += [scale_to_zero_line(m.name, startup_budget_seconds(m.decision)) for m in cold]
    if cold:
        lines.append(static_router_line([m.name for m in cold]))
    lines += [f"AIM note: {note}" for note in plan.notes]
    lines.append(f"AIM free: {plan.free_text()}")
    return lines


def scale_to_zero_line(name: str, startup_budget: int) -> str:
    """What scaling a model to zero costs its clients: the cold start its first request after an idle spell waits."""
    return (
        f"AIM scale to zero {name}: KEDA removes the last replica after {SCALE_TO_ZERO_COOLDOWN_SECONDS} s without "
        f"requests; the first request after that waits up to {cold_start_seconds(startup_budget)} s for an answer to "
        f"start (cold start: one KEDA poll {POLLING_INTERVAL_SECONDS} s + pod scheduling and image pull "
        f"{POD_START_SLACK_SECONDS} s + the startup budget {startup_budget} s), held by the KEDA HTTP add-on's "
        f"interceptor, which answers 504 after that; clients need a timeout longer than that, and a non-streamed "
        f"answer must start within {RESPONSE_HEADER_TIMEOUT_SECONDS} s"
    )


def static_router_line(cold: Collection[str]) -> str:
    """Why the router runs in static mode when a model scales to zero, and what that changes."""
    return (
        f"AIM router: static discovery, because {', '.join(cold)} scale(s) to zero: a model at zero replicas has no "
        "pod to discover, and the interceptor that holds its requests routes by hostname, so the router sends each "
        "model's requests to one fixed URL (its engine Service, or its <name>-wake hostname for the interceptor); "
        "the Service balances a model's replicas over the ready ones (not the router per pod), and every request to "
        "a scale-to-zero model takes one more hop, through the interceptor, even while it runs"
    )


def rollout_line(decision: Decision, replicas: int) -> str:
    """What a change to the pods costs: pod-by-pod with several replicas, downtime with one."""
    budget = startup_budget_seconds(decision)
    if rolls_pod_by_pod(replicas):
        return (
            f"AIM rollout: RollingUpdate one pod at a time (maxSurge 0, maxUnavailable 1: no spare GPUs needed), "
            f"{replicas - 1} of {replicas} replicas keep serving; each pod may take up to {budget} s to start (the "
            f"startup budget), the whole rollout up to {replicas * progress_deadline_seconds(decision)} s; a "
            "PodDisruptionBudget allows one voluntary eviction at a time"
        )
    return (
        f"AIM rollout: 1 replica, Recreate (a surge pod would need a second set of GPUs): a change to the pod (image, "
        f"recipe, flags) means downtime of up to {budget} s (the startup budget: weights load + engine start-up) plus "
        "scheduling and image pull; aim:replicas 2 or more rolls one pod at a time without downtime"
    )


def lifecycle_log_lines(stack: StackConfig) -> list[str]:
    """What `pulumi up` does on this host before the cluster, and what `pulumi destroy` will remove or keep."""
    s = stack.settings
    lines = []
    if s.cluster_bootstrap == "kubeadm":
        mirror = f" → containerd mirror for localhost:{s.registry_port}" if s.pushes_to_local_registry else ""
        lines.append(
            f"AIM bootstrap: this host becomes a single-node kubeadm cluster: host preflight → containerd{mirror} → "
            f"kubeadm init (pod CIDR {s.pod_cidr}) → kubeconfig {stack.kubeconfig_path}"
        )
    parts = [
        ("the model cache", True, not s.keeps_model_cache),
        ("the built AIM image", s.build_image, s.removes_built_images),
        ("the registry's data", s.pushes_to_local_registry, not s.keeps_registry_data),
        ("the cluster (kubeadm reset)", s.cluster_bootstrap == "kubeadm", s.resets_cluster),
    ]
    removed = ["the stack's Kubernetes objects", *(what for what, present, goes in parts if present and goes)]
    kept = [what.split(" (")[0] for what, present, goes in parts if present and not goes]
    lines.append(
        f"AIM cleanup {s.cleanup}: pulumi destroy removes {', '.join(removed)}"
        + (f"; keeps {', '.join(kept)}" if kept else "")
    )
    if s.smoke_test:
        lines.append("AIM smoke test: after the rollout, /health, /v1/models and one chat completion (port-forward)")
    if s.benchmark:
        workload = s.workload_or_default
        lines.append(
            f"AIM benchmark: after the rollout, GuideLLM sends {benchmark_requests(workload)} requests of "
            f"{workload.input_tokens} in / {workload.output_tokens} out tokens at {workload.load_text()} through a "
            "port-forward; stack output `benchmark` holds measured beside estimated"
        )
    return lines


def endpoint_url(service_type: str, node_port: int, service_name: str, namespace: str) -> str:
    if service_type == "NodePort":
        assigned = f"$(kubectl -n {namespace} get svc {service_name} -o jsonpath='{{.spec.ports[0].nodePort}}')"
        port = node_port or assigned
        return f"http://${{NODE_IP}}:{port}"
    if service_type == "LoadBalancer":
        return (
            f"http://$(kubectl -n {namespace} get svc {service_name} -o "
            f"jsonpath='{{.status.loadBalancer.ingress[0].ip}}'):{API_PORT}"
        )
    return f"http://localhost:{API_PORT}"


def verification_commands(
    *,
    namespace: str,
    name: str,
    model_id: str,
    service_type: str,
    node_port: int,
    api_key: bool,
    monitoring: bool = False,
    kubeconfig: str | None = None,
    download_job: str | None = None,
) -> dict[str, str]:
    """Commands to paste after `pulumi up`, in the order a person checks a deployment."""
    url = endpoint_url(service_type, node_port, name, namespace)
    auth = ' -H "Authorization: Bearer $AIM_API_KEY"' if api_key else ""
    body = (
        '{"model": "' + model_id + '", "messages": [{"role": "user", "content": "Say hello in five words."}], '
        '"max_tokens": 32}'
    )
    commands = {
        "pods": f"kubectl -n {namespace} get pods -l {INSTANCE_LABEL}={name} -o wide",
        "downloadLogs": f"kubectl -n {namespace} logs job/{download_job or name + '-download'} -f",
        "logs": f"kubectl -n {namespace} logs deploy/{name} -c {ENGINE_CONTAINER} -f",
        "health": f"curl -fsS {url}/health && echo ok",
        "models": f"curl -fsS{auth} {url}/v1/models",
        "chat": f"curl -fsS{auth} {url}/v1/chat/completions -H 'Content-Type: application/json' -d '{body}'",
        "top": f"kubectl -n {namespace} top pods",
        "portForward": f"kubectl -n {namespace} port-forward svc/{name} {API_PORT}:{API_PORT}",
        "gpu": f"kubectl -n {namespace} exec deploy/{name} -c {ENGINE_CONTAINER} -- amd-smi static --asic --vram",
        "recipe": f"kubectl -n {namespace} get configmap {name}-recipe -o jsonpath='{{.data.explanation\\.txt}}'",
    }
    if monitoring:
        commands["grafana"] = (
            "kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80  # http://localhost:3000, "
            "user admin, password: kubectl -n monitoring get secret grafana-admin -o "
            "jsonpath='{.data.admin-password}' | base64 -d"
        )
        commands["prometheus"] = (
            "kubectl -n monitoring port-forward svc/kube-prometheus-stack-prometheus 9090:9090  # http://localhost:9090"
        )
        commands["alerts"] = "curl -fsS 'http://localhost:9090/api/v1/alerts' | grep -o '\"alertname\":\"Aim[A-Za-z]*'"
    if service_type == "NodePort":
        commands = {"nodeIp": NODE_IP_COMMAND, **commands}
    if api_key:
        # The configured or generated key, from the secret stack output (never printed by `pulumi up`).
        commands = {"apiKey": "export AIM_API_KEY=$(pulumi stack output apiKey --show-secrets)", **commands}
    if kubeconfig:  # the cluster the stack made: every kubectl above needs its kubeconfig
        commands = {"kubeconfig": f"export KUBECONFIG={kubeconfig}", **commands}
    return commands


def router_verification_commands(
    *,
    namespace: str,
    router: str,
    models: dict[str, str],
    autoscaled: bool,
    service_type: str,
    node_port: int,
    kubeconfig: str | None = None,
) -> dict[str, str]:
    """Commands to paste after `pulumi up` with several models behind the router: `models` maps each model's name
    to what it serves as (the OpenAI `model` field); one chat completion per model goes through the router."""
    url = endpoint_url(service_type, node_port, router, namespace)
    auth = ' -H "Authorization: Bearer $AIM_API_KEY"'
    commands = {
        "apiKey": "export AIM_API_KEY=$(pulumi stack output apiKey --show-secrets)",
        "pods": f"kubectl -n {namespace} get pods -o wide",
        "health": f"curl -fsS {url}/health && echo ok",
        "models": f"curl -fsS{auth} {url}/v1/models",
    }
    for name, served in models.items():
        body = (
            '{"model": "' + served + '", "messages": [{"role": "user", "content": "Say hello in five words."}], '
            '"max_tokens": 32}'
        )
        commands[f"chat-{name}"] = (
            f"curl -fsS{auth} {url}/v1/chat/completions -H 'Content-Type: application/json' -d '{body}'"
        )
    commands["routerLogs"] = f"kubectl -n {namespace} logs deploy/{router} -c {ROUTER_CONTAINER} -f"
    commands["portForward"] = f"kubectl -n {namespace} port-forward svc/{router} {API_PORT}:{API_PORT}"
    if autoscaled:
        commands["scaledObjects"] = f"kubectl -n {namespace} get scaledobject,hpa"
    if service_type == "NodePort":
        commands = {"nodeIp": NODE_IP_COMMAND, **commands}
    if kubeconfig:
        commands = {"kubeconfig": f"export KUBECONFIG={kubeconfig}", **commands}
    return commands
