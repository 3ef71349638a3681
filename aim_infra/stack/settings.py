"""The one place stack config is read: every `aim:` key into one validated pydantic model, or one error line."""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

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
#: The most engine replicas one model may ask for (aim:replicas, and each bound of an aim:models entry).
MAX_REPLICAS = 64
#: The name the single-model keys' one model gets: the component name the program has always given its engine
#: (`ENGINE` in __main__.py), so naming each model's objects after its name keeps today's objects as they are
#: (aim-engine, aim-engine-model-cache, aim-engine-download-<hash>, ...): nothing is replaced or renamed.
SINGLE_MODEL_NAME = "aim-engine"
#: A model's name starts the names of its objects, the longest `<name>-download-<8 hex>` (a Job, whose name must fit
#: the 63-character job-name label): 40 leaves room for that and any shorter suffix. It must start with a letter
#: because a Service is named after it, and Service names are DNS-1035 labels.
MODEL_NAME_MAX = 40
MODEL_NAME = re.compile(rf"^[a-z]([-a-z0-9]{{0,{MODEL_NAME_MAX - 2}}}[a-z0-9])?$")
MODEL_NAME_RULE = (
    f"a DNS-1035 label of at most {MODEL_NAME_MAX} characters: lower-case letters, digits and '-', starting with a "
    "letter (it is used in the model's object names and URL)"
)
#: A LoRA adapter's name is the `model` clients send for it, one vLLM `--lora-modules name=path` entry and a label
#: value on its metrics: lower-case letters, digits, '-', '.', '_', starting and ending alphanumeric, at most 63.
LORA_NAME = re.compile(r"^[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?$")
LORA_NAME_RULE = (
    "an adapter name of at most 63 characters: lower-case letters, digits, '-', '.' and '_', starting and ending "
    "with a letter or digit"
)
#: The keys that describe the one model of a single-model stack; an aim:models entry sets each for its own model.
SINGLE_MODEL_KEYS = (
    "model",
    "modelRevision",
    "metric",
    "precision",
    "maxModelLen",
    "recipe",
    "vllmExtraArgs",
    "workload",
    "replicas",
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


def _workload_at(where: str, value: Any) -> Workload | None:
    """A workload object at key path `where` (aim:workload, aim:models[1].workload). Pulumi hands a stack file's
    object over as a JSON string (mock runs may pass the mapping). Unset, empty or `{}` (Pulumi.yaml's default, so
    the engine always passes something) mean no workload given."""
    if value is None or isinstance(value, Workload):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = json.loads(text, parse_int=_json_int)
        except (ValueError, RecursionError):  # invalid, or nested deeper than the parser's recursion limit
            raise _LineError(
                f"{where}: {_shown(value)} is not allowed: expected a JSON object of workload keys, "
                'e.g. {"inputTokens": 2048, "concurrency": 32}'
            ) from None
    if isinstance(value, dict) and not value:
        return None
    try:
        return parse_workload(value, where)
    except AimError as error:
        raise _LineError(str(error)) from None


def _workload(value: Any) -> Any:
    return _workload_at(f"{NAMESPACE}:workload", value)


HUB_ID_RULE = "a Hugging Face model id such as Qwen/Qwen3-8B"


def _hub_model_id(value: str) -> str:
    """A Hub repository id, `org/name` or a bare legacy `name`: aim:model, a model of aim:models, a LoRA adapter."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?", value):
        raise ValueError(f"expected {HUB_ID_RULE}")
    return value


def _hub_revision(value: str) -> str:
    problem = revision_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Bool = Annotated[bool, BeforeValidator(_boolean)]
CidrList = Annotated[list[str], BeforeValidator(_cidr_list)]
NameList = Annotated[list[str], BeforeValidator(_name_list)]
Fraction = Annotated[str, BeforeValidator(_fraction)]
AutoOrFraction = Annotated[str, BeforeValidator(_auto_or_seconds)]
QueueDepth = Annotated[int, BeforeValidator(_integer(1, 100_000))]
GpuCount = Annotated[int | Literal["auto"], BeforeValidator(_auto_or_int(1, 64))]
Replicas = Annotated[int | Literal["auto"], BeforeValidator(_auto_or_int(1, MAX_REPLICAS))]
MaxModelLen = Annotated[int | Literal["auto"], BeforeValidator(_auto_or_int(256, 10_485_760))]
Port = Annotated[int, BeforeValidator(_integer(1024, 65535))]
NodePort = Annotated[int, BeforeValidator(_node_port)]
GroupId = Annotated[int, BeforeValidator(_integer(0, 2_147_483_647))]
ArgList = Annotated[list[str], BeforeValidator(_arg_list)]
WorkloadConfig = Annotated[Workload | None, BeforeValidator(_workload)]
HubId = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_hub_model_id)]
HubRevision = Annotated[str, AfterValidator(_hub_revision)]
Metric = Literal["throughput", "latency"]


class _SubError(ValueError):
    """A problem below a field (`.min` of replicas, `.sql.model` of loraModules) or below a model (`.scaleToZero`):
    the path under the object being validated and the rest of the error line."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _written(value: object) -> str:
    """A value inside aim:models as its JSON or YAML is written: null rather than None."""
    return "null" if value is None else _shown(value)


def _not_allowed(value: object, allowed: str) -> str:
    return f"{_written(value)} is not allowed: expected {allowed}"


def _key_text(key: object) -> str:
    """A key as written when it reads as one, else quoted: blanks, line breaks and non-strings stay on one line."""
    text = key if isinstance(key, str) else repr(key)
    return text if text and text.isprintable() and not any(c.isspace() for c in text) else _shown(key)


def _unknown_key(key: object, allowed: list[str], what: str) -> str:
    close = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown {what} key; {hint}expected one of {', '.join(allowed)}"


def _key_alias(model: type[BaseModel], name: str) -> str:
    """The key a field is written as (its alias), whether pydantic located the error by field name or by alias."""
    for field_name, field in model.model_fields.items():
        if name in (field_name, field.alias):
            return field.alias or field_name
    return name


#: What a required key of a model entry or an adapter must be, for the line that says it is missing.
_REQUIRED_RULES = {"name": MODEL_NAME_RULE, "model": HUB_ID_RULE}


def _problem(error: ValidationError, model: type[BaseModel], raw: dict[Any, Any]) -> tuple[str, str]:
    """The first problem pydantic found validating `raw` as `model`: the key path below the object (`.replicas.min`)
    and the rest of the error line (`0 is not allowed: expected ...`)."""
    first = error.errors(include_url=False)[0]
    location = first.get("loc", ())
    key = _key_alias(model, str(location[0])) if location else ""
    path = f".{key}" if key else ""
    inner = (first.get("ctx") or {}).get("error")
    if isinstance(inner, _SubError):
        return path + inner.path, inner.message
    if first.get("type") == "missing":
        return path, f"not set: expected {_REQUIRED_RULES.get(key, 'a value')}"
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    message = message.replace("Input should be", "expected", 1)
    return path, f"{_written(raw.get(key, first.get('input')))} is not allowed: {message}"


REPLICAS_RULE = (
    f"auto, a whole number from 1 to {MAX_REPLICAS}, or autoscaling bounds {{min, max}} "
    f"(0 ≤ min ≤ max, 1 ≤ max ≤ {MAX_REPLICAS})"
)


class ReplicaRange(BaseModel):
    """Autoscaling bounds of one model: it runs between `min_replicas` and `max_replicas` engines (a minimum of 0
    scales it to zero while idle)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    min_replicas: int = Field(alias="min", ge=0, le=MAX_REPLICAS)
    max_replicas: int = Field(alias="max", ge=1, le=MAX_REPLICAS)


def _replica_bound(bounds: dict[Any, Any], key: str, low: int) -> int:
    rule = f"a whole number from {low} to {MAX_REPLICAS}"
    if key not in bounds:
        raise _SubError(f".{key}", f"not set: expected {rule} (bounds are min and max, both given)")
    try:
        return int(_integer(low, MAX_REPLICAS)(bounds[key]))
    except ValueError:
        raise _SubError(f".{key}", _not_allowed(bounds[key], rule)) from None


def _model_replicas(value: Any) -> Any:
    """A model's replicas: auto (the plan's choice), a fixed count, or {min, max} bounds to autoscale between."""
    if isinstance(value, ReplicaRange):
        return value
    if isinstance(value, dict):
        for key in value:
            if key not in ("min", "max"):
                raise _SubError(f".{_key_text(key)}", _unknown_key(key, ["min", "max"], "replicas"))
        high = _replica_bound(value, "max", 1)
        low = _replica_bound(value, "min", 0)
        if low > high:
            raise _SubError(".min", _not_allowed(value["min"], f"a whole number from 0 to replicas.max ({high})"))
        return ReplicaRange(min_replicas=low, max_replicas=high)
    try:
        return _auto_or_int(1, MAX_REPLICAS)(value)
    except ValueError:
        raise ValueError(f"expected {REPLICAS_RULE}") from None


class LoraModule(BaseModel):
    """A LoRA adapter served by its base model's engines: a Hub repository and, optionally, its revision."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    model: HubId
    revision: HubRevision = ""

    @property
    def revision_or_none(self) -> str | None:
        return self.revision or None


LORA_MODULES_RULE = 'a mapping of adapter name to {model, revision}, e.g. {"sql": {"model": "org/sql-lora"}}'


def _lora_modules(value: Any) -> Any:
    """loraModules: adapter name → {model: Hub id, revision: optional}; each name is a `model` clients may ask for."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected {LORA_MODULES_RULE}")
    modules: dict[str, LoraModule] = {}
    allowed = list(LoraModule.model_fields)
    for name, spec in value.items():
        if not isinstance(name, str) or not LORA_NAME.fullmatch(name):
            raise _SubError("", f"adapter name {_not_allowed(name, LORA_NAME_RULE)}")
        if isinstance(spec, LoraModule):
            modules[name] = spec
            continue
        if not isinstance(spec, dict):
            raise _SubError(
                f".{name}", _not_allowed(spec, 'a mapping {model, revision}, e.g. {"model": "org/sql-lora"}')
            )
        for key in spec:
            if key not in allowed:
                raise _SubError(f".{name}.{_key_text(key)}", _unknown_key(key, allowed, "adapter"))
        try:
            modules[name] = LoraModule.model_validate(spec)
        except ValidationError as error:
            path, message = _problem(error, LoraModule, spec)
            raise _SubError(f".{name}{path}", message) from None
    return modules


def _model_name(value: str) -> str:
    if not MODEL_NAME.fullmatch(value):
        raise ValueError(f"expected {MODEL_NAME_RULE}")
    return value


ModelName = Annotated[str, AfterValidator(_model_name)]
ModelReplicas = Annotated[int | Literal["auto"] | ReplicaRange, BeforeValidator(_model_replicas)]
LoraModules = Annotated[dict[str, LoraModule], BeforeValidator(_lora_modules)]


class ModelSpec(BaseModel):
    """One model the stack serves: an entry of aim:models, or the single-model keys as the only one. A key means
    for this model what the single-model key of the same name means; the defaults are theirs (a test checks)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True)

    name: ModelName = Field(description="Used in the model's object names and URL; unique in the stack.")
    model: HubId = Field(description="Hugging Face model id to serve.")
    model_revision: HubRevision = Field(default="", alias="modelRevision", description="Hub revision.")
    metric: Metric = Field(default="throughput", description="What the recipe optimises.")
    precision: PrecisionWish = Field(default="auto", description="auto (the checkpoint's) or a wish, e.g. fp8.")
    max_model_len: MaxModelLen = Field(default="auto", alias="maxModelLen", description="Context length or auto.")
    recipe: str = Field(default="", description="A catalogue recipe id to use instead of automatic selection.")
    vllm_extra_args: ArgList = Field(default_factory=list, alias="vllmExtraArgs", description="Extra vLLM flags.")
    workload: Workload | None = Field(default=None, description="Traffic to size for; None = not given.")
    replicas: ModelReplicas = Field(default="auto", description="auto, a fixed count or {min, max} bounds.")
    scale_to_zero: Bool = Field(default=False, alias="scaleToZero", description="Scale to zero replicas when idle.")
    lora_modules: LoraModules = Field(
        default_factory=dict, alias="loraModules", description="LoRA adapters: name → Hub repository."
    )

    @model_validator(mode="after")
    def _scaling(self) -> ModelSpec:
        # Scaling to zero makes the first request after an idle spell wait for a cold start (minutes for a large
        # model), so it is never a side effect: scaleToZero true and replicas.min 0 go together, each needing the other.
        low = self.replicas.min_replicas if isinstance(self.replicas, ReplicaRange) else None
        if self.scale_to_zero and low != 0:
            raise _SubError(
                ".scaleToZero",
                "true is not allowed: expected false unless replicas is {min: 0, max: N} (scaling to zero needs "
                f"autoscaling bounds from 0; replicas is {self.replica_text})",
            )
        if low == 0 and not self.scale_to_zero:
            raise _SubError(
                ".replicas.min",
                "0 is not allowed: expected at least 1, or scaleToZero true as well (scaled to zero, the first "
                "request after an idle spell waits for the model to start)",
            )
        return self

    @property
    def replica_text(self) -> str:
        """replicas as a stack file writes it: auto, 2, or {min: 0, max: 2}."""
        if isinstance(self.replicas, ReplicaRange):
            return f"{{min: {self.replicas.min_replicas}, max: {self.replicas.max_replicas}}}"
        return str(self.replicas)

    @property
    def replica_bounds(self) -> tuple[int, int] | None:
        """(fewest, most) replicas: the autoscaling bounds, (n, n) for a fixed count, None for auto (the plan's)."""
        if isinstance(self.replicas, ReplicaRange):
            return self.replicas.min_replicas, self.replicas.max_replicas
        return None if self.replicas == "auto" else (self.replicas, self.replicas)

    @property
    def autoscaled(self) -> bool:
        """Scaled on load between bounds that differ (bounds with min = max are a fixed count)."""
        bounds = self.replica_bounds
        return bounds is not None and bounds[0] != bounds[1]

    @property
    def workload_or_default(self) -> Workload:
        """This model's workload, or the default for its metric (as Settings.workload_or_default)."""
        return self.workload if self.workload is not None else default_workload(self.metric)

    @property
    def model_revision_or_none(self) -> str | None:
        return self.model_revision or None


MODELS_RULE = 'a list of models, each a mapping with at least name and model, e.g. [{"name": "chat", "model": "org/x"}]'
MODEL_ENTRY_RULE = 'a mapping with at least name and model, e.g. {"name": "chat", "model": "Qwen/Qwen3-8B"}'


def _model_entry(item: Any, where: str) -> ModelSpec:
    """One entry of aim:models at key path `where` (aim:models[1]), or its one error line."""
    if isinstance(item, ModelSpec):
        return item
    if not isinstance(item, dict):
        raise _LineError(f"{where}: {_not_allowed(item, MODEL_ENTRY_RULE)}")
    allowed = [field.alias or name for name, field in ModelSpec.model_fields.items()]
    for key in item:
        if key not in allowed:
            raise _LineError(f"{where}.{_key_text(key)}: {_unknown_key(key, allowed, 'model')}")
    fields = dict(item)
    if "workload" in fields:  # parsed here, where its key path is known: aim:models[1].workload.concurrency
        fields["workload"] = _workload_at(f"{where}.workload", fields["workload"])
    try:
        return ModelSpec.model_validate(fields)
    except ValidationError as error:
        path, message = _problem(error, ModelSpec, item)
        raise _LineError(f"{where}{path}: {message}") from None


def _distinct_names(models: list[ModelSpec], where: str) -> None:
    """Model names are unique (they name objects and URLs). An adapter's name is the `model` clients send for it, so
    it may be no model's name or Hub id (whichever the endpoint routes by) and no other adapter's."""
    hub_ids = {spec.model: f"{where}[{index}].model" for index, spec in reversed(list(enumerate(models)))}
    for index, spec in enumerate(models):
        # Clients pick a model by its Hub id (the OpenAI `model` field the router routes on): two entries serving the
        # same id would share its name on the endpoint and each autoscaler would count the other's requests.
        first = hub_ids[spec.model]
        if first != f"{where}[{index}].model":
            raise _LineError(
                f"{where}[{index}].model: {_not_allowed(spec.model, 'a Hub id no other model serves')} "
                f"({first} is {_shown(spec.model)}): list each model once and size it with its replicas"
            )
    taken: dict[str, str] = {}
    for index, spec in enumerate(models):
        if spec.name in taken:
            other = taken[spec.name]
            raise _LineError(
                f"{where}[{index}].name: {_not_allowed(spec.name, 'a name no other model or adapter has')} "
                f"({other} is {_shown(spec.name)})"
            )
        taken[spec.name] = f"{where}[{index}].name"
        for adapter in spec.lora_modules:
            clash = taken.get(adapter) or hub_ids.get(adapter)
            if clash:
                raise _LineError(
                    f"{where}[{index}].loraModules: adapter name "
                    f"{_not_allowed(adapter, 'a name no model or other adapter has')} ({clash} is {_shown(adapter)})"
                )
            taken[adapter] = f"{where}[{index}].loraModules.{adapter}"


def _models(value: Any) -> Any:
    """aim:models: a list of model entries (Pulumi hands a stack file's list over as JSON). Unset, empty or `[]`
    (Pulumi.yaml's default) mean the single-model keys describe the one model."""
    where = f"{NAMESPACE}:models"
    given = value
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        try:
            value = json.loads(text, parse_int=_json_int)
        except (ValueError, RecursionError):  # invalid, or nested deeper than the parser's recursion limit
            raise _LineError(f"{where}: {_not_allowed(given, MODELS_RULE)}") from None
    if not isinstance(value, list | tuple):
        raise _LineError(f"{where}: {_not_allowed(given, MODELS_RULE)}")
    models = [_model_entry(item, f"{where}[{index}]") for index, item in enumerate(value)]
    _distinct_names(models, where)
    return models


ModelList = Annotated[list[ModelSpec], BeforeValidator(_models)]


class Settings(BaseModel):
    """Stack config. Aliases are the `aim:` keys; defaults equal Pulumi.yaml's `config:` defaults (a test checks)."""

    # Leading and trailing blanks never mean anything in a config value: ` MI300X ` is MI300X, `  ` is empty.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True)

    model: HubId = Field(default="Qwen/Qwen3-8B", description="Hugging Face model id to serve.")
    model_revision: HubRevision = Field(
        default="", alias="modelRevision", description="Hub revision; empty = default branch."
    )
    gpu: str = Field(default="auto", description="GPU type (MI300X, MI325X, MI355X, ...) or auto (from node labels).")
    gpu_count: GpuCount = Field(default="auto", alias="gpuCount", description="GPUs available on one node, or auto.")
    metric: Metric = Field(default="throughput", description="What the recipe optimises.")
    precision: PrecisionWish = Field(default="auto", description="auto (the checkpoint's) or a wish, e.g. fp8.")
    max_model_len: MaxModelLen = Field(default="auto", alias="maxModelLen", description="Context length or auto.")
    recipe: str = Field(default="", description="A catalogue recipe id to use instead of automatic selection.")
    vllm_extra_args: ArgList = Field(default_factory=list, alias="vllmExtraArgs", description="Extra vLLM flags.")
    replicas: Replicas = Field(default="auto", description="Engine replicas, or auto (fill the GPUs of one node).")
    models_given: ModelList = Field(
        default_factory=list, alias="models", description="Several models to serve; empty = the single-model keys."
    )
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
        if self.models_given:
            self._no_single_model_keys()
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

    def _no_single_model_keys(self) -> None:
        """With aim:models each model sets its own keys: a single-model key set as well would be silently ignored.
        Pulumi hands the program every key, unset ones with their Pulumi.yaml default, so "set" means "not its
        default" (the defaults here equal Pulumi.yaml's, a test checks)."""
        names = field_keys()
        for key in SINGLE_MODEL_KEYS:
            value = getattr(self, names[key])
            if value != Settings.model_fields[names[key]].get_default(call_default_factory=True):
                raise _KeyError(
                    key,
                    value.as_json() if isinstance(value, Workload) else value,
                    f"unset when aim:models is set (each model of aim:models sets its own {key})",
                )

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
    def models(self) -> list[ModelSpec]:
        """Every model the stack serves: the entries of aim:models, or, when it is unset, the single-model keys
        (aim:model, aim:modelRevision, aim:metric, aim:precision, aim:maxModelLen, aim:recipe, aim:vllmExtraArgs,
        aim:workload, aim:replicas) as one model named SINGLE_MODEL_NAME, whose objects keep today's names."""
        if self.models_given:
            return list(self.models_given)
        return [
            ModelSpec(
                name=SINGLE_MODEL_NAME,
                model=self.model,
                model_revision=self.model_revision,
                metric=self.metric,
                precision=self.precision,
                max_model_len=self.max_model_len,
                recipe=self.recipe,
                vllm_extra_args=self.vllm_extra_args,
                workload=self.workload,
                replicas=self.replicas,
            )
        ]

    @property
    def multi_model(self) -> bool:
        """aim:models is set (rather than the single-model keys)."""
        return bool(self.models_given)

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
    except (ValueError, RecursionError):  # an int beyond str()'s digit limit, a list nested too deep to print
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
