"""The one module that touches private or undocumented parts of the Pulumi SDKs, each behind a small public function.

Everything else in aim_infra, tests and benchmarks goes through these functions (tests/stack/test_pulumi_internals.py
scans the sources for direct uses and checks every internal below against the installed SDKs: it exists, has the
signature these functions call it with, and does what they expect on a tiny call). Checked against pulumi 3.272.x and
pulumi-kubernetes 4.34.x, the ranges requirements.txt pins; a new SDK line means running that test, then widening the
pin and CHECKED_* here together.

No SDK is imported at module level: plan.py and the CLI import this module before (or without) loading Pulumi.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pulumi

T = TypeVar("T")

#: The SDK lines every internal below was checked against (requirements.txt pins exactly these minors).
CHECKED_PULUMI = "3.272"
CHECKED_PULUMI_KUBERNETES = "4.34"

#: Every internal this module relies on, as `module:attribute`; the canary test checks each one (and that this list
#: and its own expectations name the same internals).
INTERNALS = (
    "pulumi.runtime.sync_await:_sync_await",
    "pulumi.runtime.stack:run_pulumi_func",
    "pulumi.runtime.settings:set_root_resource",
    "pulumi.runtime.settings:SETTINGS",
    "pulumi.runtime.mocks:MockMonitor",
    "pulumi.runtime.rpc:deserialize_properties",
    "pulumi.runtime.rpc:_special_sig_key",
    "pulumi.runtime.rpc:_special_secret_sig",
    "pulumi.runtime.config:CONFIG",
    "pulumi.runtime.proto:AnalyzeRequest",
    "pulumi._types:input_type_py_to_pulumi_names",
    "pulumi_kubernetes._utilities:get_resource_opts_defaults",
)

#: The map the Pulumi wire format wraps a secret in: {SECRET_SIGNATURE_KEY: SECRET_SIGNATURE, "value": ...}
#: (pulumi.runtime.rpc's `_special_sig_key` and `_special_secret_sig`; fixed by the engine's protocol, so written here
#: as values rather than imported; the canary test checks they still agree).
SECRET_SIGNATURE_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIGNATURE = "1b47061264138c4ac30d75fd1eb44270"


def is_secret_envelope(value: Any) -> bool:
    """Whether a deserialised wire value is a secret wrapped in the wire format's envelope (its plain value is under
    "value"). The offline plan unwraps nested secrets to show manifests as Kubernetes receives them (redaction comes
    later); the mock monitor leaves them wrapped. Checked against pulumi 3.272 (`pulumi.runtime.rpc`)."""
    return isinstance(value, dict) and value.get(SECRET_SIGNATURE_KEY) == SECRET_SIGNATURE and "value" in value


def sync_await(awaitable: Awaitable[T]) -> T:
    """Wait for an awaitable from synchronous code, pumping the current event loop even if it is already running
    (`pulumi.runtime.sync_await._sync_await`). The offline plan reads stack outputs (`Output.future()`,
    `Output.is_secret()`) after the program ran, outside any coroutine. Checked against pulumi 3.272."""
    from pulumi.runtime.sync_await import _sync_await

    return _sync_await(awaitable)


def run_program(program: Callable[[], object]) -> None:
    """Run a Pulumi program body and wait until every registration it started has finished, as the SDK's entry point
    does (`pulumi.runtime.stack.run_pulumi_func`, awaited with `_sync_await`). The offline plan runs `__main__.py`
    this way under mocks: the public `run_in_stack` would create a second root Stack beside the one `set_mocks`
    made. A failing program raises its exception (`pulumi.RunError` for a user error). Checked against pulumi 3.272."""
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    def body() -> Awaitable[None] | None:
        result = program()  # runpy.run_path returns the module's globals: not the SDK's business
        return result if inspect.isawaitable(result) else None

    _sync_await(run_pulumi_func(body))


def forget_root_resource() -> None:
    """Drop the current root Stack resource (`pulumi.runtime.settings.set_root_resource(None)`), so the next
    `set_mocks` creates a fresh one: the plan runs several programs in one process (tests, `plan` for two stacks) and
    each must hang off its own Stack. Checked against pulumi 3.272."""
    from pulumi.runtime import settings

    settings.set_root_resource(None)  # type: ignore[arg-type]


def forget_pending_work() -> None:
    """Clear the SDK's process-wide bookkeeping of outstanding RPCs and unresolved outputs
    (`pulumi.runtime.settings.SETTINGS.rpc_manager.clear()` and `.outputs.clear()`): an earlier plan in the same
    process (a failed one included) must not leave work the next run then waits for or reports. Checked against
    pulumi 3.272."""
    from pulumi.runtime import settings

    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()


def mock_monitor_class() -> type[Any]:
    """The SDK's mock resource monitor (`pulumi.runtime.mocks.MockMonitor`; not exported, though `set_mocks` takes an
    instance as `monitor=`). Tests wrap its `RegisterResource` to capture the raw requests of a plan run. Checked
    against pulumi 3.272."""
    from pulumi.runtime import mocks

    return mocks.MockMonitor


def recording_mock_monitor(mocks: pulumi.runtime.Mocks, on_register: Callable[[Any, Any], None]) -> Any:
    """A mock resource monitor for `set_mocks(..., monitor=)` that calls `on_register(request, response)` after each
    RegisterResource it answers (a subclass of `pulumi.runtime.mocks.MockMonitor`): the plan records every request
    with its options, which the public `Mocks.new_resource` does not see. Checked against pulumi 3.272."""
    from pulumi.runtime.mocks import MockMonitor

    class RecordingMonitor(MockMonitor):
        def RegisterResource(self, request: Any) -> Any:
            response = super().RegisterResource(request)
            on_register(request, response)
            return response

    return RecordingMonitor(mocks)


def deserialize_properties(struct: Any) -> Any:
    """A RegisterResource request's properties (a protobuf `Struct`) as plain Python values, numbers as floats and
    secrets left in their envelope (`pulumi.runtime.rpc.deserialize_properties`): how the plan records what a resource
    sends. Checked against pulumi 3.272."""
    from pulumi.runtime import rpc

    return rpc.deserialize_properties(struct)


def config_keys() -> set[str]:
    """Every config key (`namespace:key`) set for the running program. The SDK has no public listing, so read both
    places it keeps config: the engine's environment (real runs; `pulumi.runtime.get_config_env`, public) and the
    in-process table that `set_all_config` fills (mock runs; `pulumi.runtime.config.CONFIG`). The stack's settings
    need it to refuse unknown `aim:` keys. Checked against pulumi 3.272."""
    from pulumi.runtime import config, get_config_env

    return set(get_config_env()) | set(config.CONFIG.get())


def engine_protocol() -> ModuleType:
    """The engine's gRPC messages (`pulumi.runtime.proto`: AnalyzeRequest, AnalyzerResource, the enforcement levels,
    ...). tests/policy feeds the policy pack's analyzer the messages the CLI sends. Checked against pulumi 3.272."""
    from pulumi.runtime import proto

    return proto


def input_property_names(args_class: type) -> dict[str, str]:
    """A generated `*Args` class's Python argument names and the wire names they are sent as
    (`service_account_name` → `serviceAccountName`; `pulumi._types.input_type_py_to_pulumi_names`). Only the
    comparison with pulumi_kubernetes' generated classes uses it (tests/stack/components/test_kube.py,
    benchmarks/plan_time.py): it maps a manifest onto their keyword arguments. Checked against pulumi 3.272."""
    from pulumi import _types

    return _types.input_type_py_to_pulumi_names(args_class)


def kubernetes_resource_defaults() -> pulumi.ResourceOptions:
    """The options every generated pulumi_kubernetes class attaches: the provider plugin's version and download URL
    (`pulumi_kubernetes._utilities.get_resource_opts_defaults`). KubernetesObject and HelmRelease attach the same, so
    the engine picks the same plugin as for the generated classes. Checked against pulumi-kubernetes 4.34."""
    from pulumi_kubernetes import _utilities

    return _utilities.get_resource_opts_defaults()
