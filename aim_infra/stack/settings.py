"""The one place stack config is read: every `aim:` key into one validated pydantic model, or one error line."""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from aim_infra.common.errors import AimError
from aim_infra.common.image_ref import ImageRef
from aim_infra.planning.precision import PrecisionWish
from aim_infra.planning.revision import revision_problem
from aim_infra.planning.workload import Workload, default_workload, parse_workload
from aim_infra.stack.components.api_proxy import DEFAULT_PROXY_IMAGE

NAMESPACE = "aim"
SECRET_KEYS = ("hfToken", "apiKey", "grafanaAdminPassword")
#: Keys of earlier versions and what replaced them, so an old stack file gets a pointer instead of "unknown key".
RETIRED_KEYS = {
    "retainModelCache": "aim:cleanup (the model cache is kept unless cleanup is all)",
    "retainRegistryData": "aim:cleanup (the registry's data is kept unless cleanup is registry or all)",
}
#: Namespaces the stack must never own: Kubernetes' own and the add-ons'.
RESERVED_NAMESPACES = (
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "monitoring",
    "calico-system",
    "tigera-operator",
    "kube-amd-gpu",
    "local-path-storage",
)
#: The ROCm vLLM image the AIM image builds on. Pinned: a tag that names ROCm and vLLM versions, never `latest`.
DEFAULT_BASE_IMAGE = "rocm/vllm:rocm7.14.0_cdna_ubuntu24.04_py3.14_pytorch_2.11.0_vllm_0.23.0"
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
#: A StorageClass name is a DNS-1123 subdomain: dot-separated DNS labels, at most 253 characters.
DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUANTITY_FACTORS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
QUANTITY_FACTORS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50})
#: The smallest model cache worth asking for; the real floor is the checkpoint plus headroom (checked per decision).
MIN_CACHE_BYTES = 2**30
#: kube-controller-manager gives each node a /24 (IPv6: /64) of the pod CIDR and refuses a CIDR more than 16 bits
#: shorter than that (65,536 nodes): so IPv4 /8–/24, IPv6 /48–/64.
POD_CIDR_PREFIXES = {4: (8, 24), 6: (48, 64)}
IMAGE_REF = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._/-][a-z0-9]+)*)*(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)


def _boolean(value: Any) -> Any:
    """Pulumi hands config over as strings: accept exactly true/false (any case) and real booleans."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, str) and value.strip().lower() in YAML11_BOOLEANS:
        # PyYAML reads yes/no/on/off as booleans (YAML 1.1); Pulumi's reader (YAML 1.2) passes them on as text.
        raise ValueError("expected true or false (yes/no/on/off are text to Pulumi's YAML 1.2 reader, not booleans)")
    raise ValueError("expected true or false")


YAML11_BOOLEANS = ("yes", "no", "on", "off", "y", "n")


def quantity_bytes(quantity: str) -> int:
    """Bytes of a Kubernetes quantity already matched by QUANTITY (e.g. 200Gi, 1.5Ti, 500G)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", quantity)
    assert match is not None
    number, unit = match.groups()
    whole, _, fraction = number.partition(".")
    scale = 10 ** len(fraction)
    return (int(whole) * scale + int(fraction or 0)) * QUANTITY_FACTORS[unit] // scale


def _auto_or_int(low: int, high: int) -> Any:
    def parse(value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool):
            raise ValueError(f"expected auto or a whole number from {low} to {high}")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"expected auto or a whole number from {low} to {high}") from None
        if not low <= number <= high or str(value).strip().startswith("+"):
            raise ValueError(f"expected auto or a whole number from {low} to {high}")
        return number

    return parse


def _integer(low: int, high: int) -> Any:
    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a whole number from {low} to {high}")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"expected a whole number from {low} to {high}") from None
        if not low <= number <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return number

    return parse


def _arg_list(value: Any) -> Any:
    """vLLM extra arguments: a YAML list (Pulumi passes it as JSON) or one shell-quoted string."""
    if isinstance(value, list):
        items = value
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except (ValueError, RecursionError):  # invalid, or nested deeper than the parser's recursion limit
                raise ValueError("expected a list of strings or a shell-quoted string of flags") from None
        else:
            try:
                items = shlex.split(text)
            except ValueError as error:
                raise ValueError(f"cannot split into arguments: {error}") from None
    else:
        raise ValueError("expected a list of strings or a shell-quoted string of flags")
    if not isinstance(items, list) or not all(isinstance(i, str | int | float) for i in items):
        raise ValueError("expected a list of strings")
    return [str(i) for i in items]


NODE_PORTS = "0 (assigned) or a port from 30000 to 32767"


def _node_port(value: Any) -> Any:
    """Kubernetes' default NodePort range (kube-apiserver --service-node-port-range); one wording everywhere."""
    try:
        number = _integer(0, 32767)(value)
    except ValueError:
        raise ValueError(f"expected {NODE_PORTS}") from None
    if number and not 30000 <= number <= 32767:
        raise ValueError(f"expected {NODE_PORTS}")
    return number


def _fraction(value: Any) -> Any:
    """A number in (0, 1], kept as the string Pulumi config holds (Pulumi.yaml has no float type)."""
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError("expected a number greater than 0 and at most 1, e.g. 0.9") from None
    if not 0 < number <= 1:
        raise ValueError("expected a number greater than 0 and at most 1, e.g. 0.9")
    return str(value).strip()


def _auto_or_seconds(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError("expected auto or a number of seconds greater than 0, e.g. 2.5") from None
    if not 0 < number <= 3600:
        raise ValueError("expected auto or a number of seconds greater than 0, e.g. 2.5")
    return str(value).strip()


def _cidr_list(value: Any) -> Any:
    items = _arg_list(value)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=True)
        except ValueError:
            raise ValueError(f"{item!r} is not a network in CIDR form such as 10.0.0.0/8") from None
    return items


def _name_list(value: Any) -> Any:
    items = _arg_list(value)
    for item in items:
        if not DNS_LABEL.fullmatch(item):
            raise ValueError(f"{item!r} is not a namespace name (a DNS label)")
    return items


class _LineError(ValueError):
    """A finished error line (a nested key's), passed through pydantic unchanged."""


#: Plenty for any count; longer digit runs stay text so json.loads never hits Python's int-conversion limit.
_MAX_JSON_DIGITS = 100


def _json_int(text: str) -> int | str:
    return int(text) if len(text) <= _MAX_JSON_DIGITS else text


def _workload(value: Any) -> Any:
    """aim:workload: Pulumi hands a stack file's object over as a JSON string (mock runs may pass the mapping).
    Unset, empty or `{}` (Pulumi.yaml's default, so the engine always passes something) mean no workload given."""
    if value is None or isinstance(value, Workload):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = json.loads(text, parse_int=_json_int)
        except (ValueError, RecursionError):  # invalid, or nested deeper than the parser's recursion limit
            raise _KeyError(
                "workload", value, 'a JSON object of workload keys, e.g. {"inputTokens": 2048, "concurrency": 32}'
            ) from None
    if isinstance(value, dict) and not value:
        return None
    try:
        return parse_workload(value, f"{NAMESPACE}:workload")
    except AimError as error:
        raise _LineError(str(error)) from None


Bool = Annotated[bool, BeforeValidator(_boolean)]
CidrList = Annotated[list[str], BeforeValidator(_cidr_list)]
NameList = Annotated[list[str], BeforeValidator(_name_list)]
Fraction = Annotated[str, BeforeValidator(_fraction)]
AutoOrFraction = Annotated[str, BeforeValidator(_auto_or_seconds)]
QueueDepth = Annotated[int, BeforeValidator(_integer(1, 100_000))]
GpuCount = Annotated[int | Literal["auto"], BeforeValidator(_auto_or_int(1, 64))]
Replicas = Annotated[int | Literal["auto"], BeforeValidator(_auto_or_int(1, 64))]
MaxModelLen = Annotated[int | Literal["auto"], BeforeValidator(_auto_or_int(256, 10_485_760))]
Port = Annotated[int, BeforeValidator(_integer(1024, 65535))]
NodePort = Annotated[int, BeforeValidator(_node_port)]
GroupId = Annotated[int, BeforeValidator(_integer(0, 2_147_483_647))]
ArgList = Annotated[list[str], BeforeValidator(_arg_list)]
WorkloadConfig = Annotated[Workload | None, BeforeValidator(_workload)]


class Settings(BaseModel):
    """Stack config. Aliases are the `aim:` keys; defaults equal Pulumi.yaml's `config:` defaults (a test checks)."""

    # Leading and trailing blanks never mean anything in a config value: ` MI300X ` is MI300X, `  ` is empty.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True)

    model: str = Field(
        default="Qwen/Qwen3-8B", min_length=1, max_length=200, description="Hugging Face model id to serve."
    )
    model_revision: str = Field(default="", alias="modelRevision", description="Hub revision; empty = default branch.")
    gpu: str = Field(default="auto", description="GPU type (MI300X, MI325X, MI355X, ...) or auto (from node labels).")
    gpu_count: GpuCount = Field(default="auto", alias="gpuCount", description="GPUs available on one node, or auto.")
    metric: Literal["throughput", "latency"] = Field(default="throughput", description="What the recipe optimises.")
    precision: PrecisionWish = Field(default="auto", description="auto (the checkpoint's) or a wish, e.g. fp8.")
    max_model_len: MaxModelLen = Field(default="auto", alias="maxModelLen", description="Context length or auto.")
    recipe: str = Field(default="", description="A catalogue recipe id to use instead of automatic selection.")
    vllm_extra_args: ArgList = Field(default_factory=list, alias="vllmExtraArgs", description="Extra vLLM flags.")
    replicas: Replicas = Field(default="auto", description="Engine replicas, or auto (fill the GPUs of one node).")
    namespace: str = Field(default="aim", description="Namespace of the inference workload.")
    service_type: Literal["NodePort", "ClusterIP", "LoadBalancer"] = Field(
        default="NodePort", alias="serviceType", description="How the OpenAI-compatible API is exposed."
    )
    node_port: NodePort = Field(default=30080, alias="nodePort", description="NodePort (30000-32767), 0 = assigned.")
    cache_size: str = Field(default="auto", alias="cacheSize", description="Model cache PVC size, or auto.")
    storage_class: str = Field(default="", alias="storageClass", description="StorageClass of the model cache.")
    cache_access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = Field(
        default="ReadWriteOnce", alias="cacheAccessMode", description="Access mode of the model cache PVC."
    )
    registry: Bool = Field(default=True, description="Run a local image registry on 127.0.0.1.")
    registry_port: Port = Field(default=5000, alias="registryPort", description="Port of the local registry.")
    build_image: Bool = Field(default=True, alias="buildImage", description="Build and push the AIM image.")
    base_image: str = Field(default=DEFAULT_BASE_IMAGE, alias="baseImage", description="Pinned ROCm vLLM base image.")
    image: str = Field(default="", description="Image to run (buildImage false) or repository to push to.")
    api_proxy_image: str = Field(
        default=DEFAULT_PROXY_IMAGE,
        alias="apiProxyImage",
        description="The nginx image of the API proxy sidecar, pinned by digest (a mirror of the default, air-gapped).",
    )
    calico: Bool = Field(default=False, description="Install Calico (tigera-operator).")
    pod_cidr: str = Field(default="192.168.0.0/16", alias="podCidr", description="Pod CIDR given to Calico.")
    metrics_server: Bool = Field(default=True, alias="metricsServer", description="Install metrics-server.")
    kubelet_insecure_tls: Bool = Field(
        default=False, alias="kubeletInsecureTls", description="metrics-server skips kubelet TLS checks (kubeadm)."
    )
    local_path: Bool = Field(default=False, alias="localPath", description="Install local-path-provisioner.")
    amd_gpu_plugin: Bool = Field(default=True, alias="amdGpuPlugin", description="Install the AMD GPU device plugin.")
    monitoring: Bool = Field(default=True, description="Install kube-prometheus-stack.")
    render_group_id: GroupId = Field(default=110, alias="renderGroupId", description="The nodes' render group id.")
    api_allowed_cidrs: CidrList = Field(
        default_factory=lambda: ["0.0.0.0/0"], alias="apiAllowedCidrs", description="Who may reach the API (CIDRs)."
    )
    api_allowed_namespaces: NameList = Field(
        default_factory=list, alias="apiAllowedNamespaces", description="Namespaces whose pods may reach the API."
    )
    air_gapped: Bool = Field(default=False, alias="airGapped", description="Allow the engine no egress at all.")
    admission_policy: Bool = Field(
        default=True, alias="admissionPolicy", description="Install the recipe ValidatingAdmissionPolicy."
    )
    cluster_bootstrap: Literal["none", "kubeadm"] = Field(
        default="none",
        alias="clusterBootstrap",
        description="none (use the kubeconfig's cluster) or kubeadm (make this host a single-node cluster).",
    )
    cleanup: Literal["resources", "images", "registry", "all"] = Field(
        default="resources", description="What pulumi destroy removes beyond the stack's Kubernetes objects."
    )
    smoke_test: Bool = Field(
        default=False, alias="smokeTest", description="After the rollout, check /health, /v1/models and one chat."
    )
    device_metrics_exporter: Bool = Field(
        default=False, alias="deviceMetricsExporter", description="Install AMD's device-metrics-exporter (GPU metrics)."
    )
    workload: WorkloadConfig = Field(
        default=None, description="Traffic to size for and benchmark (tokens, load, SLOs); None = not given."
    )
    benchmark: Bool = Field(
        default=False, description="After the rollout, benchmark the endpoint at the workload: measured vs estimated."
    )
    alert_ttft_p95_seconds: AutoOrFraction = Field(
        default="auto", alias="alertTtftP95Seconds", description="TTFT p95 alert threshold, or auto (by metric)."
    )
    alert_queue_depth: QueueDepth = Field(default=32, alias="alertQueueDepth", description="Waiting requests alert.")
    alert_kv_cache_usage: Fraction = Field(default="0.9", alias="alertKvCacheUsage", description="KV cache alert.")
    alert_throughput_fraction: Fraction = Field(
        default="0.7",
        alias="alertThroughputFraction",
        description="Throughput alert: fraction of the estimate's low end at the observed load.",
    )
    alert_gpu_memory_usage: Fraction = Field(
        default="0.97", alias="alertGpuMemoryUsage", description="GPU memory nearly full alert."
    )
    has_hf_token: bool = Field(default=False, exclude=True, description="(derived) aim:hfToken is set.")
    has_api_key: bool = Field(default=False, exclude=True, description="(derived) aim:apiKey is set.")
    has_grafana_admin_password: bool = Field(
        default=False, exclude=True, description="(derived) aim:grafanaAdminPassword is set."
    )

    @field_validator("model")
    @classmethod
    def _hub_id(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?", value):
            raise ValueError("expected a Hugging Face model id such as Qwen/Qwen3-8B")
        return value

    @field_validator("namespace")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not DNS_LABEL.fullmatch(value):
            raise ValueError("expected a DNS label: lower-case letters, digits and '-', at most 63 characters")
        return value

    @field_validator("cache_size")
    @classmethod
    def _quantity(cls, value: str) -> str:
        allowed = "auto or a Kubernetes quantity of at least 1Gi such as 200Gi (bytes without a unit are bytes)"
        if value != "auto" and (
            len(value) > 30 or not QUANTITY.fullmatch(value) or quantity_bytes(value) < MIN_CACHE_BYTES
        ):
            raise ValueError(f"expected {allowed}")
        return value

    @field_validator("storage_class")
    @classmethod
    def _storage_class(cls, value: str) -> str:
        if value and not DNS_SUBDOMAIN.fullmatch(value):
            raise ValueError(
                "expected empty (the cluster's default) or a StorageClass name: a DNS-1123 subdomain of lower-case "
                "letters, digits, '-' and '.', at most 253 characters, e.g. local-path"
            )
        return value

    @field_validator("model_revision")
    @classmethod
    def _revision(cls, value: str) -> str:
        problem = revision_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("pod_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError("expected a network in CIDR form such as 192.168.0.0/16") from None
        low, high = POD_CIDR_PREFIXES[network.version]
        if str(network) != value and network.compressed != value:
            raise ValueError(f"host bits set: expected the network address, e.g. {network}")
        if not low <= network.prefixlen <= high:
            raise ValueError(
                f"expected an IPv{network.version} prefix from /{low} to /{high} (each node gets a /{high} of it, "
                "and Kubernetes allows at most 16 bits more)"
            )
        return value

    @field_validator("api_proxy_image")
    @classmethod
    def _pinned_proxy_image(cls, value: str) -> str:
        if not IMAGE_REF.fullmatch(value) or not re.search(r"@sha256:[0-9a-f]{64}$", value):
            raise ValueError(
                "expected a digest-pinned nginx image such as nginxinc/nginx-unprivileged:<tag>@sha256:<64 hex> "
                "(the admission policy admits the sidecar only by digest)"
            )
        return value

    @field_validator("base_image", "image")
    @classmethod
    def _image_reference(cls, value: str) -> str:
        if value and not IMAGE_REF.fullmatch(value):
            raise ValueError("expected an image reference such as registry.example.com/aim/aim-engine:1.0")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        # Each problem names the key a user has to change.
        if not _pinned(self.base_image):
            raise _KeyError("baseImage", self.base_image, "a pinned tag or digest, never latest or no tag")
        if not self.build_image:
            if not self.image:
                raise _KeyError("image", self.image, "a pinned image reference when buildImage is false")
            # The recipe admission policy admits only images pinned by digest, so a tag alone is not enough here.
            if not re.search(r"@sha256:[0-9a-f]{64}$", self.image):
                raise _KeyError(
                    "image",
                    self.image,
                    "a digest-pinned reference repo[:tag]@sha256:<64 hex> when buildImage is false; "
                    f"get the digest with `docker buildx imagetools inspect {self.image}`",
                )
        elif not self.registry and not self.image:
            raise _KeyError("image", self.image, "the repository to push to when registry is false")
        elif self.image and self.build_image and _tagged(self.image):
            raise _KeyError("image", self.image, "a repository without tag when buildImage is true (we tag it)")
        open_to_all = any(ipaddress.ip_network(c).prefixlen == 0 for c in self.api_allowed_cidrs)
        if self.service_type == "LoadBalancer" and (not self.api_allowed_cidrs or open_to_all):
            raise _KeyError(
                "apiAllowedCidrs",
                self.api_allowed_cidrs,
                "an explicit list of client networks (not 0.0.0.0/0 or ::/0) for a LoadBalancer service",
            )
        if self.namespace in RESERVED_NAMESPACES:
            # The stack owns its namespace (creates it, adopts it after a retained destroy, deletes it at cleanup all).
            raise _KeyError("namespace", self.namespace, f"a namespace of its own, not one of {RESERVED_NAMESPACES}")
        if self.cluster_bootstrap == "kubeadm":
            self._fits_a_new_kubeadm_cluster()
        return self

    def _fits_a_new_kubeadm_cluster(self) -> None:
        """A fresh kubeadm cluster has no pod network, no StorageClass and self-signed kubelet certificates: the
        stack must bring each, or `pulumi up` would hang on pods that never start."""
        why = "when clusterBootstrap is kubeadm"
        if not self.calico:
            raise _KeyError("calico", self.calico, f"true {why} (a new cluster has no pod network)")
        if not self.local_path and not self.storage_class:
            raise _KeyError("localPath", self.local_path, f"true, or a storageClass set, {why} (no StorageClass yet)")
        if self.metrics_server and not self.kubelet_insecure_tls:
            raise _KeyError(
                "kubeletInsecureTls",
                self.kubelet_insecure_tls,
                f"true {why} with metricsServer (kubeadm's kubelet serving certificates are self-signed)",
            )

    @property
    def workload_or_default(self) -> Workload:
        """aim:workload, or the default for the metric when it is not set: 1024 in / 256 out tokens, 64 concurrent
        (throughput) or one at a time (latency), no SLO. The decision's estimate uses the same."""
        return self.workload if self.workload is not None else default_workload(self.metric)

    @property
    def model_revision_or_none(self) -> str | None:
        return self.model_revision or None

    @property
    def keeps_model_cache(self) -> bool:
        return self.cleanup != "all"

    @property
    def keeps_registry_data(self) -> bool:
        return self.cleanup in ("resources", "images")

    @property
    def removes_built_images(self) -> bool:
        return self.cleanup != "resources"

    @property
    def resets_cluster(self) -> bool:
        """`pulumi destroy` resets a kubeadm cluster the stack made (cleanup all)."""
        return self.cleanup == "all" and self.cluster_bootstrap == "kubeadm"

    @property
    def pushes_to_local_registry(self) -> bool:
        """The stack builds the image and runs the local registry it is pushed to."""
        return self.build_image and self.registry

    @property
    def owns_image_repository(self) -> bool:
        """The image repository is the stack's own `localhost:<port>/aim-engine` (no aim:image given)."""
        return self.registry and not self.image

    @property
    def image_repository(self) -> str:
        """Where the built image is pushed: the local registry, or the configured repository."""
        return f"localhost:{self.registry_port}/aim-engine" if self.registry and not self.image else self.image


class _KeyError(ValueError):
    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"{key}\x00{_shown(value)}\x00{allowed}")


def _pinned(reference: str) -> bool:
    """A digest, or a tag other than `latest` (IMAGE_REF has already admitted the reference)."""
    parsed = ImageRef.parse(reference)
    return parsed.digest is not None or parsed.tag not in (None, "latest")


def _tagged(reference: str) -> bool:
    """The reference names a tag or a digest (the stack tags what it builds itself)."""
    parsed = ImageRef.parse(reference)
    return parsed.tag is not None or parsed.digest is not None


def field_keys() -> dict[str, str]:
    """aim: key → field name, for every configurable field."""
    return {(f.alias or name): name for name, f in Settings.model_fields.items() if not name.startswith("has_")}


def parse_settings(raw: dict[str, Any], secrets_present: set[str] | None = None) -> Settings:
    """Validate raw `aim:` config (key without namespace → value); one AimError line naming key, value and rule."""
    keys = field_keys()
    for key in raw:
        if key in SECRET_KEYS:
            continue
        if key in RETIRED_KEYS:
            raise AimError(f"{NAMESPACE}:{key}: no longer a key; use {RETIRED_KEYS[key]}")
        if key not in keys:
            close = difflib.get_close_matches(key, [*keys, *SECRET_KEYS], n=1)
            hint = f"; did you mean {NAMESPACE}:{close[0]}?" if close else ""
            shown = key if key.isprintable() and not any(c.isspace() for c in key) else repr(key)
            raise AimError(f"{NAMESPACE}:{shown}: unknown config key{hint} (Pulumi.yaml lists every key)")
    values = {k: v for k, v in raw.items() if k not in SECRET_KEYS}
    present = secrets_present or set()
    try:
        return Settings.model_validate(
            {
                **values,
                "has_hf_token": "hfToken" in present,
                "has_api_key": "apiKey" in present,
                "has_grafana_admin_password": "grafanaAdminPassword" in present,
            }
        )
    except ValidationError as error:
        raise AimError(_one_line(error, raw)) from None


def _shown(value: object) -> str:
    """repr() for an error line: never fails (an int beyond str()'s digit limit) and never runs long."""
    if isinstance(value, bool):  # as it is written in a stack file
        return str(value).lower()
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= 80 else text[:77] + "..."


def _one_line(error: ValidationError, raw: dict[str, Any]) -> str:
    first = error.errors(include_url=False)[0]
    message = str(first.get("msg", "invalid value"))
    context = first.get("ctx") or {}
    inner = context.get("error")
    if isinstance(inner, _LineError):
        return str(inner)
    if isinstance(inner, _KeyError):
        key, value, allowed = str(inner.args[0]).split("\x00")
        return f"{NAMESPACE}:{key}: {value} is not allowed: expected {allowed}"
    location = first.get("loc", ())
    name = str(location[0]) if location else ""
    field = Settings.model_fields.get(name)
    key = (field.alias if field and field.alias else name) if name else "(config)"
    value = raw.get(key, first.get("input"))
    message = message.removeprefix("Value error, ")
    if first.get("type") == "literal_error":
        message = message.replace("Input should be", "expected")
    return f"{NAMESPACE}:{key}: {_shown(value)} is not allowed: {message}"


class StackConfig:
    """Settings plus what must stay a Pulumi secret (HF token, API key), the Kubernetes context, and the kubeconfig
    file the stack writes when it bootstraps the cluster itself."""

    def __init__(
        self,
        settings: Settings,
        secrets: dict[str, Any],
        kube_context: str | None,
        kubeconfig_path: str | None = None,
    ) -> None:
        self.settings = settings
        self.kubeconfig_path = kubeconfig_path
        # pulumi.Output[str] (secret) or None each
        self.hf_token = secrets.get("hfToken")
        self.api_key = secrets.get("apiKey")
        self.grafana_admin_password = secrets.get("grafanaAdminPassword")
        self.kube_context = kube_context


def _config_keys(namespace: str) -> list[str]:
    """Every key set in `namespace` for this stack. The SDK has no public listing, so read both places it keeps
    config: the engine's environment (real runs) and the in-process table (mock runs)."""
    from aim_infra.stack.pulumi_internals import config_keys

    keys = config_keys()
    prefix = f"{namespace}:"
    return sorted(k.removeprefix(prefix) for k in keys if k.startswith(prefix))


def read_stack_config() -> StackConfig:
    """Read and validate the stack's config through the Pulumi SDK; raise AimError (one line) when it is wrong."""
    import pulumi

    config = pulumi.Config(NAMESPACE)
    raw = {key: config.get(key) for key in _config_keys(NAMESPACE) if key not in SECRET_KEYS}
    from pulumi.runtime import get_config

    # An empty secret is no secret: it would only make an empty Secret (and an API key nobody can send).
    secrets = {
        key: config.get_secret(key) if (get_config(f"{NAMESPACE}:{key}") or "").strip() else None for key in SECRET_KEYS
    }
    settings = parse_settings(
        {k: v for k, v in raw.items() if v is not None}, {k for k, v in secrets.items() if v is not None}
    )
    context = pulumi.Config("kubernetes").get("context") or None
    kubeconfig_path = None
    if settings.cluster_bootstrap == "kubeadm":
        if context:
            raise AimError(
                f"kubernetes:context: {_shown(context)} is not allowed: expected unset when aim:clusterBootstrap is "
                "kubeadm (the stack writes and uses its own kubeconfig)"
            )
        kubeconfig_path = str(bootstrap_kubeconfig_path(pulumi.get_stack()))
    return StackConfig(settings, secrets, context, kubeconfig_path)


def bootstrap_kubeconfig_path(stack: str) -> Path:
    """Where `clusterBootstrap: kubeadm` writes the new cluster's admin kubeconfig: a file of this stack's own,
    so an existing ~/.kube/config is never overwritten."""
    return Path.home() / ".kube" / f"aim-{stack}.conf"
