"""Model download for the init container: fetch only what vLLM loads into one directory, once, resuming after a stop.

    python3 -m aim_infra.download --model ORG/NAME [--revision REV] --dest DIR

Files come from the Hub through `huggingface_hub.snapshot_download(local_dir=DIR)`. What survives an interrupted
start is every finished file: the next start fetches only the rest. Within one run a dropped connection resumes where
it stopped (HTTP Range); a file cut off by a killed process starts over, because huggingface_hub (>= 1.x) writes each
download to a process-unique temporary file. Those leftovers are deleted at the next start, under an exclusive lock
on DIR that also makes a second pod sharing the volume wait for the first one instead of downloading twice.

When every file is on disk with the size the Hub lists, `DIR/.aim-download-complete` records what was fetched; the
next start with the same model and revision finds that marker, checks the files it lists and skips the Hub entirely.
The serving container's preflight (`aim_infra.preflight`) reads the same marker through `verify_download`.

This module imports only the standard library at the top: huggingface_hub is imported when a download starts, so
the preflight can use the marker functions in an image without it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from .hub_support import causes, first_line, hub_offline

#: The marker a finished download leaves in the model directory (JSON, see DownloadMarker).
MARKER_NAME = ".aim-download-complete"
MARKER_FORMAT = 1

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


class IncompleteDownload(Exception):
    """The model directory does not hold a complete download; the message is one line saying what is missing."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class DownloadError(Exception):
    """A download that cannot go on; the message is one line naming the model and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class DownloadMarker:
    """What `DIR/.aim-download-complete` records: the model, the revision asked for and what was fetched."""

    model: str
    revision: str
    commit: str | None
    files: dict[str, int] = field(default_factory=dict)  # path relative to DIR -> size in bytes
    completed_at: str = ""

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

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
                "files": dict(sorted(self.files.items())),
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
        valid_files = isinstance(files, dict) and all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in files.items()
        )
        if not isinstance(model, str) or not valid_files:
            raise IncompleteDownload(f"{where} lacks model or files: not written by aim_infra.download; rerun it")
        commit = data.get("commit")
        return cls(
            model=model,
            revision=str(data.get("revision") or DEFAULT_REVISION),
            commit=str(commit) if commit else None,
            files=dict(files),
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
    """The marker of a complete download in `dest`, once every file it lists is there with its recorded size.

    With `model` (and `revision`), the marker must be for that model (and revision). Raises IncompleteDownload with
    one line otherwise.
    """
    dest = Path(dest)
    marker = read_marker(dest)
    if marker is None:
        raise IncompleteDownload(
            f"{dest} has no {MARKER_NAME}: the model download has not completed (run python3 -m aim_infra.download)"
        )
    if model is not None and marker.model != model:
        raise IncompleteDownload(f"{dest} holds {marker.model}, not {model}: download {model} into an empty directory")
    if revision is not None and marker.revision != revision:
        raise IncompleteDownload(
            f"{dest} holds {marker.model} at revision {marker.revision}, not {revision}: rerun the model download"
        )
    if not marker.files:
        raise IncompleteDownload(f"{marker_path(dest)} lists no files: rerun the model download")
    missing: list[str] = []
    for name, size in sorted(marker.files.items()):
        try:
            found = (dest / name).stat().st_size
        except OSError:
            missing.append(f"{name} (missing)")
            continue
        if found != size:
            missing.append(f"{name} ({found} of {size} bytes)")
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise IncompleteDownload(
            f"{dest}: {len(missing)} of the {marker.file_count} files of {marker.model} are gone or changed since "
            f"the download: {shown}; rerun the model download"
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


def write_marker(
    dest: Path | str, model: str, revision: str, commit: str | None, files: Mapping[str, int]
) -> DownloadMarker:
    """Record a complete download in `dest` (written to a temporary file first, so a reader never sees half of it)."""
    marker = DownloadMarker(
        model=model,
        revision=revision,
        commit=commit,
        files=dict(files),
        completed_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    path = marker_path(dest)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(marker.to_json() + "\n", encoding="utf-8")
    temporary.replace(path)
    return marker


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


def download(model: str, dest: Path | str, revision: str | None = None) -> Outcome:
    """Make `dest` a complete copy of the files vLLM needs from `model` at `revision`; skip when the marker says so.

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
        # A marker of another model or revision must not survive a download that might stop half-way.
        marker_path(dest).unlink(missing_ok=True)
        _remove_partials(dest)

        api = hub.HfApi(endpoint=endpoint)
        try:
            # Resolve the revision and list the files first: snapshot_download quietly returns a non-empty local_dir
            # when the Hub cannot be asked, which would make a half-finished directory look complete.
            info = api.model_info(model, revision=revision)
            commit = info.sha
            listing = {
                entry.path: int(entry.size)
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
        present = _short_files(dest, listing)
        here = len(listing) - len(present)
        print(
            f"{PREFIX} fetching {model}@{revision} (commit {str(commit)[:12]}) into {dest}: "
            f"{len(listing)} files, {format_bytes(sum(listing.values()))}"
            + (f"; {here} already here from an earlier start" if here else ""),
            flush=True,
        )
        try:
            hub.snapshot_download(
                model,
                revision=commit,
                local_dir=str(dest),
                allow_patterns=list(ALLOW_PATTERNS),
                endpoint=endpoint,
            )
        except Exception as error:
            raise DownloadError(_explain(error, model, revision, shown_endpoint, str(dest))) from None
        short = _short_files(dest, listing)
        if short:
            raise DownloadError(
                f"{model}: after the download {len(short)} files are missing or short in {dest} "
                f"({', '.join(short[:3])}): rerun the download"
            )
        marker = write_marker(dest, model, revision, commit, listing)
    return Outcome(marker, skipped=False, seconds=time.monotonic() - started)


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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{PREFIX} {message} (usage: python3 -m aim_infra.download --model ORG/NAME --dest DIR)", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(
        prog="python3 -m aim_infra.download",
        description="Download the files vLLM needs from a Hugging Face model repo into a directory, once.",
    )
    parser.add_argument("--model", default=os.environ.get("AIM_MODEL"), help="ORG/NAME (default: $AIM_MODEL)")
    parser.add_argument(
        "--revision",
        default=os.environ.get("AIM_MODEL_REVISION") or None,
        help="branch, tag or commit (default: $AIM_MODEL_REVISION, else main)",
    )
    parser.add_argument("--dest", default=os.environ.get("AIM_MODEL_DIR"), help="target directory ($AIM_MODEL_DIR)")
    try:
        args = parser.parse_args(argv)
        if not args.model:
            parser.error("--model is required (or set AIM_MODEL)")
        if not args.dest:
            parser.error("--dest is required (or set AIM_MODEL_DIR)")
    except SystemExit as exit:  # --help, or a usage error already printed as one line
        return int(exit.code or 0)
    revision = args.revision or DEFAULT_REVISION
    try:
        outcome = download(args.model, Path(args.dest), revision)
    except DownloadError as error:
        print(f"{PREFIX} {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PREFIX} {args.model}: interrupted; the next start keeps the files already fetched", file=sys.stderr)
        return 130
    except Exception as error:  # never a traceback in the init container's log
        print(f"{PREFIX} {args.model}: unexpected {type(error).__name__}: {first_line(error)}", file=sys.stderr)
        return 1
    marker = outcome.marker
    what = f"{marker.model}@{marker.revision} (commit {(marker.commit or 'unknown')[:12]})"
    size = f"{marker.file_count} files, {format_bytes(marker.total_bytes)}"
    if outcome.skipped:
        print(f"{PREFIX} {what} is already complete in {args.dest} ({size}); skipping the download")
    else:
        print(f"{PREFIX} {what} complete in {args.dest}: {size} in {outcome.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
