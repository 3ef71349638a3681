"""aim_infra.image_cleanup on a real Docker engine and real registries on 127.0.0.1, and its pure parts.

The engine is the one tests/test_docker_image.py starts (its `docker` fixture, re-used here). Registries are Debian's
`docker-registry` binary (distribution 2.8) run as processes with temporary storage, deletes enabled or not; for
garbage collection the same binary runs inside a container made with `docker import` (the binary, the libraries `ldd`
names, a config at /etc/docker/registry/config.yml: the layout of the official registry:2 image), so the CLI's
`docker exec NAME registry garbage-collect` runs for real. Nothing is pulled: test images are `docker import`ed tiny
tarballs. Without the tools the tests skip, unless AIM_TESTS_REQUIRE_TOOLS=1 (set by .ci/run), when they fail.
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
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aim_infra import image_cleanup
from aim_infra.image_cleanup import Reference, check_digest, freed_blobs, main, parse_image
from tests import test_docker_image as engine
from tests.test_docker_image import MANIFEST_TYPES, http, one_line, run, unavailable

ROOT = Path(__file__).resolve().parents[1]
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
        [sys.executable, "-m", "aim_infra.image_cleanup", "--docker", docker, *args],
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
        [sys.executable, "-m", "aim_infra.image_cleanup", "--image", "localhost:5000/aim-engine"],
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
