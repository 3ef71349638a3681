"""Host steps under mocks: kubeadm bootstrap order, cleanup levels on destroy, the GPU gate and the smoke test."""

from __future__ import annotations

import itertools
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from aim_infra.stack.plan import COMMAND_TYPE, Declared, PlanResult, creation_order, run_stack
from tests.pod.test_preflight import amd_smi_list, tool

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ["cluster-host-preflight", "cluster-containerd", "cluster-registry-mirror", "cluster-kubeadm"]
KUBEADM = {"aim:clusterBootstrap": "kubeadm", "aim:smokeTest": "true"}
#: <project>/<stack>, what the host markers record as their creator (Pulumi.yaml's project, the mocked stack).
STACK_ID = "aim/dev"
API_KEY = "sk-HOSTSTEPS-never-in-a-command-0123"


def step(result: PlanResult, name: str) -> Declared:
    return result.named(COMMAND_TYPE, name)


def steps(result: PlanResult) -> list[str]:
    return [r.name for r in creation_order(result) if r.type == COMMAND_TYPE]


def dependency_names(result: PlanResult, resource: Declared) -> set[str]:
    return {result.by_urn(u).name for u in resource.dependencies if result.by_urn(u) is not None}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def kubeadm() -> PlanResult:
    result = run_stack("dev", KUBEADM)
    assert result.error is None, result.error
    return result


# --------------------------------------------------------------------------------------------------------------------
# bootstrap: order and what each step runs


def test_bootstrap_steps_run_in_order_before_anything_reaches_the_cluster(kubeadm: PlanResult) -> None:
    order = steps(kubeadm)
    assert [name for name in order if name.startswith("cluster-")] == BOOTSTRAP
    assert order.index("gpu-ready-check") < order.index("smoke-test-check")
    # Each bootstrap step waits for the one before it.
    for before, after in itertools.pairwise(BOOTSTRAP):
        assert dependency_names(kubeadm, step(kubeadm, after)) == {before}
    # The Kubernetes provider waits for `kubeadm init`, so every Kubernetes object comes after it.
    provider = kubeadm.of_type("pulumi:providers:kubernetes")[0]
    assert dependency_names(kubeadm, provider) == {"cluster-kubeadm"}
    created = [r.name for r in creation_order(kubeadm)]
    first_kubernetes = min(created.index(r.name) for r in kubeadm.resources if r.type.startswith("kubernetes:"))
    assert created.index("cluster-kubeadm") < created.index("kubernetes") < first_kubernetes


def test_bootstrap_steps_run_repository_scripts_with_the_stack_settings(kubeadm: PlanResult) -> None:
    kubeconfig = str(Path.home() / ".kube" / "aim-dev.conf")
    expected = {
        "cluster-host-preflight": ["bash", "scripts/bootstrap/host-preflight.sh"],
        "cluster-containerd": ["bash", "scripts/bootstrap/containerd-config.sh"],
        "cluster-registry-mirror": ["bash", "scripts/bootstrap/containerd-registry-mirror.sh", "5000"],
        "cluster-kubeadm": [
            "bash",
            "scripts/bootstrap/kubeadm-init.sh",
            "--stack",
            STACK_ID,
            "--pod-cidr",
            "192.168.0.0/16",
            "--kubeconfig",
            kubeconfig,
            "--single-node",
        ],
    }
    for name, argv in expected.items():
        command = step(kubeadm, name)
        assert shlex.split(command.inputs["create"]) == argv, name
        assert (ROOT / argv[1]).is_file(), argv[1]  # a file in the repository, never an inline script
        assert command.inputs["dir"] == str(ROOT)
        # A replacement would run the old step's delete (for kubeadm: a reset), so nothing may force one.
        # (the SDK marks only `triggers` as replacing, and no step has any)
        assert "triggers" not in command.inputs and command.options["replace_on_changes"] == ["triggers[*]"], name
        assert not command.options["delete_before_replace"]
    # kubeadm prints a join token: its outputs stay encrypted in the state.
    assert set(step(kubeadm, "cluster-kubeadm").options["additional_secret_outputs"]) == {"stdout", "stderr"}
    provider = kubeadm.of_type("pulumi:providers:kubernetes")[0]
    assert provider.inputs["kubeconfig"] == kubeconfig and "context" not in provider.inputs


def test_pod_cidr_and_registry_port_reach_kubeadm_and_containerd() -> None:
    result = run_stack("dev", {**KUBEADM, "aim:podCidr": "10.244.0.0/16", "aim:registryPort": "5111"})
    assert "--pod-cidr 10.244.0.0/16" in step(result, "cluster-kubeadm").inputs["create"]
    assert shlex.split(step(result, "cluster-registry-mirror").inputs["create"])[-1] == "5111"
    calico = result.named("kubernetes:helm.sh/v3:Release", "addons-calico").inputs["values"]
    pools = calico["installation"]["calicoNetwork"]["ipPools"]
    assert [p["cidr"] for p in pools] == ["10.244.0.0/16"]  # the same network kubeadm was given


def test_no_registry_mirror_without_a_local_registry() -> None:
    result = run_stack("dev", {**KUBEADM, "aim:registry": "false", "aim:image": "registry.example.com/aim/engine"})
    assert result.error is None, result.error
    assert steps(result)[:3] == ["cluster-host-preflight", "cluster-containerd", "cluster-kubeadm"]
    assert dependency_names(result, step(result, "cluster-kubeadm")) == {"cluster-containerd"}


def test_no_bootstrap_steps_for_an_existing_cluster() -> None:
    result = run_stack("dev", {"aim:clusterBootstrap": "none", "aim:smokeTest": "false"})
    assert result.error is None, result.error
    # the registry's owner step is Docker's, not the cluster's: it stays with any bootstrap
    assert steps(result) == ["ownership-check", "aim-registry-data-owner", "gpu-ready-check"]
    assert not result.of_type("aim:infra:ClusterBootstrap") and not result.of_type("aim:infra:SmokeTest")
    assert "kubeconfig" not in result.of_type("pulumi:providers:kubernetes")[0].inputs


# --------------------------------------------------------------------------------------------------------------------
# cleanup levels: what `pulumi destroy` runs and keeps


@pytest.mark.parametrize("level", ["resources", "images", "registry", "all"])
def test_cleanup_level_decides_what_destroy_removes(level: str) -> None:
    result = run_stack("dev", {**KUBEADM, "aim:cleanup": level})
    assert result.error is None, result.error
    deletes = {r.name: r.inputs.get("delete", "") for r in result.of_type(COMMAND_TYPE)}
    removes_images = level != "resources"
    removes_registry = level in ("registry", "all")
    removes_everything = level == "all"

    # the cluster itself and the host settings: only at `all`
    kubeconfig = str(Path.home() / ".kube" / "aim-dev.conf")
    # --local-path-dir: the model cache's volume directory, whatever the PVC deletion's race with the provisioner left;
    # only the volumes of the stack's namespace with the marker naming the stack go (--stack, --local-path-namespace)
    reset = shlex.join(
        [
            "bash",
            "scripts/bootstrap/kubeadm-reset.sh",
            "--stack",
            STACK_ID,
            "--kubeconfig",
            kubeconfig,
            "--local-path-dir",
            "/opt/local-path-provisioner",
            "--local-path-namespace",
            "aim",
        ]
    )
    assert (deletes["cluster-kubeadm"] == reset) is removes_everything
    assert deletes["cluster-kubeadm"].startswith("echo 'kept: the kubeadm cluster") is not removes_everything
    undo = "bash scripts/bootstrap/host-preflight.sh --undo"
    assert (deletes["cluster-host-preflight"] == undo) is removes_everything
    assert deletes["cluster-containerd"].startswith("echo 'kept: ")  # never reverted: containerd may serve others
    # containerd's mirror for the registry: with the registry
    remove_mirror = "bash scripts/bootstrap/containerd-registry-mirror.sh --remove 5000"
    assert (deletes["cluster-registry-mirror"] == remove_mirror) is removes_registry

    # the built image, locally and in the registry
    assert ("aim-image-cleanup" in deletes) is removes_images
    if removes_images:
        built = result.named("docker:index/image:Image", "aim-image")
        repository = built.inputs["imageName"]
        deployment = json.dumps(result.named("kubernetes:apps/v1:Deployment", "aim-engine-deployment").inputs)
        argv = shlex.split(deletes["aim-image-cleanup"].replace('"$AIM_PYTHON"', "python"))
        assert argv[:3] == ["python", "-m", "aim_infra.host.image_cleanup"]
        assert argv[argv.index("--image") + 1] == repository
        assert f"@{argv[argv.index('--digest') + 1]}" in deployment  # the digest the engine runs
        assert argv[argv.index("--registry-container") + 1] == "aim-registry"
        assert "--all-tags" in argv  # the stack's own repository: earlier builds go too
        cleanup = step(result, "aim-image-cleanup")
        # Runs before the registry container goes away on destroy (dependents are deleted first).
        assert {"aim-registry", "aim-image"} <= dependency_names(result, cleanup)

    # the registry's data and image: with the registry
    # Pulumi never deletes the volume itself (an existing one of that name is silently returned by Docker): the owner
    # step removes it, only with the label that proves this stack created it.
    volume = result.named("docker:index/volume:Volume", "aim-registry-data")
    assert volume.options["retain_on_delete"] is True
    assert {"label": "aim.stack", "value": STACK_ID} in volume.inputs["labels"]
    owner = step(result, "aim-registry-data-owner")
    assert "aim-registry-data-owner" in dependency_names(result, volume)
    assert shlex.split(owner.inputs["create"]) == [
        "bash", "scripts/bootstrap/registry-volume.sh", "--stack", STACK_ID, "--claim", "aim-registry-data"
    ]  # fmt: skip
    remove = f"bash scripts/bootstrap/registry-volume.sh --stack {STACK_ID} --remove aim-registry-data"
    assert (deletes["aim-registry-data-owner"] == remove) is removes_registry
    assert deletes["aim-registry-data-owner"].startswith("echo 'kept: docker volume") is not removes_registry
    registry_image = result.named("docker:index/remoteImage:RemoteImage", "aim-registry-image")
    assert registry_image.inputs["keepLocally"] is not removes_registry
    # The container always goes: a kept one would collide with the next `pulumi up` by name.
    assert result.named("docker:index/container:Container", "aim-registry").options["retain_on_delete"] is False

    # the model cache (and its namespace, whose deletion would take the cache along): only at `all`
    for kind, name in (("PersistentVolumeClaim", "aim-engine-model-cache"), ("Namespace", "aim-engine-namespace")):
        kept = result.named(f"kubernetes:core/v1:{kind}", name).options["retain_on_delete"]
        assert kept is not removes_everything, (kind, level)
    # Everything else Kubernetes is deleted by every level.
    others = [r for r in result.resources if r.type.startswith("kubernetes:") and r.custom]
    kept = {r.name for r in others if r.options["retain_on_delete"]}
    assert kept == (set() if removes_everything else {"aim-engine-model-cache", "aim-engine-namespace"})


def test_image_cleanup_of_a_shared_repository_removes_only_the_current_build() -> None:
    result = run_stack("dev", {**KUBEADM, "aim:cleanup": "images", "aim:image": "localhost:5000/team/aim-engine"})
    assert result.error is None, result.error
    assert "--all-tags" not in step(result, "aim-image-cleanup").inputs["delete"]


def test_cleanup_without_bootstrap_never_touches_the_host() -> None:
    result = run_stack("dev", {"aim:clusterBootstrap": "none", "aim:cleanup": "all", "aim:smokeTest": "false"})
    deletes = " ".join(r.inputs.get("delete", "") for r in result.of_type(COMMAND_TYPE))
    assert "kubeadm" not in deletes and "host-preflight" not in deletes and "registry-mirror" not in deletes
    assert "aim_infra.host.image_cleanup" in deletes


# --------------------------------------------------------------------------------------------------------------------
# the GPU gate and the smoke test


def test_gpu_gate_sits_between_the_device_plugin_and_the_engine(kubeadm: PlanResult) -> None:
    gate = step(kubeadm, "gpu-ready-check")
    argv = shlex.split(gate.inputs["create"].replace('"$AIM_PYTHON"', "python"))
    recipe = kubeadm.outputs["recipe"]
    assert argv[:3] == ["python", "-m", "aim_infra.host.gpu_ready"]
    assert argv[argv.index("--gpu") + 1] == recipe["gpu"]
    assert int(argv[argv.index("--count") + 1]) == recipe["gpu_count"]
    assert {"addons-amd-gpu-plugin", "cluster-kubeadm"} <= dependency_names(kubeadm, gate)
    assert gate.inputs["environment"]["KUBECONFIG"] == str(Path.home() / ".kube" / "aim-dev.conf")
    assert gate.inputs["environment"]["AIM_PYTHON"] == sys.executable
    engine = kubeadm.named("kubernetes:apps/v1:Deployment", "aim-engine-deployment")
    assert "gpu-ready-check" in dependency_names(kubeadm, engine)
    prod = run_stack("prod", {})
    assert "--context prod-mi300x" in step(prod, "gpu-ready-check").inputs["create"]


def test_smoke_test_runs_after_the_engine_and_reruns_on_a_new_recipe_or_image(kubeadm: PlanResult) -> None:
    check = step(kubeadm, "smoke-test-check")
    assert {"aim-engine-deployment", "aim-engine-service"} <= dependency_names(kubeadm, check)
    argv = shlex.split(check.inputs["create"].replace('"$AIM_PYTHON"', "python"))
    assert argv[:4] == ["python", "-m", "aim_infra.host.smoke", "--port-forward"]
    assert argv[argv.index("--model") + 1] == "Qwen/Qwen3-8B"
    assert argv[argv.index("--namespace") + 1] == "aim" and argv[argv.index("--service") + 1] == "aim-engine"
    # No aim:apiKey in dev: the generated key, read from the engine's Secret when the check runs.
    assert argv[argv.index("--api-key-secret") + 1] == "aim-engine-api-key:VLLM_API_KEY"
    assert "delete" not in check.inputs
    template = kubeadm.named("kubernetes:apps/v1:Deployment", "aim-engine-deployment").inputs["spec"]["template"]
    running = template["spec"]["containers"][0]["image"]
    recipe_id, decision, reference = check.inputs["triggers"]
    assert recipe_id == kubeadm.outputs["recipe"]["recipe_id"] and reference == running

    other_recipe = run_stack("dev", {**KUBEADM, "aim:metric": "latency"})
    triggers = step(other_recipe, "smoke-test-check").inputs["triggers"]
    assert triggers[:2] != [recipe_id, decision]
    other_image = run_stack("dev", {**KUBEADM, "aim:baseImage": "rocm/vllm:rocm7.14.0_other_tag"})
    triggers = step(other_image, "smoke-test-check").inputs["triggers"]
    assert triggers[2] != reference and triggers[0] == recipe_id


def test_smoke_test_reads_the_api_key_from_the_cluster_never_from_its_inputs() -> None:
    result = run_stack("prod", {"aim:apiKey": API_KEY})
    assert result.error is None, result.error
    check = step(result, "smoke-test-check")
    assert "--api-key-secret aim-engine-api-key:VLLM_API_KEY" in check.inputs["create"]
    for command in result.of_type(COMMAND_TYPE):
        assert API_KEY not in json.dumps(command.inputs), command.name


# --------------------------------------------------------------------------------------------------------------------
# inputs that only make sense with kubeadm


def test_kubeadm_gpu_auto_reads_this_hosts_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tool(tmp_path / "bin", "amd-smi", amd_smi_list(8))
    monkeypatch.setenv("AIM_SMI_COMMAND", f"{smi} static --json")
    result = run_stack("dev", {**KUBEADM, "aim:gpu": "auto", "aim:gpuCount": "auto"})
    assert result.error is None, result.error
    assert (result.outputs["recipe"]["gpu"], result.outputs["recipe"]["gpus_available"]) == ("MI300X", 8)
    mismatch = run_stack("dev", {**KUBEADM, "aim:gpu": "MI355X", "aim:gpuCount": "auto"})
    assert mismatch.error == "aim:gpu MI355X: this host has 8 x MI300X; set aim:gpu auto or MI300X"
    assert mismatch.resources == []


def test_kubeadm_gpu_auto_without_a_gpu_tool_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIM_SMI_COMMAND", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("ROCM_PATH", str(tmp_path / "rocm"))
    result = run_stack("dev", {**KUBEADM, "aim:gpu": "auto"})
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith("aim:gpu/aim:gpuCount auto: cannot read this host's GPUs (neither amd-smi nor")
    assert result.error.endswith("set aim:gpu and aim:gpuCount (e.g. `pulumi config set aim:gpu MI300X`)")
    assert result.resources == []


def test_kubeadm_with_a_kubernetes_context_is_refused() -> None:
    result = run_stack("dev", {**KUBEADM, "kubernetes:context": "prod-mi300x"})
    assert result.error == (
        "kubernetes:context: 'prod-mi300x' is not allowed: expected unset when aim:clusterBootstrap is kubeadm "
        "(the stack writes and uses its own kubeconfig)"
    )
    assert result.resources == []


# --------------------------------------------------------------------------------------------------------------------
# the offline plan shows the steps


def test_plan_shows_the_host_steps_in_order() -> None:
    command = [sys.executable, "-m", "aim_infra", "plan", "--stack", "dev"]
    command += ["--config", "aim:clusterBootstrap=kubeadm", "--config", "aim:smokeTest=true"]
    command += ["--config", "aim:cleanup=all"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    section = done.stdout.split("Host steps, in the order `pulumi up` runs them", 1)[1].split("\nOutputs:", 1)[0]
    numbered = [line.split(". ", 1)[1].split()[0] for line in section.splitlines() if line[:5].strip().endswith(".")]
    assert [name for name in numbered if name.startswith("cluster-")] == BOOTSTRAP
    assert numbered[-1] == "smoke-test-check"
    assert f"destroy: bash scripts/bootstrap/kubeadm-reset.sh --stack {STACK_ID} --kubeconfig" in section
    assert "re-runs when any of these change:" in section


# --------------------------------------------------------------------------------------------------------------------
# what preview says about the host steps and the cleanup, before anything runs


def info(result: PlanResult, prefix: str) -> list[str]:
    return [m for level, m in result.logs if level == "info" and m.startswith(prefix)]


def test_preview_says_what_the_bootstrap_does_and_what_destroy_keeps(kubeadm: PlanResult) -> None:
    kubeconfig = Path.home() / ".kube" / "aim-dev.conf"
    assert info(kubeadm, "AIM bootstrap:") == [
        "AIM bootstrap: this host becomes a single-node kubeadm cluster: host preflight → containerd → containerd "
        f"mirror for localhost:5000 → kubeadm init (pod CIDR 192.168.0.0/16) → kubeconfig {kubeconfig}"
    ]
    assert info(kubeadm, "AIM cleanup") == [
        "AIM cleanup resources: pulumi destroy removes the stack's Kubernetes objects; keeps the model cache, "
        "the built AIM image, the registry's data, the cluster"
    ]
    assert len(info(kubeadm, "AIM smoke test:")) == 1
    everything = run_stack("dev", {**KUBEADM, "aim:cleanup": "all"})
    assert info(everything, "AIM cleanup") == [
        "AIM cleanup all: pulumi destroy removes the stack's Kubernetes objects, the model cache, the built AIM "
        "image, the registry's data, the cluster (kubeadm reset)"
    ]
    # An existing cluster and an image built elsewhere: nothing about a bootstrap, an image or a registry.
    prod = run_stack("prod", {"aim:smokeTest": "false"})
    assert info(prod, "AIM bootstrap:") == [] and info(prod, "AIM smoke test:") == []
    assert info(prod, "AIM cleanup") == [
        "AIM cleanup resources: pulumi destroy removes the stack's Kubernetes objects; keeps the model cache"
    ]
