"""The engine's pure builders called directly (no Pulumi, no mocks): a 1-GPU and an 8-GPU recipe, every manifest
checked for what matters and validated with `kubernetes-validate --strict`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from aim_infra.common import contract
from aim_infra.planning.catalogue import load_catalogue_from
from aim_infra.planning.hardware import GpuCatalogue
from aim_infra.planning.model_profile import ModelCatalogue
from aim_infra.planning.selection import Decision, Selector
from aim_infra.stack.components import api_proxy
from aim_infra.stack.manifests import engine as objects
from aim_infra.stack.manifests import engine_pod, model_download, network_policy, sizing
from aim_infra.stack.manifests.engine import EngineNames
from tests.planning.factories import dense, gpu

KUBERNETES_VERSION = "1.30"  # as tests/stack/test_manifests.py
ROOT = Path(__file__).resolve().parents[3]
IMAGE = "localhost:5000/aim-engine@sha256:" + "ab" * 32
NAMES = EngineNames("aim-engine", "aim")
MI300X = gpu()
SMALL = dense(id="test/small")
LARGE = dense(
    id="test/large-405b",
    params_total=405_853_388_800,
    params_active=405_853_388_800,
    checkpoint_bytes=811_706_777_600,
    num_layers=126,
    hidden_size=16384,
    intermediate_size=53248,
    num_attention_heads=128,
)
RECIPE_FIELDS = {"gpu": "MI300X", "precision": "bf16", "metric": "throughput", "status": "community"}


def engine_decisions(folder: Path) -> dict[str, Decision]:
    """The selector's decisions for a recipe on one GPU and one spanning eight (tensor parallel 4 × pipeline 2, so the
    three layout numbers all differ), from a catalogue of just these two written to `folder`."""
    recipes = [
        {"id": "small-tp1", "model": SMALL.id, "gpu_count": 1, "tensor_parallel_size": 1, "max_model_len": 32768},
        {
            "id": "large-tp4-pp2",
            "model": LARGE.id,
            "gpu_count": 8,
            "tensor_parallel_size": 4,
            "pipeline_parallel_size": 2,
            "max_model_len": 8192,
            "env": {"NCCL_MIN_NCHANNELS": "112"},
        },
    ]
    entries = [{**RECIPE_FIELDS, **recipe, "provenance": "test"} for recipe in recipes]
    (folder / "recipes.yaml").write_text(yaml.safe_dump({"recipes": entries}))
    gpus = GpuCatalogue(gpus=[MI300X])
    selector = Selector(load_catalogue_from(folder, gpus=gpus, models=ModelCatalogue(models=[SMALL, LARGE])), gpus=gpus)
    return {"small": selector.select(SMALL, MI300X, 1), "large": selector.select(LARGE, MI300X, 8)}


@pytest.fixture(scope="module")
def decisions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Decision]:
    return engine_decisions(tmp_path_factory.mktemp("recipes"))


@pytest.fixture(params=["small", "large"])
def decision(request: pytest.FixtureRequest, decisions: dict[str, Decision]) -> Decision:
    return decisions[request.param]


def validate(manifest: dict[str, Any]) -> dict[str, Any]:
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{manifest['kind']} {manifest['metadata'].get('name')}: {error.message} at {list(error.path)}")
    return manifest


def labels_for(decision: Decision) -> dict[str, str]:
    return objects.engine_labels(NAMES.instance, decision, decision.model.id)


def template_for(decision: Decision, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "image": IMAGE,
        "model_id": decision.model.id,
        "model_revision": None,
        "proxy_image": api_proxy.DEFAULT_PROXY_IMAGE,
        "proxy_config": api_proxy.proxy_config(api_port=contract.API_PORT, metrics_port=contract.METRICS_PORT),
        "render_group_id": 110,
        "require_gpu_labels": True,
        "cache_access_mode": "ReadWriteOnce",
        **overrides,
    }
    return engine_pod.pod_template(NAMES, labels_for(decision), decision, **arguments)


def deployment_for(decision: Decision, replicas: int = 1, **overrides: Any) -> dict[str, Any]:
    template = template_for(decision, **overrides)
    return validate(objects.deployment(NAMES, labels_for(decision), decision, replicas=replicas, template=template))


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


# --------------------------------------------------------------------------------------------- the engine pod


def test_the_decisions_are_a_one_gpu_and_an_eight_gpu_recipe(decisions: dict[str, Decision]) -> None:
    assert [(d.recipe.id, d.recipe.gpu_count) for d in decisions.values()] == [("small-tp1", 1), ("large-tp4-pp2", 8)]


def test_the_engine_container_holds_exactly_the_recipes_gpus(decision: Decision) -> None:
    deployment = deployment_for(decision)
    resources = container(deployment, contract.ENGINE_CONTAINER)["resources"]
    gpus = str(decision.recipe.gpu_count)
    assert resources["requests"]["amd.com/gpu"] == resources["limits"]["amd.com/gpu"] == gpus
    proxy = container(deployment, api_proxy.PROXY_CONTAINER)
    assert "amd.com/gpu" not in proxy["resources"]["limits"]
    # /dev/shm and host memory grow with the GPUs one replica spans.
    dshm = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "dshm")
    assert dshm["emptyDir"]["sizeLimit"] == f"{max(8, 4 * decision.recipe.gpu_count)}Gi"


def test_vllm_serves_the_recipe_layout_behind_the_proxy(decision: Decision) -> None:
    args = container(deployment_for(decision), contract.ENGINE_CONTAINER)["args"]
    tp = [a for a in args if a.startswith("--tensor-parallel-size")]
    assert tp == [f"--tensor-parallel-size={decision.recipe.tensor_parallel_size}"]
    pp = [a for a in args if a.startswith("--pipeline-parallel-size")]
    assert pp == [f"--pipeline-parallel-size={decision.recipe.pipeline_parallel_size}"]
    assert args[:3] == ["vllm", "serve", engine_pod.model_directory(decision.model.id, None)]
    # Only the proxy in the pod reaches vLLM.
    assert "--host=127.0.0.1" in args and f"--port={contract.VLLM_INTERNAL_PORT}" in args
    assert args[-len(decision.vllm_args) :] == decision.vllm_args


def test_every_probe_goes_through_the_proxy_port(decision: Decision) -> None:
    deployment = deployment_for(decision)
    vllm = container(deployment, contract.ENGINE_CONTAINER)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"] == {"path": "/health", "port": contract.API_PORT}
    assert "ports" not in vllm  # vLLM listens on 127.0.0.1 only; the proxy owns the pod's ports
    proxy = container(deployment, api_proxy.PROXY_CONTAINER)
    assert {p["name"]: p["containerPort"] for p in proxy["ports"]} == {
        "http": contract.API_PORT,
        "metrics": contract.METRICS_PORT,
    }
    budget = sizing.startup_budget_seconds(decision)
    startup = vllm["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == budget
    assert budget > sizing.ENGINE_STARTUP_SECONDS  # the weights' load time comes on top


def test_the_labels_are_the_contracts(decision: Decision) -> None:
    labels = labels_for(decision)
    assert labels[contract.RECIPE_LABEL] == objects.label_value(decision.recipe.id)
    assert labels[contract.MODEL_LABEL] == objects.label_value(decision.model.id)
    assert labels[contract.GPU_LABEL] == decision.gpu.name == "MI300X"
    assert labels[contract.INSTANCE_LABEL] == NAMES.instance
    assert labels[contract.PART_OF_LABEL] == contract.PART_OF
    # kube-state-metrics exports exactly these from the pods: every one is on the pod template.
    deployment = deployment_for(decision)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert {key: pod_labels[key] for key in contract.RECIPE_POD_LABELS} == {
        key: labels[key] for key in contract.RECIPE_POD_LABELS
    }
    assert pod_labels[contract.MODEL_CACHE_LABEL] == NAMES.model_cache
    # The selector is the stable part only: a new recipe must never change it.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == objects.selector_labels(NAMES.instance)
    assert selector.items() <= pod_labels.items()
    assert not {contract.RECIPE_LABEL, contract.MODEL_LABEL, contract.GPU_LABEL} & selector.keys()


def test_the_deployment_carries_the_layout_the_admission_policy_checks(decision: Decision) -> None:
    deployment = deployment_for(decision)
    recipe = decision.recipe
    assert deployment["metadata"]["annotations"] == {
        contract.GPU_COUNT_ANNOTATION: str(recipe.gpu_count),
        contract.TENSOR_PARALLEL_ANNOTATION: str(recipe.tensor_parallel_size),
        contract.PIPELINE_PARALLEL_ANNOTATION: str(recipe.pipeline_parallel_size),
    }
    assert recipe.tensor_parallel_size * recipe.pipeline_parallel_size == recipe.gpu_count
    assert deployment["metadata"]["labels"][contract.RECIPE_LABEL]  # what the policy's match condition looks for


def test_the_pod_annotations_follow_image_and_proxy_config(decision: Decision) -> None:
    annotations = deployment_for(decision)["spec"]["template"]["metadata"]["annotations"]
    assert annotations[contract.DECISION_HASH_ANNOTATION] == engine_pod.decision_hash(decision, IMAGE)
    assert annotations[contract.MODEL_ID_ANNOTATION] == decision.model.id
    assert annotations[contract.RECIPE_ID_ANNOTATION] == decision.recipe.id
    other = template_for(decision, image=IMAGE.replace("ab", "cd"), proxy_config="# changed\n")["metadata"]
    assert other["annotations"][contract.DECISION_HASH_ANNOTATION] != annotations[contract.DECISION_HASH_ANNOTATION]
    proxy_hash = contract.PROXY_CONFIG_HASH_ANNOTATION
    assert other["annotations"][proxy_hash] != annotations[proxy_hash]


@pytest.mark.parametrize("replicas", [1, 4])
def test_one_replica_recreates_several_roll_pod_by_pod(decisions: dict[str, Decision], replicas: int) -> None:
    decision = decisions["small"]
    deployment = deployment_for(decision, replicas=replicas)
    budget = objects.disruption_budget(NAMES, labels_for(decision), replicas)
    assert deployment["spec"]["replicas"] == replicas
    assert deployment["spec"]["progressDeadlineSeconds"] == sizing.startup_budget_seconds(decision) + 600
    if replicas == 1:
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        assert budget is None
        assert sizing.rollout_timeout_seconds(decision, replicas) == sizing.progress_deadline_seconds(decision)
    else:
        rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
        assert deployment["spec"]["strategy"] == rolling
        assert budget is not None and validate(budget)["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["selector"]["matchLabels"] == objects.selector_labels(NAMES.instance)
        assert sizing.rollout_timeout_seconds(decision, replicas) == 4 * sizing.progress_deadline_seconds(decision)


@pytest.mark.parametrize(
    ("require_gpu_labels", "access_mode", "kind", "cache_pinned"),
    [
        (True, "ReadWriteOnce", "requiredDuringSchedulingIgnoredDuringExecution", True),
        (False, "ReadWriteMany", "preferredDuringSchedulingIgnoredDuringExecution", False),
    ],
)
def test_affinity_follows_gpu_labels_and_the_cache_access_mode(
    decisions: dict[str, Decision], require_gpu_labels: bool, access_mode: str, kind: str, cache_pinned: bool
) -> None:
    deployment = deployment_for(
        decisions["large"], require_gpu_labels=require_gpu_labels, cache_access_mode=access_mode
    )
    affinity = deployment["spec"]["template"]["spec"]["affinity"]
    assert list(affinity["nodeAffinity"]) == [kind]
    assert ("podAffinity" in affinity) is cache_pinned
    assert "74a1" in str(affinity["nodeAffinity"])  # MI300X's PCI device id


def test_the_engine_runs_without_privileges(decision: Decision) -> None:
    spec = deployment_for(decision)["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for each in spec["containers"]:
        assert each["securityContext"]["allowPrivilegeEscalation"] is False
        assert each["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container({"spec": {"template": {"spec": spec}}}, "vllm")["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": NAMES.api_key_secret, "key": "VLLM_API_KEY"}
    assert env["HF_HUB_OFFLINE"]["value"] == "1"


# --------------------------------------------------------------------------------------- the other engine objects


def test_every_engine_object_validates(decision: Decision) -> None:
    labels = labels_for(decision)
    manifests = [
        objects.namespace_manifest(NAMES),
        objects.service_account(NAMES, labels),
        objects.secret(NAMES, labels, NAMES.api_key_secret, objects.API_KEY_DATA_KEY, "a-key"),
        objects.recipe_config_map(NAMES, labels, decision),
        objects.model_cache_claim(NAMES, labels, decision, access_mode="ReadWriteOnce", size=None),
        objects.proxy_config_map(NAMES, labels, "events {}\n"),
        deployment_for(decision, replicas=2),
        objects.api_service(NAMES, labels, service_type="NodePort", node_port=30080),
        objects.metrics_service(NAMES, labels),
        objects.disruption_budget(NAMES, labels, 2),
    ]
    kinds = []
    for manifest in manifests:
        assert manifest is not None
        validate(manifest)
        kinds.append(manifest["kind"])
        assert manifest["metadata"].get("namespace", NAMES.namespace) == NAMES.namespace
    assert kinds.count("Service") == kinds.count("ConfigMap") == 2  # API and metrics; recipe and proxy config
    assert len(set(kinds)) == 8


def test_a_missing_secret_value_declares_no_secret(decisions: dict[str, Decision]) -> None:
    labels = labels_for(decisions["small"])
    assert objects.secret(NAMES, labels, NAMES.hf_token_secret, objects.HF_TOKEN_DATA_KEY, None) is None


def test_the_cache_size_comes_from_the_checkpoint_unless_given(decisions: dict[str, Decision]) -> None:
    decision = decisions["large"]
    labels = labels_for(decision)
    auto = objects.model_cache_claim(NAMES, labels, decision, access_mode="ReadWriteOnce", size=None)
    assert auto["spec"]["resources"]["requests"]["storage"] == "880Gi"  # 811.7 GB × 1.15 = 869.4 GiB → 870 + 10
    assert "storageClassName" not in auto["spec"]
    given = objects.model_cache_claim(
        NAMES, labels, decision, access_mode="ReadWriteMany", size="2Ti", storage_class="fast"
    )
    assert given["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "2Ti"}},
        "storageClassName": "fast",
    }


@pytest.mark.parametrize(
    ("service_type", "node_port", "expected_port"),
    [
        ("NodePort", 30080, {"nodePort": 30080}),
        ("NodePort", 0, {}),
        ("LoadBalancer", 30080, {}),
        ("ClusterIP", 0, {}),
    ],
)
def test_the_api_service_exposes_the_proxy_port(
    decisions: dict[str, Decision], service_type: str, node_port: int, expected_port: dict[str, int]
) -> None:
    service = objects.api_service(
        NAMES, labels_for(decisions["small"]), service_type=service_type, node_port=node_port, allowed_cidrs=["10/8"]
    )
    validate(service)
    port = {"name": "http", "port": contract.API_PORT, "targetPort": "http", "protocol": "TCP", **expected_port}
    assert service["spec"]["ports"] == [port]
    assert service["spec"]["selector"] == objects.selector_labels(NAMES.instance)
    assert ("loadBalancerSourceRanges" in service["spec"]) is (service_type == "LoadBalancer")


# ---------------------------------------------------------------------------------- download Job and policies


@pytest.mark.parametrize("token", [None, NAMES.hf_token_secret])
def test_the_download_job_fills_the_cache_and_nothing_else(decision: Decision, token: str | None) -> None:
    instance = NAMES.download
    labels = model_download.pod_labels(instance, NAMES.model_cache)
    download = model_download.download_container(
        image=IMAGE,
        model_id=decision.model.id,
        model_dir=engine_pod.model_directory(decision.model.id, "main"),
        revision="main",
        models_mount=engine_pod.MODELS_MOUNT,
        hf_token_secret=token,
    )
    template = model_download.download_pod_template(
        labels=labels,
        container=download,
        pvc_name=NAMES.model_cache,
        service_account=NAMES.workload,
        affinity=engine_pod.cache_affinity(NAMES.model_cache, "ReadWriteOnce"),
        tolerations=[engine_pod.GPU_TOLERATION],
    )
    name = model_download.job_name(instance, decision.model.id, "main")
    job = validate(model_download.download_job(name=name, namespace=NAMES.namespace, labels=labels, template=template))
    assert job["metadata"]["name"] != model_download.job_name(instance, decision.model.id, None)
    assert download["command"][-2:] == ["--revision", "main"]
    assert ("HF_TOKEN" in {e["name"] for e in download["env"]}) is (token is not None)
    assert "resources" in download and "amd.com/gpu" not in download["resources"]["limits"]
    # Never counted by the engine's Service or PDB, yet kept on the cache's node.
    assert not objects.selector_labels(NAMES.instance).items() <= labels.items()
    assert labels[contract.MODEL_CACHE_LABEL] == NAMES.model_cache


@pytest.mark.parametrize(("air_gapped", "monitoring"), [(False, "monitoring"), (True, None)])
def test_the_network_policies_admit_only_what_is_listed(air_gapped: bool, monitoring: str | None) -> None:
    specs = network_policy.policy_specs(
        pod_selector=objects.selector_labels(NAMES.instance),
        api_port=contract.API_PORT,
        metrics_port=contract.METRICS_PORT,
        download_pod_selector=model_download.pod_selector(NAMES.download),
        allowed_cidrs=["10.20.0.0/16"],
        allowed_namespaces=["gateway"],
        monitoring_namespace=monitoring,
        air_gapped=air_gapped,
        cluster_cidrs=["10.244.0.0/16", "fd00:10::/56", "203.0.113.0/24"],
    )
    for suffix, spec in specs.items():
        validate(network_policy.network_policy(f"aim-network-{suffix}", NAMES.namespace, spec))
    expected = {"default-deny-ingress", "default-deny-egress", "api"}
    expected |= set() if monitoring is None else {"metrics"}
    expected |= set() if air_gapped else {"download-egress"}
    assert set(specs) == expected
    assert specs["api"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": contract.API_PORT}]
    if not air_gapped:
        internet = specs["download-egress"]["egress"][1]["to"][0]["ipBlock"]
        assert "203.0.113.0/24" in internet["except"] and "10.244.0.0/16" not in internet["except"]  # inside 10/8


def test_the_builders_never_import_pulumi() -> None:
    """The builders run (and are tested) without the Pulumi SDK: a fresh interpreter imports them all."""
    modules = ", ".join(f"aim_infra.stack.manifests.{m}" for m in ("engine", "engine_pod", "sizing"))
    modules += ", aim_infra.stack.manifests.model_download, aim_infra.stack.manifests.network_policy"
    check = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pulumi')))"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
