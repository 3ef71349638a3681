"""Offline plan: run the real Pulumi program under the SDK's mock runtime and record everything it declares."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from aim_infra.common.image_ref import ImageRef
from aim_infra.stack import pulumi_internals

if TYPE_CHECKING:
    from pulumi.runtime import Mocks

PROJECT_DIR = Path(__file__).resolve().parents[2]
REDACTED = "<redacted>"
SECRET_CONFIG = ("aim:hfToken", "aim:apiKey", "aim:grafanaAdminPassword")


@dataclass
class Declared:
    """One resource the program registered, as the engine would have seen it."""

    urn: str
    type: str
    name: str
    parent: str
    provider: str
    custom: bool
    inputs: dict[str, Any]
    dependencies: list[str]
    options: dict[str, Any]


@dataclass
class PlanResult:
    stack: str
    config: dict[str, str]
    secret_values: list[str]
    resources: list[Declared] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    logs: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None

    def of_type(self, type_: str) -> list[Declared]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> Declared:
        matches = [r for r in self.resources if r.type == type_ and r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources of type {type_} named {name}")
        return matches[0]

    def by_urn(self, urn: str) -> Declared | None:
        return next((r for r in self.resources if r.urn == urn), None)


#: What a secret stack output reads as in a plan, as `pulumi stack output` prints it.
SECRET_OUTPUT = "[secret]"


def _integral(value: Any) -> Any:
    """Plain values as Kubernetes would receive them: the mock wire turns every number into a float (give back the
    integers) and leaves nested secrets wrapped in Pulumi's secret envelope (unwrap them; redaction comes later)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        if pulumi_internals.is_secret_envelope(value):
            return _integral(value["value"])
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _fake_digest(inputs: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def load_stack_config(stack: str, project_dir: Path = PROJECT_DIR) -> tuple[dict[str, str], list[str]]:
    """Pulumi.<stack>.yaml's `config:` as the engine passes it (strings; objects as JSON); encrypted values become
    placeholders. Returns (config, secret keys)."""
    from aim_infra.common.errors import AimError

    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in project_dir.glob("Pulumi.*.yaml"))
        raise AimError(f"stack {stack!r}: no {path.name} (stacks here: {', '.join(known) or 'none'})")
    data = read_stack_yaml(path) or {}
    if not isinstance(data, dict) or not isinstance(data.get("config", {}), dict):
        raise AimError(f"{path}: expected a mapping with a `config:` mapping")
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (data.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            extra = sorted(str(k) for k in value if k != "secure")
            if extra or not isinstance(value["secure"], str) or not value["secure"]:
                what = f"extra keys {', '.join(extra)}" if extra else f"secure: {value['secure']!r}"
                raise AimError(
                    f"{path}: {key}: {what} is not allowed: expected only `secure: <ciphertext>` "
                    "(write it with `pulumi config set --secret`)"
                )
            config[key] = f"plan-placeholder-for-{str(key).replace(':', '-')}"
            secret_keys.append(key)
        else:
            config[key] = _config_string(value)
    return config, secret_keys


class _StackFileLoader(yaml.SafeLoader):
    """Reads a stack file as Pulumi does (YAML 1.2, go-yaml): only true/false are booleans (yes/no/on/off stay text,
    which the settings then refuse for a boolean key), and a key given twice is an error instead of the last one
    silently winning."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key!r} appears twice (first on line {seen[key] + 1}); Pulumi refuses duplicate keys",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line
            except TypeError:  # an unhashable key: let the base class say so
                break
        return super().construct_mapping(node, deep=deep)


_StackFileLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StackFileLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_stack_yaml(path: Path) -> Any:
    """Parse a Pulumi.<stack>.yaml; any problem is one AimError line naming the file and line."""
    from aim_infra.common.errors import AimError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AimError(f"{path}: cannot read: {error}") from None
    try:
        return yaml.load(text, Loader=_StackFileLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise AimError(f"{path}:{where} {problem}") from None
    except (ValueError, OverflowError, RecursionError) as error:
        raise AimError(f"{path}: cannot read a value: {' '.join(str(error).split())[:160]}") from None


def _config_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`--config aim:key=value` (like `pulumi preview -c`); a key without namespace is an `aim:` key."""
    from aim_infra.common.errors import AimError

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AimError(f"--config {pair!r}: expected KEY=VALUE, e.g. aim:gpuCount=8")
        key = key.strip()
        overrides[key if ":" in key else f"aim:{key}"] = value
    return overrides


def run_stack(
    stack: str,
    overrides: dict[str, str] | None = None,
    project_dir: Path = PROJECT_DIR,
    config: dict[str, str] | None = None,
) -> PlanResult:
    """Run `__main__.py` of `project_dir` under mocks with the stack's config (plus overrides) and record it all.
    `config` replaces the stack file entirely (tests use it to run a program on a config of their own)."""
    import pulumi
    from pulumi.runtime import get_root_resource, set_mocks

    if config is None:
        config, secret_keys = load_stack_config(stack, project_dir)
    else:
        secret_keys = []
    config = {**config, **(overrides or {})}
    secret_keys = sorted({*secret_keys, *(k for k in config if k in SECRET_CONFIG)})
    result = PlanResult(stack=stack, config=dict(config), secret_values=[config[k] for k in secret_keys if config[k]])

    def on_register(request: Any, response: Any) -> None:
        _close_worker_loop()
        if request.type != "pulumi:pulumi:Stack":
            result.resources.append(_declared(request, response.urn))

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            result.logs.append((record.levelname.lower(), record.getMessage()))

    logger = logging.getLogger(f"aim.plan.{stack}")
    logger.handlers = [Recorder()]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)

    import asyncio

    asyncio.set_event_loop(asyncio.new_event_loop())  # a fresh loop per run: nothing leaks between runs
    pulumi.runtime.set_all_config(config, secret_keys)
    pulumi_internals.forget_root_resource()
    mocks = _plan_mocks(result)
    monitor = pulumi_internals.recording_mock_monitor(mocks, on_register)
    set_mocks(mocks, project="aim", stack=stack, preview=False, logger=logger, monitor=monitor)
    pulumi_internals.forget_pending_work()
    program = str(project_dir / "__main__.py")
    try:
        pulumi_internals.run_program(lambda: runpy.run_path(program, run_name="__main__"))
        root = get_root_resource()
        outputs = getattr(root, "outputs", {}) or {}
        for name, value in outputs.items():
            output = pulumi.Output.from_input(value)
            # A secret output is shown as the CLI shows it (`[secret]`): its value never reaches a plan or a log.
            secret = pulumi_internals.sync_await(output.is_secret())
            result.outputs[name] = SECRET_OUTPUT if secret else _integral(pulumi_internals.sync_await(output.future()))
    except pulumi.RunError as error:
        result.error = " ".join(str(error).split())
    finally:
        _close_event_loop()
    return result


def _plan_mocks(result: PlanResult) -> Mocks:
    """The mocks of a plan run: each resource's state is its inputs, plus the outputs the program reads (digests,
    ids); a generated password joins the plan's secret values."""
    from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks  # the class itself, at run time

    class PlanMocks(Mocks):
        def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
            state = dict(args.inputs)
            if args.typ == "docker:index/image:Image":
                repository = ImageRef.parse(str(state.get("imageName", "image"))).repository
                state["repoDigest"] = f"{repository}@{_fake_digest(args.inputs)}"
            elif args.typ == "docker:index/remoteImage:RemoteImage":
                repository = ImageRef.parse(str(state.get("name", "image"))).repository
                state["repoDigest"] = f"{repository}@{_fake_digest(args.inputs)}"
                state["imageId"] = _fake_digest(args.inputs)
            elif args.typ == "command:local:Command":
                # What the provider reports after running the command; the mock runs nothing.
                state.update(stdout="", stderr="")
            elif args.typ == "random:index/randomPassword:RandomPassword":
                # A stand-in for the generated password, treated as a secret like configured ones.
                state["result"] = f"plan-generated-{args.name}"
                result.secret_values.append(state["result"])
            return f"{args.name}-id", state

        def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            return {}, None

    return PlanMocks()


def _declared(request: Any, urn: str) -> Declared:
    """What one RegisterResource request declares, as the engine would have seen it."""
    timeouts = request.customTimeouts
    return Declared(
        urn=urn,
        type=request.type,
        name=request.name,
        parent=request.parent,
        provider=request.provider,
        custom=bool(request.custom),
        inputs=_integral(pulumi_internals.deserialize_properties(request.object)),
        dependencies=list(request.dependencies),
        options={
            "custom_timeouts": {"create": timeouts.create, "update": timeouts.update, "delete": timeouts.delete},
            "retain_on_delete": bool(request.retainOnDelete),
            "delete_before_replace": bool(request.deleteBeforeReplace),
            "ignore_changes": list(request.ignoreChanges),
            "protect": bool(request.protect),
            "replace_on_changes": list(request.replaceOnChanges),
            "additional_secret_outputs": list(request.additionalSecretOutputs),
            "version": request.version,
        },
    )


def _close_worker_loop() -> None:
    """The mock monitor runs in the SDK's worker threads and opens an event loop in each (never closed): close it
    there, or the interpreter finalises it at exit and may print `Exception ignored in BaseEventLoop.__del__`."""
    import asyncio
    import threading

    if threading.current_thread() is threading.main_thread():
        return
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # none opened in this thread (the stack's own registration needs none)
        return
    if not loop.is_running():
        loop.close()
        asyncio.set_event_loop(None)


def _close_event_loop() -> None:
    """Close the loop the SDK opened, now: left to the garbage collector it complains at interpreter exit."""
    import asyncio
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            return
    if not loop.is_running() and not loop.is_closed():
        loop.close()
    asyncio.set_event_loop(None)


# --------------------------------------------------------------------------------------------------------------------
# Rendering: the resource tree, Kubernetes manifests and Helm releases, with every secret value redacted.

KUBERNETES_EXCLUDED = ("kubernetes:helm.sh/", "kubernetes:yaml/", "pulumi:providers:")


def redact(value: Any, secrets: list[str]) -> Any:
    """Replace every secret value (and its base64 form) wherever it appears."""
    import base64

    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            if not secret:
                continue
            encoded = base64.b64encode(secret.encode()).decode()
            value = value.replace(secret, REDACTED).replace(encoded, REDACTED)
        return value
    return value


def kubernetes_objects(result: PlanResult) -> list[dict[str, Any]]:
    """Every Kubernetes object the program declares, as a manifest (Secret data redacted)."""
    objects = []
    for resource in result.resources:
        if not resource.type.startswith("kubernetes:") or resource.type.startswith(KUBERNETES_EXCLUDED):
            continue
        manifest = {k: v for k, v in resource.inputs.items() if not k.startswith("__")}
        if manifest.get("kind") == "Secret":
            for field_name in ("data", "stringData"):
                if isinstance(manifest.get(field_name), dict):
                    manifest[field_name] = {k: REDACTED for k in manifest[field_name]}
        objects.append(redact(manifest, result.secret_values))
    return objects


def helm_releases(result: PlanResult) -> list[dict[str, Any]]:
    releases = []
    for resource in result.of_type("kubernetes:helm.sh/v3:Release"):
        inputs = resource.inputs
        releases.append(
            redact(
                {
                    "name": inputs.get("name"),
                    "chart": inputs.get("chart"),
                    "version": inputs.get("version"),
                    "repository": (inputs.get("repositoryOpts") or {}).get("repo"),
                    "namespace": inputs.get("namespace"),
                    "values": inputs.get("values") or {},
                },
                result.secret_values,
            )
        )
    return releases


def resource_tree(result: PlanResult) -> str:
    """Type, name and parent of every resource, indented under its parent."""
    children: dict[str, list[Declared]] = {}
    for resource in result.resources:
        children.setdefault(resource.parent, []).append(resource)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        # Registration order depends on when outputs resolve: sort for a stable, diffable tree.
        for resource in sorted(children.get(parent, []), key=lambda r: (r.type, r.name)):
            lines.append(f"{'  ' * depth}{resource.type}  {resource.name}")
            walk(resource.urn, depth + 1)

    for root in [p for p in children if result.by_urn(p) is None]:
        walk(root, 0)
    return "\n".join(lines)


COMMAND_TYPE = "command:local:Command"


def creation_order(result: PlanResult) -> list[Declared]:
    """The custom resources in an order `pulumi up` may create them: each after its dependencies and its provider
    (ties keep registration order)."""
    custom = [r for r in result.resources if r.custom]
    urns = {r.urn for r in custom}
    waits_for: dict[str, set[str]] = {}
    for resource in custom:
        provider_urn = resource.provider.rsplit("::", 1)[0]  # a provider reference is "<urn>::<id>"
        wanted = {*resource.dependencies, provider_urn}
        waits_for[resource.urn] = {u for u in wanted if u in urns and u != resource.urn}
    ordered: list[Declared] = []
    done: set[str] = set()
    while len(ordered) < len(custom):
        ready = [r for r in custom if r.urn not in done and waits_for[r.urn] <= done]
        if not ready:  # a cycle cannot come from the SDK; keep the rest in registration order rather than loop
            ready = [r for r in custom if r.urn not in done]
        for resource in ready:
            ordered.append(resource)
            done.add(resource.urn)
    return ordered


def host_steps(result: PlanResult) -> str:
    """The pulumi-command steps (run on the host where `pulumi up` runs), in order, with what each runs on create
    and on destroy, what it waits for and what re-runs it."""
    names = {r.urn: r.name for r in result.resources}
    lines = []
    for number, step in enumerate((r for r in creation_order(result) if r.type == COMMAND_TYPE), start=1):
        after = ", ".join(sorted(names.get(u, u) for u in step.dependencies))
        lines.append(f"  {number}. {step.name}" + (f"   (after {after})" if after else ""))
        lines.append(f"       up:      {step.inputs.get('create') or '(nothing)'}")
        lines.append(f"       destroy: {step.inputs.get('delete') or '(nothing)'}")
        if step.inputs.get("triggers"):
            lines.append(f"       re-runs when any of these change: {json.dumps(step.inputs['triggers'])}")
    return "\n".join(lines)


#: Written into every --out directory: lists the files of that plan, so the next run may replace them (and only them).
PLAN_MARKER = ".aim-plan-output"


def _out_directory(out: Path, project_dir: Path) -> Path:
    """Check `--out` before anything is written: a directory of its own, never the project, never a file, never a
    non-empty directory some other tool owns."""
    from aim_infra.common.errors import AimError

    if not str(out).strip():
        raise AimError("--out '': expected a directory path for the plan's files, e.g. --out plan-out")
    target = out.expanduser().resolve()
    project = project_dir.resolve()
    if target == project or target in project.parents:
        raise AimError(f"--out {str(out)!r}: is the project directory or contains it; expected a directory of its own")
    if target.exists() and not target.is_dir():
        raise AimError(f"--out {str(out)!r}: is a file; expected a directory (new, empty or an earlier plan's)")
    if target.is_dir() and any(target.iterdir()) and not (target / PLAN_MARKER).is_file():
        raise AimError(
            f"--out {str(out)!r}: a non-empty directory that is not an earlier plan's output (no {PLAN_MARKER}); "
            "expected a new or empty directory"
        )
    return target


def _file_stem(manifest: dict[str, Any]) -> str:
    metadata = manifest.get("metadata") or {}
    parts = [manifest.get("kind", "Object"), metadata.get("namespace", ""), metadata.get("name", "")]
    return re.sub(r"[^a-z0-9.-]+", "-", "-".join(str(p).lower() for p in parts if p)).strip("-.") or "object"


def write_out(result: PlanResult, out: Path, project_dir: Path = PROJECT_DIR) -> list[Path]:
    """Kubernetes objects as YAML documents (one file each, named by kind, namespace and name) and Helm releases in
    helm-releases.yaml. Deterministic: the same plan gives the same names and bytes; the files of an earlier plan in
    the same directory are removed first."""
    from aim_infra.common.errors import AimError

    target = _out_directory(out, project_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
        marker = target / PLAN_MARKER
        if marker.is_file():
            for name in marker.read_text(encoding="utf-8").split():
                stale = target / name
                if stale.parent == target and stale.is_file():  # only plain names the marker listed
                    stale.unlink()
        files: dict[str, str] = {}
        for manifest in sorted(
            kubernetes_objects(result), key=lambda m: (_file_stem(m), json.dumps(m, sort_keys=True))
        ):
            stem = _file_stem(manifest)
            name, number = f"{stem}.yaml", 2
            while name in files:  # the same kind/namespace/name twice: number the later ones, in a stable order
                name, number = f"{stem}-{number}.yaml", number + 1
            files[name] = yaml.safe_dump(manifest, sort_keys=False)
        releases = sorted(helm_releases(result), key=lambda r: (str(r.get("namespace")), str(r.get("name"))))
        files["helm-releases.yaml"] = yaml.safe_dump(releases, sort_keys=False)
        marker.write_text("\n".join(sorted(files)) + "\n", encoding="utf-8")
        written = []
        for name in sorted(files):
            path = target / name
            path.write_text(files[name], encoding="utf-8")
            written.append(path)
    except OSError as error:
        raise AimError(f"--out {str(out)!r}: cannot write: {error.strerror or error}") from None
    return written


def render(result: PlanResult) -> str:
    """The plan as a person reads it: what it is, the decision, the resource tree, the exports."""
    info = [message for level, message in result.logs if level in ("info", "warning", "error")]
    lines = [
        f"Offline plan of stack '{result.stack}': the Pulumi program ran under the SDK's mock runtime with this "
        "stack's config. It is not a diff against a live cluster; `pulumi preview` is.",
        "",
        *info,
        "",
        f"Resources ({len(result.resources)}):",
        resource_tree(result),
        "",
    ]
    steps = host_steps(result)
    if steps:
        lines += [
            "Host steps, in the order `pulumi up` runs them (`pulumi destroy` runs the destroy lines in reverse):"
        ]
        lines += [steps, ""]
    lines += ["Outputs:"]
    for name, value in result.outputs.items():
        if name == "recipeExplanation":
            continue
        shown = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=False)
        lines.append(f"  {name}: {shown}")
    return redact("\n".join(lines), result.secret_values)
