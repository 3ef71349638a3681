"""GPU detection: which AMD Instinct GPUs a cluster (node labels) or a machine (amd-smi, rocm-smi) has."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aim_infra.common.errors import AimError
from aim_infra.planning.hardware import GpuCatalogue, GpuSpec, load_gpus

# What the AMD GPU node labeller writes (ROCm/k8s-device-plugin: cmd/k8s-node-labeller/main.go, chart amd-gpu 0.21.0;
# its docs/user-guide/installation.md shows `amd.com/gpu.device-id=74a1`,
# `amd.com/gpu.product-name=AMD_Instinct_MI300X_OAM`, `amd.com/gpu.vram=192G`):
# - every label exists twice, as `amd.com/gpu.<name>` and as the legacy `beta.amd.com/gpu.<name>`;
# - when all GPUs of a node agree, `amd.com/gpu.<name>=<value>` (beta also adds `beta.amd.com/gpu.<name>.<value>=<n>`);
#   when they differ (a mixed node) there is no plain label, only `amd.com/gpu.<name>.<value>=<number of GPUs>`;
# - device-id: /sys/class/drm/cardN/device/device without `0x`, e.g. `74a1`;
# - product-name: sysfs product_name (from the board FRU) or libdrm's marketing name, spaces -> `_`, `(`/`)` dropped;
# - vram: the KFD memory bank size rounded to whole GiB, e.g. `192G` (a CPX partition of an MI300X shows `24G`);
# - cu-count: compute units per device (MI250 GCD 104, MI250X GCD 110);
# - compute-memory-partition: `amd.com/gpu.compute-memory-partition=cpx_nps4` on homogeneous nodes (the docs print it
#   without `gpu.`; the code writes it with, so both are read here).
# The amd-gpu Helm chart starts the labeller (off by default) with `-vram -cu-count -simd-count -device-id -family`:
# no product-name label unless the flags are changed, which is why the device id is the primary key.

GPU_RESOURCE = "amd.com/gpu"
LABEL_PREFIXES = ("amd.com/gpu.", "beta.amd.com/gpu.")
NO_GPU_LABEL = "no node advertises amd.com/gpu with a GPU label; set aim:gpu and aim:gpuCount"

#: A device reporting less than this share of its catalogue memory is a partition of it.
PARTITION_MEMORY_SHARE = 0.9

#: Compute units per visible device (ROCm "GPU specifications" table); only used to tell apart GPUs that share a
#: PCI device id (740c is both MI250 and MI250X).
_COMPUTE_UNITS = {"MI210": 104, "MI250": 104, "MI250X": 110, "MI300X": 304, "MI308X": 80, "MI325X": 304}

#: XCDs (= CPX partitions) per device on partitionable GPUs where it is not 8 (rocprofiler-compute: MI308X has 4).
_XCDS = {"MI308X": 4}
_FIXED_PARTITIONS = {"spx": 1, "dpx": 2, "tpx": 3, "qpx": 4}
_FAMILY_RANK = {"CDNA2": 0, "CDNA3": 1, "CDNA4": 2}

IdentifiedBy = Literal["device-id", "product-name"]


class NodeGpus(BaseModel):
    """The GPUs one Kubernetes node offers: their type (per visible device) and how many it can allocate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str
    gpu: GpuSpec
    count: int = Field(ge=1, description="Allocatable amd.com/gpu on the node.")
    identified_by: IdentifiedBy
    evidence: str = Field(default="", description="The labels the type was read from, e.g. amd.com/gpu.device-id=74a1.")


def gpus_from_nodes(
    nodes: Iterable[Mapping[str, Any] | object], catalogue: GpuCatalogue | None = None
) -> list[NodeGpus]:
    """The GPU type and count of every node that can allocate amd.com/gpu and carries a labeller label.

    `nodes` are Kubernetes Node objects: plain dicts as `kubectl get nodes -o json` lists them, or `kubernetes`
    client `V1Node` objects. Nodes without allocatable GPUs or without GPU labels are left out; a label naming a GPU
    the catalogue does not know is an AimError.
    """
    catalogue = catalogue or load_gpus()
    found: list[NodeGpus] = []
    for node in nodes:
        metadata = _field(node, "metadata")
        name = str(_field(metadata, "name") or "<unnamed node>")
        count = _allocatable_gpus(node, name)
        if count == 0:
            continue
        labels = {str(k): str(v) for k, v in (_field(metadata, "labels") or {}).items()}
        device_ids = _label(labels, "device-id")
        products = _label(labels, "product-name")
        if device_ids is None and products is None:
            continue
        cu_counts = _label(labels, "cu-count")
        identified = _identify(
            list(device_ids[1]) if device_ids else [],
            [p.replace("_", " ") for p in products[1]] if products else [],
            _ints(cu_counts[1]) if cu_counts else [],
            catalogue,
        )
        if identified is None:
            shown = "; ".join(f"{key}={','.join(values)}" for key, values in filter(None, (device_ids, products)))
            raise AimError(f"node {name}: {shown} is not a known AMD Instinct GPU; known: {_known(catalogue)}")
        spec, how = identified
        key, values = (device_ids if how == "device-id" else products) or ("", {})
        evidence = [f"{key}={','.join(values)}"]
        vram = _label(labels, "vram")
        vram_gib = min((v for v in map(_gib_label, vram[1]) if v is not None), default=None) if vram else None
        mode = _partition_label(labels)
        per_device = _per_device(spec, vram_gib, mode)
        if per_device is not spec and vram:
            evidence.append(f"{vram[0]}={','.join(vram[1])}")
        if per_device is not spec and mode:
            evidence.append(f"compute-memory-partition={mode}")
        found.append(NodeGpus(node=name, gpu=per_device, count=count, identified_by=how, evidence="; ".join(evidence)))
    return found


def node_gpu_counts(nodes: Iterable[Mapping[str, Any] | object]) -> list[tuple[str, int]]:
    """(node name, allocatable amd.com/gpu) of every node, labelled or not."""
    counts = []
    for node in nodes:
        name = str(_field(_field(node, "metadata"), "name") or "<unnamed node>")
        counts.append((name, _allocatable_gpus(node, name)))
    return counts


def choose_gpu(found: list[NodeGpus], wanted_count: int | None = None) -> NodeGpus:
    """For `gpu: auto`: the GPU type with the most GPUs on one node (ties: the newer, then the bigger GPU).

    With `wanted_count`, only nodes that can give that many GPUs of one type qualify.
    """
    if not found:
        raise AimError(NO_GPU_LABEL)
    candidates = found
    if wanted_count is not None:
        if wanted_count < 1:
            raise AimError(f"aim:gpuCount must be at least 1, got {wanted_count}")
        candidates = [f for f in found if f.count >= wanted_count]
        if not candidates:
            best = max(found, key=_rank)
            raise AimError(
                f"no node has {wanted_count} GPUs of one type: the most is {best.count} x {best.gpu.name} "
                f"on node {best.node}; lower aim:gpuCount or add a node with more GPUs"
            )
    return max(candidates, key=_rank)


def gpus_from_amd_smi(static_json: str | bytes | object, catalogue: GpuCatalogue | None = None) -> tuple[GpuSpec, int]:
    """The GPU type (per visible device) and device count from `amd-smi static --json` output.

    Accepts both shapes amd-smi has printed: a top-level list of per-GPU objects (ROCm 6.x) and an object whose
    `gpu_data` holds that list (later versions, beside `cpu_data`...). Each GPU object has an `asic` block
    (`market_name`, `device_id` as `0x74a1`, `num_compute_units`), a `vram` block (`size: {value, unit: MB}`) and
    optionally `partition` (`accelerator_partition` or, older, `compute_partition`: SPX/DPX/QPX/CPX).
    Mixed GPU types give the smallest of them.
    """
    catalogue = catalogue or load_gpus()
    source = "amd-smi static --json"
    data = _parse_json(static_json, source)
    if isinstance(data, Mapping) and "gpu_data" in data:
        entries = data["gpu_data"]
    elif isinstance(data, Mapping) and "asic" in data:
        entries = [data]
    else:
        entries = data
    if not isinstance(entries, list):
        raise AimError(
            f"{source}: expected a list of GPUs or an object with a gpu_data list, got {type(entries).__name__}"
        )
    if not entries:
        raise AimError(f"{source}: lists no GPU")
    specs: list[GpuSpec] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise AimError(f"{source}: GPU entry {index} is {type(entry).__name__}, expected an object")
        gpu = entry.get("gpu", index)
        asic = entry.get("asic")
        if not isinstance(asic, Mapping):
            raise AimError(f"{source}: GPU {gpu} has no asic block (run amd-smi static without filters)")
        device_id = _device_id(asic.get("device_id"))
        market_name = _text(asic.get("market_name"))
        identified = _identify(
            [device_id] if device_id else [],
            [market_name] if market_name else [],
            _ints([asic.get("num_compute_units")]),
            catalogue,
        )
        if identified is None:
            raise AimError(
                f"{source}: GPU {gpu} device_id {asic.get('device_id')!r} market_name {market_name!r} "
                f"is not a known AMD Instinct GPU; known: {_known(catalogue)}"
            )
        vram = entry.get("vram")
        vram_gib = _gib_amd_smi(vram.get("size")) if isinstance(vram, Mapping) else None
        partition = entry.get("partition")
        mode = None
        if isinstance(partition, Mapping):
            mode = _text(partition.get("accelerator_partition") or partition.get("compute_partition"))
        specs.append(_per_device(identified[0], vram_gib, mode))
    return _smallest(specs), len(specs)


def gpus_from_rocm_smi(json_text: str | bytes | object, catalogue: GpuCatalogue | None = None) -> tuple[GpuSpec, int]:
    """The GPU type and count from `rocm-smi --showproductname --showid --showmeminfo vram --json` output.

    rocm-smi prints `{"card0": {"Card Series": "AMD Instinct MI300X OAM", "GPU ID": "0x74a1",
    "VRAM Total Memory (B)": "205822885888", ...}, "system": {...}}`; key case varies between versions
    ("Card series"). Only `--showid` gives the PCI device id ("GPU ID"); "Card Model" is the device id on recent
    versions but the subsystem id on older ones, so it is tried last.
    """
    catalogue = catalogue or load_gpus()
    source = "rocm-smi --json"
    data = _parse_json(json_text, source)
    if not isinstance(data, Mapping):
        raise AimError(f"{source}: expected an object keyed by card, got {type(data).__name__}")
    cards = [(str(k), v) for k, v in data.items() if str(k).lower().startswith("card") and isinstance(v, Mapping)]
    if not cards:
        raise AimError(f"{source}: lists no card")
    specs: list[GpuSpec] = []
    for card, fields in cards:
        values = {str(k).strip().lower(): v for k, v in fields.items()}
        product = _text(values.get("card series"))
        device_id = _device_id(values.get("gpu id") or values.get("device id"))
        identified = _identify([device_id] if device_id else [], [product] if product else [], [], catalogue)
        if identified is None and (model := _device_id(values.get("card model"))):
            identified = _identify([model], [], [], catalogue)
        if identified is None:
            raise AimError(
                f"{source}: {card} ({product or 'no Card Series'}, id {device_id or 'unknown'}) "
                f"is not a known AMD Instinct GPU; known: {_known(catalogue)}"
            )
        vram_bytes = _number(values.get("vram total memory (b)"))
        vram_gib = vram_bytes / 2**30 if vram_bytes else None
        specs.append(_per_device(identified[0], vram_gib, _text(values.get("compute partition"))))
    return _smallest(specs), len(specs)


# ---------------------------------------------------------------------------------------------------------------
# identification


def gpus_from_tool_output(output: str) -> tuple[GpuSpec, int, str]:
    """The GPU type, the count and the tool's name from what amd-smi or rocm-smi printed. Named by what the output
    is, not by the command: an AIM_SMI_COMMAND may stand in for either tool."""
    if looks_like_rocm_smi(output):
        return (*gpus_from_rocm_smi(output), "rocm-smi")
    return (*gpus_from_amd_smi(output), "amd-smi")


def looks_like_rocm_smi(output: str) -> bool:
    """rocm-smi prints an object keyed `card0`, `card1`...; amd-smi a list or an object with `gpu_data`."""
    start = output.find("{")
    if start < 0 or 0 <= output.find("[") < start:
        return False
    try:
        data, _ = json.JSONDecoder().raw_decode(output, start)
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and any(str(key).lower().startswith("card") for key in data)


def _identify(
    device_ids: list[str], product_names: list[str], cu_counts: list[int], catalogue: GpuCatalogue
) -> tuple[GpuSpec, IdentifiedBy] | None:
    """Device ids first, then product names; None when neither names a catalogue GPU (or both are empty)."""
    if device_ids:
        wanted = [d.strip().lower().removeprefix("0x") for d in device_ids]
        matches = [[g for g in catalogue.gpus if d in g.pci_device_ids] for d in wanted]
        if all(matches):
            return _smallest([_narrow(m, product_names, cu_counts) for m in matches]), "device-id"
    if product_names:
        matches = [[g for g in catalogue.gpus if g.matches_product(p)] for p in product_names]
        if all(matches):
            return _smallest([_narrow(m, product_names, cu_counts) for m in matches]), "product-name"
    return None


def _narrow(candidates: list[GpuSpec], product_names: list[str], cu_counts: list[int]) -> GpuSpec:
    """One GPU out of several sharing an id or a name (MI250/MI250X): by product name, then CU count, else smallest."""
    for keep in (
        lambda g: any(g.matches_product(p) for p in product_names),
        lambda g: _COMPUTE_UNITS.get(g.name) in cu_counts,
    ):
        if len(candidates) == 1:
            break
        narrowed = [g for g in candidates if keep(g)]
        if narrowed:
            candidates = narrowed
    return _smallest(candidates)


def _smallest(specs: list[GpuSpec]) -> GpuSpec:
    """The weakest of several GPU types: any device a pod gets is at least this good."""
    return min(specs, key=lambda g: (g.memory_gib, g.tflops("bf16")))


def _rank(entry: NodeGpus) -> tuple[int, int, float, float]:
    return (entry.count, _FAMILY_RANK[entry.gpu.family], entry.gpu.memory_gib, entry.gpu.tflops("bf16"))


def _per_device(spec: GpuSpec, vram_gib: float | None, partition_mode: str | None) -> GpuSpec:
    """`spec` as one visible device: a partition when the device shows clearly less memory or a partition mode."""
    memory = spec.memory_gib
    if vram_gib is not None and 0 < vram_gib < spec.memory_gib * PARTITION_MEMORY_SHARE:
        memory = vram_gib
    partitions = _partitions(spec, partition_mode)
    if partitions > 1:
        # The driver splits memory evenly between partitions whatever the NPS mode (amdgpu_amdkfd_xcp_memory_size).
        memory = min(memory, spec.memory_gib / partitions)
    return spec.partitioned(memory) if memory < spec.memory_gib else spec


def _partitions(spec: GpuSpec, mode: str | None) -> int:
    """How many devices a compute partition mode (SPX/DPX/QPX/CPX, e.g. from `cpx_nps4`) makes of one GPU."""
    if not mode or spec.arch == "gfx90a":
        return 1
    compute = mode.strip().lower().split("_")[0]
    if compute == "cpx":
        return _XCDS.get(spec.name, 8)
    return _FIXED_PARTITIONS.get(compute, 1)


def _known(catalogue: GpuCatalogue) -> str:
    return ", ".join(f"{g.name} ({'/'.join(g.pci_device_ids)})" for g in catalogue.gpus)


# ---------------------------------------------------------------------------------------------------------------
# Kubernetes node objects (dicts or kubernetes.client.V1Node)


def _field(obj: object, name: str) -> Any:
    """`obj[name]` for a mapping, `obj.name` for an object (kubernetes client models), None when absent."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _allocatable_gpus(node: object, name: str) -> int:
    allocatable = _field(_field(node, "status"), "allocatable") or {}
    raw = allocatable.get(GPU_RESOURCE) if isinstance(allocatable, Mapping) else None
    if raw is None:
        return 0
    try:
        return int(str(raw).strip())
    except ValueError:
        raise AimError(f"node {name}: allocatable {GPU_RESOURCE}={raw!r} is not a whole number") from None


def _label(labels: Mapping[str, str], name: str) -> tuple[str, dict[str, str]] | None:
    """The labeller's values for `name`: (label key, {value: GPU count or ''}), current prefix before beta."""
    for prefix in LABEL_PREFIXES:
        key = prefix + name
        single = labels.get(key, "").strip()
        if single:
            return key, {single: ""}
        counted = {k[len(key) + 1 :]: v for k, v in labels.items() if k.startswith(key + ".")}
        if counted:
            return key, counted
    return None


def _partition_label(labels: Mapping[str, str]) -> str | None:
    for key in (*(p + "compute-memory-partition" for p in LABEL_PREFIXES), "amd.com/compute-memory-partition"):
        if labels.get(key, "").strip():
            return labels[key].strip()
    return None


def _gib_label(value: str) -> float | None:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*Gi?B?\s*", value, flags=re.IGNORECASE)
    return float(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------------------------
# smi output


def _parse_json(raw: str | bytes | object, source: str) -> object:
    """JSON text (tolerating warning lines before it) or an already parsed object."""
    if not isinstance(raw, str | bytes | bytearray):
        return raw
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes | bytearray) else raw
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    if not starts:
        raise AimError(f"{source}: output is not JSON (got {text.strip()[:60]!r})")
    try:
        data, _ = json.JSONDecoder().raw_decode(text, min(starts))
    except json.JSONDecodeError as error:
        raise AimError(f"{source}: output is not valid JSON: {error.msg} at line {error.lineno}") from None
    return data


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text if text and text.upper() != "N/A" else None


def _device_id(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:04x}"
    text = _text(value)
    if text is None:
        return None
    text = text.lower().removeprefix("0x")
    return text if re.fullmatch(r"[0-9a-f]{1,4}", text) else None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = re.match(r"\s*(\d+(?:\.\d+)?)", str(value)) if value is not None else None
    return float(match.group(1)) if match else None


def _ints(values: Iterable[object]) -> list[int]:
    return [int(n) for n in map(_number, values) if n is not None]


def _gib_amd_smi(size: object) -> float | None:
    """amd-smi's vram size (`{"value": 196592, "unit": "MB"}`, `"196592 MB"` or a bare number of MB) in GiB."""
    unit = "MB"
    if isinstance(size, Mapping):
        value = _number(size.get("value"))
        unit = str(size.get("unit") or unit)
    else:
        value = _number(size)
        match = re.search(r"[KMGT]i?B", str(size), flags=re.IGNORECASE) if isinstance(size, str) else None
        unit = match.group(0) if match else unit
    if not value:
        return None
    # amd-smi's "MB" are MiB: vram_size is bytes / 2**20.
    scale = {"k": 2**-20, "m": 2**-10, "g": 1.0, "t": 2**10}.get(unit.strip()[:1].lower(), 2**-10)
    return value * scale
