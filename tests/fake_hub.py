"""A local stand-in for the Hugging Face Hub file endpoints, so tests drive the real huggingface_hub client offline.

Files are listed with the digests the Hub publishes (the tree API, `model_info(files_metadata=True)` and
`paths-info`): the LFS oid (sha256 of the content) for LFS files and the git blob id (sha1 of `blob <size>\\0` +
content) for every file, both computed from the served bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

#: Bytes per element of the safetensors dtypes the tests use.
DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "F8_E5M2": 1, "U8": 1, "I8": 1, "I32": 4, "I64": 8}

#: Files the Hub stores in LFS (answered with a redirect to the CDN host), like `*.safetensors` on huggingface.co.
LFS_SUFFIXES = (".safetensors", ".bin")

RepoMode = Literal["ok", "gated", "missing", "error"]


@dataclass(frozen=True)
class Blob:
    """File content: real leading bytes, then zeros up to `size` (a safetensors file of any size costs its header)."""

    prefix: bytes
    size: int

    @classmethod
    def of(cls, data: bytes) -> Blob:
        return cls(prefix=data, size=len(data))

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file."""
        head = self.prefix[start:end]
        return head + bytes(max(0, end - max(start, len(self.prefix))))

    def _digest(self, digest: Any) -> str:
        digest.update(self.prefix[: self.size])
        zeros = bytes(2**20)
        left = self.size - min(self.size, len(self.prefix))
        while left > 0:
            digest.update(zeros[: min(left, len(zeros))])
            left -= len(zeros)
        return str(digest.hexdigest())

    @cached_property
    def sha256(self) -> str:
        """The LFS oid: sha256 of the whole content (the zeros included)."""
        return self._digest(hashlib.sha256())

    @cached_property
    def git_oid(self) -> str:
        """git's blob id: sha1 of `blob <size>\\0` and the whole content."""
        header = hashlib.sha1(b"blob %d\0" % self.size)
        return self._digest(header)


def safetensors_blob(
    tensors: Mapping[str, tuple[str, Sequence[int]]], metadata: Mapping[str, str] | None = None
) -> Blob:
    """A safetensors file with these (dtype, shape) tensors: a real header, data left as zeros (never materialised)."""
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        length = DTYPE_BYTES[dtype]
        for dim in shape:
            length *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + length]}
        offset += length
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8-byte alignment
    prefix = struct.pack("<Q", len(raw)) + raw
    return Blob(prefix=prefix, size=len(prefix) + offset)


def json_blob(data: object) -> Blob:
    return Blob.of(json.dumps(data, indent=2).encode())


@dataclass
class FakeRepo:
    files: dict[str, Blob]
    mode: RepoMode = "ok"
    token: str | None = None  # the Bearer token a gated repo accepts
    commit: str = ""

    def is_lfs(self, filename: str) -> bool:
        return filename.endswith(LFS_SUFFIXES)

    def tree_entry(self, name: str) -> dict[str, Any]:
        """A file as the tree and paths-info APIs list it: `oid` is the git blob id, `lfs.oid` the sha256."""
        blob = self.files[name]
        entry: dict[str, Any] = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": name}
        if self.is_lfs(name):
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": 134}
        return entry

    def sibling(self, name: str, *, blobs: bool) -> dict[str, Any]:
        """A file as model_info lists it; with `blobs` (files_metadata=True) the size, blob id and LFS sha256."""
        if not blobs:
            return {"rfilename": name}
        blob = self.files[name]
        sibling: dict[str, Any] = {"rfilename": name, "size": blob.size, "blobId": blob.git_oid}
        if self.is_lfs(name):
            sibling["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": 134}
        return sibling


@dataclass(frozen=True)
class SeenRequest:
    host: Literal["hub", "cdn"]
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class FakeHub:
    """The Hub (`/{repo}/resolve/{rev}/{file}`, `/api/models/{repo}`) and a CDN host for LFS files, on 127.0.0.1."""

    repos: dict[str, FakeRepo] = field(default_factory=dict)
    valid_tokens: set[str] | None = None  # when set, any other Bearer token is refused with 401 like a revoked one
    requests: list[SeenRequest] = field(default_factory=list)
    #: sha256 of a blob -> how many more GETs serve it corrupted (first byte of each body flipped, same size);
    #: a negative count corrupts every GET. Stands for a broken mirror, proxy or disk on the way.
    corrupt: dict[str, int] = field(default_factory=dict)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_repo(
        self, repo_id: str, files: Mapping[str, Blob | bytes | dict], *, mode: RepoMode = "ok", token: str | None = None
    ) -> FakeRepo:
        blobs = {
            name: content
            if isinstance(content, Blob)
            else Blob.of(content)
            if isinstance(content, bytes)
            else json_blob(content)
            for name, content in files.items()
        }
        commit = hashlib.sha1(repo_id.encode() + b"".join(blob.git_oid.encode() for blob in blobs.values())).hexdigest()
        repo = FakeRepo(files=blobs, mode=mode, token=token, commit=commit)
        self.repos[repo_id] = repo
        return repo

    # -- server lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> FakeHub:
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, args=(0.05,), name=f"fake-{role}", daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def seen(self, host: str = "hub") -> list[SeenRequest]:
        with self._lock:
            return [request for request in self.requests if request.host == host]

    def _record(self, request: SeenRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def take_corruption(self, blob: Blob) -> bool:
        """Whether this GET of `blob` is to be served corrupted (counts it down)."""
        with self._lock:
            left = self.corrupt.get(blob.sha256, 0)
            if left == 0:
                return False
            if left > 0:
                self.corrupt[blob.sha256] = left - 1
            return True

    def blob_by_sha(self, sha256: str) -> Blob | None:
        for repo in self.repos.values():
            for blob in repo.files.values():
                if blob.sha256 == sha256:
                    return blob
        return None


_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def _handler(hub: FakeHub, role: Literal["hub", "cdn"]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive like the real Hub: every answer carries Content-Length

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode()) if length else {}
            parts = [unquote(part) for part in urlsplit(self.path).path.split("/")[1:]]
            hub._record(SeenRequest(role, "POST", "/".join(parts), None, self.headers.get("Authorization")))
            if role == "hub" and len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "paths-info":
                self._paths_info(f"{parts[2]}/{parts[3]}", parts[5], form.get("paths", []))
            else:
                self._error(404, None, "not a Hub route", head=False)

        # -- responses ----------------------------------------------------------------------------------------------

        def _send(
            self, status: int, headers: Mapping[str, str], body: bytes, *, head: bool, length: int | None = None
        ) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _error(
            self, status: int, code: str | None, message: str, *, head: bool, extra: Mapping[str, str] | None = None
        ) -> None:
            headers = {"Content-Type": "application/json", **(extra or {})}
            if code:
                headers["X-Error-Code"] = code
            headers["X-Error-Message"] = message
            self._send(status, headers, json.dumps({"error": message}).encode(), head=head)

        def _content(self, blob: Blob, headers: dict[str, str], *, head: bool) -> None:
            wanted = self.headers.get("Range")
            start, end = 0, blob.size
            status = 200
            if wanted:
                match = _RANGE.match(wanted.strip())
                if not match or (not match[1] and not match[2]):
                    self._error(416, None, "invalid range", head=head)
                    return
                if match[1]:
                    start = int(match[1])
                    end = min(blob.size, int(match[2]) + 1) if match[2] else blob.size
                else:  # suffix range: the last N bytes
                    start = max(0, blob.size - int(match[2]))
                if start >= blob.size:
                    self._error(
                        416, None, "range not satisfiable", head=head, extra={"Content-Range": f"bytes */{blob.size}"}
                    )
                    return
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
            headers["Accept-Ranges"] = "bytes"
            body = b"" if head else blob.read(start, end)
            if body and hub.take_corruption(blob):
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            self._send(status, headers, body, head=head, length=end - start)

        # -- routing ------------------------------------------------------------------------------------------------

        def _serve(self, *, head: bool) -> None:
            parts = [unquote(part) for part in urlsplit(self.path).path.split("/")[1:]]
            hub._record(
                SeenRequest(
                    role, self.command, "/".join(parts), self.headers.get("Range"), self.headers.get("Authorization")
                )
            )
            if role == "cdn":
                blob = hub.blob_by_sha(parts[-1]) if len(parts) == 2 and parts[0] == "lfs" else None
                if blob is None:
                    self._error(404, None, "no such object", head=head)
                    return
                self._content(blob, {"ETag": f'"{blob.sha256}"', "Content-Type": "application/octet-stream"}, head=head)
                return
            query = parse_qs(urlsplit(self.path).query)
            if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "tree":
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                self._tree(f"{parts[2]}/{parts[3]}", parts[5], recursive, head=head)
            elif len(parts) >= 3 and parts[0] == "api" and parts[1] == "models":
                blobs = query.get("blobs", ["false"])[0].lower() == "true"
                self._model_info(parts[2:], blobs=blobs, head=head)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head=head)
            else:
                self._error(404, None, "not a Hub route", head=head)

        def _repo(self, repo_id: str, *, head: bool, api: bool = False) -> FakeRepo | None:
            sent = self.headers.get("Authorization")
            if sent and hub.valid_tokens is not None and sent.removeprefix("Bearer ") not in hub.valid_tokens:
                self._error(401, None, "Invalid credentials in Authorization header", head=head)
                return None
            repo = hub.repos.get(repo_id)
            if repo is None or repo.mode == "missing":
                self._error(404, "RepoNotFound", "Repository not found", head=head)
                return None
            if repo.mode == "error":
                self._error(
                    500, None, "Internal Error - We're working hard to fix this as soon as possible!", head=head
                )
                return None
            if repo.mode == "gated" and not api and sent != f"Bearer {repo.token}":
                self._error(
                    403 if sent else 401,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it and be authenticated.",
                    head=head,
                )
                return None
            return repo

        def _listed_repo(self, repo_id: str, revision: str, *, head: bool) -> FakeRepo | None:
            """The repo for an API listing at `revision` (a gated repo's listing is public, like huggingface.co)."""
            repo = self._repo(repo_id, head=head, api=True)
            if repo is not None and revision not in ("main", repo.commit):
                self._error(404, "RevisionNotFound", "Invalid rev id", head=head)
                return None
            return repo

        def _tree(self, repo_id: str, revision: str, recursive: bool, *, head: bool) -> None:
            repo = self._listed_repo(repo_id, revision, head=head)
            if repo is None:
                return
            entries: list[dict[str, Any]] = []
            folders: set[str] = set()
            for name in sorted(repo.files):
                parents = name.split("/")[:-1]
                folders.update("/".join(parents[:depth]) for depth in range(1, len(parents) + 1))
                if "/" not in name or recursive:
                    entries.append(repo.tree_entry(name))
            entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
            self._send(200, {"Content-Type": "application/json"}, json.dumps(entries).encode(), head=head)

        def _paths_info(self, repo_id: str, revision: str, paths: list[str]) -> None:
            repo = self._listed_repo(repo_id, revision, head=False)
            if repo is not None:
                entries = [repo.tree_entry(name) for name in paths if name in repo.files]
                self._send(200, {"Content-Type": "application/json"}, json.dumps(entries).encode(), head=False)

        def _model_info(self, parts: list[str], *, blobs: bool = False, head: bool) -> None:
            if len(parts) < 2:
                self._error(404, None, "not a Hub route", head=head)
                return
            repo_id = f"{parts[0]}/{parts[1]}"
            repo = self._repo(repo_id, head=head, api=True)
            if repo is None:
                return
            if len(parts) == 4 and parts[2] == "revision" and parts[3] not in ("main", repo.commit):
                self._error(404, "RevisionNotFound", "Invalid rev id", head=head)
                return
            info = {
                "_id": repo.commit[:24],
                "id": repo_id,
                "sha": repo.commit,
                "gated": "manual" if repo.token else False,
                "siblings": [repo.sibling(name, blobs=blobs) for name in sorted(repo.files)],
            }
            self._send(200, {"Content-Type": "application/json"}, json.dumps(info).encode(), head=head)

        def _resolve(self, repo_id: str, revision: str, filename: str, *, head: bool) -> None:
            repo = self._repo(repo_id, head=head)
            if repo is None:
                return
            if revision not in ("main", repo.commit):
                self._error(404, "RevisionNotFound", "Invalid rev id", head=head)
                return
            blob = repo.files.get(filename)
            if blob is None:
                self._error(404, "EntryNotFound", "Entry not found", head=head, extra={"X-Repo-Commit": repo.commit})
                return
            if repo.is_lfs(filename):
                # Like huggingface.co: the LFS object lives on another host; the redirect carries the file metadata.
                headers = {
                    "Location": f"{hub.cdn_url}/lfs/{blob.sha256}",
                    "X-Repo-Commit": repo.commit,
                    "X-Linked-Etag": f'"{blob.sha256}"',
                    "X-Linked-Size": str(blob.size),
                    "ETag": f'"{blob.git_oid}"',
                }
                self._send(302, headers, b"", head=head)
                return
            headers = {"ETag": f'"{blob.git_oid}"', "X-Repo-Commit": repo.commit, "Content-Type": "text/plain"}
            self._content(blob, headers, head=head)

    return Handler


def isolate_hub_client(monkeypatch: Any, home: Path, *, offline: bool) -> None:
    """Point huggingface_hub at an empty private home: token, cache and telemetry included.

    huggingface_hub copies these from the environment once, at import, so the copies in `constants` are patched too;
    with telemetry on, the first request of a process would also fetch the Hub's agent registry."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(home))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_XET_CACHE", str(home / "xet"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
