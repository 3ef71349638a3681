"""Stack settings: defaults equal Pulumi.yaml's, stack files are well typed, and every bad value is one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from aim_infra.common.errors import AimError
from aim_infra.stack.settings import SECRET_KEYS, Settings, field_keys, parse_settings

ROOT = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
YAML_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict}


def declared_type(spec: dict[str, Any]) -> str:
    """Pulumi's project schema has no object type (`type: object` is refused) and types an array's items only as
    string, integer, boolean or array, so an object key and a list of objects are declared untyped: the default
    ({} or []) says which."""
    if "type" in spec:
        return str(spec["type"])
    return "array" if isinstance(spec.get("default"), list) else "object"


def test_project_file_documents_exactly_the_settings() -> None:
    declared = set(PROJECT["config"])
    assert declared == set(field_keys()) | set(SECRET_KEYS)
    for key, spec in PROJECT["config"].items():
        assert spec.get("description"), f"{key} has no description"
        assert spec.get("type", "string") in ("string", "integer", "boolean", "array"), f"Pulumi refuses {key}'s type"
        assert declared_type(spec) in YAML_TYPES
        if spec.get("type") == "array":
            assert spec["items"]["type"] == "string", f"Pulumi needs items on the array {key}"
        if "type" not in spec and key not in SECRET_KEYS:
            # untyped: its default is what says object or list, and keeps the key optional (no default = required)
            assert spec.get("default") in ({}, []), f"{key} is untyped without an empty object or list default"


def test_settings_defaults_equal_the_project_file_defaults() -> None:
    defaults = Settings().model_dump(by_alias=True)
    for key, spec in PROJECT["config"].items():
        if key in SECRET_KEYS:
            assert spec.get("secret") is True and "default" not in spec
            continue
        assert isinstance(spec["default"], YAML_TYPES[declared_type(spec)]), key
        if "type" not in spec:
            # Pulumi hands an untyped key's default ({} or []) to the program as JSON; it must mean the same as
            # leaving the key unset.
            name = field_keys()[key]
            assert getattr(parse_settings({key: json.dumps(spec["default"])}), name) == getattr(Settings(), name), key
            continue
        assert spec["default"] == defaults[key], key


def test_project_runtime_is_python_with_a_virtualenv() -> None:
    assert PROJECT["name"] == "aim"
    assert PROJECT["runtime"]["name"] == "python"
    assert PROJECT["runtime"]["options"]["virtualenv"] == ".venv"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_use_known_keys_with_declared_types(stack: str) -> None:
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    for key, value in config.items():
        namespace, _, name = key.partition(":")
        assert namespace in ("aim", "kubernetes"), key
        if namespace == "aim":
            declared = declared_type(PROJECT["config"][name])
            assert isinstance(value, YAML_TYPES[declared]), f"{key}: {value!r} is not {declared}"
    raw = {k.removeprefix("aim:"): v for k, v in config.items() if k.startswith("aim:")}
    parse_settings({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in raw.items()})


def test_dev_and_prod_stacks_are_what_the_issue_describes() -> None:
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    assert dev["aim:gpu"] == "MI300X" and dev["aim:gpuCount"] == "1" and dev["aim:registry"] is True
    assert all(dev[f"aim:{k}"] is True for k in ("calico", "metricsServer", "localPath", "amdGpuPlugin", "monitoring"))
    assert prod["aim:gpuCount"] == "8" and prod["aim:calico"] is False and prod["aim:buildImage"] is False
    assert "70B" in prod["aim:model"]


BAD: list[tuple[dict[str, Any], str]] = [
    ({"gpuCount": "eight"}, "aim:gpuCount: 'eight' is not allowed: expected auto or a whole number from 1 to 64"),
    ({"gpuCount": "0"}, "aim:gpuCount: '0' is not allowed: expected auto or a whole number from 1 to 64"),
    ({"gpuCount": "65"}, "aim:gpuCount: '65' is not allowed"),
    ({"replicas": "-1"}, "aim:replicas: '-1' is not allowed"),
    ({"maxModelLen": "12"}, "aim:maxModelLen: '12' is not allowed: expected auto or a whole number from 256"),
    ({"metric": "speed"}, "aim:metric: 'speed' is not allowed: expected 'throughput' or 'latency'"),
    ({"precision": "fp4"}, "aim:precision: 'fp4' is not allowed"),
    ({"serviceType": "Ingress"}, "aim:serviceType: 'Ingress' is not allowed"),
    ({"nodePort": "80"}, "aim:nodePort: '80' is not allowed: expected 0 (assigned) or a port from 30000 to 32767"),
    ({"nodePort": "http"}, "aim:nodePort: 'http' is not allowed: expected 0 (assigned) or a port from 30000 to 32767"),
    # One wording whatever the service type or how far out of range (issue #11).
    ({"nodePort": "99999", "serviceType": "ClusterIP"}, "aim:nodePort: '99999' is not allowed: expected 0 (assigned)"),
    ({"registryPort": "22"}, "aim:registryPort: '22' is not allowed: expected a whole number from 1024 to 65535"),
    ({"cacheSize": "big"}, "aim:cacheSize: 'big' is not allowed: expected auto or a Kubernetes quantity"),
    ({"cacheAccessMode": "ReadOnlyMany"}, "aim:cacheAccessMode: 'ReadOnlyMany' is not allowed"),
    ({"smokeTest": "yes"}, "aim:smokeTest: 'yes' is not allowed: expected true or false"),
    ({"retainModelCache": "false"}, "aim:retainModelCache: no longer a key; use aim:cleanup (the model cache is kept"),
    ({"retainRegistryData": "false"}, "aim:retainRegistryData: no longer a key; use aim:cleanup (the registry's"),
    ({"cleanup": "everything"}, "aim:cleanup: 'everything' is not allowed: expected 'resources', 'images', 'registry'"),
    ({"clusterBootstrap": "kind"}, "aim:clusterBootstrap: 'kind' is not allowed: expected 'none' or 'kubeadm'"),
    ({"namespace": "kube-system"}, "aim:namespace: 'kube-system' is not allowed: expected a namespace of its own"),
    (
        {"clusterBootstrap": "kubeadm"},
        "aim:calico: false is not allowed: expected true when clusterBootstrap is kubeadm (a new cluster has no pod",
    ),
    (
        {"clusterBootstrap": "kubeadm", "calico": "true"},
        "aim:localPath: false is not allowed: expected true, or a storageClass set, when clusterBootstrap is kubeadm",
    ),
    (
        {"clusterBootstrap": "kubeadm", "calico": "true", "storageClass": "nvme"},
        "aim:kubeletInsecureTls: false is not allowed: expected true when clusterBootstrap is kubeadm with",
    ),
    ({"monitoring": "1"}, "aim:monitoring: '1' is not allowed: expected true or false"),
    ({"namespace": "AIM"}, "aim:namespace: 'AIM' is not allowed: expected a DNS label"),
    (
        {"podCidr": "192.168.0.1/16"},
        "aim:podCidr: '192.168.0.1/16' is not allowed: host bits set: expected the network",
    ),
    ({"podCidr": "10.0.0.1/32"}, "aim:podCidr: '10.0.0.1/32' is not allowed: expected an IPv4 prefix from /8 to /24"),
    ({"podCidr": "0.0.0.0/0"}, "aim:podCidr: '0.0.0.0/0' is not allowed: expected an IPv4 prefix from /8 to /24"),
    ({"podCidr": "fd00::/8"}, "aim:podCidr: 'fd00::/8' is not allowed: expected an IPv6 prefix from /48 to /64"),
    ({"podCidr": "pods"}, "aim:podCidr: 'pods' is not allowed: expected a network in CIDR form"),
    ({"cacheSize": "10"}, "aim:cacheSize: '10' is not allowed: expected auto or a Kubernetes quantity of at least 1Gi"),
    ({"cacheSize": "500Mi"}, "aim:cacheSize: '500Mi' is not allowed: expected auto or a Kubernetes quantity of at"),
    ({"cacheSize": "9" * 40}, "aim:cacheSize: '" + "9" * 40 + "' is not allowed: expected auto or a Kubernetes"),
    ({"storageClass": "Bad Class"}, "aim:storageClass: 'Bad Class' is not allowed: expected empty (the cluster's"),
    ({"storageClass": "-ssd"}, "aim:storageClass: '-ssd' is not allowed: expected empty (the cluster's default) or"),
    ({"modelRevision": "main; rm -rf /"}, "aim:modelRevision: 'main; rm -rf /' is not allowed: expected empty (the"),
    ({"modelRevision": "my branch"}, "aim:modelRevision: 'my branch' is not allowed: expected empty (the default"),
    ({"modelRevision": "../x"}, "aim:modelRevision: '../x' is not allowed: expected empty (the default branch), a 40"),
    ({"modelRevision": "v1..2"}, "aim:modelRevision: 'v1..2' is not allowed"),
    ({"modelRevision": "main.lock"}, "aim:modelRevision: 'main.lock' is not allowed"),
    (
        {"registry": "yes"},
        "aim:registry: 'yes' is not allowed: expected true or false (yes/no/on/off are text to Pulumi's YAML 1.2",
    ),
    ({"calico": "off"}, "aim:calico: 'off' is not allowed: expected true or false (yes/no/on/off are text to Pulumi's"),
    ({"model": "../models/x"}, "aim:model: '../models/x' is not allowed: expected a Hugging Face model id"),
    ({"baseImage": "rocm/vllm:latest"}, "aim:baseImage: 'rocm/vllm:latest' is not allowed: expected a pinned tag"),
    ({"baseImage": "rocm/vllm"}, "aim:baseImage: 'rocm/vllm' is not allowed: expected a pinned tag"),
    ({"baseImage": "Not An Image"}, "aim:baseImage: 'Not An Image' is not allowed: expected an image reference"),
    ({"buildImage": "false"}, "aim:image: '' is not allowed: expected a pinned image reference when buildImage"),
    ({"buildImage": "false", "image": "ghcr.io/x/aim:latest"}, "aim:image: 'ghcr.io/x/aim:latest' is not allowed"),
    ({"registry": "false"}, "aim:image: '' is not allowed: expected the repository to push to"),
    ({"image": "ghcr.io/x/aim:1.0"}, "aim:image: 'ghcr.io/x/aim:1.0' is not allowed: expected a repository without"),
    ({"vllmExtraArgs": "[1, "}, "aim:vllmExtraArgs: '[1, ' is not allowed: expected a list of strings"),
    ({"vllmExtraArgs": "--a 'b"}, 'aim:vllmExtraArgs: "--a \'b" is not allowed: cannot split into arguments'),
    ({"renderGroupId": "render"}, "aim:renderGroupId: 'render' is not allowed: expected a whole number"),
    ({"gpuCuont": "8"}, "aim:gpuCuont: unknown config key; did you mean aim:gpuCount?"),
]


@pytest.mark.parametrize(("raw", "expected"), BAD)
def test_bad_config_is_one_line_naming_key_value_and_rule(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(AimError) as error:
        parse_settings(raw)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(expected), message


def test_values_arrive_as_strings_and_are_typed() -> None:
    settings = parse_settings(
        {
            "gpuCount": "8",
            "replicas": "2",
            "smokeTest": "True",
            "cleanup": "images",
            "vllmExtraArgs": '["--enable-chunked-prefill"]',
            "nodePort": "30001",
            "maxModelLen": "auto",
        }
    )
    assert settings.gpu_count == 8 and settings.replicas == 2 and settings.smoke_test is True
    assert settings.removes_built_images and settings.keeps_registry_data and settings.keeps_model_cache
    assert settings.vllm_extra_args == ["--enable-chunked-prefill"] and settings.node_port == 30001
    assert parse_settings({"vllmExtraArgs": "--max-num-seqs 64 --enable-prefix-caching"}).vllm_extra_args == [
        "--max-num-seqs",
        "64",
        "--enable-prefix-caching",
    ]


def test_image_repository_follows_registry_and_image() -> None:
    assert parse_settings({}).image_repository == "localhost:5000/aim-engine"
    assert parse_settings({"registryPort": "5555"}).image_repository == "localhost:5555/aim-engine"
    assert parse_settings({"registry": "false", "image": "reg.example.com/aim/engine"}).image_repository == (
        "reg.example.com/aim/engine"
    )


def config_rows(page: Path, heading: str) -> dict[str, str]:
    """The rows of the key table under `heading` of a markdown page, by key (without backticks)."""
    text = page.read_text(encoding="utf-8")
    assert f"\n{heading}\n" in text, f"{page.name} has no {heading!r} section"
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return {line.split("|")[1].strip().strip("`"): line for line in section.splitlines() if line.startswith("| `")}


def assert_row_documents(row: str | None, key: str, spec: dict[str, Any], where: str) -> None:
    """A table row names the key's type and default exactly as Pulumi.yaml declares them."""
    assert row is not None, f"{where} lacks aim:{key}"
    assert f"| {declared_type(spec)} |" in row, f"{where} type of aim:{key}"
    if "default" in spec:
        default = spec["default"]
        shown = {True: "true", False: "false"}.get(default, default) if isinstance(default, bool) else default
        shown = '""' if shown == "" else json.dumps(shown) if isinstance(shown, list) else shown
        assert f"`{shown}`" in row, f"{where} default of aim:{key}"


def test_configuration_reference_matches_the_project_file() -> None:
    """docs/configuration.md documents every key, with its type and default, and nothing else."""
    rows = config_rows(ROOT / "docs" / "configuration.md", "## Every key")
    for key, spec in PROJECT["config"].items():
        assert_row_documents(rows.get(f"aim:{key}"), key, spec, "docs/configuration.md")
    assert set(rows) == {f"aim:{k}" for k in PROJECT["config"]} | {"kubernetes:context"}


def test_readme_main_keys_match_the_project_file() -> None:
    """The README's short table of main keys shows each key's type and default as Pulumi.yaml declares them."""
    rows = config_rows(ROOT / "README.md", "## Configuration")
    assert rows, "README.md's Configuration section has no key table"
    for name, row in rows.items():
        key = name.removeprefix("aim:")
        assert name.startswith("aim:") and key in PROJECT["config"], f"README.md documents an unknown key {name}"
        assert_row_documents(row, key, PROJECT["config"][key], "README.md")


def test_the_default_base_image_is_the_dockerfiles() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    default = next(
        line.split("=", 1)[1].strip() for line in dockerfile.splitlines() if line.startswith("ARG BASE_IMAGE=")
    )
    assert Settings().base_image == default == PROJECT["config"]["baseImage"]["default"]


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        ({"cacheSize": "1Gi"}, "cache_size", "1Gi"),
        ({"cacheSize": "1.5Ti"}, "cache_size", "1.5Ti"),
        ({"cacheSize": "2000000000"}, "cache_size", "2000000000"),
        ({"storageClass": "fast.ssd-1"}, "storage_class", "fast.ssd-1"),
        ({"modelRevision": "a" * 40}, "model_revision", "a" * 40),
        ({"modelRevision": "v2.0"}, "model_revision", "v2.0"),
        ({"modelRevision": "refs/pr/12"}, "model_revision", "refs/pr/12"),
        ({"podCidr": "10.244.0.0/16"}, "pod_cidr", "10.244.0.0/16"),
        ({"podCidr": "10.0.0.0/8"}, "pod_cidr", "10.0.0.0/8"),
        ({"podCidr": "fd00:10::/56"}, "pod_cidr", "fd00:10::/56"),
        ({"nodePort": "0", "serviceType": "ClusterIP"}, "node_port", 0),
    ],
)
def test_good_values_of_the_stricter_keys_are_kept(raw: dict[str, Any], field: str, value: object) -> None:
    assert getattr(parse_settings(raw), field) == value


def test_quantity_bytes_reads_every_unit() -> None:
    from aim_infra.stack.settings import quantity_bytes

    assert quantity_bytes("1Gi") == 2**30 and quantity_bytes("1.5Ti") == 3 * 2**39
    assert quantity_bytes("500G") == 500 * 10**9 and quantity_bytes("10") == 10 and quantity_bytes("0.5Ki") == 512
