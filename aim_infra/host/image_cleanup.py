"""Image cleanup on `pulumi destroy`: remove the built AIM image from the local Docker engine and the local registry.

    python -m aim_infra.host.image_cleanup --image REPO:TAG [--digest sha256:<64 hex>] [--all-tags]
                                      [--registry-container NAME] [--docker docker] [--timeout SECONDS]

Three steps, each reported on stdout as one line per action, prefixed `changed:`, `unchanged:`, `warning:` or `note:`:

1. The local Docker engine: `docker image rm REPO:TAG` and, with --digest, `REPO@DIGEST` if the engine knows it.
   Never forced and never a prune: an image a container still uses stays (a `warning:` names the container).
2. The registry, only when REPO's host is the stack's local registry (`localhost:PORT` or `127.0.0.1:PORT`): the
   manifest digest (--digest, else HEAD /v2/<name>/manifests/<tag>) goes with DELETE /v2/<name>/manifests/<digest>.
   A remote registry is left alone (a `note:`); an unreachable one gets a `warning:` (it may already be gone).
3. With --registry-container NAME and a manifest deleted: `docker exec NAME registry garbage-collect --delete-untagged
   /etc/docker/registry/config.yml` (the binary and config path of the official registry:2 image) frees the blobs.

With --all-tags the earlier builds of REPO go too (the stack tags each build by a hash of its sources, so REPO collects
one tag per source change), never another repository's:

1. After REPO:TAG, every other tag `docker image ls REPO` lists (`<none>` skipped) is removed the same way: never
   forced, so an image a container uses stays with a `warning:`; the others still go. None left: an `unchanged:` line.
2. In the local registry, every tag of GET /v2/<name>/tags/list (`Link: <...>; rel="next"` pages followed on the same
   registry) is resolved to its manifest digest with the HEAD above, and each digest gets one DELETE, however many tags
   share it (the delete removes them all; its `changed:` line names them). A 404 for the list (the repository is
   unknown, e.g. already cleaned up) is an `unchanged:` line. A remote registry is still left alone (the same `note:`):
   --all-tags then only affects the local Docker engine.
3. The garbage collection runs once, after all the deletes.

It runs inside `pulumi destroy`, which must not get stuck on a registry that is already gone: after doing what it can it
exits 0; bad arguments exit 2 with one line on stderr. --timeout bounds each docker command and each HTTP request.
Stdlib only. Never a traceback.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from aim_infra.common.cli import OneLineParser, UsageError, run_program
from aim_infra.common.errors import AimError
from aim_infra.common.image_ref import ImageRef
from aim_infra.host.transport import describe_transport_error

PREFIX = "aim image cleanup:"
USAGE = (
    "python -m aim_infra.host.image_cleanup --image REPO:TAG [--digest sha256:<64 hex>] [--all-tags] "
    "[--registry-container NAME] [--docker docker] [--timeout SECONDS]"
)
DEFAULT_TIMEOUT = 60.0
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})
#: What the registry may store for a tag; without these a HEAD may answer a schema1 conversion with another digest.
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
#: The most of one page of GET /v2/<name>/tags/list read (a registry with more tags pages them with `Link`).
TAGS_PAGE_LIMIT = 8 * 1024 * 1024
#: The most pages of a tags list followed (a registry whose `Link`s never end stops there).
TAGS_PAGE_MAX = 10_000
#: The registry binary and its config inside the official `registry:2` image (distribution v2.8).
GC_COMMAND = ("registry", "garbage-collect", "--delete-untagged", "/etc/docker/registry/config.yml")

# The grammar of github.com/distribution/reference: a domain (with an optional port), then lowercase path components.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?P<host>{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::(?P<port>[0-9]+))?"
)
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_NAME_MAX = 255


@dataclass(frozen=True)
class Reference:
    """REPO:TAG split the way Docker does: `domain` is None for Docker Hub names (`aim-engine`, `org/aim-engine`)."""

    repository: str  # as given: localhost:5000/aim-engine
    domain: str | None  # localhost:5000
    name: str  # the repository inside its registry: aim-engine
    tag: str

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def local_registry(self) -> str | None:
        """`host:port` when the repository lives in the stack's local registry (localhost or 127.0.0.1 with a port)."""
        if self.domain is None:
            return None
        match = _DOMAIN.fullmatch(self.domain)
        if match and match.group("host") in LOCAL_HOSTS and match.group("port"):
            return self.domain
        return None

    def at(self, digest: str) -> str:
        return f"{self.repository}@{digest}"


def parse_image(text: str) -> Reference:
    """REPO:TAG, checked against Docker's reference grammar; ValueError says what is wrong."""
    if not text:
        raise ValueError("--image is empty: expected REPO:TAG such as localhost:5000/aim-engine:1a2b3c4d5e6f")
    parsed = ImageRef.parse(text)
    if parsed.digest is not None:
        raise ValueError(f"--image {text!r} holds a digest: pass REPO:TAG as --image and the digest as --digest")
    if parsed.tag is None:
        raise ValueError(
            f"--image {text!r} has no tag: expected REPO:TAG such as localhost:5000/aim-engine:1a2b3c4d5e6f"
        )
    tag = parsed.tag
    if not _TAG.fullmatch(tag):
        raise ValueError(f"--image {text!r} has an invalid tag {tag!r}: expected letters, digits, _ . - (up to 128)")
    domain = parsed.registry
    if domain is not None:
        match = _DOMAIN.fullmatch(domain)
        if not match or (match.group("port") and not 0 < int(match.group("port")) <= 65535):
            raise ValueError(f"--image {text!r} has an invalid registry host {domain!r}")
    if not all(_PATH_COMPONENT.fullmatch(part) for part in parsed.path.split("/")):
        raise ValueError(
            f"--image {text!r} has an invalid repository name: expected lowercase letters, digits and . _ - "
            "between slashes"
        )
    if len(parsed.repository) > _NAME_MAX:
        raise ValueError(f"--image {text!r} has a repository name longer than {_NAME_MAX} characters")
    return Reference(repository=parsed.repository, domain=domain, name=parsed.path, tag=tag)


def check_digest(text: str) -> str:
    """sha256:<64 lowercase hex>, as the registry's Docker-Content-Digest; ValueError otherwise."""
    if not _DIGEST.fullmatch(text):
        raise ValueError(f"--digest {text!r} is not a manifest digest: expected sha256:<64 lowercase hex digits>")
    return text


@dataclass(frozen=True)
class Settings:
    ref: Reference
    digest: str | None
    registry_container: str | None
    docker: str
    timeout: float
    all_tags: bool = False


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = OneLineParser(prog="python -m aim_infra.host.image_cleanup", description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="the built image, REPO:TAG (e.g. localhost:5000/aim-engine:TAG)")
    parser.add_argument("--digest", help="its manifest digest, sha256:<64 hex> (default: asked from the registry)")
    parser.add_argument(
        "--all-tags",
        action="store_true",
        help="also remove every other tag of REPO (earlier builds): those `docker image ls REPO` lists, and in the "
        "local registry every tag of its tags list, each manifest deleted once; other repositories and a remote "
        "registry are left alone",
    )
    parser.add_argument(
        "--registry-container", help="the local registry's container, to run its garbage collector after a delete"
    )
    parser.add_argument("--docker", default="docker", help="the docker program (default: docker on PATH)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds for each docker command and HTTP request (default {DEFAULT_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    try:
        ref = parse_image(args.image)
        digest = None if args.digest is None else check_digest(args.digest)
    except ValueError as error:
        raise UsageError(str(error)) from None
    container = args.registry_container
    if container is not None and not _CONTAINER_NAME.fullmatch(container):
        raise UsageError(f"--registry-container {container!r} is not a container name or id")
    if not args.docker:
        raise UsageError("--docker is empty: expected the docker program, e.g. docker")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout {args.timeout:g} is not allowed: expected a positive number of seconds")
    return Settings(ref, digest, container, args.docker, args.timeout, all_tags=args.all_tags)


def emit(kind: str, text: str) -> None:
    """One action's line: `changed:`, `unchanged:`, `warning:` or `note:`; flushed, so `pulumi destroy` shows it."""
    print(f"{kind}: {' '.join(text.split())}", flush=True)


def _first_line(text: str, limit: int = 240) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else "(no output)"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _last_line(text: str, limit: int = 240) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else "(no output)"
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------------------------
# the local Docker engine


class DockerUnavailable(AimError):
    """The docker CLI is missing, timed out, or its engine did not answer: the message says which."""


def _docker(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [settings.docker, *args],
            capture_output=True,
            text=True,
            timeout=settings.timeout,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise DockerUnavailable(f"the docker program {settings.docker!r} was not found") from None
    except subprocess.TimeoutExpired:
        raise DockerUnavailable(f"`docker {' '.join(args[:2])}` took over {settings.timeout:g} s") from None
    except OSError as error:
        raise DockerUnavailable(f"cannot run {settings.docker!r}: {error.strerror or error}") from None


def _no_such(stderr: str) -> bool:
    text = stderr.lower()
    return "no such image" in text or "no such object" in text or "reference does not exist" in text


def image_id(settings: Settings, reference: str) -> str | None:
    """The image id the engine has under `reference`, None when it has none; DockerUnavailable when it can't say."""
    result = _docker(settings, "image", "inspect", "--format", "{{.Id}}", reference)
    if result.returncode == 0:
        return result.stdout.strip() or None
    if _no_such(result.stderr):
        return None
    raise DockerUnavailable(f"the local Docker engine did not answer ({_first_line(result.stderr)})")


def _container_hint(settings: Settings, stderr: str) -> str | None:
    """`name (id)` of the container Docker names in a conflict, or just its id."""
    match = re.search(r"container ([0-9a-f]{12,64})", stderr)
    if match is None:
        return None
    container = match.group(1)
    try:
        result = _docker(settings, "container", "inspect", "--format", "{{.Name}}", container)
    except DockerUnavailable:
        return container
    name = result.stdout.strip().lstrip("/") if result.returncode == 0 else ""
    return f"{name} ({container[:12]})" if name else container[:12]


def remove_reference(settings: Settings, reference: str) -> bool:
    """`docker image rm REFERENCE` (never forced, so never a running container's image); True when it went."""
    result = _docker(settings, "image", "rm", reference)
    if result.returncode == 0:
        emit("changed", f"removed {reference} from the local Docker engine")
        return True
    if _no_such(result.stderr):
        emit("unchanged", f"{reference} is not in the local Docker engine")
        return False
    hint = _container_hint(settings, result.stderr) if "conflict" in result.stderr.lower() else None
    if hint is not None:
        container = hint.split(" ")[0]
        emit(
            "warning",
            f"{reference} is used by container {hint}, so Docker keeps it (not forced): remove the container "
            f"(docker rm {container}), then docker image rm {reference}",
        )
    else:
        emit("warning", f"docker image rm {reference} failed: {_first_line(result.stderr)}; it stays")
    return False


def _clean_tag(settings: Settings) -> None:
    """REPO:TAG and, with --digest, REPO@DIGEST."""
    ref = settings.ref
    by_digest = ref.at(settings.digest) if settings.digest else None
    tag_id = image_id(settings, ref.image)
    digest_id = image_id(settings, by_digest) if by_digest else None
    tag_kept = False
    if tag_id is None:
        emit("unchanged", f"{ref.image} is not in the local Docker engine")
    else:
        tag_kept = not remove_reference(settings, ref.image)
    if by_digest is None:
        return
    if digest_id is None:
        emit("unchanged", f"{by_digest} is not in the local Docker engine")
    elif tag_kept and digest_id == tag_id:
        return  # the same image stays for its container: its digest reference stays with it
    elif image_id(settings, by_digest) is None:
        # Untagging the last tag of a repository drops that repository's digest references with it.
        emit("changed", f"removed {by_digest} from the local Docker engine")
    else:
        remove_reference(settings, by_digest)


def familiar(repository: str) -> str:
    """The repository as `docker image ls` shows it: docker.io/library/aim → aim, docker.io/org/aim → org/aim."""
    for domain in ("docker.io/", "index.docker.io/"):
        if repository.startswith(domain):
            repository = repository[len(domain) :]
            break
    if repository.startswith("library/") and repository.count("/") == 1:
        repository = repository[len("library/") :]
    return repository


def local_tags(settings: Settings) -> list[str]:
    """Every REPO:TAG the engine has for exactly REPO (never another repository, never `<none>`), sorted."""
    wanted = familiar(settings.ref.repository)  # Docker's filter matches that form (not docker.io/library/NAME)
    result = _docker(settings, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", wanted)
    if result.returncode != 0:
        raise DockerUnavailable(f"`docker image ls {wanted}` failed ({_first_line(result.stderr)})")
    found: set[str] = set()
    for line in result.stdout.splitlines():
        listed = ImageRef.parse(line.strip())  # REPO:TAG, as the format asks
        name, tag = listed.repository, listed.tag or ""
        # Docker filters by REPO already; the check keeps a looser filter (a pattern, another engine) harmless.
        if name and name != "<none>" and familiar(name) == wanted and _TAG.fullmatch(tag) and listed.digest is None:
            found.add(f"{name}:{tag}")
    return sorted(found)


def clean_local(settings: Settings) -> None:
    """Step 1: the tag and, with --digest, the digest reference, from the local Docker engine; --all-tags: REPO's."""
    ref = settings.ref
    try:
        _clean_tag(settings)
    except DockerUnavailable as error:
        what = f"{ref.image} and the other tags of {ref.repository} were" if settings.all_tags else f"{ref.image} was"
        emit("warning", f"{error}; {what} not removed from the local Docker engine")
        return
    if not settings.all_tags:
        return
    try:
        itself = f"{familiar(ref.repository)}:{ref.tag}"
        others = [reference for reference in local_tags(settings) if familiar(reference) != itself]
        if not others:
            emit("unchanged", f"no other tags of {ref.repository} in the local Docker engine")
        for reference in others:
            remove_reference(settings, reference)
    except DockerUnavailable as error:
        emit("warning", f"{error}; other tags of {ref.repository} were not removed from the local Docker engine")


# --------------------------------------------------------------------------------------------------------------------
# the local registry


class Unreachable(AimError):
    """No HTTP status came back: connection refused, reset, time-out."""


def _request(
    method: str, url: str, *, timeout: float, accept: str | None = None, limit: int = 4096
) -> tuple[int, dict[str, str], str]:
    """One request straight to the registry (no proxy from the environment): status, headers (lowercase), body text.

    The body is read up to `limit` bytes.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    try:
        try:
            with opener.open(request, timeout=timeout) as response:
                body = response.read(limit)
                return (
                    response.status,
                    {k.lower(): v for k, v in response.headers.items()},
                    body.decode("utf-8", "replace"),
                )
        except urllib.error.HTTPError as error:
            try:
                body = error.read(min(limit, 4096))
            except (OSError, http.client.HTTPException):
                body = b""
            return error.code, {k.lower(): v for k, v in error.headers.items()}, body.decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise Unreachable(describe_transport_error(error)) from error


def _base_url(host: str) -> str:
    """The registry's URL: `localhost` is asked as 127.0.0.1, where the stack publishes it (not ::1)."""
    match = _DOMAIN.fullmatch(host)
    port = match.group("port") if match else None
    return f"http://127.0.0.1:{port}" if port else f"http://{host}"


def _head_digest(settings: Settings, host: str, base: str, tag: str, *, unresolved: str) -> str | None:
    """The manifest digest the registry has under `tag` (HEAD with MANIFEST_TYPES); None, with a line, without one."""
    name = settings.ref.name
    status, headers, _ = _request("HEAD", f"{base}/manifests/{tag}", timeout=settings.timeout, accept=MANIFEST_TYPES)
    if status == 404:
        emit("unchanged", f"{name}:{tag} is not in {host}")
        return None
    found = headers.get("docker-content-digest", "")
    if status != 200 or not _DIGEST.fullmatch(found):
        detail = f"answered {status}" if status != 200 else f"sent no usable Docker-Content-Digest ({found!r})"
        emit("warning", f"{host} {detail} to HEAD {name}:{tag}; {unresolved}")
        return None
    return found


def next_link(header: str) -> str | None:
    """The target of `rel="next"` in a Link header (RFC 8288), as the registry's tags list pages with it."""
    for match in re.finditer(r"<([^>]*)>([^<]*)", header):
        params = [param.strip().lower().replace('"', "") for param in match.group(2).split(";")]
        if any(param.startswith("rel=") and "next" in param[4:].split() for param in params):
            return match.group(1).strip()
    return None


def registry_tags(settings: Settings, host: str, base: str) -> tuple[list[str], bool] | None:
    """Every tag of GET <base>/tags/list, following `Link` pages on the same registry, sorted; and whether all came.

    None, with its line, when there is no list at all: 404 (the repository is unknown) or an answer that is not one.
    """
    name = settings.ref.name
    first = url = f"{base}/tags/list"
    origin = urllib.parse.urlsplit(first)
    found: set[str] = set()
    seen: set[str] = set()
    while True:
        seen.add(url)
        status, headers, body = _request("GET", url, timeout=settings.timeout, limit=TAGS_PAGE_LIMIT)
        page = "the tags list" if url == first else f"a later page of the tags list ({url})"
        rest = f"other tags of {name} were not deleted there" if url == first else "its tags and later ones stay there"
        if status == 404 and url == first:
            emit("unchanged", f"repository {name} is not in {host}, so it has no other tags to delete there")
            return None
        tags: object = None
        if status == 200:
            try:
                listing = json.loads(body)
            except ValueError:
                listing = None
            if isinstance(listing, dict):
                tags = listing.get("tags") or []  # distribution: "tags": null when the repository has none left
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            detail = f"answered {status} to" if status != 200 else "sent no JSON list of tags for"
            emit("warning", f"{host} {detail} GET {name} {page} ({_first_line(body, 160)}); {rest}")
            return (sorted(found), False) if found else None
        bad = [tag for tag in tags if not _TAG.fullmatch(tag)]
        if bad:
            emit("warning", f"{host} listed invalid tags of {name} ({', '.join(map(repr, bad[:3]))}); they stay there")
        found.update(tag for tag in tags if _TAG.fullmatch(tag))
        target = next_link(headers.get("link", ""))
        if target is None:
            return sorted(found), not bad
        url = urllib.parse.urljoin(url, target)
        parts = urllib.parse.urlsplit(url)
        if (parts.scheme, parts.netloc, parts.path) != (origin.scheme, origin.netloc, origin.path):
            emit(
                "warning",
                f"{host} linked the next page of the {name} tags list to another place ({url}); the tags there stay",
            )
            return sorted(found), False
        if url in seen or len(seen) >= TAGS_PAGE_MAX:
            emit("warning", f"{host} linked the {name} tags list in a loop ({url}); the tags after it stay there")
            return sorted(found), False


def _plan(settings: Settings, host: str, base: str) -> dict[str, list[str]]:
    """The manifest digests to delete, in order, each with the tags known to point at it."""
    ref = settings.ref
    digests: dict[str, list[str]] = {}
    resolved: set[str] = set()
    if settings.digest is not None:
        digests[settings.digest] = []
    else:
        unresolved = (
            "its manifest was not deleted there (pass --digest to delete by digest)"
            if settings.all_tags
            else "nothing was deleted there (pass --digest to delete by digest)"
        )
        digest = _head_digest(settings, host, base, ref.tag, unresolved=unresolved)
        resolved.add(ref.tag)
        if digest is not None:
            digests[digest] = [ref.tag]
    if not settings.all_tags:
        return digests
    listed = registry_tags(settings, host, base)
    if listed is None:
        return digests
    tags, complete = listed
    if complete and not [tag for tag in tags if tag != ref.tag]:
        emit("unchanged", f"no other tags of {ref.name} in {host}")
    for tag in tags:
        if tag in resolved:
            continue
        digest = _head_digest(settings, host, base, tag, unresolved="its manifest was not deleted there")
        if digest is not None:
            digests.setdefault(digest, []).append(tag)
    return digests


def clean_registry(settings: Settings) -> bool:
    """Step 2: delete the manifest(s) from the stack's local registry; True when a DELETE was accepted (202)."""
    ref = settings.ref
    host = ref.local_registry
    if host is None:
        where = ref.domain or "docker.io"
        emit(
            "note",
            f"{where} is not the stack's local registry (localhost:PORT or 127.0.0.1:PORT): remote registries "
            f"are left alone, so {ref.image} stays there",
        )
        return False
    base = f"{_base_url(host)}/v2/{ref.name}"
    deleted = False
    try:
        digests = list(_plan(settings, host, base).items())
        for index, (digest, tags) in enumerate(digests):
            status, _, body = _request("DELETE", f"{base}/manifests/{digest}", timeout=settings.timeout)
            if status == 202:
                named = (
                    f" ({'tag' if len(tags) == 1 else 'tags'} {', '.join(tags)})" if settings.all_tags and tags else ""
                )
                emit("changed", f"deleted {ref.name}@{digest} from {host}{named}")
                deleted = True
            elif status == 404:
                emit("unchanged", f"{ref.name}@{digest} is not in {host}")
            elif status == 405:
                more = len(digests) - index - 1
                emit(
                    "warning",
                    f"deletes are disabled on {host} (405: run it with REGISTRY_STORAGE_DELETE_ENABLED=true); the "
                    f"manifest {ref.name}@{digest} stays"
                    + (f", and so do {more} other manifest{'s' if more != 1 else ''} of {ref.name}" if more else ""),
                )
                break
            else:
                emit(
                    "warning",
                    f"{host} answered {status} to DELETE {ref.name}@{digest} ({_first_line(body, 160)}); the "
                    "manifest stays",
                )
    except Unreachable as error:
        if deleted:
            emit("warning", f"registry {host} is unreachable ({error}); the remaining manifests were not deleted there")
        else:
            emit(
                "warning",
                f"registry {host} is unreachable ({error}); it may already be gone, so nothing was deleted there",
            )
    return deleted


# --------------------------------------------------------------------------------------------------------------------
# garbage collection


def freed_blobs(output: str) -> int | None:
    """How many blobs `registry garbage-collect` (not a dry run) deleted, from its summary line; None if absent.

    distribution v2.8 prints "N blobs marked, M blobs and K manifests eligible for deletion", v2.7 "... M blobs
    eligible for deletion".
    """
    match = re.search(r"\d+ blobs marked, (\d+) blobs (?:and \d+ manifests )?eligible for deletion", output)
    return int(match.group(1)) if match else None


def garbage_collect(settings: Settings, container: str) -> None:
    """Step 3: the registry's own garbage collector in its container frees the deleted manifest's blobs."""
    try:
        result = _docker(settings, "exec", container, *GC_COMMAND)
    except DockerUnavailable as error:
        emit("warning", f"garbage collection in {container} did not run: {error}; unreferenced blobs stay")
        return
    if result.returncode != 0:
        emit(
            "warning",
            f"garbage collection in {container} failed (exit {result.returncode}: "
            f"{_last_line(result.stderr or result.stdout)}); unreferenced blobs stay until the next garbage-collect",
        )
        return
    count = freed_blobs(result.stdout)
    if count is None:
        emit("changed", f"garbage-collected {container}")
    elif count == 0:
        emit("unchanged", f"garbage-collected {container}: no unreferenced blobs to free")
    else:
        emit("changed", f"garbage-collected {container} ({count} blob{'s' if count != 1 else ''} freed)")


# --------------------------------------------------------------------------------------------------------------------


def run(settings: Settings) -> None:
    clean_local(settings)
    deleted = clean_registry(settings)
    if deleted and settings.registry_container:
        garbage_collect(settings, settings.registry_container)


def main(argv: Sequence[str] | None = None) -> int:
    """Clean up; 0 after doing what it can, 2 with one line on stderr for bad arguments."""

    def body() -> None:
        run(parse_args(argv))

    return run_program(
        PREFIX,
        body,
        usage_hint=f"usage: {USAGE}",
        # It runs inside `pulumi destroy`, which must not get stuck on a cleanup that cannot finish: whatever stops
        # the cleanup is one more `warning:` line among its actions, and the exit is still 0.
        report=lambda line: emit("warning", line),
        interrupted="interrupted; the cleanup stopped there",
        unexpected="unexpected error ({error}); the cleanup stopped there",
        failure_exit=0,
    )


if __name__ == "__main__":
    sys.exit(main())
