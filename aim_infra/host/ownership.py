"""Refuse to adopt Kubernetes objects this stack did not create: check every object it declares before any is made.

    python -m aim_infra.host.ownership --owner PROJECT/STACK --objects JSON [--context CTX] [--timeout 20]

Every object the stack declares carries the annotation `aim.amd.com/owned-by: PROJECT/STACK` (components/kube.py).
The provider upserts (so a namespace and model cache kept by `pulumi destroy` are taken back by the next `up`), and
an upsert would just as well take over someone else's namespace and relabel it, and `pulumi destroy` would then
delete it with everything inside. So this step runs first, on every `up` that declares a new set of objects: for each
object in JSON (a list of {apiVersion, kind, namespace?, name}) it asks the API server whether the object exists;
one that exists without this stack's annotation stops `pulumi up` with one line naming it. Kinds the cluster does not
serve yet (CRDs a chart installs later) cannot have objects, so they pass. Exit 0 with one `owned:` line, 1 with one
line starting `aim ownership:`, 2 for bad arguments.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aim_infra.common.cli import OneLineParser, UsageError, run_program
from aim_infra.common.contract import OWNER_ANNOTATION
from aim_infra.common.errors import AimError
from aim_infra.common.kube_api import ClusterUnreachable
from aim_infra.common.kube_api import api_client as api_client_for

PREFIX = "aim ownership:"


class ObjectRef(BaseModel):
    """One object the stack declares, as the API server names it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    api_version: str = Field(alias="apiVersion", min_length=1)
    kind: str = Field(min_length=1)
    namespace: str | None = None
    name: str = Field(min_length=1)

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True)
class Resource:
    """How the API serves one kind: its plural path segment and whether it lives in a namespace."""

    plural: str
    namespaced: bool


class ApiError(AimError):
    """The API server could not be asked (unreachable, forbidden): the message is one line."""


#: GET path → (HTTP status, parsed JSON body or None); the real one goes through the kubernetes client.
Getter = Callable[[str], tuple[int, Any]]


def object_path(ref: ObjectRef, resource: Resource) -> str:
    base = f"/api/{ref.api_version}" if "/" not in ref.api_version else f"/apis/{ref.api_version}"
    if resource.namespaced:
        return f"{base}/namespaces/{ref.namespace or 'default'}/{resource.plural}/{ref.name}"
    return f"{base}/{resource.plural}/{ref.name}"


def discover(get: Getter, api_version: str) -> dict[str, Resource] | None:
    """Kind → Resource for one group/version, or None when the cluster does not serve it (a CRD not installed yet)."""
    path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    status, body = get(path)
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        raise ApiError(f"GET {path} answered HTTP {status}")
    found: dict[str, Resource] = {}
    for entry in body.get("resources") or []:
        name = str(entry.get("name", ""))
        if "/" in name:  # subresources such as deployments/scale
            continue
        found[str(entry.get("kind", ""))] = Resource(plural=name, namespaced=bool(entry.get("namespaced")))
    return found


def foreign_objects(get: Getter, refs: Sequence[ObjectRef], owner: str) -> list[tuple[ObjectRef, str]]:
    """The objects among `refs` that exist and are not this owner's, each with who (if anyone) marked it."""
    served: dict[str, dict[str, Resource] | None] = {}
    foreign: list[tuple[ObjectRef, str]] = []
    for ref in refs:
        if ref.api_version not in served:
            served[ref.api_version] = discover(get, ref.api_version)
        kinds = served[ref.api_version]
        if kinds is None or ref.kind not in kinds:
            continue  # the cluster does not serve this kind yet, so no such object can exist
        path = object_path(ref, kinds[ref.kind])
        status, body = get(path)
        if status == 404:
            continue
        if status != 200 or not isinstance(body, dict):
            raise ApiError(f"GET {path} answered HTTP {status}")
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        marked = str(annotations.get(OWNER_ANNOTATION) or "")
        if marked != owner:
            foreign.append((ref, marked))
    return foreign


def refusal(foreign: list[tuple[ObjectRef, str]], owner: str) -> str:
    """One line: which objects exist that this stack would take over, and what to do."""
    shown = []
    for ref, marked in foreign[:5]:
        shown.append(f"{ref.describe()} ({f'created by stack {marked}' if marked else 'not created by an AIM stack'})")
    more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
    return (
        f"{'; '.join(shown)}{more} already exist(s); stack {owner} adopts only objects annotated "
        f"{OWNER_ANNOTATION}={owner}, so it stops here rather than take over, relabel or later delete them: "
        "choose another aim:namespace, turn off what declares it (aim:calico, aim:amdGpuPlugin, aim:monitoring, "
        "aim:deviceMetricsExporter, aim:localPath, aim:admissionPolicy), or remove the object if it is yours to remove"
    )


class _ObjectList(BaseModel):
    objects: list[ObjectRef]


def read_objects(text: str) -> list[ObjectRef]:
    try:
        return _ObjectList.model_validate({"objects": json.loads(text)}).objects
    except (ValueError, ValidationError) as error:
        reason = " ".join(str(error).split())[:200]
        raise UsageError(f"--objects: not a JSON list of {{apiVersion, kind, namespace, name}} ({reason})") from None


def kubernetes_getter(context: str | None, timeout_seconds: float) -> tuple[Getter, Callable[[], None]]:
    """A Getter through the kubeconfig the provider uses ($KUBECONFIG or ~/.kube/config, `context`)."""
    from kubernetes.client.exceptions import ApiException

    try:
        api_client, configuration = api_client_for(context)
    except ClusterUnreachable as error:
        raise ApiError(str(error)) from None

    def get(path: str) -> tuple[int, Any]:
        # The REST layer, not ApiClient.call_api: its signature changed between client majors (31 → 37), this did not.
        headers: dict[str, str] = {"Accept": "application/json"}
        bearer = configuration.auth_settings().get("BearerToken")
        if bearer and bearer.get("value"):
            headers[str(bearer["key"])] = str(bearer["value"])
        try:
            response = api_client.rest_client.request(
                "GET", configuration.host + path, headers=headers, _request_timeout=timeout_seconds
            )
            status, raw = int(response.status), response.read() if hasattr(response, "read") else response.data
        except ApiException as error:  # clients before 34 raise for any status outside 2xx
            status, raw = int(error.status or 0), error.body
        except Exception as error:  # urllib3 connection errors and the like: one line, not a traceback
            raise ApiError(f"cannot reach the API server ({' '.join(str(error).split())[:160]})") from None
        if status in (401, 403):
            raise ApiError(f"GET {path} was refused (HTTP {status}): the kubeconfig user cannot read it")
        try:
            return status, json.loads(raw)
        except (TypeError, ValueError):
            return status, None

    return get, api_client.close


def main(argv: Sequence[str] | None = None) -> int:
    """Check the objects; 0 with the `owned:` line on stdout, 1 (2 for bad arguments) with one line on stderr."""
    parser = OneLineParser(prog="python -m aim_infra.host.ownership", description=__doc__.splitlines()[0])
    parser.add_argument("--owner", required=True, help="PROJECT/STACK, the value of the ownership annotation")
    parser.add_argument("--objects", required=True, help="a JSON list of the objects the stack declares")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per API request")

    def body() -> str:
        args = parser.parse_args(argv)
        if args.owner.count("/") != 1 or not all(args.owner.split("/")):
            raise UsageError(f"--owner {args.owner!r} is not allowed: expected PROJECT/STACK")
        refs = read_objects(args.objects)
        try:
            get, close = kubernetes_getter(args.context, args.timeout)
            try:
                foreign = foreign_objects(get, refs, args.owner)
            finally:
                close()
        except ApiError as error:
            raise ApiError(f"cannot check which objects exist, so nothing is created: {error}") from None
        if foreign:
            raise AimError(refusal(foreign, args.owner))
        return f"owned: none of the {len(refs)} objects exists, or each is already stack {args.owner}'s"

    return run_program(PREFIX, body)


if __name__ == "__main__":
    sys.exit(main())
