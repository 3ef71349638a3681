"""aim_infra.host.image_cleanup on a real Docker engine and real registries on 127.0.0.1, and its pure parts.

The engine is the one tests/test_docker_image.py starts (its `docker` fixture, re-used here). Registries are Debian's
`docker-registry` binary (distribution 2.8) run as processes with temporary storage, deletes enabled or not; for
garbage collection the same binary runs inside a container made with `docker import` (the binary, the libraries `ldd`
names, a config at /etc/docker/registry/config.yml: the layout of the official registry:2 image), so the CLI's
`docker exec NAME registry garbage-collect` runs for real. Nothing is pulled: test images are `docker import`ed tiny
tarballs. Without the tools the tests skip, unless AIM_TESTS_REQUIRE_TOOLS=1 (set by .ci/run), when they fail.
--all-tags's `Link` paging runs against a small fake registry on 127.0.0.1 (distribution 2.8 lists all tags at once).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aim_infra.host import image_cleanup
from aim_infra.host.image_cleanup import Reference, check_digest, freed_blobs, main, parse_image
from tests import test_docker_image as engine
from tests.test_docker_image import MANIFEST_TYPES, http, one_line, run, unavailable

ROOT = Path(__file__).resolve().parents[2]

PREFIX = "aim-cleanup-test"
DIGEST = "sha256:" + "0123456789abcdef" * 4

#: The Docker engine (started by the fixture when needed and root; skipped or failed without one).
docker = engine.docker


# --------------------------------------------------------------------------------------------------------------------
# helpers


def cleanup(
    docker: str, *args: str, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as `pulumi destroy` runs it: a separate Python process."""
    return subprocess.run(
        [sys.executable, "-m", "aim_infra.host.image_cleanup", "--docker", docker, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


def lines_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    """stdout's lines of a run that exited 0 with nothing on stderr (never a traceback)."""
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(re.match(r"(changed|unchanged|warning|note): \S", line) for line in lines), lines
    return lines


def tiny_image(docker: str, reference: str) -> None:
    """`reference` as a one-file image of its own (its own layer, so no two tests share a blob)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = f"{reference} {uuid.uuid4()}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    result = subprocess.run([docker, "import", "-", reference], input=buffer.getvalue(), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def push(docker: str, reference: str) -> str:
    """Push and return the manifest digest Docker reports."""
    pushed = run(docker, "push", reference, timeout=300)
    match = re.search(r": digest: (sha256:[0-9a-f]{64}) size: \d+", pushed.stdout)
    assert match, pushed.stdout
    return match.group(1)


def local_id(docker: str, reference: str) -> str | None:
    found = run(docker, "image", "inspect", "--format", "{{.Id}}", reference, check=False)
    return found.stdout.strip() if found.returncode == 0 else None


def manifest_status(host: str, name: str, reference: str) -> int:
    return http(f"http://{host}/v2/{name}/manifests/{reference}", accept=MANIFEST_TYPES)[0]


def tags(host: str, name: str) -> list[str]:
    status, _, body = http(f"http://{host}/v2/{name}/tags/list")
    if status == 404:  # NAME_UNKNOWN: nothing left in the repository
        return []
    assert status == 200, body
    return json.loads(body)["tags"] or []


def blob_files(root: Path) -> set[str]:
    """The digests of the blobs a filesystem-backed registry stores under `root`."""
    return {path.parent.name for path in (root / "docker/registry/v2/blobs/sha256").glob("*/*/data")}


def _registry_binary() -> str:
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None:
        unavailable("no registry binary (apt-get install docker-registry)")
    return binary


def _wait_for(host: str, alive: Callable[[], bool], log: Callable[[], str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError):
            if http(f"http://{host}/v2/")[0] == 200:
                return
        if not alive() or time.monotonic() > deadline:
            pytest.fail(f"the registry on {host} did not start: {log()[-2000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def serve_registry(root: Path, *, delete: bool) -> Iterator[str]:
    """Debian's registry binary on 127.0.0.1:<free port>, storage under `root`; yields host:port."""
    binary = _registry_binary()
    root.mkdir(parents=True, exist_ok=True)
    port = engine._free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: {str(delete).lower()}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log_path = root / "registry.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(f"127.0.0.1:{port}", lambda: process.poll() is None, lambda: log_path.read_text(errors="replace"))
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
def images(docker: str) -> Iterator[list[str]]:
    """References a test creates; removed afterwards (only these)."""
    made: list[str] = []
    yield made
    for reference in made:
        run(docker, "image", "rm", reference, check=False)


@pytest.fixture
def containers(docker: str) -> Iterator[list[str]]:
    """Containers a test creates, by name; removed afterwards (only these)."""
    made: list[str] = []
    yield made
    for name in made:
        run(docker, "rm", "--force", name, check=False)


def unique(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------------------------------------------------
# the pure parts


@pytest.mark.parametrize(
    ("text", "expected", "local"),
    [
        ("localhost:5000/aim-engine:1a2b3c4d5e6f", Reference("localhost:5000/aim-engine", "localhost:5000",
                                                            "aim-engine", "1a2b3c4d5e6f"), "localhost:5000"),
        ("127.0.0.1:5001/team/aim-engine:v1.2_3", Reference("127.0.0.1:5001/team/aim-engine", "127.0.0.1:5001",
                                                           "team/aim-engine", "v1.2_3"), "127.0.0.1:5001"),
        ("registry.example.com/aim/aim-engine:1.0", Reference("registry.example.com/aim/aim-engine",
                                                             "registry.example.com", "aim/aim-engine", "1.0"), None),
        ("registry.example.com:5000/aim-engine:1", Reference("registry.example.com:5000/aim-engine",
                                                            "registry.example.com:5000", "aim-engine", "1"), None),
        ("aim-engine:1", Reference("aim-engine", None, "aim-engine", "1"), None),
        ("org/aim-engine:latest", Reference("org/aim-engine", None, "org/aim-engine", "latest"), None),
        ("localhost/aim-engine:1", Reference("localhost/aim-engine", "localhost", "aim-engine", "1"), None),
        ("127.0.0.2:5000/aim:1", Reference("127.0.0.2:5000/aim", "127.0.0.2:5000", "aim", "1"), None),
        ("localhost:5000/a__b/c--d.e:T", Reference("localhost:5000/a__b/c--d.e", "localhost:5000", "a__b/c--d.e",
                                                   "T"), "localhost:5000"),
    ],
)  # fmt: skip
def test_parse_image(text: str, expected: Reference, local: str | None) -> None:
    ref = parse_image(text)
    assert ref == expected
    assert ref.image == text
    assert ref.local_registry == local
    assert ref.at(DIGEST) == f"{expected.repository}@{DIGEST}"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is empty"),
        ("aim-engine", "has no tag"),
        ("localhost:5000/aim-engine", "has no tag"),
        ("aim-engine:", "invalid tag"),
        ("aim-engine:bad tag", "invalid tag"),
        ("aim-engine:" + "x" * 129, "invalid tag"),
        ("aim-engine:.dot", "invalid tag"),
        (f"localhost:5000/aim-engine@{DIGEST}", "holds a digest"),
        (f"localhost:5000/aim-engine:1@{DIGEST}", "holds a digest"),
        ("Aim-Engine:1", "invalid repository name"),
        ("localhost:5000/:1", "invalid repository name"),
        (":1", "invalid repository name"),
        ("localhost:5000/aim-:1", "invalid repository name"),
        ("localhost:5000//aim:1", "invalid repository name"),
        ("-bad.host:5000/aim:1", "invalid registry host"),
        ("localhost:65536/aim:1", "invalid registry host"),
        ("localhost:0/aim:1", "invalid registry host"),
        ("localhost:５000/aim:1", "invalid registry host"),
        ("aim-engine:tag-é", "invalid tag"),
        ("localhost:5000/" + "a" * 250 + ":1", "longer than 255"),
    ],
)
def test_parse_image_rejects(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_image(text)


def test_check_digest() -> None:
    assert check_digest(DIGEST) == DIGEST
    for bad in (
        DIGEST.upper(),
        "sha256:" + DIGEST[7:].upper(),
        DIGEST[:-1],
        DIGEST + "0",
        "sha512:" + "0" * 128,
        DIGEST[7:],
        f" {DIGEST}",
        f"{DIGEST}\n",
        "sha256:" + "g" * 64,
        "",
    ):
        with pytest.raises(ValueError, match="not a manifest digest"):
            check_digest(bad)


def test_freed_blobs_reads_the_garbage_collectors_summary() -> None:
    v28 = (
        "aim-engine\naim-engine: marking manifest sha256:ab\n\n"
        "1 blobs marked, 3 blobs and 0 manifests eligible for deletion\nblob eligible for deletion: sha256:7e\n"
    )
    assert freed_blobs(v28) == 3
    assert freed_blobs("4 blobs marked, 5 blobs eligible for deletion\n") == 5  # distribution 2.7
    assert freed_blobs("\n0 blobs marked, 0 blobs and 0 manifests eligible for deletion\n") == 0
    assert freed_blobs("done\n") is None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "the following arguments are required: --image"),
        (["--image", "aim-engine"], "has no tag"),
        (["--image", f"aim-engine@{DIGEST}"], "holds a digest"),
        (["--image", "aim-engine:1", "--digest", "sha256:abc"], "not a manifest digest"),
        (["--image", "aim-engine:1", "--digest", DIGEST.upper()], "not a manifest digest"),
        (["--image", "aim-engine:1", "--timeout", "0"], "--timeout 0 is not allowed"),
        (["--image", "aim-engine:1", "--timeout", "nan"], "--timeout nan is not allowed"),
        (["--image", "aim-engine:1", "--timeout", "soon"], "invalid float value"),
        (["--image", "aim-engine:1", "--registry-container", "-rm"], "expected one argument"),
        (["--image", "aim-engine:1", "--registry-container=-rm"], "is not a container name"),
        (["--image", "aim-engine:1", "--docker", ""], "--docker is empty"),
        (["--image", "aim-engine:1", "--force"], "unrecognized arguments: --force"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = one_line(err)
    assert line.startswith("aim image cleanup: ") and says in line, line
    assert line.endswith(f"(usage: {image_cleanup.USAGE})")


def test_bad_arguments_as_a_program_exit_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aim_infra.host.image_cleanup", "--image", "localhost:5000/aim-engine"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert one_line(result.stderr).startswith("aim image cleanup: --image 'localhost:5000/aim-engine' has no tag")


def test_missing_docker_cli_is_a_warning_and_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    image = "registry.example.com/aim/aim-engine:1"
    assert main(["--image", image, "--docker", "/nonexistent/docker"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"warning: the docker program '/nonexistent/docker' was not found; {image} was not removed from the local "
        "Docker engine",
        "note: registry.example.com is not the stack's local registry (localhost:PORT or 127.0.0.1:PORT): remote "
        f"registries are left alone, so {image} stays there",
    ]


def test_registry_that_never_answers_times_out_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    """A port that accepts connections but never answers: --timeout bounds the wait, then a warning and exit 0."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        argv = ["--image", f"{host}/aim-engine:1", "--docker", "/nonexistent/docker", "--timeout", "1"]
        assert main(argv) == 0
        assert time.monotonic() - started < 10
    out, err = capsys.readouterr()
    assert err == "" and out.splitlines()[1:] == [
        f"warning: registry {host} is unreachable (timed out); it may already be gone, so nothing was deleted there"
    ]


# --------------------------------------------------------------------------------------------------------------------
# a real engine and real registries


def test_docker_engine_not_answering_is_a_warning_and_exit_0(tmp_path: Path) -> None:
    """The docker CLI with no engine behind it (DOCKER_HOST at a socket that does not exist), no registry either."""
    cli = shutil.which("docker")
    if cli is None:
        unavailable("no docker CLI (apt-get install docker.io)")
    host = f"127.0.0.1:{engine._free_port()}"
    reference = f"{host}/aim-engine:{unique('t')}"
    socket_path = tmp_path / "no-engine.sock"
    result = cleanup(
        cli,
        "--image",
        reference,
        "--digest",
        DIGEST,
        "--registry-container",
        "x",
        env={"DOCKER_HOST": f"unix://{socket_path}"},
    )
    lines = lines_of(result)
    assert lines[0].startswith("warning: the local Docker engine did not answer (") and str(socket_path) in lines[0]
    assert lines[0].endswith(f"; {reference} was not removed from the local Docker engine")
    assert lines[1:] == [
        f"warning: registry {host} is unreachable (connection refused); it may already be gone, so nothing was "
        "deleted there"
    ]


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_pushed_image_is_removed_locally_and_from_the_registry_then_reruns_are_unchanged(
    docker: str, images: list[str], tmp_path: Path
) -> None:
    with serve_registry(tmp_path / "registry", delete=True) as host:
        name, tag = f"{PREFIX}/engine", unique("t")
        reference = f"{host}/{name}:{tag}"
        images.append(reference)
        tiny_image(docker, reference)
        digest = push(docker, reference)
        assert tag in tags(host, name) and manifest_status(host, name, digest) == 200
        assert local_id(docker, f"{host}/{name}@{digest}")  # the push recorded the digest reference

        first = cleanup(docker, "--image", reference)
        assert lines_of(first) == [
            f"changed: removed {reference} from the local Docker engine",
            f"changed: deleted {name}@{digest} from {host}",
        ]
        assert local_id(docker, reference) is None and local_id(docker, f"{host}/{name}@{digest}") is None
        assert manifest_status(host, name, digest) == 404
        assert manifest_status(host, name, tag) == 404
        assert tag not in tags(host, name)

        again = cleanup(docker, "--image", reference)
        assert lines_of(again) == [
            f"unchanged: {reference} is not in the local Docker engine",
            f"unchanged: {name}:{tag} is not in {host}",
        ]
        with_digest = cleanup(docker, "--image", reference, "--digest", digest)
        assert lines_of(with_digest) == [
            f"unchanged: {reference} is not in the local Docker engine",
            f"unchanged: {host}/{name}@{digest} is not in the local Docker engine",
            f"unchanged: {name}@{digest} is not in {host}",
        ]


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_localhost_repository_with_digest_removes_both_references_and_the_manifest(
    docker: str, images: list[str], tmp_path: Path
) -> None:
    """The stack's own form: `localhost:PORT/aim-engine:TAG`, the digest from Pulumi, another tag left alone."""
    with serve_registry(tmp_path / "registry", delete=True) as address:
        host = address.replace("127.0.0.1", "localhost")
        name, tag = "aim-engine", unique("t")
        reference, other = f"{host}/{name}:{tag}", f"{host}/{name}:{unique('other')}"
        images += [reference, other]
        tiny_image(docker, reference)
        tiny_image(docker, other)
        digest = push(docker, reference)
        other_digest = push(docker, other)

        result = cleanup(docker, "--image", reference, "--digest", digest)
        assert lines_of(result) == [
            f"changed: removed {reference} from the local Docker engine",
            f"changed: removed {host}/{name}@{digest} from the local Docker engine",
            f"changed: deleted {name}@{digest} from {host}",
        ]
        assert manifest_status(address, name, digest) == 404
        # Nothing else was touched: the other tag, locally and in the registry.
        assert local_id(docker, other) and local_id(docker, f"{host}/{name}@{other_digest}")
        assert manifest_status(address, name, other_digest) == 200
        assert tags(address, name) == [other.rsplit(":", 1)[1]]


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_registry_with_deletes_disabled_warns_and_keeps_the_manifest(
    docker: str, images: list[str], tmp_path: Path
) -> None:
    with serve_registry(tmp_path / "registry", delete=False) as host:
        name, tag = f"{PREFIX}/nodelete", unique("t")
        reference = f"{host}/{name}:{tag}"
        images.append(reference)
        tiny_image(docker, reference)
        digest = push(docker, reference)

        result = cleanup(docker, "--image", reference, "--registry-container", "must-not-be-used")
        assert lines_of(result) == [
            f"changed: removed {reference} from the local Docker engine",
            f"warning: deletes are disabled on {host} (405: run it with REGISTRY_STORAGE_DELETE_ENABLED=true); "
            f"the manifest {name}@{digest} stays",
        ]
        assert manifest_status(host, name, digest) == 200 and tag in tags(host, name)


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_registry_not_running_warns_and_exits_0_quickly(docker: str, images: list[str]) -> None:
    host = f"127.0.0.1:{engine._free_port()}"
    reference = f"{host}/{PREFIX}/gone:{unique('t')}"
    images.append(reference)
    tiny_image(docker, reference)
    started = time.monotonic()
    result = cleanup(docker, "--image", reference, "--digest", DIGEST, "--registry-container", "must-not-be-used")
    assert lines_of(result) == [
        f"changed: removed {reference} from the local Docker engine",
        f"unchanged: {reference.rsplit(':', 1)[0]}@{DIGEST} is not in the local Docker engine",
        f"warning: registry {host} is unreachable (connection refused); it may already be gone, so nothing was "
        "deleted there",
    ]
    assert time.monotonic() - started < 60


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_non_local_repository_is_left_alone_without_any_request(
    docker: str,
    images: list[str],
    loopback_only: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    requests: list[str] = []
    monkeypatch.setattr(image_cleanup, "_request", lambda method, url, **_: requests.append(f"{method} {url}"))
    remote = f"registry.example.com/aim/{PREFIX}:{unique('t')}"
    hub = f"{PREFIX}-hub:{unique('t')}"
    images += [remote, hub]
    tiny_image(docker, remote)
    tiny_image(docker, hub)

    assert main(["--docker", docker, "--image", remote, "--digest", DIGEST]) == 0
    assert main(["--docker", docker, "--image", hub]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    note = "is not the stack's local registry (localhost:PORT or 127.0.0.1:PORT): remote registries are left alone"
    assert out.splitlines() == [
        f"changed: removed {remote} from the local Docker engine",
        f"unchanged: registry.example.com/aim/{PREFIX}@{DIGEST} is not in the local Docker engine",
        f"note: registry.example.com {note}, so {remote} stays there",
        f"changed: removed {hub} from the local Docker engine",
        f"note: docker.io {note}, so {hub} stays there",
    ]
    assert requests == [] and loopback_only == []


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
@pytest.mark.parametrize("state", ["running", "created"])
def test_tag_used_by_a_container_warns_and_keeps_the_image(
    docker: str, images: list[str], containers: list[str], state: str
) -> None:
    reference = f"127.0.0.1:{engine._free_port()}/{PREFIX}/in-use:{unique('t')}"
    images.append(reference)
    if state == "running":  # a container that really runs needs a program: a static busybox as its sleep
        busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
        if not busybox.is_file():
            unavailable("no busybox for a running test container (apt-get install busybox-static)")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(str(busybox), arcname="busybox")
        imported = subprocess.run([docker, "import", "-", reference], input=buffer.getvalue(), capture_output=True)
        assert imported.returncode == 0, imported.stderr.decode()
    else:
        tiny_image(docker, reference)
    image_before = local_id(docker, reference)
    name = unique(PREFIX)
    containers.append(name)
    if state == "running":
        run(docker, "run", "--detach", "--network=none", "--name", name, reference, "/busybox", "sleep", "300")
    else:
        run(docker, "create", "--network=none", "--name", name, reference, "/nothing")
    container_id = run(docker, "container", "inspect", "--format", "{{.Id}}", name).stdout.strip()

    result = cleanup(docker, "--image", reference)
    lines = lines_of(result)
    assert lines[0] == (
        f"warning: {reference} is used by container {name} ({container_id[:12]}), so Docker keeps it (not forced): "
        f"remove the container (docker rm {name}), then docker image rm {reference}"
    )
    assert lines[1].startswith("warning: registry 127.0.0.1:") and len(lines) == 2
    assert local_id(docker, reference) == image_before
    expected = "true" if state == "running" else "false"
    assert run(docker, "container", "inspect", "--format", "{{.State.Running}}", name).stdout.strip() == expected


# --------------------------------------------------------------------------------------------------------------------
# garbage collection in a registry container


#: Inside the container, as in the official registry:2 image (distribution v2.8); HTTP address from the environment.
REGISTRY_CONFIG = """version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
"""


@pytest.fixture(scope="session")
def registry_image(docker: str) -> Iterator[str]:
    """Debian's registry binary at /bin/registry with its libraries and /etc/docker/registry/config.yml."""
    binary = Path(_registry_binary()).resolve()
    buffer = io.BytesIO()
    added: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in (
            "bin",
            "etc",
            "etc/docker",
            "etc/docker/registry",
            "tmp",
            "var",
            "var/lib",
            "var/lib/registry",
        ):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
            added.add(directory)
        info = tarfile.TarInfo("bin/registry")
        info.size, info.mode = binary.stat().st_size, 0o755
        with binary.open("rb") as data:
            tar.addfile(info, data)
        config = REGISTRY_CONFIG.encode()
        info = tarfile.TarInfo("etc/docker/registry/config.yml")
        info.size, info.mode = len(config), 0o644
        tar.addfile(info, io.BytesIO(config))
        for library in sorted(engine._shared_libraries([binary])):  # none for a static build
            engine._add(tar, library, added)
    tag = f"{PREFIX}-registry:{uuid.uuid4().hex[:10]}"
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'ENTRYPOINT ["registry"]',
        'CMD ["serve", "/etc/docker/registry/config.yml"]',
    ]
    command = [docker, "import", *(arg for change in changes for arg in ("--change", change)), "-", tag]
    result = subprocess.run(command, input=buffer.getvalue(), capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    try:
        yield tag
    finally:
        run(docker, "image", "rm", tag, check=False)


@pytest.fixture
def registry_container(
    docker: str, registry_image: str, containers: list[str], tmp_path: Path
) -> tuple[str, str, Path]:
    """A registry container on the host network at 127.0.0.1:<free port>, storage bind-mounted from the host."""
    name, port, data = unique(PREFIX), engine._free_port(), tmp_path / "registry-data"
    data.mkdir()
    containers.append(name)
    network = ["--network=host", f"--env=REGISTRY_HTTP_ADDR=127.0.0.1:{port}"]
    run(docker, "run", "--detach", f"--name={name}", *network, f"--volume={data}:/var/lib/registry", registry_image)
    host = f"127.0.0.1:{port}"

    def alive() -> bool:
        state = run(docker, "container", "inspect", "--format", "{{.State.Running}}", name, check=False)
        return state.stdout.strip() == "true"

    def logs() -> str:
        result = run(docker, "logs", name, check=False)
        return result.stdout + result.stderr

    _wait_for(host, alive, logs)
    return name, host, data


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_garbage_collection_in_the_registry_container_frees_the_blobs(
    docker: str, images: list[str], registry_container: tuple[str, str, Path]
) -> None:
    container, host, data = registry_container
    name = f"{PREFIX}/gc"
    keep, drop = f"{host}/{name}:{unique('keep')}", f"{host}/{name}:{unique('drop')}"
    images += [keep, drop]
    tiny_image(docker, keep)
    tiny_image(docker, drop)
    keep_digest = push(docker, keep)
    before_drop = blob_files(data)
    drop_digest = push(docker, drop)
    dropped_blobs = blob_files(data) - before_drop
    assert len(dropped_blobs) == 3 and drop_digest.removeprefix("sha256:") in dropped_blobs  # layer, config, manifest

    result = cleanup(docker, "--image", drop, "--registry-container", container)
    assert lines_of(result) == [
        f"changed: removed {drop} from the local Docker engine",
        f"changed: deleted {name}@{drop_digest} from {host}",
        f"changed: garbage-collected {container} (3 blobs freed)",
    ]
    assert blob_files(data) == before_drop  # the deleted image's blobs are gone from disk, the other image's stay
    assert manifest_status(host, name, keep_digest) == 200

    # Nothing deleted, so no garbage collection; then a registry container that is gone is a warning.
    again = cleanup(docker, "--image", drop, "--registry-container", container)
    assert lines_of(again)[-1] == f"unchanged: {name}:{drop.rsplit(':', 1)[1]} is not in {host}"
    missing = unique(PREFIX)
    gone = cleanup(docker, "--image", keep, "--digest", keep_digest, "--registry-container", missing)
    lines = lines_of(gone)
    assert lines[:3] == [
        f"changed: removed {keep} from the local Docker engine",
        f"changed: removed {host}/{name}@{keep_digest} from the local Docker engine",
        f"changed: deleted {name}@{keep_digest} from {host}",
    ]
    assert lines[3].startswith(f"warning: garbage collection in {missing} failed (exit 1: ") and len(lines) == 4
    assert "No such container" in lines[3] and lines[3].endswith(
        "unreferenced blobs stay until the next garbage-collect"
    )


# --------------------------------------------------------------------------------------------------------------------
# --all-tags: every build of the repository


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('</v2/aim/tags/list?last=b&n=2>; rel="next"', "/v2/aim/tags/list?last=b&n=2"),
        ("<http://127.0.0.1:5000/v2/aim/tags/list?n=2&last=b>;rel=next", "http://127.0.0.1:5000/v2/aim/tags/list?n=2&last=b"),
        ('</first>; rel="first", </v2/aim/tags/list?last=c>; rel="prefetch next"', "/v2/aim/tags/list?last=c"),
        ('</v2/aim/tags/list?last=b>; rel="prev"', None),
        ('</v2/aim/tags/list?last=b>; rel="nextpage"', None),
        ("", None),
    ],
)  # fmt: skip
def test_next_link(header: str, expected: str | None) -> None:
    assert image_cleanup.next_link(header) == expected


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ("localhost:5000/aim-engine", "localhost:5000/aim-engine"),
        ("127.0.0.1:5000/team/aim-engine", "127.0.0.1:5000/team/aim-engine"),
        ("docker.io/library/aim-engine", "aim-engine"),
        ("index.docker.io/library/aim-engine", "aim-engine"),
        ("library/aim-engine", "aim-engine"),
        ("docker.io/org/aim-engine", "org/aim-engine"),
        ("docker.io/library/org/aim-engine", "library/org/aim-engine"),
        ("registry.example.com/library/aim-engine", "registry.example.com/library/aim-engine"),
    ],
)
def test_familiar_names_as_docker_image_ls_shows_them(repository: str, expected: str) -> None:
    assert image_cleanup.familiar(repository) == expected


def test_all_tags_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--all-tags also remove every other tag of REPO" in out
    assert "--all-tags" in image_cleanup.USAGE and "With --all-tags" in str(image_cleanup.__doc__)


def test_all_tags_without_docker_or_registry_warns_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    host = f"127.0.0.1:{engine._free_port()}"
    image = f"{host}/aim-engine:1"
    assert main(["--image", image, "--all-tags", "--docker", "/nonexistent/docker", "--timeout", "5"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.splitlines() == [
        f"warning: the docker program '/nonexistent/docker' was not found; {image} and the other tags of "
        f"{host}/aim-engine were not removed from the local Docker engine",
        f"warning: registry {host} is unreachable (connection refused); it may already be gone, so nothing was "
        "deleted there",
    ]


@contextlib.contextmanager
def fake_registry(
    name: str, pages: dict[str, tuple[list[str] | None, str | None]], digests: dict[str, str | int]
) -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    """A registry on 127.0.0.1 answering only what --all-tags asks: its tags list in `pages` (query string → tags and a
    Link header), HEAD of a tag (`digests`: a digest, or a status), DELETE of a manifest (202). Yields host:port and the
    requests it got as (method, path with query, Accept)."""
    requests: list[tuple[str, str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            requests.append((self.command, self.path, self.headers.get("Accept")))
            path, _, query = self.path.partition("?")
            if self.command == "GET" and path == f"/v2/{name}/tags/list" and query in pages:
                tags, link = pages[query]
                self._answer(200, {"Link": link} if link else {}, json.dumps({"name": name, "tags": tags}).encode())
            elif self.command == "HEAD" and path.startswith(f"/v2/{name}/manifests/"):
                found = digests.get(path.rsplit("/", 1)[1], 404)
                if isinstance(found, int):
                    self._answer(found, {})
                else:
                    self._answer(200, {"Docker-Content-Digest": found, "Content-Type": MANIFEST_TYPES.split(",")[0]})
            elif self.command == "DELETE" and path.startswith(f"/v2/{name}/manifests/sha256:"):
                self._answer(202, {})
            else:
                self._answer(404, {}, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')

        do_GET = do_HEAD = do_DELETE = _handle

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _digest(char: str) -> str:
    return "sha256:" + char * 64


def test_all_tags_follows_link_pages_and_deletes_each_manifest_once(
    loopback_only: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Three pages (a relative Link, then an absolute one); two tags share a manifest; one tag is gone, one fails."""
    name = "team/aim-engine"
    digests: dict[str, str | int] = {
        "main": _digest("0"),
        "a": _digest("1"),
        "b": _digest("1"),
        "c": _digest("2"),
        "broken": 500,
        "gone": 404,
    }
    pages: dict[str, tuple[list[str] | None, str | None]] = {
        "": (["main", "a"], f'</v2/{name}/tags/list?last=a&n=2>; rel="next"'),
        "last=gone&n=2": (["c", "broken"], None),
    }
    with fake_registry(name, pages, digests) as (host, requests):
        # The second page links with an absolute URL, which needs the fake's port.
        pages["last=a&n=2"] = (["b", "gone"], f"<http://{host}/v2/{name}/tags/list?last=gone&n=2>; rel=next")
        image = f"{host}/{name}:main"
        assert main(["--image", image, "--all-tags", "--docker", "/nonexistent/docker"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"warning: the docker program '/nonexistent/docker' was not found; {image} and the other tags of "
        f"{host}/{name} were not removed from the local Docker engine",
        f"warning: {host} answered 500 to HEAD {name}:broken; its manifest was not deleted there",
        f"unchanged: {name}:gone is not in {host}",
        f"changed: deleted {name}@{_digest('0')} from {host} (tag main)",
        f"changed: deleted {name}@{_digest('1')} from {host} (tags a, b)",
        f"changed: deleted {name}@{_digest('2')} from {host} (tag c)",
    ]
    assert [path for method, path, _ in requests if method == "GET"] == [
        f"/v2/{name}/tags/list",
        f"/v2/{name}/tags/list?last=a&n=2",
        f"/v2/{name}/tags/list?last=gone&n=2",
    ]
    heads = [(path.rsplit("/", 1)[1], accept) for method, path, accept in requests if method == "HEAD"]
    assert heads == [(tag, image_cleanup.MANIFEST_TYPES) for tag in ("main", "a", "b", "broken", "c", "gone")]
    deletes = [path for method, path, _ in requests if method == "DELETE"]
    assert deletes == [f"/v2/{name}/manifests/{_digest(char)}" for char in "012"]  # each manifest once


@pytest.mark.parametrize("link", ["elsewhere", "loop", "none left"])
def test_all_tags_stops_at_a_link_elsewhere_or_in_a_loop(
    link: str, loopback_only: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = "aim-engine"
    next_page = {
        "elsewhere": f"<http://registry.example.com/v2/{name}/tags/list?last=a>; rel=next",
        "loop": f"</v2/{name}/tags/list?last=a>; rel=next",
        "none left": None,
    }[link]
    pages: dict[str, tuple[list[str] | None, str | None]] = {
        "": (["a", "main"] if link != "none left" else None, next_page),
        "last=a": (["a"], next_page),  # the loop: this page links to itself
    }
    with fake_registry(name, pages, {"main": _digest("0"), "a": _digest("1")}) as (host, requests):
        assert main(["--image", f"{host}/{name}:main", "--all-tags", "--docker", "/nonexistent/docker"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()[1:]  # after the local engine's warning
    assert err == ""
    if link == "elsewhere":
        assert lines[0] == (
            f"warning: {host} linked the next page of the {name} tags list to another place "
            f"(http://registry.example.com/v2/{name}/tags/list?last=a); the tags there stay"
        )
    elif link == "loop":
        assert lines[0] == (
            f"warning: {host} linked the {name} tags list in a loop (http://{host}/v2/{name}/tags/list?last=a); "
            "the tags after it stay there"
        )
    if link == "none left":  # "tags": null, as distribution answers once every manifest is deleted
        assert lines == [
            f"unchanged: no other tags of {name} in {host}",
            f"changed: deleted {name}@{_digest('0')} from {host} (tag main)",
        ]
    else:
        assert lines[1:] == [
            f"changed: deleted {name}@{_digest('0')} from {host} (tag main)",
            f"changed: deleted {name}@{_digest('1')} from {host} (tag a)",
        ]
    assert len([method for method, _, _ in requests if method == "GET"]) == {"elsewhere": 1, "loop": 2}.get(link, 1)
    assert loopback_only == []


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_all_tags_removes_every_tag_of_the_repository_and_nothing_else(
    docker: str, images: list[str], tmp_path: Path
) -> None:
    """Three builds of `localhost:PORT/aim-engine`, and another repository holding the same image as one of them."""
    with serve_registry(tmp_path / "registry", delete=True) as address:
        host = address.replace("127.0.0.1", "localhost")
        name, other_name = "aim-engine", "aim-engine/other"
        tags_ = sorted(unique("t") for _ in range(3))
        references = [f"{host}/{name}:{tag}" for tag in tags_]
        other_tag = unique("keep")
        other = f"{host}/{other_name}:{other_tag}"
        images += [*references, other]
        for reference in references:
            tiny_image(docker, reference)
        run(docker, "tag", references[0], other)
        digests = [push(docker, reference) for reference in references]
        other_digest = push(docker, other)
        assert other_digest == digests[0] and len(set(digests)) == 3
        other_id = local_id(docker, other)

        image = references[1]
        result = cleanup(docker, "--image", image, "--all-tags")
        assert lines_of(result) == [
            f"changed: removed {references[1]} from the local Docker engine",
            f"changed: removed {references[0]} from the local Docker engine",
            f"changed: removed {references[2]} from the local Docker engine",
            f"changed: deleted {name}@{digests[1]} from {host} (tag {tags_[1]})",
            f"changed: deleted {name}@{digests[0]} from {host} (tag {tags_[0]})",
            f"changed: deleted {name}@{digests[2]} from {host} (tag {tags_[2]})",
        ]
        for reference, digest in zip(references, digests, strict=True):
            assert local_id(docker, reference) is None and local_id(docker, f"{host}/{name}@{digest}") is None
            assert manifest_status(address, name, digest) == 404
        assert tags(address, name) == []
        # The other repository: its tag and digest reference locally, its manifest and tag in the registry.
        assert local_id(docker, other) == other_id and local_id(docker, f"{host}/{other_name}@{other_digest}")
        assert manifest_status(address, other_name, other_digest) == 200
        assert tags(address, other_name) == [other_tag]

        again = cleanup(docker, "--image", image, "--all-tags")
        assert lines_of(again) == [
            f"unchanged: {image} is not in the local Docker engine",
            f"unchanged: no other tags of {host}/{name} in the local Docker engine",
            f"unchanged: {name}:{tags_[1]} is not in {host}",
            f"unchanged: no other tags of {name} in {host}",  # distribution lists "tags": null once all are deleted
        ]
        never = f"{host}/{PREFIX}/never-pushed:{unique('t')}"
        unknown = cleanup(docker, "--image", never, "--all-tags")
        assert lines_of(unknown) == [
            f"unchanged: {never} is not in the local Docker engine",
            f"unchanged: no other tags of {never.rsplit(':', 1)[0]} in the local Docker engine",
            f"unchanged: {PREFIX}/never-pushed:{never.rsplit(':', 1)[1]} is not in {host}",
            f"unchanged: repository {PREFIX}/never-pushed is not in {host}, so it has no other tags to delete there",
        ]
        assert local_id(docker, other) == other_id and manifest_status(address, other_name, other_digest) == 200


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_all_tags_deletes_a_manifest_shared_by_two_tags_once(
    docker: str,
    images: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serve_registry(tmp_path / "registry", delete=True) as host:
        name = f"{PREFIX}/shared"
        first, second, third = (f"{letter}-{unique('t')}" for letter in "abc")
        shared, twin, own = (f"{host}/{name}:{tag}" for tag in (first, second, third))
        images += [shared, twin, own]
        tiny_image(docker, shared)
        run(docker, "tag", shared, twin)
        tiny_image(docker, own)
        shared_digest, twin_digest, own_digest = (push(docker, reference) for reference in (shared, twin, own))
        assert shared_digest == twin_digest != own_digest

        requests: list[tuple[str, str]] = []
        real_request = image_cleanup._request

        def recording(method: str, url: str, **kwargs: object) -> tuple[int, dict[str, str], str]:
            requests.append((method, url))
            return real_request(method, url, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(image_cleanup, "_request", recording)
        assert main(["--docker", docker, "--image", shared, "--all-tags"]) == 0
        out, err = capsys.readouterr()
        assert err == ""
        assert out.splitlines() == [
            f"changed: removed {shared} from the local Docker engine",
            f"changed: removed {twin} from the local Docker engine",
            f"changed: removed {own} from the local Docker engine",
            f"changed: deleted {name}@{shared_digest} from {host} (tags {first}, {second})",
            f"changed: deleted {name}@{own_digest} from {host} (tag {third})",
        ]
        base = f"http://{host}/v2/{name}"
        assert requests == [
            ("HEAD", f"{base}/manifests/{first}"),
            ("GET", f"{base}/tags/list"),
            ("HEAD", f"{base}/manifests/{second}"),
            ("HEAD", f"{base}/manifests/{third}"),
            ("DELETE", f"{base}/manifests/{shared_digest}"),  # once for both tags
            ("DELETE", f"{base}/manifests/{own_digest}"),
        ]
        assert tags(host, name) == [] and manifest_status(host, name, shared_digest) == 404
        assert all(local_id(docker, reference) is None for reference in (shared, twin, own))


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_all_tags_keeps_an_image_in_use_and_removes_the_others(
    docker: str, images: list[str], containers: list[str], tmp_path: Path
) -> None:
    with serve_registry(tmp_path / "registry", delete=True) as host:
        name = f"{PREFIX}/in-use"
        tags_ = [f"{letter}-{unique('t')}" for letter in "abc"]
        first, used, last = references = [f"{host}/{name}:{tag}" for tag in tags_]
        images += references
        for reference in references:
            tiny_image(docker, reference)
        digests = [push(docker, reference) for reference in references]
        used_id = local_id(docker, used)
        container = unique(PREFIX)
        containers.append(container)
        run(docker, "create", "--network=none", "--name", container, used, "/nothing")
        container_id = run(docker, "container", "inspect", "--format", "{{.Id}}", container).stdout.strip()

        result = cleanup(docker, "--image", first, "--all-tags")
        assert lines_of(result) == [
            f"changed: removed {first} from the local Docker engine",
            f"warning: {used} is used by container {container} ({container_id[:12]}), so Docker keeps it (not "
            f"forced): remove the container (docker rm {container}), then docker image rm {used}",
            f"changed: removed {last} from the local Docker engine",
            *(
                f"changed: deleted {name}@{digest} from {host} (tag {tag})"
                for digest, tag in zip(digests, tags_, strict=True)
            ),
        ]
        assert local_id(docker, used) == used_id and local_id(docker, f"{host}/{name}@{digests[1]}") == used_id
        assert local_id(docker, first) is None and local_id(docker, last) is None
        assert run(docker, "container", "inspect", "--format", "{{.State.Status}}", container).stdout.strip() == (
            "created"
        )
        assert tags(host, name) == []


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_all_tags_on_a_remote_registry_only_affects_the_local_engine(
    docker: str,
    images: list[str],
    loopback_only: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    requests: list[str] = []
    monkeypatch.setattr(image_cleanup, "_request", lambda method, url, **_: requests.append(f"{method} {url}"))
    repository = f"registry.example.com/aim/{PREFIX}-{unique('r')}"
    builds = [f"{repository}:{tag}" for tag in sorted(unique("t") for _ in range(2))]
    sibling = f"{repository}-x:{unique('t')}"  # a name REPO is a prefix of: another repository
    hub = f"{PREFIX}-{unique('hub')}"  # Docker Hub, given in full: docker.io/library/NAME
    hub_builds = [f"{hub}:1", f"{hub}:2"]
    images += [*builds, sibling, *hub_builds]
    for reference in (*builds, sibling, *hub_builds):
        tiny_image(docker, reference)
    sibling_id = local_id(docker, sibling)

    assert main(["--docker", docker, "--image", builds[1], "--all-tags"]) == 0
    assert main(["--docker", docker, "--image", f"docker.io/library/{hub}:1", "--all-tags"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    note = "is not the stack's local registry (localhost:PORT or 127.0.0.1:PORT): remote registries are left alone"
    assert out.splitlines() == [
        f"changed: removed {builds[1]} from the local Docker engine",
        f"changed: removed {builds[0]} from the local Docker engine",
        f"note: registry.example.com {note}, so {builds[1]} stays there",
        f"changed: removed docker.io/library/{hub}:1 from the local Docker engine",
        f"changed: removed {hub}:2 from the local Docker engine",
        f"note: docker.io {note}, so docker.io/library/{hub}:1 stays there",
    ]
    assert local_id(docker, sibling) == sibling_id
    assert requests == [] and loopback_only == []


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_all_tags_with_deletes_disabled_warns_once(docker: str, images: list[str], tmp_path: Path) -> None:
    with serve_registry(tmp_path / "registry", delete=False) as host:
        name = f"{PREFIX}/nodelete-all"
        references = [f"{host}/{name}:{tag}" for tag in sorted(unique("t") for _ in range(3))]
        images += references
        for reference in references:
            tiny_image(docker, reference)
        digests = [push(docker, reference) for reference in references]

        result = cleanup(docker, "--image", references[0], "--all-tags", "--registry-container", "must-not-be-used")
        assert lines_of(result) == [
            *(f"changed: removed {reference} from the local Docker engine" for reference in references),
            f"warning: deletes are disabled on {host} (405: run it with REGISTRY_STORAGE_DELETE_ENABLED=true); the "
            f"manifest {name}@{digests[0]} stays, and so do 2 other manifests of {name}",
        ]
        assert all(manifest_status(host, name, digest) == 200 for digest in digests)


@pytest.mark.slow  # a real Docker engine and registry: CI (AIM_TESTS_FULL=1) runs it
def test_all_tags_garbage_collects_once_after_all_deletes(
    docker: str, images: list[str], registry_container: tuple[str, str, Path]
) -> None:
    container, host, data = registry_container
    name, keep_name = f"{PREFIX}/gc-all", f"{PREFIX}/gc-keep"
    keep = f"{host}/{keep_name}:{unique('keep')}"
    builds = [f"{host}/{name}:{tag}" for tag in sorted(unique("t") for _ in range(2))]
    images += [keep, *builds]
    for reference in (keep, *builds):
        tiny_image(docker, reference)
    keep_digest = push(docker, keep)
    before = blob_files(data)
    digests = [push(docker, reference) for reference in builds]
    assert len(blob_files(data) - before) == 6  # a layer, a config and a manifest each

    result = cleanup(docker, "--image", builds[0], "--all-tags", "--registry-container", container)
    assert lines_of(result) == [
        *(f"changed: removed {reference} from the local Docker engine" for reference in builds),
        *(
            f"changed: deleted {name}@{digest} from {host} (tag {reference.rsplit(':', 1)[1]})"
            for digest, reference in zip(digests, builds, strict=True)
        ),
        f"changed: garbage-collected {container} (6 blobs freed)",
    ]
    assert blob_files(data) == before
    assert manifest_status(host, keep_name, keep_digest) == 200 and local_id(docker, keep)
