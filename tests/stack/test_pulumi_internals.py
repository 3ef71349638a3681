"""Canary: every Pulumi SDK internal that aim_infra/stack/pulumi_internals.py relies on still exists and still behaves.

Each internal the shim names (INTERNALS) has a check here: the name resolves, its signature is the one the shim calls,
and a tiny call does what the shim expects. A failure names the SDK version and the internal ("pulumi 3.273.0 moved or
changed pulumi.runtime.stack:run_pulumi_func: update aim_infra/stack/pulumi_internals.py"). The other tests here
check that requirements.txt pins the SDK lines the shim was checked against, that a plan runs through the shim end to
end, and that no other module reaches into the SDKs' internals.

This module is the one place besides the shim that names the internals, and only as strings it resolves itself.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import json
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime
import pulumi_kubernetes
import pytest
from google.protobuf import struct_pb2
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from aim_infra.stack import pulumi_internals
from aim_infra.stack.plan import SECRET_OUTPUT, run_stack

ROOT = Path(__file__).resolve().parents[2]
SHIM = "aim_infra/stack/pulumi_internals.py"


def moved(name: str) -> str:
    """The failure message for an internal that is gone or changed, naming the installed SDK version."""
    distribution = name.split(".")[0].split(":")[0].replace("_", "-")
    return f"{distribution} {metadata.version(distribution)} moved or changed {name}: update {SHIM}"


def internal(name: str) -> Any:
    """The SDK object `module:attribute` names, or a failure saying it moved."""
    module, _, attribute = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        pytest.fail(moved(name))


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.fixture
def event_loop_of_its_own() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        loop.close()
        asyncio.set_event_loop(None)


# --- one check per internal ----------------------------------------------------------------------------------------


def check_sync_await(name: str) -> None:
    sync_await = internal(name)
    assert parameters(sync_await) == ["awaitable"], moved(name)

    async def three() -> int:
        return 3

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        assert sync_await(three()) == 3, moved(name)
        assert pulumi_internals.sync_await(three()) == 3
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def check_run_pulumi_func(name: str) -> None:
    run_pulumi_func = internal(name)
    assert inspect.iscoroutinefunction(run_pulumi_func), moved(name)
    assert parameters(run_pulumi_func) == ["func"], moved(name)
    # Behaviour: test_a_program_runs_through_the_shim (it needs the mock runtime set up around it).


def check_set_root_resource(name: str) -> None:
    set_root_resource = internal(name)
    assert parameters(set_root_resource) == ["root"], moved(name)
    pulumi_internals.forget_root_resource()
    assert pulumi.runtime.get_root_resource() is None, moved(name)


def check_settings(name: str) -> None:
    settings = internal(name)
    assert callable(getattr(getattr(settings, "rpc_manager", None), "clear", None)), moved(f"{name}.rpc_manager")
    outputs = getattr(settings, "outputs", None)
    assert callable(getattr(outputs, "clear", None)), moved(f"{name}.outputs")
    outputs.add("canary")
    pulumi_internals.forget_pending_work()
    assert not settings.outputs, moved(f"{name}.outputs")


def check_mock_monitor(name: str) -> None:
    monitor_class = internal(name)
    assert parameters(monitor_class.__init__) == ["self", "mocks"], moved(name)
    assert parameters(monitor_class.RegisterResource) == ["self", "request"], moved(f"{name}.RegisterResource")
    assert "monitor" in parameters(pulumi.runtime.set_mocks), moved(name)
    assert pulumi_internals.mock_monitor_class() is monitor_class

    class NoMocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            return "", {}

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            return {}, None

    mocks = NoMocks()
    monitor = pulumi_internals.recording_mock_monitor(mocks, lambda request, response: None)
    assert isinstance(monitor, monitor_class) and monitor.mocks is mocks, moved(name)


def check_deserialize_properties(name: str) -> None:
    deserialize = internal(name)
    assert parameters(deserialize)[0] == "props_struct", moved(name)
    envelope = {pulumi_internals.SECRET_SIGNATURE_KEY: pulumi_internals.SECRET_SIGNATURE, "value": "s"}
    struct = struct_pb2.Struct()
    struct.update({"replicas": 2, "token": envelope})
    # Numbers come back as floats and a nested secret stays in its envelope: plan._integral relies on both.
    assert deserialize(struct) == {"replicas": 2.0, "token": envelope}, moved(name)
    assert pulumi_internals.deserialize_properties(struct) == {"replicas": 2.0, "token": envelope}
    assert pulumi_internals.is_secret_envelope(envelope) and not pulumi_internals.is_secret_envelope({"value": "s"})


def check_signature_key(name: str) -> None:
    assert internal(name) == pulumi_internals.SECRET_SIGNATURE_KEY, moved(name)


def check_secret_signature(name: str) -> None:
    assert internal(name) == pulumi_internals.SECRET_SIGNATURE, moved(name)


def check_config(name: str) -> None:
    config = internal(name)
    before = dict(config.get())
    try:
        pulumi.runtime.set_all_config({"canary:key": "1"})
        assert config.get() == {"canary:key": "1"}, moved(name)
        assert "canary:key" in pulumi_internals.config_keys()
    finally:
        pulumi.runtime.set_all_config(before)


def check_engine_protocol(name: str) -> None:
    internal(name)
    proto = pulumi_internals.engine_protocol()
    for message in ("AnalyzeRequest", "AnalyzeStackRequest", "AnalyzerResource", "MANDATORY", "ADVISORY"):
        assert hasattr(proto, message), moved(f"pulumi.runtime.proto:{message}")
    assert proto.PolicyType.POLICY_TYPE_STACK, moved("pulumi.runtime.proto:PolicyType")
    assert proto.AnalyzeRequest(type="kubernetes:core/v1:Namespace").type == "kubernetes:core/v1:Namespace"


def check_input_names(name: str) -> None:
    input_names = internal(name)
    assert parameters(input_names) == ["input_type_cls"], moved(name)
    names = input_names(pulumi_kubernetes.core.v1.ServiceAccountArgs)
    assert names["automount_service_account_token"] == "automountServiceAccountToken", moved(name)
    assert pulumi_internals.input_property_names(pulumi_kubernetes.core.v1.ServiceAccountArgs) == names


def check_resource_opts_defaults(name: str) -> None:
    defaults = internal(name)
    assert parameters(defaults) == [], moved(name)
    options = defaults()
    assert isinstance(options, pulumi.ResourceOptions), moved(name)
    assert options.version == metadata.version("pulumi_kubernetes"), moved(name)
    assert pulumi_internals.kubernetes_resource_defaults().version == options.version


CHECKS: dict[str, Callable[[str], None]] = {
    "pulumi.runtime.sync_await:_sync_await": check_sync_await,
    "pulumi.runtime.stack:run_pulumi_func": check_run_pulumi_func,
    "pulumi.runtime.settings:set_root_resource": check_set_root_resource,
    "pulumi.runtime.settings:SETTINGS": check_settings,
    "pulumi.runtime.mocks:MockMonitor": check_mock_monitor,
    "pulumi.runtime.rpc:deserialize_properties": check_deserialize_properties,
    "pulumi.runtime.rpc:_special_sig_key": check_signature_key,
    "pulumi.runtime.rpc:_special_secret_sig": check_secret_signature,
    "pulumi.runtime.config:CONFIG": check_config,
    "pulumi.runtime.proto:AnalyzeRequest": check_engine_protocol,
    "pulumi._types:input_type_py_to_pulumi_names": check_input_names,
    "pulumi_kubernetes._utilities:get_resource_opts_defaults": check_resource_opts_defaults,
}


def test_every_internal_the_shim_relies_on_has_a_check() -> None:
    assert sorted(CHECKS) == sorted(pulumi_internals.INTERNALS)


@pytest.mark.parametrize("name", pulumi_internals.INTERNALS)
def test_internal(name: str) -> None:
    CHECKS[name](name)


def test_the_shim_uses_only_the_internals_it_names() -> None:
    """Every internal the shim imports or reads (as the scan below sees them) is one of INTERNALS, a member of one, or
    the module one lives in: a new internal cannot slip in without a check above."""
    listed = {name.replace(":", ".") for name in pulumi_internals.INTERNALS}
    modules = {name.partition(":")[0] for name in pulumi_internals.INTERNALS}
    used = {
        f"{module}.{name}"
        for module, name in sdk_names(ast.parse((ROOT / SHIM).read_text(encoding="utf-8")))
        if internal_prefix(module, name) is not None
    }
    unlisted = sorted(u for u in used if u not in modules and not any(u == i or u.startswith(f"{i}.") for i in listed))
    assert used and not unlisted, f"{SHIM} uses {unlisted}: add each to INTERNALS and give it a check in this module"


# --- the pins ------------------------------------------------------------------------------------------------------


def pinned(distribution: str) -> SpecifierSet:
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        text = line.split("#")[0].strip()
        if text and Requirement(text).name == distribution:
            return Requirement(text).specifier
    raise AssertionError(f"requirements.txt does not list {distribution}")


@pytest.mark.parametrize(
    ("distribution", "checked"),
    [("pulumi", pulumi_internals.CHECKED_PULUMI), ("pulumi-kubernetes", pulumi_internals.CHECKED_PULUMI_KUBERNETES)],
)
def test_requirements_pin_the_checked_line_and_it_is_installed(distribution: str, checked: str) -> None:
    major, minor = checked.split(".")
    assert pinned(distribution) == SpecifierSet(f">={checked},<{major}.{int(minor) + 1}"), (
        f"requirements.txt must pin {distribution} to the {checked} line the shim was checked against"
    )
    installed = metadata.version(distribution)
    assert pinned(distribution).contains(Version(installed)), f"{distribution} {installed} is outside the pin"


# --- end to end ----------------------------------------------------------------------------------------------------

PROGRAM = """\"\"\"Canary program: a resource with a secret nested in its inputs, a plain and a secret export.\"\"\"
import pulumi

thing = pulumi.CustomResource(
    "canary:index:Thing", "thing", {"replicas": 2, "env": {"token": pulumi.Output.secret("hush")}}
)
pulumi.export("name", "canary")
pulumi.export("token", pulumi.Output.secret("hush"))
"""


def test_a_program_runs_through_the_shim(tmp_path: Path) -> None:
    """run_stack uses every runtime function of the shim: a fresh root, the recording monitor, the program run to
    completion, properties deserialised, the nested secret unwrapped, outputs awaited (the secret one shown as such)."""
    (tmp_path / "__main__.py").write_text(PROGRAM)
    for _ in range(2):  # twice in one process: nothing of the first run leaks into the second
        result = run_stack("canary", project_dir=tmp_path, config={})
        assert result.error is None, result.error
        assert [(r.type, r.name) for r in result.resources] == [("canary:index:Thing", "thing")]
        assert result.resources[0].inputs == {"replicas": 2, "env": {"token": "hush"}}
        assert result.outputs == {"name": "canary", "token": SECRET_OUTPUT}


def test_a_failing_program_is_reported_through_the_shim(tmp_path: Path) -> None:
    (tmp_path / "__main__.py").write_text("import pulumi\nraise pulumi.RunError('aim:gpu: expected one of MI300X')\n")
    result = run_stack("canary", project_dir=tmp_path, config={})
    assert result.error == "aim:gpu: expected one of MI300X"
    assert result.resources == []


# --- nobody else reaches in ----------------------------------------------------------------------------------------

#: Packages whose internals only the shim may touch.
SDKS = ("pulumi", "pulumi_kubernetes", "pulumi_command", "pulumi_docker", "pulumi_random")
#: What `pulumi.runtime` exports (its submodules, `rpc` among them, are not API).
PUBLIC_RUNTIME = frozenset(pulumi.runtime.__all__) - {"rpc"}


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def sdk_names(tree: ast.AST) -> Iterator[tuple[str, str]]:
    """(module, name) for every SDK name a module imports or reads as an attribute, import aliases resolved."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]  # `import a.b` binds `a`; `import a.b as c` binds `c` to a.b
                aliases[alias.asname or top] = alias.name if alias.asname else top
                module, _, name = alias.name.rpartition(".")
                if module:
                    yield module, name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield node.module, alias.name
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (chain := dotted(node)):
            root, _, rest = chain.partition(".")
            module, _, name = f"{aliases.get(root, root)}.{rest}".rpartition(".")
            yield module, name


def internal_prefix(module: str, name: str) -> str | None:
    """For an SDK name, the part of `module.name` that is internal (up to the first private name, or a `pulumi.runtime`
    name the package does not export); None for a public name or one of another package."""
    parts = [*module.split("."), name]
    if parts[0] not in SDKS:
        return None
    for index, part in enumerate(parts):
        dunder = part.startswith("__") and part.endswith("__")
        unexported = index == 2 and parts[:2] == ["pulumi", "runtime"] and part not in PUBLIC_RUNTIME
        if (part.startswith("_") and not dunder) or unexported:
            return ".".join(parts[: index + 1])
    return None


def direct_uses(source: str) -> set[str]:
    """The SDK internals a module uses, each as its internal part (`pulumi_kubernetes._utilities`)."""
    return {prefix for module, name in sdk_names(ast.parse(source)) if (prefix := internal_prefix(module, name))}


def test_no_module_but_the_shim_uses_sdk_internals() -> None:
    sources = [
        ROOT / "__main__.py",
        *(path for folder in ("aim_infra", "tests", "benchmarks", "policy") for path in (ROOT / folder).rglob("*.py")),
    ]
    exempt = {ROOT / SHIM, Path(__file__).resolve()}
    offenders = {
        str(path.relative_to(ROOT)): sorted(uses)
        for path in sources
        if path.resolve() not in exempt and (uses := direct_uses(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"go through {SHIM} instead: {json.dumps(offenders, indent=1)}"


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from pulumi.runtime.sync_await import _sync_await", {"pulumi.runtime.sync_await"}),
        ("from pulumi_kubernetes import _utilities", {"pulumi_kubernetes._utilities"}),
        ("import pulumi_kubernetes as k8s\nk8s._utilities.get_version()", {"pulumi_kubernetes._utilities"}),
        ("from pulumi.runtime import rpc\nrpc.deserialize_properties(x)", {"pulumi.runtime.rpc"}),
        ("from pulumi.runtime import settings", {"pulumi.runtime.settings"}),
        ("import pulumi.runtime.stack", {"pulumi.runtime.stack"}),
        ("import pulumi\npulumi.runtime.settings.SETTINGS.outputs.clear()", {"pulumi.runtime.settings"}),
        ("from pulumi import _types", {"pulumi._types"}),
        (
            "import pulumi\npulumi.runtime.set_all_config({})\nimport pulumi_kubernetes as k8s\nk8s.__file__",
            set(),
        ),
        ("from pulumi.runtime import Mocks, set_mocks, get_root_resource", set()),
        ("from pulumi_policy.policy import _PolicyAnalyzerServicer", set()),  # not one of the stack's SDKs
    ],
)
def test_the_scan_finds_each_way_of_reaching_in(source: str, found: set[str]) -> None:
    assert direct_uses(source) == found
