"""Preflight of the serving container: the GPUs and model files it sees match its recipe, before vLLM starts.

    python3 -m aim_infra.pod.preflight          (run by /usr/local/bin/aim-entrypoint; AIM_SKIP_PREFLIGHT=1 skips it)

Environment (all optional; a check whose variables are unset is skipped and the summary says so):

- `AIM_GPU`: the recipe's GPU type, a name from recipes/gpus.yaml (e.g. MI300X); `AIM_GPU_COUNT`: how many the
  recipe uses. The GPUs are read from `amd-smi static --json`, or `rocm-smi --showproductname --showid --showmeminfo
  vram --json` when amd-smi is absent; `AIM_SMI_COMMAND` replaces the tool (tests), `AIM_SMI_TIMEOUT` its time limit
  (seconds, default 60). Both tools read sysfs, which a container shares with the host, so they can list GPUs the
  pod was not given: the `/dev/dri/renderD*` nodes the device plugin mounted (`AIM_DRI_DIR`, default /dev/dri) are
  what HIP can open, and the count is the smaller of the two.
- `AIM_MODEL_DIR`: the model directory vLLM serves: config.json, every shard model.safetensors.index.json names (or
  at least one *.safetensors without an index) and the marker of a finished `aim_infra.pod.download`. `AIM_MODEL` and
  `AIM_MODEL_REVISION` additionally require the marker to be for that model and revision.
- `AIM_LORA_MODULES`: the LoRA adapters vLLM loads at start (`--lora-modules`), a JSON list of
  `{"name", "path", "model", "revision"}`: each path holds adapter_config.json, its *.safetensors weights and the
  marker of a finished download of that adapter and revision.

Exit 0 with one summary line on stdout; exit 1 with one line on stderr starting `aim preflight:` that names what the
recipe expects and what was found, so `kubectl logs` explains a pod that did not start.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aim_infra.common.cli import run_program
from aim_infra.common.errors import AimError
from aim_infra.common.gpu_tools import GpuToolError, read_gpu_tool
from aim_infra.pod.download import IncompleteDownload, format_bytes, verify_download

if TYPE_CHECKING:  # imported when a check runs: pydantic may be missing, which require_packages reports
    from aim_infra.planning.hardware import GpuSpec

PREFIX = "aim preflight:"
DEFAULT_DRI_DIR = "/dev/dri"

#: A device whose memory differs from its catalogue entry by more than this is a partition of it, not the GPU.
_MEMORY_TOLERANCE_GIB = 1.0


class PreflightFailure(AimError):
    """A mismatch between the recipe and the container; the message is the one line `kubectl logs` shows."""


@dataclass(frozen=True)
class SeenGpus:
    """What the container sees: the GPU type per device (a GpuSpec) and how many devices, with where that came from."""

    spec: GpuSpec
    smi_count: int
    render_nodes: int | None
    tool: str

    @property
    def count(self) -> int:
        """Devices vLLM can use: those the tool lists, but no more than the render nodes the container was given."""
        if self.render_nodes:
            return min(self.smi_count, self.render_nodes)
        return self.smi_count

    def unit(self, partitioned: bool) -> str:
        if not partitioned:
            return str(self.spec.name)
        memory = self.spec.memory_gib
        shown = f"{memory:.0f}" if abs(memory - round(memory)) < 0.05 else f"{memory:.1f}"
        return f"{self.spec.name} partitions of {shown} GiB"

    def describe(self, partitioned: bool) -> str:
        unit = self.unit(partitioned)
        text = f"{self.tool} shows {self.smi_count} × {unit}"
        if self.render_nodes is not None and self.render_nodes != self.smi_count:
            text += f" and the container has {self.render_nodes} /dev/dri/renderD* devices"
        return text


# ---------------------------------------------------------------------------------------------------------------
# dependencies


def require_packages() -> None:
    """The recipe engine's packages (pydantic>=2, PyYAML) come from the base image: one line if they do not."""
    problems: list[str] = []
    try:
        import pydantic

        version = str(getattr(pydantic, "VERSION", getattr(pydantic, "__version__", "0")))
        if int(version.split(".")[0]) < 2:
            problems.append(f"pydantic>=2 (found {version})")
    except ImportError:
        problems.append("pydantic>=2 (not installed)")
    except ValueError:
        problems.append("pydantic>=2 (unreadable version)")
    try:
        import yaml  # noqa: F401
    except ImportError:
        problems.append("PyYAML (not installed)")
    if problems:
        raise PreflightFailure(
            f"the image lacks {' and '.join(problems)} for {sys.executable}: build the AIM image on a vLLM base image "
            "(they ship both) or install them"
        )


# ---------------------------------------------------------------------------------------------------------------
# GPUs


def expected_gpus(env: Mapping[str, str]) -> tuple[GpuSpec | None, int | None]:
    """The recipe's GPU type (a catalogue GpuSpec) and count from AIM_GPU / AIM_GPU_COUNT; None where unset."""
    from aim_infra.planning.hardware import load_gpus

    spec = None
    name = env.get("AIM_GPU", "").strip()
    if name:
        try:
            spec = load_gpus().get(name)
        except AimError as error:
            raise PreflightFailure(f"AIM_GPU: {error}") from None
    count = None
    raw = env.get("AIM_GPU_COUNT", "").strip()
    if raw:
        try:
            count = int(raw)
        except ValueError:
            count = 0
        if count < 1:
            raise PreflightFailure(f"AIM_GPU_COUNT={raw!r} is not a whole number ≥ 1")
    return spec, count


def render_nodes(dri_dir: str) -> int | None:
    """How many /dev/dri/renderD* nodes the container has; None when the directory does not exist."""
    directory = Path(dri_dir)
    if not directory.is_dir():
        return None
    return sum(1 for entry in directory.iterdir() if re.fullmatch(r"renderD\d+", entry.name))


def seen_gpus(env: Mapping[str, str]) -> SeenGpus:
    from aim_infra.planning.detect import gpus_from_tool_output

    try:
        output, _, argv = read_gpu_tool(env, where="in the container")
    except GpuToolError as error:
        raise PreflightFailure(str(error)) from None
    try:
        spec, count, tool = gpus_from_tool_output(output)
    except AimError as error:
        raise PreflightFailure(f"cannot read the GPUs from {' '.join(argv)}: {error}") from None
    nodes = render_nodes(env.get("AIM_DRI_DIR") or DEFAULT_DRI_DIR)
    return SeenGpus(spec=spec, smi_count=count, render_nodes=nodes, tool=tool)


def check_gpus(env: Mapping[str, str]) -> str:
    """Compare AIM_GPU × AIM_GPU_COUNT with what the container sees; the summary, or PreflightFailure."""
    from aim_infra.planning.hardware import load_gpus

    expected, count = expected_gpus(env)
    if expected is None and count is None:
        return "GPU check skipped (AIM_GPU and AIM_GPU_COUNT unset)"
    seen = seen_gpus(env)
    full_memory = load_gpus().get(seen.spec.name).memory_gib
    partitioned = abs(seen.spec.memory_gib - full_memory) > _MEMORY_TOLERANCE_GIB
    if expected is None:
        wants = f"{count} GPUs"
    else:
        wants = f"{count} × {expected.name}" if count is not None else f"{expected.name} GPUs"
    type_ok = expected is None or (seen.spec.name == expected.name and not partitioned)
    count_ok = count is None or seen.count == count
    if not (type_ok and count_ok):
        raise PreflightFailure(f"recipe expects {wants}, {seen.describe(partitioned)}")
    nodes = f", {seen.render_nodes} render nodes" if seen.render_nodes is not None else ""
    return f"{seen.count} × {seen.unit(partitioned)} as the recipe expects ({seen.tool}{nodes})"


# ---------------------------------------------------------------------------------------------------------------
# model files


def check_model(env: Mapping[str, str]) -> str:
    """The model directory is complete: config.json, the shards, the download marker. The summary, or a failure."""
    raw = env.get("AIM_MODEL_DIR", "").strip()
    if not raw:
        return "model check skipped (AIM_MODEL_DIR unset)"
    directory = Path(raw)
    if not directory.is_dir():
        raise PreflightFailure(f"model directory {directory} does not exist: is the model cache volume mounted there?")
    if not (directory / "config.json").is_file():
        raise PreflightFailure(f"model directory {directory} has no config.json: the model download is incomplete")
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = _index_shards(index)
        missing = sorted(shard for shard in shards if not (directory / shard).is_file())
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise PreflightFailure(
                f"model in {directory} is incomplete: {index.name} names {len(shards)} shards, {len(missing)} are "
                f"missing ({shown}); the model download did not finish"
            )
        weights = f"{len(shards)} shards"
    else:
        found = sorted(directory.glob("*.safetensors"))
        if not found:
            raise PreflightFailure(
                f"model in {directory} has no *.safetensors weights (and no model.safetensors.index.json): "
                "the model download did not finish"
            )
        weights = f"{len(found)} safetensors file{'s' if len(found) > 1 else ''}"
    model = env.get("AIM_MODEL", "").strip() or None
    revision = env.get("AIM_MODEL_REVISION", "").strip() or None
    try:
        marker = verify_download(directory, model, revision)
    except IncompleteDownload as error:
        raise PreflightFailure(str(error)) from None
    return (
        f"model {marker.model}@{marker.revision} complete in {directory} "
        f"({weights}, {marker.file_count} files, {format_bytes(marker.total_bytes)})"
    )


#: What an AIM_LORA_MODULES entry carries (the stack writes it, stack/decide.py).
_ADAPTER_KEYS = ("name", "path", "model", "revision")


def _adapter_entries(raw: str) -> list[dict[str, str]]:
    try:
        entries = json.loads(raw)
    except json.JSONDecodeError as error:
        raise PreflightFailure(f"AIM_LORA_MODULES is not JSON ({error}): the stack writes it; redeploy") from None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and {"name", "path", "model"} <= set(e) and set(e) <= set(_ADAPTER_KEYS) for e in entries
    ):
        raise PreflightFailure(
            "AIM_LORA_MODULES is not a list of {name, path, model, revision}: the stack writes it; redeploy"
        )
    return [{key: str(value) for key, value in e.items() if value is not None} for e in entries]


def check_adapters(env: Mapping[str, str]) -> str:
    """Every LoRA adapter vLLM will load is complete on the volume: the summary, or a failure naming the adapter."""
    raw = env.get("AIM_LORA_MODULES", "").strip()
    if not raw:
        return ""  # a model without adapters: the summary does not mention them
    entries = _adapter_entries(raw)
    for entry in entries:
        name, directory = entry["name"], Path(entry["path"])
        where = f"LoRA adapter {name} ({entry['model']}) in {directory}"
        if not directory.is_dir():
            raise PreflightFailure(f"{where}: the directory does not exist: the adapter download has not run")
        if not (directory / "adapter_config.json").is_file():
            raise PreflightFailure(f"{where} has no adapter_config.json: the adapter download is incomplete")
        if not any(directory.glob("*.safetensors")):
            raise PreflightFailure(f"{where} has no *.safetensors weights: the adapter download is incomplete")
        try:
            verify_download(directory, entry["model"], entry.get("revision") or None)
        except IncompleteDownload as error:
            raise PreflightFailure(f"{where}: {error}") from None
    names = ", ".join(entry["name"] for entry in entries)
    return f"{len(entries)} LoRA adapter{'s' if len(entries) > 1 else ''} complete ({names})"


def _index_shards(index: Path) -> set[str]:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PreflightFailure(f"cannot read {index}: {error}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise PreflightFailure(f"{index} has no weight_map: the file is damaged; rerun the model download")
    return {str(shard) for shard in weight_map.values()}


# ---------------------------------------------------------------------------------------------------------------
# entry point


def run(env: Mapping[str, str]) -> str:
    """Every check in turn; the one-line summary, or PreflightFailure at the first mismatch."""
    require_packages()
    return "; ".join(part for part in (check_gpus(env), check_model(env), check_adapters(env)) if part)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the checks; 0 with `ok:` and the summary on stdout, 1 with one line on stderr."""
    args = list(sys.argv[1:] if argv is None else argv)

    def body() -> str:
        if args == ["--deps-only"]:
            # Build-time check: the base image has what the engine needs, and the bundled data loads with it.
            require_packages()
            from aim_infra.planning.hardware import load_gpus

            summary = f"dependencies present; {len(load_gpus().gpus)} GPUs in the catalogue"
        elif args:
            # Exit 1 like any failed check: the entrypoint only asks whether the preflight passed.
            raise PreflightFailure(f"unexpected arguments {' '.join(args)}: the checks read AIM_* variables")
        else:
            summary = run(os.environ)
        return f"{PREFIX} ok: {summary}"

    # A bug in the preflight itself, not a mismatch it found: its wording says so (tests/pod/test_preflight.py).
    return run_program(PREFIX, body, unexpected="internal error {error}")


if __name__ == "__main__":
    raise SystemExit(main())
