"""Every Kubernetes object the stacks declare passes `kubernetes-validate --strict` for Kubernetes 1.30."""

from __future__ import annotations

import kubernetes_validate
import pytest

from aim_infra.stack.plan import PlanResult, kubernetes_objects, run_stack

KUBERNETES_VERSION = "1.30"
#: API groups whose schemas come from CRDs (kubernetes-validate has none for them).
CRD_GROUPS = ("monitoring.coreos.com/", "operator.tigera.io/", "projectcalico.org/")


def validate_all(result: PlanResult) -> int:
    checked = 0
    for manifest in kubernetes_objects(result):
        if str(manifest.get("apiVersion", "")).startswith(CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            name = manifest.get("metadata", {}).get("name")
            pytest.fail(f"{manifest.get('kind')} {name}: {error.message} at {list(error.path)}")
        checked += 1
    return checked


def test_dev_objects_validate(dev: PlanResult) -> None:
    assert validate_all(dev) >= 8


def test_prod_objects_with_secrets_and_budget_validate(prod: PlanResult) -> None:
    kinds = {m["kind"] for m in kubernetes_objects(prod)}
    assert {"Secret", "PodDisruptionBudget", "Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"} <= kinds
    assert validate_all(prod) >= 8


@pytest.mark.parametrize(
    "overrides",
    [
        {"aim:serviceType": "LoadBalancer", "aim:apiAllowedCidrs": '["10.20.0.0/16"]'},
        # An existing cluster (no bootstrap) that brings its own GPU plugin and default StorageClass.
        {
            "aim:serviceType": "ClusterIP",
            "aim:amdGpuPlugin": "false",
            "aim:localPath": "false",
            "aim:clusterBootstrap": "none",
        },
        {"aim:cleanup": "all", "aim:smokeTest": "false", "aim:registryPort": "5001"},
        {"aim:nodePort": "0", "aim:storageClass": "fast-nvme", "aim:cacheAccessMode": "ReadWriteMany"},
        # Its recipes run --trust-remote-code, which needs a commit-pinned revision (any 40-hex sha under mocks).
        {
            "aim:model": "deepseek-ai/DeepSeek-R1",
            "aim:gpuCount": "8",
            "aim:modelRevision": "0123456789abcdef" * 2 + "01234567",
        },
        {
            "aim:airGapped": "true",
            "aim:apiAllowedCidrs": '["10.20.0.0/16", "2001:db8::/32"]',
            "aim:apiAllowedNamespaces": '["gateway", "ingress-nginx"]',
            "aim:monitoring": "false",
        },
    ],
)
def test_variants_validate(overrides: dict[str, str]) -> None:
    result = run_stack("dev", overrides)
    assert result.error is None, result.error
    assert validate_all(result) >= 6
