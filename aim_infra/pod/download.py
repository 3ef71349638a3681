"""Model download for the download Job: fetch only what vLLM loads into one directory, once, verified, resuming.

    python3 -m aim_infra.pod.download --model ORG/NAME [--revision REV] --dest DIR

Files come from the Hub through `huggingface_hub.hf_hub_download(local_dir=DIR)`, eight at a time. What survives an
interrupted start is every finished file: the next start fetches only the rest. Within one run a dropped connection
resumes where it stopped (HTTP Range); a file cut off by a killed process starts over, because huggingface_hub
(>= 1.x) writes each download to a process-unique temporary file. Those leftovers are deleted at the next start,
under an exclusive lock on DIR that also makes a second pod sharing the volume wait for the first one instead of
downloading twice.

Every file is checked against the digest the Hub publishes for it (`list_repo_tree`): the LFS oid (sha256 of the
content) for LFS files, the git blob id for the others. huggingface_hub checks sizes only, and writes the file inside
its own HTTP (or Xet) code, so the hash is taken right after each file lands, while the other files keep downloading.
A mismatch deletes the file and fetches it once more; a second mismatch stops with one line naming the file and both
digests. `DIR/.aim-download-complete` then records each file's size, digest and modification time. A restart trusts
a file whose size and time still match its entry (a stat, not a hash: hashing 140 GB on every pod start would take
minutes) and hashes a file again only when its entry is missing, stale or does not match the Hub's digest; the
skip path and the serving container's preflight (`aim_infra.pod.preflight`, through `verify_download`) do the same
stat check.

This module imports only the standard library at the top: huggingface_hub is imported when a download starts, so
the preflight can use the marker functions in an image without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aim_infra.common.cli import OneLineParser, UsageError, run_program
from aim_infra.common.errors import AimError
from aim_infra.common.hub_support import causes, first_line, hub_offline
from aim_infra.pod.hub_digest import digest_kind, file_digest, is_digest, published_digest

#: The marker a finished download leaves in the model directory (JSON, see DownloadMarker).
MARKER_NAME = ".aim-download-complete"
MARKER_FORMAT = 2  # 2: each file has its size, Hub digest, mtime and seal; 1 had sizes only

#: What vLLM reads from a model repo: weights, configs, tokenizers, chat templates and remote code. Everything else
#: (README, images, `*.bin`/`*.pth`/GGUF duplicates of the weights, `original/*.pth`) stays on the Hub.
ALLOW_PATTERNS: tuple[str, ...] = (
    "*.safetensors",
    "*.json",
    "tokenizer*",
    "*.model",
    "*.tiktoken",
    "*.txt",
    "*.jinja",
    "*.py",
)

DEFAULT_REVISION = "main"
PREFIX = "aim download:"

#: Where huggingface_hub keeps its per-file metadata, locks and partial files inside `local_dir`; the lock that keeps
#: two downloads out of one directory lives there too.
_HF_LOCAL_CACHE = ".cache"
LOCK_NAME = "aim-download.lock"


class IncompleteDownload(AimError):
    """The model directory does not hold a complete download; the message is one line saying what is missing."""


class DownloadError(AimError):
    """A download that cannot go on; the message is one line naming the model and the fix."""


@dataclass(frozen=True)
class FileRecord:
    """One verified file in the marker: its size and Hub digest, and the modification time it had when hashed.

    `seal` ties the four together (sha256 of them): an entry edited by hand or left by another program no longer
    matches it, so that file is hashed again instead of trusted. It is no defence against someone who can write the
    volume (they could rewrite the weights too); it catches mistakes, not attacks.
    """

    size: int
    digest: str | None = None  # None: a marker written before digests were recorded (format 1)
    mtime_ns: int | None = None
    seal: str | None = None

    @classmethod
    def of(cls, path: Path, size: int, digest: str, mtime_ns: int) -> FileRecord:
        return cls(size=size, digest=digest, mtime_ns=mtime_ns, seal=_seal(path.as_posix(), size, digest, mtime_ns))

    def problem(self, name: str, path: Path) -> str | None:
        """Why the file at `path` is not (cheaply) known to be this verified file, or None when it is."""
        try:
            stat = path.stat()
        except OSError:
            return "missing"
        if stat.st_size != self.size:
            return f"{stat.st_size} of {self.size} bytes"
        if self.digest is None or self.mtime_ns is None:
            return "no digest recorded"
        if stat.st_mtime_ns != self.mtime_ns or self.seal != _seal(name, self.size, self.digest, self.mtime_ns):
            return "changed since it was verified"
        return None

    def to_dict(self) -> dict[str, object]:
        return {"size": self.size, "digest": self.digest, "mtime_ns": self.mtime_ns, "seal": self.seal}

    @classmethod
    def from_value(cls, value: object) -> FileRecord | None:
        """An entry as stored: a dict (format 2) or a bare size (format 1); None when it is neither."""
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(size=value)
        if not isinstance(value, dict):
            return None
        size, digest, mtime_ns, seal = (value.get(key) for key in ("size", "digest", "mtime_ns", "seal"))
        if not isinstance(size, int) or isinstance(size, bool):
            return None
        return cls(
            size=size,
            digest=digest if is_digest(digest) else None,
            mtime_ns=mtime_ns if isinstance(mtime_ns, int) and not isinstance(mtime_ns, bool) else None,
            seal=seal if isinstance(seal, str) else None,
        )


def _seal(name: str, size: int, digest: str, mtime_ns: int) -> str:
    return hashlib.sha256(f"{name}\0{size}\0{digest}\0{mtime_ns}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class DownloadMarker:
    """What `DIR/.aim-download-complete` records: the model, the revision asked for and what was fetched."""

    model: str
    revision: str
    commit: str | None
    files: dict[str, FileRecord] = field(default_factory=dict)  # path relative to DIR -> what was verified
    completed_at: str = ""

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def total_bytes(self) -> int:
        return sum(record.size for record in self.files.values())

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": MARKER_FORMAT,
                "model": self.model,
                "revision": self.revision,
                "commit": self.commit,
                "file_count": self.file_count,
                "bytes": self.total_bytes,
                "completed_at": self.completed_at,
                "files": {name: record.to_dict() for name, record in sorted(self.files.items())},
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, where: Path) -> DownloadMarker:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise IncompleteDownload(f"{where} is not valid JSON ({error.msg}): rerun the model download") from None
        files = data.get("files") if isinstance(data, dict) else None
        model = data.get("model") if isinstance(data, dict) else None
        records = (
            {name: FileRecord.from_value(value) for name, value in files.items() if isinstance(name, str)}
            if isinstance(files, dict)
            else {}
        )
        if not isinstance(model, str) or not isinstance(files, dict) or len(records) != len(files):
            raise IncompleteDownload(f"{where} lacks model or files: not written by aim_infra.pod.download; rerun it")
        if any(record is None for record in records.values()):
            raise IncompleteDownload(
                f"{where} has a malformed file entry: not written by aim_infra.pod.download; rerun it"
            )
        commit = data.get("commit")
        return cls(
            model=model,
            revision=str(data.get("revision") or DEFAULT_REVISION),
            commit=str(commit) if commit else None,
            files={name: record for name, record in records.items() if record is not None},
            completed_at=str(data.get("completed_at") or ""),
        )


# ---------------------------------------------------------------------------------------------------------------
# the marker (shared with the preflight)


def marker_path(dest: Path | str) -> Path:
    return Path(dest) / MARKER_NAME


def read_marker(dest: Path | str) -> DownloadMarker | None:
    """The marker in `dest`, None when there is none; IncompleteDownload when it cannot be read."""
    path = marker_path(dest)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise IncompleteDownload(f"cannot read {path}: {error.strerror or error}") from None
    return DownloadMarker.from_json(text, path)


def verify_download(dest: Path | str, model: str | None = None, revision: str | None = None) -> DownloadMarker:
    """The marker of a complete download in `dest`, once every file it lists is there as it was when verified.

    A stat per file (size and modification time against the marker's entry), no hashing: this runs at every start
    of the serving container. With `model` (and `revision`), the marker must be for that model (and revision).
    Raises IncompleteDownload with one line otherwise.
    """
    dest = Path(dest)
    marker = read_marker(dest)
    if marker is None:
        raise IncompleteDownload(
            f"{dest} has no {MARKER_NAME}: the model download has not completed (run python3 -m aim_infra.pod.download)"
        )
    if model is not None and marker.model != model:
        raise IncompleteDownload(f"{dest} holds {marker.model}, not {model}: download {model} into an empty directory")
    if revision is not None and marker.revision != revision:
        raise IncompleteDownload(
            f"{dest} holds {marker.model} at revision {marker.revision}, not {revision}: rerun the model download"
        )
    if not marker.files:
        raise IncompleteDownload(f"{marker_path(dest)} lists no files: rerun the model download")
    problems = [
        f"{name} ({problem})"
        for name, record in sorted(marker.files.items())
        if (problem := record.problem(name, dest / name)) is not None
    ]
    if problems:
        shown = ", ".join(problems[:3]) + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise IncompleteDownload(
            f"{dest}: {len(problems)} of the {marker.file_count} files of {marker.model} are gone or changed "
            f"since the download: {shown}; rerun the model download"
        )
    return marker


def local_files(dest: Path | str) -> dict[str, int]:
    """Every file under `dest` (relative POSIX path -> bytes), leaving out huggingface_hub's `.cache` and the marker."""
    root = Path(dest)
    found: dict[str, int] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] == _HF_LOCAL_CACHE or relative.as_posix() == MARKER_NAME or not path.is_file():
            continue
        found[relative.as_posix()] = path.stat().st_size
    return found


def record_file(dest: Path | str, name: str, digest: str) -> FileRecord:
    """The marker entry for `dest/name` as it is now, whose content has just been found to have `digest`."""
    stat = (Path(dest) / name).stat()
    return FileRecord.of(Path(name), stat.st_size, digest, stat.st_mtime_ns)


def write_marker(
    dest: Path | str, model: str, revision: str, commit: str | None, files: Mapping[str, FileRecord]
) -> DownloadMarker:
    """Record a complete download in `dest` (written to a temporary file first, so a reader never sees half of it)."""
    marker = DownloadMarker(
        model=model,
        revision=revision,
        commit=commit,
        files=dict(files),
        completed_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    _write_atomically(marker_path(dest), marker.to_json() + "\n")
    return marker


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def wanted(path: str, patterns: Sequence[str] = ALLOW_PATTERNS) -> bool:
    """Whether a repo file is one vLLM needs (huggingface_hub's allow_patterns semantics: fnmatch on the full path)."""
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def format_bytes(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------------------------
# the download


@dataclass(frozen=True)
class Outcome:
    marker: DownloadMarker
    skipped: bool
    seconds: float = 0.0


@dataclass(frozen=True)
class Expected:
    """What the Hub lists for a file: its size and digest (`sha256:` LFS oid or `git-sha1:` blob id)."""

    size: int
    digest: str


class CorruptFile(AimError):
    """A file that still differs from the Hub's digest after a second download.

    The download reads the attributes, not the message, so AimError's one-line message (whitespace collapsed) loses
    nothing: a file name with spaces stays exact in `name`."""

    def __init__(self, name: str, expected: str, actual: str) -> None:
        super().__init__(f"{name} does not match the Hub's digest: expected {expected}, got {actual}")
        self.name, self.expected, self.actual = name, expected, actual


#: Files fetched (and hashed) at once, like snapshot_download's default: hashing one file overlaps the others' transfer.
WORKERS = 8

#: A download in progress records each file it has verified here (same entries as the marker), so the files a killed
#: run had already hashed are trusted, not hashed again, by the next start.
JOURNAL_NAME = "aim-verified.json"


def download(model: str, dest: Path | str, revision: str | None = None) -> Outcome:
    """Make `dest` a complete, verified copy of the files vLLM needs from `model` at `revision`; skip when done.

    Raises DownloadError (one line) for anything that stops the download.
    """
    dest = Path(dest)
    revision = revision or DEFAULT_REVISION
    if (done := _complete(dest, model, revision)) is not None:
        return Outcome(done, skipped=True)
    started = time.monotonic()
    hub = _import_hub()
    endpoint = (os.environ.get("HF_ENDPOINT") or "").strip().rstrip("/") or None
    shown_endpoint = endpoint or hub.constants.ENDPOINT
    if hub_offline():
        raise DownloadError(
            f"{model}: HF_HUB_OFFLINE is set and {dest} holds no complete download of it: unset HF_HUB_OFFLINE, "
            f"or copy the model into {dest} and run this once with network access"
        )
    try:
        (dest / _HF_LOCAL_CACHE).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(
            f"{model}: cannot write {dest} ({error.strerror or error}): mount a writable volume there"
        ) from None

    with _exclusive(dest, model):
        # Another pod sharing the volume may have finished while this one waited.
        if (done := _complete(dest, model, revision)) is not None:
            return Outcome(done, skipped=True)
        # What an earlier run verified (its marker, or the journal of a run that was killed) spares those files a
        # second hash; the marker itself must not survive a download that might stop half-way.
        trusted = _trusted_records(dest)
        marker_path(dest).unlink(missing_ok=True)
        _remove_partials(dest)

        commit, listing = _listing(hub, model, revision, dest, endpoint, shown_endpoint)
        sizes = {name: expected.size for name, expected in listing.items()}
        here = len(listing) - len(_short_files(dest, sizes))
        print(
            f"{PREFIX} fetching {model}@{revision} (commit {str(commit)[:12]}) into {dest}: "
            f"{len(listing)} files, {format_bytes(sum(sizes.values()))}"
            + (f"; {here} already here from an earlier start" if here else ""),
            flush=True,
        )
        try:
            records = _fetch_all(hub, model, str(commit), dest, endpoint, listing, trusted)
        except CorruptFile as bad:
            raise DownloadError(
                f"{model}: {bad.name} does not match the Hub's digest after a second download: expected "
                f"{bad.expected}, got {bad.actual}; deleted it: check HF_ENDPOINT and any proxy or mirror in between, "
                "then rerun the download (the other files are verified and kept)"
            ) from None
        except Exception as error:
            raise DownloadError(_explain(error, model, revision, shown_endpoint, str(dest))) from None
        marker = write_marker(dest, model, revision, commit, records)
        (dest / _HF_LOCAL_CACHE / JOURNAL_NAME).unlink(missing_ok=True)
    return Outcome(marker, skipped=False, seconds=time.monotonic() - started)


def _listing(
    hub: Any, model: str, revision: str, dest: Path, endpoint: str | None, shown_endpoint: str
) -> tuple[str, dict[str, Expected]]:
    """The commit `revision` resolves to and the files vLLM needs there with their sizes and published digests
    (one tree listing carries both the LFS sha256 and the git blob id of every file)."""
    api = hub.HfApi(endpoint=endpoint)
    try:
        commit = api.model_info(model, revision=revision).sha
        listing = {
            entry.path: Expected(int(entry.size), published_digest(entry))
            for entry in api.list_repo_tree(model, revision=commit, recursive=True)
            if isinstance(entry, hub.RepoFile) and wanted(entry.path)
        }
    except Exception as error:
        raise DownloadError(_explain(error, model, revision, shown_endpoint, str(dest))) from None
    if not any(path.endswith(".safetensors") for path in listing):
        raise DownloadError(
            f"{model} (revision {revision}) has no *.safetensors weights on {shown_endpoint}: the AIM Engine "
            "loads safetensors only; pick the repo's safetensors variant (or convert the checkpoint)"
        )
    return str(commit), listing


def _fetch_all(
    hub: Any,
    model: str,
    commit: str,
    dest: Path,
    endpoint: str | None,
    listing: Mapping[str, Expected],
    trusted: Mapping[str, FileRecord],
) -> dict[str, FileRecord]:
    """Fetch and verify every listed file, WORKERS at a time; CorruptFile for one that stays wrong after a retry
    (raised once all the others are done; the first by name when several are).

    huggingface_hub writes each file inside its own HTTP (or Xet) transfer code and offers no hook on the stream,
    so each file is hashed right after it lands (still in the page cache), in the worker that fetched it, while the
    other workers go on downloading; hashlib releases the GIL, so the hashes run in parallel too.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    job = _FetchJob(
        hub, model, commit, dest, endpoint, listing, trusted, _Journal(dest / _HF_LOCAL_CACHE / JOURNAL_NAME)
    )
    records: dict[str, FileRecord] = {}
    corrupt: list[CorruptFile] = []
    with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(listing))), thread_name_prefix="aim-fetch") as pool:
        futures = [pool.submit(job.fetch_verified, name) for name in sorted(listing)]
        try:
            for future in as_completed(futures):
                try:
                    name, record = future.result()
                except CorruptFile as bad:  # the other files still finish: the next start needs only this one
                    corrupt.append(bad)
                    continue
                records[name] = record
        except BaseException:
            for future in futures:  # the running ones finish; nothing new starts
                future.cancel()
            raise
    if corrupt:
        raise min(corrupt, key=lambda bad: bad.name)
    return records


@dataclass(frozen=True)
class _FetchJob:
    """One download's fetch-and-verify of single files, run by the pool's workers."""

    hub: Any
    model: str
    commit: str
    dest: Path
    endpoint: str | None
    listing: Mapping[str, Expected]
    trusted: Mapping[str, FileRecord]
    journal: _Journal

    def fetch(self, name: str, *, again: bool) -> None:
        self.hub.hf_hub_download(
            self.model,
            name,
            revision=self.commit,
            local_dir=str(self.dest),
            endpoint=self.endpoint,
            force_download=again,
        )

    def fetch_verified(self, name: str) -> tuple[str, FileRecord]:
        """Fetch `name` and check its digest; a mismatch is fetched once more, then CorruptFile."""
        expected = self.listing[name]
        self.fetch(name, again=False)
        record, actual = _check(self.dest, name, expected, self.trusted.get(name))
        if record is None:
            print(
                f"{PREFIX} {name} does not match the Hub's digest (expected {expected.digest}, got {actual}); "
                "deleted it, fetching it again",
                flush=True,
            )
            _discard(self.dest, name)
            self.fetch(name, again=True)
            record, actual = _check(self.dest, name, expected, None)
        if record is None:
            _discard(self.dest, name)
            raise CorruptFile(name, expected.digest, actual)
        self.journal.add(name, record)
        return name, record


def _check(dest: Path, name: str, expected: Expected, known: FileRecord | None) -> tuple[FileRecord | None, str]:
    """(the marker entry, the digest found) for `dest/name` if it matches `expected`, else (None, what was found).

    A `known` entry (from an earlier marker or journal) with the Hub's digest and the file's current size and
    modification time stands for a hash: the file has not been written since it was hashed.
    """
    path = dest / name
    if known is not None and known.digest == expected.digest and known.problem(name, path) is None:
        return known, expected.digest
    try:
        size = path.stat().st_size
    except OSError:
        return None, "no file"
    if size != expected.size:  # cheap, and hashing a file of the wrong size proves nothing more
        return None, f"{size} of {expected.size} bytes"
    actual = file_digest(path, digest_kind(expected.digest))
    if actual != expected.digest:
        return None, actual
    return record_file(dest, name, actual), actual


def _discard(dest: Path, name: str) -> None:
    """Delete a bad file and huggingface_hub's record of it, so nothing takes it for a finished download."""
    for path in (dest / name, dest / _HF_LOCAL_CACHE / "huggingface" / "download" / f"{name}.metadata"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class _Journal:
    """The files verified so far by this run, rewritten (atomically) after each one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, FileRecord] = {}
        self.lock = threading.Lock()

    def add(self, name: str, record: FileRecord) -> None:
        with self.lock:
            self.records[name] = record
            files = {key: value.to_dict() for key, value in sorted(self.records.items())}
            _write_atomically(self.path, json.dumps({"format": MARKER_FORMAT, "files": files}))


def _trusted_records(dest: Path) -> dict[str, FileRecord]:
    """Entries with a digest from the marker and the journal in `dest` (journal wins); unreadable ones left out."""
    records: dict[str, FileRecord] = {}
    for source in (marker_path(dest), dest / _HF_LOCAL_CACHE / JOURNAL_NAME):
        try:
            files = json.loads(source.read_text(encoding="utf-8")).get("files")
        except (OSError, ValueError, AttributeError):
            continue
        for name, value in files.items() if isinstance(files, dict) else ():
            record = FileRecord.from_value(value)
            if isinstance(name, str) and record is not None and record.digest is not None:
                records[name] = record
    return records


def _complete(dest: Path, model: str, revision: str) -> DownloadMarker | None:
    try:
        return verify_download(dest, model, revision)
    except IncompleteDownload:
        return None


def _short_files(dest: Path, listing: Mapping[str, int]) -> list[str]:
    """The listed files that are not in `dest` with their listed size, each with what is wrong."""
    short: list[str] = []
    for name, size in sorted(listing.items()):
        try:
            found = (dest / name).stat().st_size
        except OSError:
            short.append(f"{name} (missing)")
            continue
        if found != size:
            short.append(f"{name} ({found} of {size} bytes)")
    return short


@contextlib.contextmanager
def _exclusive(dest: Path, model: str) -> Iterator[None]:
    """Hold an exclusive lock on `dest` (flock, released when the process dies); say so once if it has to wait."""
    with (dest / _HF_LOCAL_CACHE / LOCK_NAME).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{PREFIX} another download into {dest} is running; waiting for it to finish", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_partials(dest: Path) -> int:
    """Delete the temporary files of downloads that were killed (only called under the lock, so none is running)."""
    removed = 0
    for partial in (dest / _HF_LOCAL_CACHE / "huggingface" / "download").rglob("*.incomplete"):
        with contextlib.suppress(OSError):
            partial.unlink()
            removed += 1
    return removed


def _import_hub() -> Any:
    """huggingface_hub, with progress bars and telemetry off unless the environment says otherwise."""
    # Both are read once, at import.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub.utils import logging as hub_logging
    except ImportError as error:
        raise DownloadError(
            f"huggingface_hub is not installed in this image ({error}): use the AIM Engine image (vLLM ships it) "
            "or pip install huggingface-hub"
        ) from None
    if constants.HF_HUB_DISABLE_PROGRESS_BARS is not False:
        huggingface_hub.utils.disable_progress_bars()
    # Its warnings would make a failure more than one line; the outcome is reported here instead.
    hub_logging.set_verbosity_error()
    return huggingface_hub


def _explain(error: BaseException, model: str, revision: str, endpoint: str, dest: str) -> str:
    """One line for whatever huggingface_hub raised: what failed for which model, and the fix."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    has_token = bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))
    page = f"{endpoint}/{model}"
    resume = "the next start keeps the files already fetched"
    for cause in causes(error):
        if isinstance(cause, GatedRepoError):
            if has_token:
                return (
                    f"{model} is gated and the account of HF_TOKEN has no access: accept the licence at {page} "
                    "with that account, or set HF_TOKEN to a token that has access"
                )
            return f"{model} is gated: accept its licence at {page} and set HF_TOKEN (a token of that account)"
        if isinstance(cause, RevisionNotFoundError):
            return f"{model}: revision {revision!r} not found on {endpoint}: check the branch, tag or commit"
        if isinstance(cause, RepositoryNotFoundError):
            private = "" if has_token else " (a private repo also needs HF_TOKEN)"
            return f"{model} not found on {endpoint}: check the model id{private}"
        if isinstance(cause, HFValidationError):
            return f"{model!r} is not a valid Hugging Face repo id: expected 'org/name'"
        if isinstance(cause, OfflineModeIsEnabled):
            return f"{model}: HF_HUB_OFFLINE is set, so nothing can be downloaded into {dest}: unset it"
        if isinstance(cause, HfHubHTTPError) and cause.response is not None:
            status = cause.response.status_code
            if status == 401:
                fix = "set HF_TOKEN to a valid token, or unset it" if has_token else "set HF_TOKEN"
                return f"{model}: {endpoint} refused the request (HTTP 401 unauthorised): {fix}"
            if status == 429 or status >= 500:
                return f"{model}: the Hub at {endpoint} answered HTTP {status}: retry later; {resume}"
            return f"{model}: the Hub at {endpoint} answered HTTP {status} ({first_line(cause)}): check the model id"
        if isinstance(cause, httpx2.ProxyError):
            return f"{model}: the proxy refused the connection to {endpoint} ({first_line(cause)}): check HTTPS_PROXY"
        if isinstance(cause, httpx2.TransportError | httpx2.InvalidURL | ConnectionError | TimeoutError):
            return (
                f"{model}: cannot reach the Hub at {endpoint} ({type(cause).__name__}: {first_line(cause)}): "
                f"check the network, proxy and HF_ENDPOINT; {resume}"
            )
        if isinstance(cause, OSError) and cause.errno is not None:
            return f"{model}: writing {dest} failed ({cause.strerror or cause}): check the volume's space and access"
    return f"{model}: download failed ({type(error).__name__}: {first_line(error)}); {resume}"


# ---------------------------------------------------------------------------------------------------------------
# command line


USAGE = "python3 -m aim_infra.pod.download --model ORG/NAME --dest DIR"


def main(argv: Sequence[str] | None = None) -> int:
    """Download; 0 with one line on stdout, 1 (2 for bad arguments, 130 interrupted) with one line on stderr."""
    parser = OneLineParser(
        prog="python3 -m aim_infra.pod.download",
        description="Download the files vLLM needs from a Hugging Face model repo into a directory, once.",
    )
    parser.add_argument("--model", default=os.environ.get("AIM_MODEL"), help="ORG/NAME (default: $AIM_MODEL)")
    parser.add_argument(
        "--revision",
        default=os.environ.get("AIM_MODEL_REVISION") or None,
        help="branch, tag or commit (default: $AIM_MODEL_REVISION, else main)",
    )
    parser.add_argument("--dest", default=os.environ.get("AIM_MODEL_DIR"), help="target directory ($AIM_MODEL_DIR)")

    def body() -> str:
        args = parser.parse_args(argv)
        if not args.model:
            raise UsageError("--model is required (or set AIM_MODEL)")
        if not args.dest:
            raise UsageError("--dest is required (or set AIM_MODEL_DIR)")
        outcome = download(args.model, Path(args.dest), args.revision or DEFAULT_REVISION)
        marker = outcome.marker
        what = f"{marker.model}@{marker.revision} (commit {(marker.commit or 'unknown')[:12]})"
        size = f"{marker.file_count} files, {format_bytes(marker.total_bytes)}"
        if outcome.skipped:
            return f"{PREFIX} {what} is already complete in {args.dest} ({size}); skipping the download"
        return f"{PREFIX} {what} complete in {args.dest}: {size} in {outcome.seconds:.0f} s"

    # Never a traceback in the download Job's log: one line, and what an interrupted start leaves for the next one.
    return run_program(
        PREFIX,
        body,
        usage_hint=f"usage: {USAGE}",
        interrupted="interrupted; the next start keeps the files already fetched",
    )


if __name__ == "__main__":
    raise SystemExit(main())
