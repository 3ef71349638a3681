"""The model-download init container program against the real huggingface_hub client and the fake Hub."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from aim_infra.pod import download
from aim_infra.pod.download import (
    MARKER_NAME,
    IncompleteDownload,
    read_marker,
    record_file,
    verify_download,
    write_marker,
)
from aim_infra.pod.hub_digest import file_digest
from tests.fake_hub import Blob, FakeHub, FakeRepo, SeenRequest, safetensors_blob

ROOT = Path(__file__).resolve().parents[2]

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 2048,
    "torch_dtype": "bfloat16",
}

#: What vLLM needs from the repo below (weights, configs, tokenizer, chat template, remote code) ...
NEEDED = {
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "merges.txt",
    "chat_template.jinja",
    "modeling_tiny.py",
}
#: ... and what it does not: duplicated weights in other formats, docs, pictures, git attributes.
NOT_NEEDED = {"README.md", ".gitattributes", "pytorch_model.bin", "original/consolidated.00.pth", "figure.png"}


# ---------------------------------------------------------------------------------------------------------------------
# The fake Hub (tests/fake_hub.py) lists every file with its sha256 / git blob id, like huggingface.co's tree API, and
# can serve a blob corrupted (`FakeHub.corrupt`). This adds, for the interruption tests, a CDN that stalls or drops
# one LFS file half-way.


class HubControl:
    """Test-side switches of the extended fake Hub."""

    def __init__(self) -> None:
        self.stall_sha: str | None = None  # the CDN sends half of this blob, then stalls until `release` is set
        self.drop_sha: str | None = None  # the CDN sends half of this blob once, then closes the connection
        self.release = threading.Event()


def _with_interrupting_cdn(hub: FakeHub, control: HubControl) -> None:
    cdn_server = hub._servers[1]  # the running CDN server of the `fake_hub` fixture
    cdn_base: Any = cdn_server.RequestHandlerClass

    class InterruptingCdn(cdn_base):  # type: ignore[misc, valid-type]
        def _serve(self, *, head: bool) -> None:
            sha = urlsplit(self.path).path.split("/")[-1]
            stall, drop = sha == control.stall_sha, sha == control.drop_sha
            blob = hub.blob_by_sha(sha) if stall or drop else None
            if blob is None or head or self.headers.get("Range"):
                super()._serve(head=head)
                return
            if drop:
                control.drop_sha = None  # once
            hub._record(SeenRequest("cdn", "GET", f"lfs/{sha}", None, None))
            self.send_response(200)
            self.send_header("Content-Length", str(blob.size))
            self.send_header("ETag", f'"{blob.sha256}"')
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(blob.read(0, blob.size // 2))
            self.wfile.flush()
            if stall:
                control.release.wait(30)  # the client is killed meanwhile
            self.close_connection = True

    cdn_server.RequestHandlerClass = InterruptingCdn


@pytest.fixture
def hub(fake_hub: FakeHub) -> Iterator[tuple[FakeHub, HubControl]]:
    control = HubControl()
    _with_interrupting_cdn(fake_hub, control)
    try:
        yield fake_hub, control
    finally:
        control.release.set()


def add_model(hub: FakeHub, repo_id: str, *, shard_bytes: int = 4096, **kwargs: Any) -> FakeRepo:
    """A two-shard Llama-like repo with everything a real one has, needed by vLLM or not."""
    elements = max(1, (shard_bytes - 200) // 2)
    shards = {
        "model-00001-of-00002.safetensors": safetensors_blob({"model.embed_tokens.weight": ("BF16", [elements])}),
        "model-00002-of-00002.safetensors": safetensors_blob({"lm_head.weight": ("BF16", [elements])}),
    }
    index = {
        "metadata": {"total_size": sum(b.size for b in shards.values())},
        "weight_map": {
            "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "lm_head.weight": "model-00002-of-00002.safetensors",
        },
    }
    files: dict[str, Blob | bytes | dict] = {
        **shards,
        "config.json": CONFIG,
        "generation_config.json": {"bos_token_id": 1, "eos_token_id": 2},
        "model.safetensors.index.json": index,
        "tokenizer.json": {"version": "1.0", "model": {"type": "BPE"}},
        "tokenizer_config.json": {"model_max_length": 2048},
        "special_tokens_map.json": {"bos_token": "<s>"},
        "tokenizer.model": b"\x0a\x0bsentencepiece",
        "merges.txt": b"#version: 0.2\na b\n",
        "chat_template.jinja": b"{% for m in messages %}{{ m.content }}{% endfor %}",
        "modeling_tiny.py": b"# remote code\n",
        "README.md": b"# tiny\n",
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
        "pytorch_model.bin": Blob(prefix=b"PK", size=8192),
        "original/consolidated.00.pth": Blob(prefix=b"PK", size=8192),
        "figure.png": b"\x89PNG....",
    }
    return hub.add_repo(repo_id, files, **kwargs)


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = download.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, f"expected exactly one line, got {lines!r}"
    return lines[0]


def downloaded(dest: Path) -> set[str]:
    return {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file() and ".cache" not in p.parts}


# ---------------------------------------------------------------------------------------------------------------------


def test_full_download_fetches_only_what_vllm_needs_and_writes_the_marker(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = hub
    repo = add_model(fake, "org/tiny")
    dest = tmp_path / "models" / "tiny"
    code, out, err = run_main(capsys, "--model", "org/tiny", "--dest", str(dest))
    assert (code, err) == (0, "")
    assert downloaded(dest) == NEEDED | {MARKER_NAME}
    for name in NEEDED:
        blob = repo.files[name]
        data = (dest / name).read_bytes()
        assert len(data) == blob.size and data == blob.read(0, blob.size), name
    # Files vLLM does not need were never requested from either host.
    requested = {r.path for r in fake.requests}
    assert not any(name in path for name in NOT_NEEDED for path in requested)

    marker = json.loads((dest / MARKER_NAME).read_text())
    assert marker["model"] == "org/tiny"
    assert marker["revision"] == "main"
    assert marker["commit"] == repo.commit
    assert marker["file_count"] == len(NEEDED)
    assert marker["bytes"] == sum(repo.files[n].size for n in NEEDED)
    assert set(marker["files"]) == NEEDED
    assert verify_download(dest, "org/tiny", "main").commit == repo.commit
    assert re.fullmatch(
        re.escape(
            f"aim download: org/tiny@main (commit {repo.commit[:12]}) complete in {dest}: "
            f"{len(NEEDED)} files, {download.format_bytes(marker['bytes'])} in "
        )
        + r"\d+ s",
        out.splitlines()[-1],
    )


def test_second_run_is_skipped_by_the_marker_without_asking_the_hub(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = hub
    repo = add_model(fake, "org/tiny")
    dest = tmp_path / "tiny"
    assert run_main(capsys, "--model", "org/tiny", "--dest", str(dest))[0] == 0
    before = len(fake.requests)
    code, out, err = run_main(capsys, "--model", "org/tiny", "--dest", str(dest))
    assert (code, err) == (0, "")
    assert one_line(out) == (
        f"aim download: org/tiny@main (commit {repo.commit[:12]}) is already complete in {dest} "
        f"({len(NEEDED)} files, {download.format_bytes(read_marker(dest).total_bytes)}); skipping the download"  # type: ignore[union-attr]
    )
    assert len(fake.requests) == before


def test_marker_for_another_revision_or_with_a_file_gone_downloads_again(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = hub
    repo = add_model(fake, "org/tiny")
    dest = tmp_path / "tiny"
    assert run_main(capsys, "--model", "org/tiny", "--dest", str(dest))[0] == 0
    # The same model pinned to its commit is another revision: fetched again (the files are already there).
    code, out, _ = run_main(capsys, "--model", "org/tiny", "--revision", repo.commit, "--dest", str(dest))
    assert code == 0 and "skipping" not in out
    assert read_marker(dest).revision == repo.commit  # type: ignore[union-attr]
    # A file the marker lists has gone: the marker no longer counts, the file is fetched again.
    (dest / "tokenizer.json").unlink()
    with pytest.raises(IncompleteDownload, match=r"tokenizer\.json \(missing\)"):
        verify_download(dest)
    code, out, _ = run_main(capsys, "--model", "org/tiny", "--revision", repo.commit, "--dest", str(dest))
    assert code == 0 and "skipping" not in out
    assert (dest / "tokenizer.json").stat().st_size == repo.files["tokenizer.json"].size


def test_dropped_connection_resumes_within_the_run(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CDN closes the connection half-way through a shard: the same run asks for the rest with a Range request."""
    fake, control = hub
    repo = add_model(fake, "org/big", shard_bytes=24 * 2**20)  # > huggingface_hub's 10 MiB write chunk
    shard = "model-00002-of-00002.safetensors"
    blob = repo.files[shard]
    control.drop_sha = blob.sha256
    dest = tmp_path / "big"
    code, _, err = run_main(capsys, "--model", "org/big", "--dest", str(dest))
    assert (code, err) == (0, "")
    gets = [r for r in fake.seen("cdn") if r.path.endswith(blob.sha256) and r.method == "GET"]
    assert len(gets) == 2 and gets[0].range is None
    assert gets[1].range is not None and re.fullmatch(r"bytes=[1-9]\d*-", gets[1].range)
    assert (dest / shard).stat().st_size == blob.size
    with (dest / shard).open("rb") as data:
        assert data.read(len(blob.prefix)) == blob.prefix
    assert verify_download(dest, "org/big").file_count == len(NEEDED)


def test_killed_download_keeps_finished_files_and_cleans_up_the_partial_one(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The init container is killed half-way through a shard (OOM, node drain): the next start fetches the rest only."""
    fake, control = hub
    repo = add_model(fake, "org/big", shard_bytes=24 * 2**20)
    stalled, finished = "model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"
    control.stall_sha = repo.files[stalled].sha256
    dest = tmp_path / "big"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_TELEMETRY": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "aim_infra.pod.download", "--model", "org/big", "--dest", str(dest)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def partials() -> list[Path]:
        return [p for p in (dest / ".cache").rglob("*.incomplete") if p.is_file()]

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            # A file counts as finished once huggingface_hub has also written its metadata: killed between the two,
            # the next start would rightly fetch it again.
            everything_else = all(
                (dest / n).is_file() and (dest / ".cache" / "huggingface" / "download" / f"{n}.metadata").is_file()
                for n in NEEDED - {stalled}
            )
            if everything_else and any(p.stat().st_size > 0 for p in partials()):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the download never reached the stalled shard")
    finally:
        process.kill()  # SIGKILL: no clean-up of any kind
        process.wait(10)
    assert len(partials()) == 1
    assert not (dest / stalled).exists()
    assert (dest / finished).stat().st_size == repo.files[finished].size
    with pytest.raises(IncompleteDownload, match=r"has no \.aim-download-complete"):
        verify_download(dest)

    control.stall_sha = None
    before = len(fake.requests)
    code, out, err = run_main(capsys, "--model", "org/big", "--dest", str(dest))
    assert (code, err) == (0, "")
    assert f"{len(NEEDED)} files" in out and f"; {len(NEEDED) - 1} already here from an earlier start" in out
    fetched_again = {r.path for r in fake.requests[before:] if r.host == "cdn" and r.method == "GET"}
    assert fetched_again == {f"lfs/{repo.files[stalled].sha256}"}  # not the finished shard
    assert partials() == []  # the killed process's temporary file is gone
    assert verify_download(dest, "org/big").file_count == len(NEEDED)


def test_a_second_download_into_the_same_directory_waits_and_then_skips(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two pods sharing the volume: the second waits for the first's lock and finds its marker."""
    fake, _ = hub
    add_model(fake, "org/tiny")
    done = tmp_path / "done"
    assert run_main(capsys, "--model", "org/tiny", "--dest", str(done))[0] == 0
    shared = tmp_path / "shared"
    (shared / ".cache").mkdir(parents=True)
    result: list[int] = []
    with (shared / ".cache" / download.LOCK_NAME).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # "the first pod" is downloading
        waiter = threading.Thread(
            target=lambda: result.append(download.main(["--model", "org/tiny", "--dest", str(shared)]))
        )
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and result == []
        before = len(fake.requests)
        shutil.copytree(done, shared, dirs_exist_ok=True)  # ... and finishes
        fcntl.flock(lock, fcntl.LOCK_UN)
    waiter.join(10)
    assert result == [0]
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == f"aim download: another download into {shared} is running; waiting for it to finish"
    assert out[-1].endswith("skipping the download")
    assert fake.requests[before:] == []  # the waiter never asked the Hub


def test_gated_repo_without_token_is_one_line_naming_the_fix(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = hub
    add_model(fake, "org/gated", mode="gated", token="hf_good")
    dest = tmp_path / "gated"
    code, _, err = run_main(capsys, "--model", "org/gated", "--dest", str(dest))
    assert code == 1
    assert one_line(err) == (
        f"aim download: org/gated is gated: accept its licence at {fake.url}/org/gated and set HF_TOKEN "
        "(a token of that account)"
    )
    assert not (dest / MARKER_NAME).exists()


def test_gated_repo_with_token_downloads(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = hub
    add_model(fake, "org/gated", mode="gated", token="hf_good")
    monkeypatch.setenv("HF_TOKEN", "hf_good")
    code, _, err = run_main(capsys, "--model", "org/gated", "--dest", str(tmp_path / "gated"))
    assert (code, err) == (0, "")
    assert all(r.authorization is None for r in fake.seen("cdn"))  # the token never leaves the Hub host


def test_gated_repo_with_a_token_without_access(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = hub
    add_model(fake, "org/gated", mode="gated", token="hf_good")
    monkeypatch.setenv("HF_TOKEN", "hf_other")
    code, _, err = run_main(capsys, "--model", "org/gated", "--dest", str(tmp_path / "gated"))
    assert code == 1
    assert "org/gated is gated and the account of HF_TOKEN has no access" in one_line(err)


def test_missing_repo_is_one_line(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = hub
    code, _, err = run_main(capsys, "--model", "org/no-such-model", "--dest", str(tmp_path / "x"))
    assert code == 1
    assert one_line(err) == (
        f"aim download: org/no-such-model not found on {fake.url}: check the model id "
        "(a private repo also needs HF_TOKEN)"
    )


def test_missing_revision_is_one_line(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = hub
    add_model(fake, "org/tiny")
    code, _, err = run_main(capsys, "--model", "org/tiny", "--revision", "v9", "--dest", str(tmp_path / "x"))
    assert code == 1
    assert (
        one_line(err)
        == f"aim download: org/tiny: revision 'v9' not found on {fake.url}: check the branch, tag or commit"
    )


def test_hub_error_and_unreachable_hub_are_one_line(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = hub
    add_model(fake, "org/broken", mode="error")
    code, _, err = run_main(capsys, "--model", "org/broken", "--dest", str(tmp_path / "a"))
    assert code == 1
    assert one_line(err).startswith(f"aim download: org/broken: the Hub at {fake.url} answered HTTP 500: retry later")

    dead = fake.url.rsplit(":", 1)[0] + ":9"  # discard port: connection refused
    monkeypatch.setenv("HF_ENDPOINT", dead)
    code, _, err = run_main(capsys, "--model", "org/tiny", "--dest", str(tmp_path / "b"))
    assert code == 1
    line = one_line(err)
    assert line.startswith(f"aim download: org/tiny: cannot reach the Hub at {dead} (")
    assert line.endswith("check the network, proxy and HF_ENDPOINT; the next start keeps the files already fetched")


def test_offline_without_a_complete_download_is_one_line_and_with_one_skips(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = hub
    add_model(fake, "org/tiny")
    dest = tmp_path / "tiny"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_main(capsys, "--model", "org/tiny", "--dest", str(dest))
    assert code == 1
    assert one_line(err).startswith(f"aim download: org/tiny: HF_HUB_OFFLINE is set and {dest} holds no complete")
    assert fake.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert run_main(capsys, "--model", "org/tiny", "--dest", str(dest))[0] == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, _ = run_main(capsys, "--model", "org/tiny", "--dest", str(dest))
    assert code == 0 and one_line(out).endswith("skipping the download")


def test_repo_without_safetensors_is_refused(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = hub
    fake.add_repo("org/bin-only", {"config.json": CONFIG, "pytorch_model.bin": Blob(prefix=b"PK", size=64)})
    code, _, err = run_main(capsys, "--model", "org/bin-only", "--dest", str(tmp_path / "x"))
    assert code == 1
    assert "org/bin-only (revision main) has no *.safetensors weights" in one_line(err)


def test_model_and_dest_from_the_environment_and_usage_errors(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = hub
    add_model(fake, "org/tiny")
    code, _, err = run_main(capsys, "--dest", str(tmp_path))
    assert code == 2
    assert one_line(err).startswith("aim download: --model is required (or set AIM_MODEL)")
    monkeypatch.setenv("AIM_MODEL", "org/tiny")
    monkeypatch.setenv("AIM_MODEL_DIR", str(tmp_path / "env"))
    assert run_main(capsys, *[])[0] == 0
    assert read_marker(tmp_path / "env").model == "org/tiny"  # type: ignore[union-attr]


def test_as_a_module_in_a_subprocess(hub: tuple[FakeHub, HubControl], tmp_path: Path) -> None:
    fake, _ = hub
    add_model(fake, "org/tiny")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_TELEMETRY": "1"}
    command = [sys.executable, "-m", "aim_infra.pod.download", "--model", "org/tiny", "--dest", str(tmp_path / "m")]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert (first.returncode, first.stderr) == (0, "")
    assert "\r" not in first.stdout  # no progress bars in the init container's log
    assert len(first.stdout.splitlines()) == 2  # "fetching ..." and "... complete ..."
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and one_line(second.stdout).endswith("skipping the download")
    gated = [sys.executable, "-m", "aim_infra.pod.download", "--model", "org/none", "--dest", str(tmp_path / "n")]
    failed = subprocess.run(gated, env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and one_line(failed.stderr).startswith("aim download: org/none not found")


# ---------------------------------------------------------------------------------------------------------------------
# integrity: every file against the digest the Hub lists for it


class HashCounter:
    """Counts the files download.py hashes (a real hash each time, only counted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        real = download.file_digest

        def counting(path: Path | str, kind: str) -> str:
            self.names.append(Path(path).name)
            return real(path, kind)

        monkeypatch.setattr(download, "file_digest", counting)


def cdn_gets(fake: FakeHub, blob: Blob) -> int:
    return sum(1 for r in fake.seen("cdn") if r.method == "GET" and r.path == f"lfs/{blob.sha256}")


def test_a_good_download_records_the_hubs_digests(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = hub
    repo = add_model(fake, "org/tiny")
    hashed = HashCounter(monkeypatch)
    dest = tmp_path / "tiny"
    code, _, err = run_main(capsys, "--model", "org/tiny", "--dest", str(dest))
    assert (code, err) == (0, "")
    marker = verify_download(dest, "org/tiny")
    for name in NEEDED:
        blob = repo.files[name]
        lfs = name.endswith(".safetensors")
        assert marker.files[name].digest == (f"sha256:{blob.sha256}" if lfs else f"git-sha1:{blob.git_oid}")
        assert marker.files[name].size == blob.size
    assert sorted(hashed.names) == sorted(Path(n).name for n in NEEDED)  # each file hashed once
    assert not (dest / ".cache" / download.JOURNAL_NAME).exists()
    # The same files under another revision: the marker's entries stand for the hashes, nothing is hashed again.
    hashed.names.clear()
    code, out, _ = run_main(capsys, "--model", "org/tiny", "--revision", repo.commit, "--dest", str(dest))
    assert code == 0 and "skipping" not in out
    assert hashed.names == []
    assert read_marker(dest).files == marker.files  # type: ignore[union-attr]


def test_the_fake_hub_publishes_what_huggingface_hub_reads(hub: tuple[FakeHub, HubControl]) -> None:
    """model_info(files_metadata=True), get_paths_info and list_repo_tree agree on the digests of each file."""
    from huggingface_hub import HfApi

    fake, _ = hub
    repo = add_model(fake, "org/tiny")
    api = HfApi(endpoint=fake.url)
    shard = "model-00001-of-00002.safetensors"
    info = api.model_info("org/tiny", files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert siblings[shard].lfs is not None and siblings[shard].lfs.sha256 == repo.files[shard].sha256
    assert siblings["config.json"].lfs is None and siblings["config.json"].blob_id == repo.files["config.json"].git_oid
    (paths,) = api.get_paths_info("org/tiny", [shard], revision=repo.commit)
    assert download.published_digest(paths) == f"sha256:{repo.files[shard].sha256}"
    data = repo.files["config.json"].read(0, repo.files["config.json"].size)
    assert repo.files["config.json"].git_oid == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_a_corrupted_file_is_detected_deleted_and_fetched_again(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CDN serves a shard with one byte flipped (same size) once: caught by its sha256, fetched again, fine."""
    fake, _ = hub
    repo = add_model(fake, "org/tiny")
    shard = repo.files["model-00002-of-00002.safetensors"]
    fake.corrupt[shard.sha256] = 1
    dest = tmp_path / "tiny"
    code, out, err = run_main(capsys, "--model", "org/tiny", "--dest", str(dest))
    assert (code, err) == (0, "")
    retry = [line for line in out.splitlines() if "does not match" in line]
    assert retry == [
        f"aim download: model-00002-of-00002.safetensors does not match the Hub's digest (expected "
        f"sha256:{shard.sha256}, got sha256:{_flipped_sha256(shard)}); deleted it, fetching it again"
    ]
    assert cdn_gets(fake, shard) == 2
    assert file_digest(dest / "model-00002-of-00002.safetensors", "sha256") == f"sha256:{shard.sha256}"
    assert verify_download(dest, "org/tiny").file_count == len(NEEDED)


def _flipped_sha256(blob: Blob) -> str:
    data = bytearray(blob.read(0, blob.size))
    data[0] ^= 0xFF
    return hashlib.sha256(bytes(data)).hexdigest()


@pytest.mark.parametrize("name", ["model-00001-of-00002.safetensors", "tokenizer.json"])
def test_a_file_that_stays_corrupt_fails_with_one_line(
    hub: tuple[FakeHub, HubControl],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """Corrupt on every GET (an LFS shard, or a git file checked by its blob id): one retry, then one line."""
    fake, _ = hub
    repo = add_model(fake, "org/tiny")
    blob = repo.files[name]
    fake.corrupt[blob.sha256] = -1
    dest = tmp_path / "tiny"
    code, _, err = run_main(capsys, "--model", "org/tiny", "--dest", str(dest))
    assert code == 1
    data = bytearray(blob.read(0, blob.size))
    data[0] ^= 0xFF
    if name.endswith(".safetensors"):
        expected, actual = f"sha256:{blob.sha256}", f"sha256:{hashlib.sha256(bytes(data)).hexdigest()}"
        assert cdn_gets(fake, blob) == 2
    else:
        expected = f"git-sha1:{blob.git_oid}"
        actual = "git-sha1:" + hashlib.sha1(b"blob %d\0" % blob.size + bytes(data)).hexdigest()
        assert len([r for r in fake.seen("hub") if r.method == "GET" and r.path.endswith(f"/{name}")]) == 2
    assert one_line(err) == (
        f"aim download: org/tiny: {name} does not match the Hub's digest after a second download: expected "
        f"{expected}, got {actual}; deleted it: check HF_ENDPOINT and any proxy or mirror in between, then rerun "
        "the download (the other files are verified and kept)"
    )
    assert not (dest / name).exists()  # the bad copy is gone, nothing can load it
    assert not (dest / MARKER_NAME).exists()
    # The Hub heals: the next start fetches only that file, and the journal spares the others a second hash.
    fake.corrupt.clear()
    before = len(fake.requests)
    assert run_main(capsys, "--model", "org/tiny", "--dest", str(dest))[0] == 0
    gets = {r.path for r in fake.requests[before:] if (r.method == "GET" and "/resolve/" in r.path) or r.host == "cdn"}
    assert {path.rsplit("/", 1)[-1] for path in gets} <= {name, blob.sha256}
    assert verify_download(dest, "org/tiny").files[name].digest == expected


def test_a_marker_with_a_wrong_digest_is_downloaded_again(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A marker entry whose digest is not the Hub's no longer counts: that file is hashed, and re-fetched if bad."""
    fake, _ = hub
    repo = add_model(fake, "org/tiny")
    dest = tmp_path / "tiny"
    assert run_main(capsys, "--model", "org/tiny", "--dest", str(dest))[0] == 0
    shard_name = "model-00001-of-00002.safetensors"
    shard, path = repo.files[shard_name], dest / shard_name
    # Same size, other bytes, same modification time: only the digest can tell. The marker is edited to match.
    stat = path.stat()
    with path.open("r+b") as data:
        data.seek(stat.st_size - 1)
        data.write(b"\x01")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    stored = json.loads((dest / MARKER_NAME).read_text())
    stored["files"][shard_name]["digest"] = file_digest(path, "sha256")
    (dest / MARKER_NAME).write_text(json.dumps(stored))
    with pytest.raises(IncompleteDownload, match=rf"{shard_name} \(changed since it was verified\)"):
        verify_download(dest)
    hashed = HashCounter(monkeypatch)
    before = cdn_gets(fake, shard)
    code, out, err = run_main(capsys, "--model", "org/tiny", "--dest", str(dest))
    assert (code, err) == (0, "")
    assert "skipping" not in out and f"{shard_name} does not match the Hub's digest" in out
    assert cdn_gets(fake, shard) == before + 1
    assert file_digest(path, "sha256") == f"sha256:{shard.sha256}"
    assert verify_download(dest, "org/tiny").files[shard_name].digest == f"sha256:{shard.sha256}"
    assert hashed.names == [shard_name, shard_name]  # the bad copy and the new one; every other file trusted


def test_a_size_only_marker_is_verified_once_without_downloading(
    hub: tuple[FakeHub, HubControl], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A marker from before digests (format 1): every file is hashed once against the Hub, nothing is fetched."""
    fake, _ = hub
    add_model(fake, "org/tiny")
    dest = tmp_path / "tiny"
    assert run_main(capsys, "--model", "org/tiny", "--dest", str(dest))[0] == 0
    stored = json.loads((dest / MARKER_NAME).read_text())
    stored.update(format=1, files={name: entry["size"] for name, entry in stored["files"].items()})
    (dest / MARKER_NAME).write_text(json.dumps(stored))
    hashed = HashCounter(monkeypatch)
    before = len(fake.seen("cdn"))
    code, out, _ = run_main(capsys, "--model", "org/tiny", "--dest", str(dest))
    assert code == 0 and "skipping" not in out
    assert len(fake.seen("cdn")) == before
    assert len(hashed.names) == len(NEEDED)
    assert all(record.digest for record in verify_download(dest, "org/tiny").files.values())


# ---------------------------------------------------------------------------------------------------------------------
# the marker (shared with the preflight)


LFS_X10 = "sha256:" + hashlib.sha256(b"x" * 10).hexdigest()


def test_marker_round_trip_and_verification(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.safetensors").write_bytes(b"x" * 10)
    (tmp_path / ".cache" / "huggingface").mkdir(parents=True)
    (tmp_path / ".cache" / "huggingface" / "junk").write_text("ignored")
    files = download.local_files(tmp_path)
    assert files == {"config.json": 2, "sub/w.safetensors": 10}
    records = {
        "config.json": record_file(tmp_path, "config.json", file_digest(tmp_path / "config.json", "git-sha1")),
        "sub/w.safetensors": record_file(tmp_path, "sub/w.safetensors", LFS_X10),
    }
    written = write_marker(tmp_path, "org/m", "main", "abc", records)
    assert read_marker(tmp_path) == written
    assert verify_download(tmp_path, "org/m", "main") == written
    assert written.total_bytes == 12
    stored = json.loads((tmp_path / MARKER_NAME).read_text())
    assert stored["format"] == 2
    assert stored["files"]["config.json"]["digest"] == "git-sha1:" + hashlib.sha1(b"blob 2\0{}").hexdigest()
    with pytest.raises(IncompleteDownload, match="holds org/m, not org/other"):
        verify_download(tmp_path, "org/other")
    with pytest.raises(IncompleteDownload, match="at revision main, not v2"):
        verify_download(tmp_path, "org/m", "v2")
    # Rewritten with the same size: the modification time gives it away (no hash at this point).
    (tmp_path / "config.json").write_text("[]")
    os.utime(tmp_path / "config.json", ns=(0, records["config.json"].mtime_ns + 10**9))  # type: ignore[operator]
    with pytest.raises(IncompleteDownload, match=r"config\.json \(changed since it was verified\)"):
        verify_download(tmp_path)
    (tmp_path / "sub" / "w.safetensors").write_bytes(b"x" * 4)
    with pytest.raises(IncompleteDownload, match=r"sub/w\.safetensors \(4 of 10 bytes\)"):
        verify_download(tmp_path)
    (tmp_path / MARKER_NAME).write_text("{not json")
    with pytest.raises(IncompleteDownload, match="is not valid JSON"):
        verify_download(tmp_path)


def test_a_marker_without_digests_or_with_an_edited_entry_is_not_trusted(tmp_path: Path) -> None:
    """A format-1 marker (sizes only) and an entry whose digest was edited both fail the cheap check."""
    (tmp_path / "model.safetensors").write_bytes(b"w" * 8)
    good = record_file(tmp_path, "model.safetensors", "sha256:" + hashlib.sha256(b"w" * 8).hexdigest())
    write_marker(tmp_path, "org/m", "main", "abc", {"model.safetensors": good})
    verify_download(tmp_path)
    stored = json.loads((tmp_path / MARKER_NAME).read_text())
    stored["files"]["model.safetensors"]["digest"] = "sha256:" + "0" * 64
    (tmp_path / MARKER_NAME).write_text(json.dumps(stored))
    with pytest.raises(IncompleteDownload, match=r"model\.safetensors \(changed since it was verified\)"):
        verify_download(tmp_path)
    stored.update(format=1, files={"model.safetensors": 8})
    (tmp_path / MARKER_NAME).write_text(json.dumps(stored))
    with pytest.raises(IncompleteDownload, match=r"model\.safetensors \(no digest recorded\)"):
        verify_download(tmp_path)
    stored["files"] = {"model.safetensors": {"digest": "sha256:" + "0" * 64}}  # no size
    (tmp_path / MARKER_NAME).write_text(json.dumps(stored))
    with pytest.raises(IncompleteDownload, match="malformed file entry"):
        verify_download(tmp_path)


def test_file_digest_matches_git_and_lfs(tmp_path: Path) -> None:
    """The git blob id of a file is what `git hash-object` prints; the LFS oid is the plain sha256."""
    data = b"hello\n" * 1000
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f", "sha256") == "sha256:" + hashlib.sha256(data).hexdigest()
    git = shutil.which("git")
    if git:
        oid = subprocess.run([git, "hash-object", str(tmp_path / "f")], capture_output=True, text=True, check=True)
        assert file_digest(tmp_path / "f", "git-sha1") == f"git-sha1:{oid.stdout.strip()}"
    assert file_digest(tmp_path / "f", "git-sha1") == "git-sha1:" + hashlib.sha1(b"blob 6000\0" + data).hexdigest()


def test_allow_patterns_match_what_snapshot_download_matches() -> None:
    from huggingface_hub.utils import filter_repo_objects

    names = sorted(NEEDED | NOT_NEEDED | {"sub/tokenizer.json", "vocab.txt", "qwen.tiktoken"})
    ours = {n for n in names if download.wanted(n)}
    theirs = set(filter_repo_objects(names, allow_patterns=list(download.ALLOW_PATTERNS)))
    assert ours == theirs
    assert ours == NEEDED | {"sub/tokenizer.json", "vocab.txt", "qwen.tiktoken"}


def test_published_digest_prefers_the_lfs_sha256_and_refuses_what_it_cannot_check() -> None:
    from huggingface_hub.hf_api import RepoFile

    lfs = {"oid": "A" * 64, "size": 1, "pointerSize": 134}
    assert download.published_digest(RepoFile(path="w", size=1, oid="c" * 40, lfs=lfs)) == "sha256:" + "a" * 64
    assert download.published_digest(RepoFile(path="t", size=1, oid="c" * 40)) == "git-sha1:" + "c" * 40
    with pytest.raises(ValueError, match="w: the Hub lists a Xet hash but no LFS sha256"):
        download.published_digest(RepoFile(path="w", size=1, oid="c" * 40, xetHash="x" * 64))
    with pytest.raises(ValueError, match="neither an LFS sha256 nor a git blob id"):
        download.published_digest(RepoFile(path="w", size=1, oid="zz"))
