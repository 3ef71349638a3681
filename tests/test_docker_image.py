"""The AIM Engine image on a real Docker engine and a real registry on 127.0.0.1: build, push, pull, run the preflight.

Nothing can be pulled here, so the base image is made from this machine: a static busybox for /bin/sh and the
running Python with only its standard library, pydantic and PyYAML (what a vLLM image provides to the AIM layer),
imported with `docker import`. The registry is Debian's `docker-registry` binary run as a process. When Docker is not
running and the tests run as root, the session starts `dockerd` itself and stops it at the end. Without a Docker
engine or registry the tests skip, unless AIM_TESTS_REQUIRE_TOOLS=1 (set by .ci/run), when they fail.
"""

from __future__ import annotations

import contextlib
import hashlib
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
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from aim_infra.pod.download import local_files, record_file, write_marker
from aim_infra.pod.hub_digest import file_digest

ROOT = Path(__file__).resolve().parents[1]

# Slow (a real image build and push, ~20 s): the quick run keeps the Dockerfile's static checks
# (tests/stack/test_image_tag.py); CI (AIM_TESTS_FULL=1) builds and pushes.
pytestmark = pytest.mark.slow
REQUIRE = os.environ.get("AIM_TESTS_REQUIRE_TOOLS") == "1"
BASE_TAG = "aim-test-base:1"
REPOSITORY = "aim-engine"
SOURCE_URL = "https://example.invalid/aim-engine-stack"
DOCKERD_ROOT = Path("/tmp/aim-test-dockerd")  # short: dockerd's exec root holds unix sockets (path length limit)
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


def unavailable(reason: str) -> NoReturn:
    if REQUIRE:
        pytest.fail(f"{reason} (AIM_TESTS_REQUIRE_TOOLS=1: .ci/run installs and starts these)")
    pytest.skip(reason)


def run(*command: str, timeout: float = 120, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def http(url: str, *, accept: str | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """A request straight to 127.0.0.1 (no proxy from the environment)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, f"expected exactly one line, got {lines!r}"
    return lines[0]


# --------------------------------------------------------------------------------------------------------------------
# the engine and the registry


def _docker_answers(cli: str) -> bool:
    try:
        return subprocess.run([cli, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker() -> Iterator[str]:
    """The docker CLI, with an engine that answers (started here when needed, and then stopped at the end)."""
    cli = shutil.which("docker")
    if cli is None:
        unavailable("no docker CLI (apt-get install docker.io)")
    if _docker_answers(cli):
        yield cli
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        unavailable("Docker is not running and cannot be started here (needs root and dockerd from docker.io)")
    DOCKERD_ROOT.mkdir(parents=True, exist_ok=True)
    log_path = DOCKERD_ROOT / "dockerd.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                dockerd,
                "--host=unix:///var/run/docker.sock",
                f"--data-root={DOCKERD_ROOT / 'data'}",
                f"--exec-root={DOCKERD_ROOT / 'exec'}",
                f"--pidfile={DOCKERD_ROOT / 'dockerd.pid'}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if _docker_answers(cli):
                break
            if process.poll() is not None:
                if _docker_answers(cli):  # someone else started one meanwhile
                    break
                tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                unavailable(f"dockerd cannot run on this machine: {' | '.join(tail)}")
            time.sleep(0.5)
        else:
            unavailable(f"dockerd did not answer within 90 s (log: {log_path})")
        yield cli
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Docker registry (distribution) on 127.0.0.1:<free port> with temporary storage; yields host:port."""
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None:
        unavailable("no registry binary (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  headers:\n    X-Content-Type-Options: [nosniff]\n"
    )
    with (root / "registry.log").open("wb") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if http(f"http://127.0.0.1:{port}/v2/")[0] == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


# --------------------------------------------------------------------------------------------------------------------
# a tiny base image from this machine


#: Where the base image keeps pydantic and PyYAML (on its PYTHONPATH, which the AIM Dockerfile must keep).
TEST_SITE = "/opt/aim-test-site-packages"


def _python_files() -> tuple[Path, list[Path], list[tuple[Path, str]]]:
    """The interpreter, the files it needs at their own paths (standard library), and pydantic/PyYAML for TEST_SITE.

    The packages are copied from wherever this interpreter imports them (a virtualenv in CI) to TEST_SITE, so the
    image's Python finds them through PYTHONPATH whatever its own site directories are.
    """
    import annotated_types
    import pydantic
    import pydantic_core
    import typing_extensions
    import typing_inspection
    import yaml

    prefix = Path(sys.base_prefix)
    stdlib = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    skip = {"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"}
    files: list[Path] = []
    for entry in stdlib.iterdir():
        if entry.name in skip or entry.name.startswith("config-"):
            continue
        files += [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
    packages: list[tuple[Path, str]] = []
    for module in (pydantic, pydantic_core, annotated_types, typing_inspection, yaml, typing_extensions):
        source = Path(str(module.__file__))
        if source.name == "__init__.py":
            site = source.parent.parent
            packages += [(p, f"{TEST_SITE}/{p.relative_to(site)}") for p in source.parent.rglob("*") if p.is_file()]
        else:
            packages.append((source, f"{TEST_SITE}/{source.name}"))
    executable = Path(os.path.realpath(sys.executable))
    libpython = list((prefix / "lib").glob("libpython3*.so*"))
    return executable, [executable, *libpython, *files], packages


def _shared_libraries(binaries: list[Path]) -> set[Path]:
    """Every library (and the loader) `ldd` names for these ELF files."""
    found: set[Path] = set()
    elf = [str(b) for b in binaries if b.suffix == ".so" or ".so." in b.name or os.access(b, os.X_OK)]
    for start in range(0, len(elf), 200):
        result = subprocess.run(["ldd", *elf[start : start + 200]], capture_output=True, text=True)
        for match in re.finditer(r"(?:=>\s*)?(/\S+)\s+\(0x", result.stdout):
            found.add(Path(match.group(1)))
    return found


def _add(tar: tarfile.TarFile, path: Path, added: set[str]) -> None:
    """Add `path` at the same absolute place, with its symlink chain and parent directories."""
    name = str(path).lstrip("/")
    if name in added:
        return
    for parent in reversed(path.parents[:-1]):
        if str(parent).lstrip("/") not in added:
            info = tarfile.TarInfo(str(parent).lstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
            added.add(str(parent).lstrip("/"))
    added.add(name)
    if path.is_symlink():
        target = os.readlink(path)
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        tar.addfile(info)
        _add(tar, Path(os.path.normpath(path.parent / target)), added)  # the link's own target, step by step
        return
    tar.add(str(path), arcname=name, recursive=False)


def _base_rootfs() -> tuple[bytes, str]:
    """A tarball of the base filesystem and its fingerprint."""
    busybox = Path(os.path.realpath(shutil.which("busybox") or "/bin/busybox"))
    if not busybox.is_file():
        unavailable("no busybox for the test base image (apt-get install busybox-static)")
    executable, files, packages = _python_files()
    libraries = _shared_libraries([busybox, *files, *(source for source, _ in packages)])
    buffer = io.BytesIO()
    added: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (("tmp", 0o1777), ("etc", 0o755), ("root", 0o700), ("usr/local/bin", 0o755)):
            for part in Path(directory).parents[::-1][1:] if "/" in directory else []:
                if str(part) not in added:
                    info = tarfile.TarInfo(str(part))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    added.add(str(part))
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
            added.add(directory)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = busybox.stat().st_size, 0o755
        with busybox.open("rb") as data:
            tar.addfile(info, data)
        added.update({"bin", "bin/busybox"})
        applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True).stdout.split()
        for applet in sorted((set(applets) | {"sh"}) - {"busybox"}):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        for path in sorted(files) + sorted(libraries):
            _add(tar, path, added)
        for source, target in sorted(packages):
            for parent in reversed(Path(target).parents[:-1]):
                if str(parent).lstrip("/") not in added:
                    info = tarfile.TarInfo(str(parent).lstrip("/"))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    added.add(str(parent).lstrip("/"))
            tar.add(str(source), arcname=target.lstrip("/"), recursive=False)
        for name in ("python3", "python"):
            info = tarfile.TarInfo(f"usr/local/bin/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, str(executable)
            tar.addfile(info)
    contents = [sys.version, str(executable), len(files), sorted(t for _, t in packages), sorted(map(str, libraries))]
    fingerprint = hashlib.sha256(json.dumps([*contents, busybox.stat().st_size]).encode()).hexdigest()[:16]
    return buffer.getvalue(), fingerprint


@pytest.fixture(scope="session")
def base_image(docker: str) -> str:
    """`aim-test-base:1`: busybox sh + this machine's Python with pydantic and PyYAML; rebuilt when they change."""
    tarball, fingerprint = _base_rootfs()
    label = "org.aim.test.fingerprint"
    found = run(
        docker, "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', BASE_TAG, check=False
    )
    if found.returncode == 0 and found.stdout.strip() == fingerprint:
        return BASE_TAG
    changes = [
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        f"ENV PYTHONPATH={TEST_SITE}",
        f"LABEL {label}={fingerprint}",
        'CMD ["/bin/sh"]',
    ]
    command = [docker, "import", *(arg for change in changes for arg in ("--change", change)), "-", BASE_TAG]
    result = subprocess.run(command, input=tarball, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    return BASE_TAG


# --------------------------------------------------------------------------------------------------------------------
# the AIM image


@dataclass(frozen=True)
class Built:
    reference: str  # 127.0.0.1:<port>/aim-engine:<tag>
    tag: str
    registry: str
    build_output: str
    seconds: float


@pytest.fixture(scope="session")
def image(docker: str, base_image: str, registry: str) -> Iterator[Built]:
    tag = f"test-{uuid.uuid4().hex[:10]}"
    reference = f"{registry}/{REPOSITORY}:{tag}"
    revision = run("git", "rev-parse", "HEAD", cwd=ROOT, check=False).stdout.strip() or "unknown"
    started = time.monotonic()
    result = run(
        docker,
        "build",
        "--file=docker/Dockerfile",
        f"--build-arg=BASE_IMAGE={base_image}",
        f"--build-arg=SOURCE_URL={SOURCE_URL}",
        f"--build-arg=SOURCE_REVISION={revision}",
        f"--tag={reference}",
        ".",
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},  # the classic builder: BuildKit needs the buildx plugin here
    )
    try:
        yield Built(reference, tag, registry, result.stdout + result.stderr, time.monotonic() - started)
    finally:
        run(docker, "image", "rm", "--force", reference, check=False)


def docker_run(
    docker: str,
    image: str,
    *args: str,
    env: dict[str, str] | None = None,
    volumes: dict[Path, str] | None = None,
    entrypoint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    command = [docker, "run", "--rm", "--network=none"]
    for name, value in (env or {}).items():
        command += ["--env", f"{name}={value}"]
    for host, container in (volumes or {}).items():
        command += ["--volume", f"{host}:{container}:ro"]
    if entrypoint is not None:
        command += ["--entrypoint", entrypoint]
    return run(*command, image, *args, check=False, timeout=120)


def fake_amd_smi(directory: Path, count: int) -> Path:
    """A stand-in for `amd-smi static --json` (the list shape of ROCm 6.x) for the container, as a POSIX sh script."""
    gpus = [
        {
            "gpu": index,
            "asic": {"market_name": "AMD Instinct MI300X", "device_id": "0x74a1", "num_compute_units": 304},
            "vram": {"type": "HBM", "size": {"value": 196592, "unit": "MB"}},
            "partition": {"compute_partition": "SPX", "memory_partition": "NPS1"},
        }
        for index in range(count)
    ]
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "amd-smi"
    script.write_text("#!/bin/sh\ncat <<'JSON'\n" + json.dumps(gpus, indent=2) + "\nJSON\n")
    script.chmod(0o755)
    return directory


def model_dir(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"model_type": "llama"}')
    names = [f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    for name in names:
        (directory / name).write_bytes(bytes(4096))
    weight_map = {f"w{i}": name for i, name in enumerate(names)}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    records = {
        name: record_file(directory, name, file_digest(directory / name, "sha256")) for name in local_files(directory)
    }
    write_marker(directory, "org/tiny", "main", "0123456789abcdef0123456789abcdef01234567", records)
    return directory


# --------------------------------------------------------------------------------------------------------------------


def test_build_context_is_small_and_the_image_holds_only_the_engine(docker: str, image: Built) -> None:
    sent = re.search(r"Sending build context to Docker daemon\s+([\d.]+)([kMG]?B)", image.build_output)
    assert sent, image.build_output
    size = float(sent.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[sent.group(2)]
    assert size < 2e6, f"build context of {sent.group(1)}{sent.group(2)}: check .dockerignore"
    listing = docker_run(docker, image.reference, "-c", "cd /opt/aim && find . -type f | sort", entrypoint="/bin/sh")
    assert listing.returncode == 0, listing.stderr
    files = listing.stdout.split()
    tops = {f.split("/")[1] for f in files}
    assert tops == {"aim_infra", "recipes"}
    assert "./aim_infra/pod/preflight.py" in files and "./aim_infra/pod/download.py" in files
    assert "./recipes/gpus.yaml" in files
    assert not [f for f in files if "/tests/" in f or f.startswith("./.git")]


def test_image_metadata(docker: str, image: Built, base_image: str) -> None:
    [inspected] = json.loads(run(docker, "image", "inspect", image.reference).stdout)
    config = inspected["Config"]
    assert config["Entrypoint"] == ["/usr/local/bin/aim-entrypoint"]
    assert config["Cmd"] == ["vllm", "serve", "--help"]
    assert config["User"] in ("", "root")  # unchanged from the base image
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "AIM Engine"
    assert labels["org.opencontainers.image.description"]
    assert labels["org.opencontainers.image.source"] == SOURCE_URL
    assert labels["org.opencontainers.image.base.name"] == base_image
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONPATH"] == f"/opt/aim:{TEST_SITE}"  # the base image's PYTHONPATH is kept
    assert env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert env["AIM_RECIPES_DIR"] == "/opt/aim/recipes"
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, flags=re.MULTILINE)
    assert default and ":" in default.group(1) and not default.group(1).endswith(":latest")


def test_push_and_the_registry_serves_the_digest(docker: str, image: Built) -> None:
    pushed = run(docker, "push", image.reference, timeout=300)
    match = re.search(rf"{re.escape(image.tag)}: digest: (sha256:[0-9a-f]{{64}}) size: \d+", pushed.stdout)
    assert match, pushed.stdout
    digest = match.group(1)
    base = f"http://{image.registry}/v2/{REPOSITORY}"
    status, _, body = http(f"{base}/tags/list")
    assert status == 200 and image.tag in json.loads(body)["tags"]
    status, headers, body = http(f"{base}/manifests/{digest}", accept=MANIFEST_TYPES)
    assert status == 200
    assert {k.lower(): v for k, v in headers.items()}["docker-content-digest"] == digest
    assert hashlib.sha256(body).hexdigest() == digest.removeprefix("sha256:")
    status, headers, _ = http(f"{base}/manifests/{image.tag}", accept=MANIFEST_TYPES, method="HEAD")
    assert status == 200 and {k.lower(): v for k, v in headers.items()}["docker-content-digest"] == digest
    by_digest = f"{image.registry}/{REPOSITORY}@{digest}"
    run(docker, "pull", by_digest, timeout=300)  # what a pod spec references
    repo_digests = json.loads(run(docker, "image", "inspect", "--format", "{{json .RepoDigests}}", by_digest).stdout)
    assert by_digest in repo_digests


def test_preflight_passes_in_the_container_and_the_command_runs(docker: str, image: Built, tmp_path: Path) -> None:
    smi = fake_amd_smi(tmp_path / "smi", 8)
    model = model_dir(tmp_path / "tiny")
    env = {
        "AIM_SMI_COMMAND": "/aim-test/amd-smi",
        "AIM_GPU": "MI300X",
        "AIM_GPU_COUNT": "8",
        "AIM_MODEL_DIR": "/models/tiny",
        "AIM_MODEL": "org/tiny",
    }
    result = docker_run(
        docker,
        image.reference,
        "sh",
        "-c",
        "echo vllm would start",
        env=env,
        volumes={smi: "/aim-test", model: "/models/tiny"},
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.splitlines() == [
        "aim preflight: ok: 8 × MI300X as the recipe expects (amd-smi); "
        "model org/tiny@main complete in /models/tiny (2 shards, 4 files, 0.0 MiB)",
        "vllm would start",
    ]


def test_preflight_failures_in_the_container_are_one_line_and_stop_the_command(
    docker: str, image: Built, tmp_path: Path
) -> None:
    smi = fake_amd_smi(tmp_path / "smi", 4)
    model = model_dir(tmp_path / "tiny")
    volumes = {smi: "/aim-test", model: "/models/tiny"}
    env = {
        "AIM_SMI_COMMAND": "/aim-test/amd-smi",
        "AIM_GPU": "MI300X",
        "AIM_GPU_COUNT": "8",
        "AIM_MODEL_DIR": "/models/tiny",
    }
    wrong = docker_run(docker, image.reference, "sh", "-c", "echo vllm would start", env=env, volumes=volumes)
    assert (wrong.returncode, wrong.stdout) == (1, "")
    assert one_line(wrong.stderr) == "aim preflight: recipe expects 8 × MI300X, amd-smi shows 4 × MI300X"

    (model / "model-00002-of-00002.safetensors").unlink()
    env["AIM_GPU_COUNT"] = "4"
    incomplete = docker_run(docker, image.reference, "sh", "-c", "echo vllm would start", env=env, volumes=volumes)
    assert (incomplete.returncode, incomplete.stdout) == (1, "")
    assert one_line(incomplete.stderr) == (
        "aim preflight: model in /models/tiny is incomplete: model.safetensors.index.json names 2 shards, 1 are "
        "missing (model-00002-of-00002.safetensors); the model download did not finish"
    )

    skipped = docker_run(
        docker,
        image.reference,
        "sh",
        "-c",
        "echo vllm would start",
        env={**env, "AIM_SKIP_PREFLIGHT": "1"},
        volumes=volumes,
    )
    assert skipped.returncode == 0
    assert skipped.stdout.splitlines() == [
        "aim-entrypoint: preflight skipped (AIM_SKIP_PREFLIGHT=1)",
        "vllm would start",
    ]


def test_default_command_is_vllm_serve_and_the_downloader_needs_huggingface_hub(docker: str, image: Built) -> None:
    # The test base has no vLLM: the preflight passes (nothing configured), then `vllm serve --help` cannot be found.
    default = docker_run(docker, image.reference)
    assert default.stdout.splitlines()[0].startswith("aim preflight: ok: GPU check skipped")
    assert default.returncode == 127 and "vllm" in default.stderr
    # Nor huggingface_hub: the init container's program says so in one line.
    download = docker_run(
        docker,
        image.reference,
        "python3",
        "-m",
        "aim_infra.pod.download",
        "--model",
        "org/tiny",
        "--dest",
        "/tmp/m",
        env={"AIM_SKIP_PREFLIGHT": "1"},
    )
    assert download.returncode == 1
    assert one_line(download.stderr).startswith("aim download: huggingface_hub is not installed in this image")


def test_image_build_took_reasonable_time(image: Built) -> None:
    assert image.seconds < 120, f"docker build took {image.seconds:.0f} s"
