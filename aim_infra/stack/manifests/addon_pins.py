"""Every version the cluster add-ons install, pinned: Helm charts and images, each with where it was seen upstream."""

from __future__ import annotations

from dataclasses import dataclass

#: The day every pin below was last checked upstream (with the search tool's repository snapshots).
PINS_CHECKED_ON = "2026-12-05"


@dataclass(frozen=True)
class PinEvidence:
    """Where a pin was seen to exist upstream, and when: a chart repository's index or a release tag."""

    url: str
    checked_on: str = PINS_CHECKED_ON


@dataclass(frozen=True)
class ChartPin:
    """One Helm chart at one version from one repository, installed under a fixed release name."""

    chart: str
    version: str
    repo: str
    release_name: str
    namespace: str
    timeout_seconds: int
    evidence: PinEvidence


# v3.32.2 does not exist: v3.32.1 is the newest v3.32 tag (projectcalico/calico, tag v3.32.1 of 2026-06-24, whose
# charts/tigera-operator/values.yaml is the one in shared/charts). Calico's chart index is not on GitHub.
CALICO = ChartPin(
    chart="tigera-operator",
    version="v3.32.1",  # the `v` is part of the chart version
    repo="https://docs.tigera.io/calico/charts",
    release_name="tigera-operator",
    namespace="tigera-operator",
    timeout_seconds=900,
    evidence=PinEvidence("https://github.com/projectcalico/calico/releases/tag/v3.32.1"),
)
# Entry 3.13.1 in the repository's index (gh-pages), tag metrics-server-helm-chart-3.13.1.
METRICS_SERVER = ChartPin(
    chart="metrics-server",
    version="3.13.1",
    repo="https://kubernetes-sigs.github.io/metrics-server/",
    release_name="metrics-server",
    namespace="kube-system",  # the API aggregation add-on lives with the control plane; the stack does not own it
    timeout_seconds=600,
    evidence=PinEvidence("https://github.com/kubernetes-sigs/metrics-server/blob/gh-pages/index.yaml"),
)
# Entry 0.21.0 in the index the Helm repository serves (branch helm-chart-release), tag amd-gpu-helm-0.21.0.
AMD_GPU = ChartPin(
    chart="amd-gpu",
    version="0.21.0",
    repo="https://rocm.github.io/k8s-device-plugin/",
    release_name="amd-gpu",
    namespace="kube-amd-gpu",
    timeout_seconds=600,
    evidence=PinEvidence("https://github.com/ROCm/k8s-device-plugin/blob/helm-chart-release/index.yaml"),
)
# Tag kube-prometheus-stack-88.5.3 (its values.yaml is the one in shared/charts); the gh-pages index is too large
# for the snapshot, the tag is what the release workflow publishes from.
KUBE_PROMETHEUS_STACK = ChartPin(
    chart="kube-prometheus-stack",
    version="88.5.3",
    repo="https://prometheus-community.github.io/helm-charts",
    release_name="kube-prometheus-stack",
    namespace="monitoring",
    timeout_seconds=900,
    evidence=PinEvidence(
        "https://github.com/prometheus-community/helm-charts/releases/tag/kube-prometheus-stack-88.5.3"
    ),
)
#: AMD's GPU metrics exporter. v1.5.4 does not exist and v1.5.2 is only named in the main branch's docs: v1.5.1 is
#: the newest entry of the Helm repository's index (gh-pages) and the newest tag. Its values are not in
#: shared/charts: the keys set below (serviceMonitor.enabled/interval/labels, tolerations, affinity) are those of
#: helm-charts/values.yaml at tag v1.5.1.
DEVICE_METRICS_EXPORTER = ChartPin(
    chart="device-metrics-exporter-charts",
    version="v1.5.1",
    repo="https://rocm.github.io/device-metrics-exporter",
    release_name="device-metrics-exporter",
    namespace="kube-amd-gpu",
    timeout_seconds=600,
    evidence=PinEvidence("https://github.com/ROCm/device-metrics-exporter/blob/gh-pages/index.yaml"),
)
CHARTS: dict[str, ChartPin] = {
    "calico": CALICO,
    "metrics_server": METRICS_SERVER,
    "amd_gpu_plugin": AMD_GPU,
    "monitoring": KUBE_PROMETHEUS_STACK,
}

LOCAL_PATH_VERSION = "v0.0.37"  # tag v0.0.37; its deploy/local-path-storage.yaml runs this image
LOCAL_PATH_IMAGE = f"rancher/local-path-provisioner:{LOCAL_PATH_VERSION}"
LOCAL_PATH_HELPER_IMAGE = "busybox:1.37.0"  # still listed ("Tags: 1.37.0, 1.37") by library/busybox
#: Evidence for every image tag this module pins.
IMAGE_PINS: dict[str, PinEvidence] = {
    LOCAL_PATH_IMAGE: PinEvidence(
        f"https://github.com/rancher/local-path-provisioner/releases/tag/{LOCAL_PATH_VERSION}"
    ),
    LOCAL_PATH_HELPER_IMAGE: PinEvidence(
        "https://github.com/docker-library/official-images/blob/master/library/busybox"
    ),
}


@dataclass(frozen=True)
class ImagePin:
    """One image pinned by tag and digest, with where the tag was seen to be published; `reference` is what a pod
    runs. Kept apart from IMAGE_PINS, which lists exactly the images the add-ons themselves declare."""

    repository: str
    tag: str
    digest: str
    evidence: PinEvidence

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}@{self.digest}"


#: The vLLM production-stack router that the ModelRouter runs (stack/manifests/router.py), as of chart vllm-stack
#: 0.1.12 (tag vllm-stack-0.1.12, commit 66b60661aa3052810859a417559e9e830772a091, 2026-07-24). The evidence is the
#: tag's .github/workflows/helm-release.yml: every push to main that touches helm/ builds the router and pushes
#: `lmcache/lmstack-router:v<version in helm/Chart.yaml>`. That makes the tag mutable until the chart version moves
#: on, so the digest pins the content. The digest is the one a public deployment record of 2026-09-14 gives for this
#: tag, pulled from Docker Hub and run with chart 0.1.12. Docker Hub cannot be reached from the machine these pins
#: were checked on, so check it with `docker buildx imagetools inspect lmcache/lmstack-router:v0.1.12`. The image is
#: amd64 only. The router's flags at the tag (src/vllm_router/parsers/parser.py) match those on main as of 2026-08-05
#: except for two help texts; tests/stack/components/test_router_builders.py keeps the list.
ROUTER_PIN = ImagePin(
    repository="lmcache/lmstack-router",
    tag="v0.1.12",
    digest="sha256:d8cfaf022f0179ba3f9d2bbcb95c602bd639b700f7a6ac409626758d1a366483",
    evidence=PinEvidence(
        "https://github.com/vllm-project/production-stack/blob/vllm-stack-0.1.12/.github/workflows/helm-release.yml",
        checked_on="2026-12-06",
    ),
)
#: KEDA, for autoscaling the models (issue 13). Tag v2.20.2 of kedacore/charts (commit cbb9bb8c, 2026-07-31):
#: keda/Chart.yaml says version 2.20.2, appVersion 2.20.2; its values.yaml is what keda_values sets keys of, and its
#: templates/crds/crd-scaledobjects.yaml the ScaledObject schema tests/stack/scaledobject_schema.py is written from.
#: 2.21.1 was released later but its CRD was not read here. Installed only when some model autoscales.
KEDA = ChartPin(
    chart="keda",
    version="2.20.2",
    repo="https://kedacore.github.io/charts",
    release_name="keda",
    namespace="keda",
    timeout_seconds=600,
    evidence=PinEvidence("https://github.com/kedacore/charts/releases/tag/v2.20.2"),
)
#: KEDA's HTTP add-on, for models that scale to zero (issue 13): its interceptor holds a request while KEDA starts the
#: model's first replica. Chart keda-add-ons-http 0.15.0 of kedacore/charts (release commit c4b92e9e of 2026-06-15,
#: "feat(http-add-on): release v0.15.0"; the chart has no git tag after 0.12.2, so the evidence is that commit's
#: Chart.yaml, which says version 0.15.0, appVersion 0.15.0). Its values.yaml is what http_addon_values sets keys of,
#: its templates/crds/crd-interceptorroutes.yaml (with kedacore/http-add-on v0.15.0's interceptorroute_types.go) the
#: InterceptorRoute schema tests/stack/scaledobject_schema.py is written from. Installed into KEDA's namespace, after
#: KEDA (its interceptor is scaled by a ScaledObject of its own), only when some model has scaleToZero.
KEDA_HTTP_ADDON = ChartPin(
    chart="keda-add-ons-http",
    version="0.15.0",
    repo="https://kedacore.github.io/charts",
    release_name="keda-add-ons-http",
    namespace=KEDA.namespace,
    timeout_seconds=600,
    evidence=PinEvidence(
        "https://github.com/kedacore/charts/blob/c4b92e9eed0ddc6668b1395d5f137e3ad4baa3d4/http-add-on/Chart.yaml"
    ),
)
#: Every chart the install plan may install, by its key there.
ALL_CHARTS: dict[str, ChartPin] = {
    **CHARTS,
    "device_metrics_exporter": DEVICE_METRICS_EXPORTER,
    "keda": KEDA,
    "keda_http": KEDA_HTTP_ADDON,
}
