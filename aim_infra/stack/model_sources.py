"""Where model facts come from: a local model folder, the bundled catalogue, or the Hugging Face Hub (in that order)."""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aim_infra.common.errors import AimError
from aim_infra.common.hub_support import causes, first_line, hub_offline
from aim_infra.planning.model_config import WeightTotals, estimate_parameters, profile_from_config
from aim_infra.planning.model_profile import ModelCatalogue, ModelProfile, load_model_catalogue

__all__ = [
    "WeightTotals",
    "estimate_parameters",
    "fetch_adapter_config",
    "fetch_hub_profile",
    "profile_from_config",
    "read_local_model",
    "read_safetensors_header",
    "resolve_model",
]

CONFIG_FILE = "config.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

#: A safetensors header larger than this is not a header (huggingface_hub refuses 25 MB; leave some room).
_MAX_HEADER_BYTES = 100_000_000


# --------------------------------------------------------------------------------------------------------------------
# Local folders


#: Size limits of model metadata: real config.json files are a few KiB, real indexes well under a MiB (a DeepSeek-V3
#: index with 90k tensors is ~9 MiB). Anything larger is not metadata, and is never read whole.
MAX_JSON_BYTES = {CONFIG_FILE: 2**20, INDEX_FILE: 16 * 2**20}


def _read_json(path: Path, what: str, fix: str) -> Any:
    limit = MAX_JSON_BYTES.get(what, 2**20)
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
        if len(raw) > limit:
            raise AimError(f"{path}: {what} is larger than {limit // 2**20} MiB, too large for model metadata; {fix}")
        return json.loads(raw.decode("utf-8"))
    except OSError as error:
        raise AimError(f"{path}: cannot read {what} ({error.strerror or error}); {fix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AimError(f"{path}: {what} is not valid JSON ({error}); {fix}") from None
    except (ValueError, RecursionError) as error:  # an integer beyond int()'s digit limit, or nesting beyond the stack
        raise AimError(f"{path}: {what} cannot be read ({' '.join(str(error).split())[:120]}); {fix}") from None


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: 8-byte little-endian length, then JSON. Tensor data is never read."""
    fix = "re-download or re-copy this file (it is not a complete safetensors file)"
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise AimError(f"{path}: too short for a safetensors file; {fix}")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(_MAX_HEADER_BYTES, size - 8):
                raise AimError(
                    f"{path}: safetensors header length {length} does not fit the file ({size} bytes); {fix}"
                )
            raw = handle.read(length)
    except OSError as error:
        raise AimError(f"{path}: cannot read ({error.strerror or error}); check the file's permissions") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AimError(f"{path}: safetensors header is not JSON; {fix}") from None
    if not isinstance(header, dict):
        raise AimError(f"{path}: safetensors header is not a JSON object; {fix}")
    return header


def _header_totals(path: Path) -> tuple[dict[str, int], int]:
    """Elements per dtype and data bytes of one safetensors file, from its header."""
    counts: dict[str, int] = {}
    data_end = 0
    for name, tensor in read_safetensors_header(path).items():
        if name == "__metadata__":
            continue
        try:
            dtype = str(tensor["dtype"])
            elements = math.prod(int(dim) for dim in tensor["shape"])
            end = int(tensor["data_offsets"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise AimError(f"{path}: tensor {name!r} has no valid dtype/shape/data_offsets in the header") from None
        counts[dtype] = counts.get(dtype, 0) + elements
        data_end = max(data_end, end)
    return counts, data_end


def _sum_headers(files: Iterable[Path]) -> tuple[dict[str, int], int]:
    counts: dict[str, int] = {}
    total = 0
    for file in files:
        file_counts, file_bytes = _header_totals(file)
        for dtype, elements in file_counts.items():
            counts[dtype] = counts.get(dtype, 0) + elements
        total += file_bytes
    return counts, total


def _int_or_none(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _local_weights(folder: Path) -> tuple[WeightTotals | None, str]:
    """Weight totals of a model folder and a note on where they came from."""
    index_file = folder / INDEX_FILE
    if index_file.is_file():
        index = _read_json(index_file, INDEX_FILE, f"re-copy {INDEX_FILE} from the model repository")
        if not isinstance(index, dict):
            raise AimError(f"{index_file}: not a JSON object; re-copy {INDEX_FILE} from the model repository")
        weight_map = index.get("weight_map")
        shards = sorted({str(name) for name in weight_map.values()}) if isinstance(weight_map, dict) else []
        metadata = index.get("metadata")
        total_size = _int_or_none(metadata.get("total_size")) if isinstance(metadata, dict) else None
        if shards and all((folder / shard).is_file() for shard in shards):
            counts, header_bytes = _sum_headers(folder / shard for shard in shards)
            return WeightTotals(params_by_dtype=counts, total_bytes=total_size or header_bytes), (
                f" ({INDEX_FILE} + {len(shards)} shard headers)"
            )
        if total_size:
            return WeightTotals(total_bytes=total_size), f" ({INDEX_FILE} total_size; shards not present)"
        return None, f" ({INDEX_FILE} without total_size and shards not present)"
    if (folder / SINGLE_FILE).is_file():
        files = [folder / SINGLE_FILE]
    else:
        files = sorted(folder.glob("*.safetensors"))
        regular = [file for file in files if not file.name.startswith("consolidated")]
        files = regular or files  # Mistral repos ship consolidated*.safetensors next to the Transformers shards
    if files:
        counts, total = _sum_headers(files)
        return WeightTotals(params_by_dtype=counts, total_bytes=total), f" ({len(files)} safetensors headers)"
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        return None, " (no safetensors, only PyTorch .bin files: sizes estimated)"
    raise AimError(
        f"{folder}: no model weights ({INDEX_FILE} or *.safetensors); copy the model's safetensors files "
        "next to its config.json, or name a Hub model id instead of a folder"
    )


def read_local_model(path: Path) -> ModelProfile:
    """Profile of a model folder on disk (air-gapped users): config.json plus safetensors headers or index."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise AimError(f"{folder}: not a directory; pass the folder that holds the model's config.json and weights")
    folder = folder.resolve()
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        hint = (
            " (params.json is Mistral's native format; add the Transformers-format config.json)"
            if (folder / "params.json").is_file()
            else ""
        )
        raise AimError(
            f"{folder}: no config.json{hint}; pass the folder that holds the model's config.json and *.safetensors"
        )
    config = _read_json(config_file, CONFIG_FILE, "re-copy config.json from the model repository")
    if not isinstance(config, dict):
        raise AimError(f"{config_file}: not a JSON object; re-copy config.json from the model repository")
    weights, note = _local_weights(folder)
    return profile_from_config(config, weights, model_id=str(folder), provenance=f"local directory {folder}{note}")


# --------------------------------------------------------------------------------------------------------------------
# Hugging Face Hub

# Sizing a deployment is no reason to send usage telemetry or fetch the Hub's agent registry (an extra request
# that air-gapped users would see fail). huggingface_hub reads this once, at import: set it before the lazy imports.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@dataclass(frozen=True)
class _Asked:
    """What was asked of the Hub, for the error lines: the model, revision, endpoint and which fixes to suggest."""

    model_id: str
    revision: str | None
    endpoint: str
    offline: bool
    local: bool
    #: The file asked for: config.json of a model, adapter_config.json of a LoRA adapter.
    file: str = CONFIG_FILE

    @property
    def model(self) -> str:
        kind = "LoRA adapter" if self.file == ADAPTER_CONFIG_FILE else "model"
        return f"{kind} {self.model_id!r}"

    @property
    def repo_url(self) -> str:
        return f"{self.endpoint}/{self.model_id}"

    @property
    def local_hint(self) -> str:
        if self.file == ADAPTER_CONFIG_FILE:
            return "or remove the adapter from loraModules"
        return (
            "or pass a local model directory"
            if self.local
            else "or use a bundled model (`python -m aim_infra recipes`)"
        )

    @property
    def has_token(self) -> bool:
        return bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))


def _hub_error(
    error: BaseException,
    model_id: str,
    revision: str | None,
    endpoint: str,
    offline: bool,
    local: bool = True,
    file: str = CONFIG_FILE,
) -> AimError:
    """One actionable line for whatever huggingface_hub raised. `local`: the caller accepts a local model directory
    (the CLI does; aim:model takes Hub ids only, so the stack's lines never suggest one)."""
    asked = _Asked(model_id, revision, endpoint, offline, local, file)
    found = _repo_error(error, asked)
    if found is not None:
        return found
    for cause in causes(error):
        found = _transport_error(cause, asked)
        if found is not None:
            return found
    if isinstance(error, PermissionError):
        return AimError(
            f"{asked.model}: cannot write the Hugging Face cache ({first_line(error)}): "
            "set HF_HOME to a writable folder"
        )
    return AimError(
        f"{asked.model}: fetching {asked.file} from {endpoint} failed ({type(error).__name__}: "
        f"{first_line(error)}); {asked.local_hint}"
    )


def _repo_error(error: BaseException, asked: _Asked) -> AimError | None:
    """The Hub answered about the repo itself: gated, no such revision or repo, no config.json, a bad id, offline."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    model, endpoint, local_hint = asked.model, asked.endpoint, asked.local_hint
    if isinstance(error, GatedRepoError):
        if asked.has_token:
            return AimError(
                f"{model} is a gated repo and the account of HF_TOKEN has no access: accept the licence at "
                f"{asked.repo_url} with that account (or set HF_TOKEN to a token that has access)"
            )
        return AimError(
            f"{model} is a gated repo: accept its licence at {asked.repo_url} and set HF_TOKEN to a token of that "
            "account"
        )
    if isinstance(error, RevisionNotFoundError):
        return AimError(
            f"{model}: revision {asked.revision or 'main'!r} not found on {endpoint}: check the revision (branch, tag "
            "or commit) or omit it"
        )
    if isinstance(error, RepositoryNotFoundError):
        private = "" if asked.has_token else " (a private repo also needs HF_TOKEN)"
        return AimError(f"{model} not found on {endpoint}: check the model id{private} {local_hint}")
    if isinstance(error, RemoteEntryNotFoundError) and asked.file == ADAPTER_CONFIG_FILE:
        return AimError(
            f"{model} has no {asked.file} on {endpoint} (revision {asked.revision or 'main'}): it is not a PEFT "
            "LoRA adapter; give the adapter's repository, not its base model's"
        )
    if isinstance(error, RemoteEntryNotFoundError):
        return AimError(
            f"{model} has no config.json on {endpoint} (revision {asked.revision or 'main'}): it is not a "
            f"Transformers-format model; use its Transformers variant, {local_hint}"
        )
    if isinstance(error, HFValidationError):
        return AimError(
            f"{model} is not a local directory, not in the bundled catalogue and not a valid Hub repo id "
            "('org/name'): check the spelling or the path"
        )
    if asked.offline and isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        if asked.file == ADAPTER_CONFIG_FILE:
            return AimError(
                f"{model}: its {asked.file} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
                "fetching it (its rank and base model are read at preview): unset HF_HUB_OFFLINE, "
                "or fetch it once with `hf download <adapter> adapter_config.json`"
            )
        return AimError(
            f"{model} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it: "
            f"{'pass a local model directory, ' if asked.local else ''}use a bundled model, or unset HF_HUB_OFFLINE"
        )
    return None


def _transport_error(cause: BaseException, asked: _Asked) -> AimError | None:
    """One cause in the chain was the network, a proxy, an HTTP status or an endpoint that is no Hub."""
    import httpx2
    from huggingface_hub.errors import FileMetadataError, HfHubHTTPError, OfflineModeIsEnabled

    model, endpoint, local_hint = asked.model, asked.endpoint, asked.local_hint
    if isinstance(cause, HfHubHTTPError) and cause.response is not None:
        status = cause.response.status_code
        if status == 401:
            fix = "set HF_TOKEN to a valid token, or unset it" if asked.has_token else "set HF_TOKEN"
            return AimError(f"{model}: {endpoint} refused the request (HTTP 401 unauthorised): {fix}")
        if status >= 500:
            return AimError(
                f"{model}: the Hub at {endpoint} answered HTTP {status} and {asked.file} is not cached: "
                f"retry later, {local_hint}"
            )
        return AimError(
            f"{model}: the Hub at {endpoint} answered HTTP {status} ({first_line(cause)}): "
            f"check the model id and HF_TOKEN, {local_hint}"
        )
    if isinstance(cause, (httpx2.ProxyError,)):
        return AimError(
            f"{model}: the proxy refused the connection to {endpoint} ({first_line(cause)}): "
            f"check HTTPS_PROXY/NO_PROXY, {local_hint}"
        )
    if isinstance(cause, (httpx2.TransportError, httpx2.InvalidURL, OfflineModeIsEnabled, ConnectionError)):
        return AimError(
            f"{model}: cannot reach the Hugging Face Hub at {endpoint} ({first_line(cause)}) and {asked.file} is "
            f"not cached: check the network, the proxy and HF_ENDPOINT, {local_hint}"
        )
    if isinstance(cause, FileMetadataError):
        return AimError(
            f"{model}: {endpoint} does not answer like a Hugging Face Hub (no X-Repo-Commit/ETag headers): "
            f"check HF_ENDPOINT and any proxy, {local_hint}"
        )
    return None


def _repo_totals(metadata: Any) -> WeightTotals:
    """WeightTotals from huggingface_hub's SafetensorsRepoMetadata."""
    counts: dict[str, int] = {}
    header_bytes = 0
    for file in metadata.files_metadata.values():
        for dtype, elements in file.parameter_count.items():
            counts[str(dtype)] = counts.get(str(dtype), 0) + int(elements)
        header_bytes += max((int(tensor.data_offsets[1]) for tensor in file.tensors.values()), default=0)
    index_total = _int_or_none((metadata.metadata or {}).get("total_size")) if metadata.sharded else None
    return WeightTotals(params_by_dtype=counts, total_bytes=index_total or header_bytes)


def _cached_index_totals(model_id: str, revision: str | None) -> WeightTotals | None:
    """total_size from a model.safetensors.index.json already in the local Hub cache, if any."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model_id, INDEX_FILE, revision=revision)
    if not isinstance(cached, str):
        return None
    try:
        index = _read_json(Path(cached), INDEX_FILE, "delete it from the Hugging Face cache")
    except AimError:
        return None
    metadata = index.get("metadata") if isinstance(index, dict) else None
    total = _int_or_none(metadata.get("total_size")) if isinstance(metadata, dict) else None
    return WeightTotals(total_bytes=total) if total else None


def _hub_target() -> tuple[str | None, str, bool]:
    """(HF_ENDPOINT or None for the client's default, the endpoint as error lines show it, whether HF_HUB_OFFLINE
    is set), read on every call: huggingface_hub freezes both variables at import."""
    from huggingface_hub import constants

    endpoint = (os.environ.get("HF_ENDPOINT") or "").strip().rstrip("/")
    return endpoint or None, endpoint or constants.ENDPOINT, hub_offline()


def fetch_hub_profile(model_id: str, revision: str | None = None, *, local: bool = True) -> ModelProfile:
    """Profile of a Hub model through huggingface_hub: config.json (cached) plus the safetensors headers.

    HF_TOKEN, HF_HOME and the cache are handled by huggingface_hub; HF_ENDPOINT and HF_HUB_OFFLINE are read on every
    call (huggingface_hub freezes both at import). Offline, a cached config.json is enough: sizes are then estimated.
    """
    import httpx2
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        NotASafetensorsRepoError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
        SafetensorsParsingError,
    )

    endpoint, shown, offline = _hub_target()
    try:
        config_path = hf_hub_download(
            model_id, CONFIG_FILE, revision=revision, endpoint=endpoint, local_files_only=offline
        )
    except Exception as error:  # every failure of the client becomes one line naming the model and the fix
        raise _hub_error(error, model_id, revision, shown, offline, local) from None
    config_file = Path(str(config_path))
    commit = config_file.parent.name
    config = _read_json(config_file, CONFIG_FILE, "delete it from the Hugging Face cache and retry")

    weights: WeightTotals | None = None
    gated = False
    if offline:
        weights = _cached_index_totals(model_id, revision)
        note = "offline (HF_HUB_OFFLINE): safetensors metadata not fetched" + (
            ", bytes from the cached index" if weights else ""
        )
    else:
        api = HfApi(endpoint=endpoint)
        note = "config.json + safetensors headers"
        try:
            weights = _repo_totals(api.get_safetensors_metadata(model_id, revision=revision))
        except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError) as error:
            raise _hub_error(error, model_id, revision, shown, offline, local) from None
        except NotASafetensorsRepoError:
            note = "no safetensors weights on the Hub"
        except (HfHubHTTPError, httpx2.HTTPError, OfflineModeIsEnabled, SafetensorsParsingError, OSError) as error:
            weights = _cached_index_totals(model_id, revision)
            note = f"safetensors metadata unavailable ({type(error).__name__}: {first_line(error)})"
        try:
            gated = bool(api.model_info(model_id, revision=revision, expand=["gated"]).gated)
        except (HfHubHTTPError, httpx2.HTTPError, OSError, ValueError, KeyError, TypeError):
            gated = False  # best effort: the licence flag only decides whether deployments need HF_TOKEN
    provenance = f"Hugging Face Hub {shown}/{model_id} (revision {revision or 'main'}, commit {commit}): {note}"
    return profile_from_config(config, weights, model_id=model_id, provenance=provenance, gated=gated)


def fetch_adapter_config(adapter_id: str, revision: str | None = None) -> tuple[Any, str]:
    """A LoRA adapter's adapter_config.json from the Hub (or the local Hub cache when HF_HUB_OFFLINE is set): the
    parsed JSON, unchecked (planning.lora reads it), and the commit it came from. Every failure is one line."""
    from huggingface_hub import hf_hub_download

    endpoint, shown, offline = _hub_target()
    try:
        path = hf_hub_download(
            adapter_id,
            ADAPTER_CONFIG_FILE,
            revision=revision,
            endpoint=endpoint,
            local_files_only=offline,
        )
    except Exception as error:  # every failure of the client becomes one line naming the adapter and the fix
        raise _hub_error(error, adapter_id, revision, shown, offline, local=False, file=ADAPTER_CONFIG_FILE) from None
    config_file = Path(str(path))
    return _read_json(config_file, ADAPTER_CONFIG_FILE, "delete it from the Hugging Face cache and retry"), (
        config_file.parent.name
    )


# --------------------------------------------------------------------------------------------------------------------
# Resolution order


def _exists(path: Path, kind: str) -> bool:
    """Whether `path` is a directory (or file); a name the OS cannot even look up (too long, bad bytes) is neither."""
    try:
        return path.is_dir() if kind == "dir" else path.is_file()
    except (OSError, ValueError):
        return False


def resolve_model(
    model: str, revision: str | None = None, *, catalogue: ModelCatalogue | None = None, local: bool = True
) -> ModelProfile:
    """A model by local directory, bundled catalogue id/alias (case-insensitive), or Hub repo id, in that order.

    A bundled entry wins even when a revision is given: its numbers describe the architecture, which revisions share.
    `local=False` (the stack: its pods download from the Hub) never reads a folder of the machine running it.
    """
    name = model.strip()
    if not name:
        raise AimError("model: empty name; give a Hugging Face repo id (org/name), a bundled model or a local folder")
    folder = Path(name).expanduser()
    if local and _exists(folder, "dir"):
        return read_local_model(folder)
    found = (catalogue if catalogue is not None else load_model_catalogue()).find(name)
    if found is not None:
        return found
    if local and (name.startswith(("/", "./", "../", "~", "\\")) or _exists(folder, "file")):
        raise AimError(
            f"{name}: no such model directory; pass the folder that holds config.json and the safetensors weights"
        )
    return fetch_hub_profile(name, revision, local=local)
