"""The digests the Hub publishes for a repo file (LFS sha256, git blob id), and the same digest of a local file.

Standard library only: the image's downloader and preflight import it. A digest is written `<kind>:<hex>`:
`sha256:` for an LFS file (the LFS oid is the sha256 of the content) and `git-sha1:` for a file stored in git
(the blob id, sha1 of `b"blob <size>\\0"` + content). `git-sha256:` covers a repo in git's SHA-256 object format.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

#: Read size for hashing: large enough that hashlib (which releases the GIL above 2 KiB) does the work, not Python.
CHUNK_BYTES = 8 * 2**20

_DIGEST = re.compile(r"(sha256|git-sha256):[0-9a-f]{64}|git-sha1:[0-9a-f]{40}")


def is_digest(value: object) -> bool:
    """Whether `value` is a digest in the `<kind>:<hex>` form this module writes."""
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def published_digest(entry: Any) -> str:
    """The digest the Hub lists for a `huggingface_hub.RepoFile` (from `list_repo_tree` or `get_paths_info`).

    LFS files carry `lfs.sha256` (the LFS oid); the others only `blob_id`, the git object id of their content.
    """
    lfs = getattr(entry, "lfs", None)
    sha256 = getattr(lfs, "sha256", None) if lfs is not None else None
    if sha256:
        return f"sha256:{str(sha256).lower()}"
    if getattr(entry, "xet_hash", None):
        # Model repos list Xet files with their LFS oid as well; without it the blob id would be the pointer's.
        raise ValueError(f"{getattr(entry, 'path', '?')}: the Hub lists a Xet hash but no LFS sha256 to verify it by")
    blob_id = str(getattr(entry, "blob_id", "") or "").lower()
    digest = f"git-sha1:{blob_id}" if len(blob_id) == 40 else f"git-sha256:{blob_id}"
    if not is_digest(digest):
        raise ValueError(f"{getattr(entry, 'path', '?')}: the Hub lists neither an LFS sha256 nor a git blob id")
    return digest


def file_digest(path: Path | str, kind: str) -> str:
    """The digest of kind `kind` (`sha256`, `git-sha1`, `git-sha256`) of the file at `path`, read in chunks."""
    with open(path, "rb", buffering=0) as file:
        size = os.fstat(file.fileno()).st_size
        if kind == "sha256":
            digest = hashlib.sha256()
        elif kind in ("git-sha1", "git-sha256"):
            digest = hashlib.sha1() if kind == "git-sha1" else hashlib.sha256()
            digest.update(b"blob %d\0" % size)
        else:
            raise ValueError(f"unknown digest kind {kind!r}: expected sha256, git-sha1 or git-sha256")
        buffer = bytearray(CHUNK_BYTES)
        view = memoryview(buffer)
        while count := file.readinto(buffer):
            digest.update(view[:count])
    return f"{kind}:{digest.hexdigest()}"


def digest_kind(digest: str) -> str:
    return digest.split(":", 1)[0]
