"""GPU detection from Kubernetes node labels (dicts and kubernetes V1Node objects), amd-smi and rocm-smi output."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import V1Node, V1NodeStatus, V1ObjectMeta

from aim_infra.common.errors import AimError
from aim_infra.planning import detect
from aim_infra.planning.detect import (
    NO_GPU_LABEL,
    NodeGpus,
    choose_gpu,
    gpus_from_amd_smi,
    gpus_from_nodes,
    gpus_from_rocm_smi,
)
from aim_infra.planning.hardware import GpuCatalogue, load_gpus


@pytest.fixture(scope="module")
def gpus() -> GpuCatalogue:
    return load_gpus()


def node(name: str, labels: dict[str, str] | None = None, gpu_count: str | None = "8") -> dict[str, Any]:
    """A node as `kubectl get nodes -o json` lists it."""
    allocatable = {"cpu": "191", "memory": "2113645936Ki", "pods": "110"}
    if gpu_count is not None:
        allocatable["amd.com/gpu"] = gpu_count
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "status": {"allocatable": allocatable, "capacity": dict(allocatable)},
    }


def v1node(name: str, labels: dict[str, str] | None, gpu_count: str | None = "8") -> V1Node:
    allocatable = {"cpu": "191"} if gpu_count is None else {"cpu": "191", "amd.com/gpu": gpu_count}
    return V1Node(metadata=V1ObjectMeta(name=name, labels=labels), status=V1NodeStatus(allocatable=allocatable))


# Labels as the labeller writes them on an 8 x MI300X node (ROCm/k8s-device-plugin docs/user-guide/installation.md).
MI300X_LABELS = {
    "amd.com/gpu.cu-count": "304",
    "amd.com/gpu.device-id": "74a1",
    "amd.com/gpu.family": "AI",
    "amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM",
    "amd.com/gpu.simd-count": "1216",
    "amd.com/gpu.vram": "192G",
    "beta.amd.com/gpu.device-id": "74a1",
    "beta.amd.com/gpu.device-id.74a1": "8",
    "beta.amd.com/gpu.vram": "192G",
    "beta.amd.com/gpu.vram.192G": "8",
}


def one_line(error: pytest.ExceptionInfo[AimError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- nodes ----------------------------------------------------------------------------------------------------------


def test_dict_node_by_device_id(gpus: GpuCatalogue) -> None:
    [found] = gpus_from_nodes([node("gpu-1", MI300X_LABELS)], gpus)
    assert found.node == "gpu-1"
    assert found.gpu == gpus.get("MI300X")
    assert found.count == 8
    assert found.identified_by == "device-id"
    assert "amd.com/gpu.device-id=74a1" in found.evidence


def test_v1node_objects_work_too(gpus: GpuCatalogue) -> None:
    found = gpus_from_nodes(
        [
            v1node("a", {"amd.com/gpu.device-id": "75a3", "amd.com/gpu.vram": "288G"}, "8"),
            v1node("b", None, None),  # a CPU node: labels and GPUs absent
        ],
        gpus,
    )
    assert [(f.node, f.gpu.name, f.count) for f in found] == [("a", "MI355X", 8)]


def test_the_default_catalogue_is_the_bundled_one() -> None:
    [found] = gpus_from_nodes([node("gpu-1", {"amd.com/gpu.device-id": "74a5"})])
    assert found.gpu.name == "MI325X"


def test_device_id_wins_over_product_name(gpus: GpuCatalogue) -> None:
    labels = {"amd.com/gpu.device-id": "74a5", "amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"}
    [found] = gpus_from_nodes([node("n", labels)], gpus)
    assert (found.gpu.name, found.identified_by) == ("MI325X", "device-id")


def test_product_name_is_the_fallback(gpus: GpuCatalogue) -> None:
    [found] = gpus_from_nodes([node("n", {"amd.com/gpu.product-name": "AMD_Instinct_MI308X"})], gpus)
    assert (found.gpu.name, found.identified_by) == ("MI308X", "product-name")
    assert found.evidence == "amd.com/gpu.product-name=AMD_Instinct_MI308X"


def test_unknown_device_id_with_a_known_product_name_uses_the_name(gpus: GpuCatalogue) -> None:
    labels = {"amd.com/gpu.device-id": "74ff", "amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"}
    [found] = gpus_from_nodes([node("n", labels)], gpus)
    assert (found.gpu.name, found.identified_by) == ("MI300X", "product-name")


def test_legacy_beta_labels(gpus: GpuCatalogue) -> None:
    labels = {
        "beta.amd.com/gpu.device-id": "740f",
        "beta.amd.com/gpu.device-id.740f": "4",
        "beta.amd.com/gpu.vram": "64G",
        "beta.amd.com/gpu.vram.64G": "4",
    }
    [found] = gpus_from_nodes([node("old", labels, "4")], gpus)
    assert (found.gpu.name, found.count, found.identified_by) == ("MI210", 4, "device-id")
    assert found.evidence == "beta.amd.com/gpu.device-id=740f"


def test_beta_product_name(gpus: GpuCatalogue) -> None:
    [found] = gpus_from_nodes([node("old", {"beta.amd.com/gpu.product-name": "Instinct_MI210"}, "2")], gpus)
    assert (found.gpu.name, found.identified_by) == ("MI210", "product-name")


def test_a_mixed_node_counts_as_its_smallest_gpu(gpus: GpuCatalogue) -> None:
    # With GPUs that differ the labeller writes only counted labels: amd.com/gpu.device-id.<id>=<GPUs>.
    labels = {"amd.com/gpu.device-id.74a1": "2", "amd.com/gpu.device-id.740f": "2"}
    [found] = gpus_from_nodes([node("mixed", labels, "4")], gpus)
    assert (found.gpu.name, found.count) == ("MI210", 4)


def test_vram_label_shows_a_partitioned_mi300x(gpus: GpuCatalogue) -> None:
    labels = {**MI300X_LABELS, "amd.com/gpu.vram": "24G", "amd.com/gpu.compute-memory-partition": "cpx_nps4"}
    [found] = gpus_from_nodes([node("cpx", labels, "64")], gpus)
    assert found.count == 64
    assert found.gpu.name == "MI300X"
    assert found.gpu.memory_gib == 24
    assert found.gpu.tflops("fp8") == pytest.approx(2614.9 / 8)
    assert "amd.com/gpu.vram=24G" in found.evidence


@pytest.mark.parametrize(("vram", "memory"), [("96G", 96), ("48G", 48), ("24G", 24)])
def test_dpx_qpx_cpx_memory(gpus: GpuCatalogue, vram: str, memory: float) -> None:
    [found] = gpus_from_nodes([node("n", {"amd.com/gpu.device-id": "74a1", "amd.com/gpu.vram": vram})], gpus)
    assert found.gpu.memory_gib == memory


def test_partition_label_alone_splits_the_device(gpus: GpuCatalogue) -> None:
    mi300x = {"amd.com/gpu.device-id": "74a1", "amd.com/gpu.compute-memory-partition": "cpx_nps1"}
    mi308x = {"amd.com/gpu.device-id": "74a2", "amd.com/gpu.compute-memory-partition": "cpx_nps1"}
    dpx = {"amd.com/gpu.device-id": "74a5", "amd.com/compute-memory-partition": "dpx_nps2"}  # spelling of the docs
    found = gpus_from_nodes([node("a", mi300x, "64"), node("b", mi308x, "32"), node("c", dpx, "16")], gpus)
    assert [f.gpu.memory_gib for f in found] == [24, 48, 128]


def test_a_whole_gpu_keeps_its_catalogue_spec(gpus: GpuCatalogue) -> None:
    labels = {**MI300X_LABELS, "amd.com/gpu.compute-memory-partition": "spx_nps1"}
    [found] = gpus_from_nodes([node("n", labels)], gpus)
    assert found.gpu is gpus.get("MI300X")


def test_740c_is_told_apart_by_cu_count(gpus: GpuCatalogue) -> None:
    found = gpus_from_nodes(
        [
            node("x", {"amd.com/gpu.device-id": "740c", "amd.com/gpu.cu-count": "110"}),
            node("plain", {"amd.com/gpu.device-id": "740c", "amd.com/gpu.cu-count": "104"}),
            node("unsure", {"amd.com/gpu.device-id": "740c"}),
            node("named", {"amd.com/gpu.device-id": "740c", "amd.com/gpu.product-name": "AMD_Instinct_MI250X"}),
        ],
        gpus,
    )
    assert [f.gpu.name for f in found] == ["MI250X", "MI250", "MI250", "MI250X"]


def test_unknown_device_id_is_one_line_naming_node_label_and_value(gpus: GpuCatalogue) -> None:
    with pytest.raises(AimError) as error:
        gpus_from_nodes([node("ok", MI300X_LABELS), node("apu-3", {"amd.com/gpu.device-id": "74a0"}, "4")], gpus)
    message = one_line(error)
    assert message.startswith("node apu-3: amd.com/gpu.device-id=74a0 is not a known AMD Instinct GPU")
    assert "MI300X (74a1" in message
    assert "MI355X (75a3" in message


def test_unknown_product_name_is_named_too(gpus: GpuCatalogue) -> None:
    labels = {"amd.com/gpu.device-id": "7551", "amd.com/gpu.product-name": "AMD_Radeon_AI_PRO_R9700"}
    with pytest.raises(AimError) as error:
        gpus_from_nodes([node("radeon", labels, "1")], gpus)
    message = one_line(error)
    assert "amd.com/gpu.device-id=7551" in message
    assert "amd.com/gpu.product-name=AMD_Radeon_AI_PRO_R9700" in message


def test_nodes_without_gpus_or_labels_are_skipped(gpus: GpuCatalogue) -> None:
    nodes = [
        node("cpu", {}, None),
        node("zero", {"amd.com/gpu.device-id": "74a1"}, "0"),
        node("unlabelled", {"amd.com/gpu.family": "AI"}, "8"),  # labeller off: nothing to identify by
        {"metadata": {"name": "bare"}},
        node("gpu", MI300X_LABELS),
    ]
    assert [f.node for f in gpus_from_nodes(nodes, gpus)] == ["gpu"]


def test_unreadable_allocatable_is_an_error(gpus: GpuCatalogue) -> None:
    with pytest.raises(AimError) as error:
        gpus_from_nodes([node("odd", MI300X_LABELS, "8k")], gpus)
    assert one_line(error) == "node odd: allocatable amd.com/gpu='8k' is not a whole number"


# --- choose_gpu -------------------------------------------------------------------------------------------------------


def found_on(gpus: GpuCatalogue, name: str, count: int, node_name: str | None = None) -> NodeGpus:
    return NodeGpus(node=node_name or f"{name}-node", gpu=gpus.get(name), count=count, identified_by="device-id")


def test_choose_gpu_with_nothing_found_says_what_to_set() -> None:
    with pytest.raises(AimError) as error:
        choose_gpu([])
    assert one_line(error) == NO_GPU_LABEL
    assert NO_GPU_LABEL == "no node advertises amd.com/gpu with a GPU label; set aim:gpu and aim:gpuCount"


def test_choose_gpu_takes_the_type_with_most_gpus_on_one_node(gpus: GpuCatalogue) -> None:
    found = [found_on(gpus, "MI355X", 4), found_on(gpus, "MI300X", 8), found_on(gpus, "MI210", 2)]
    assert choose_gpu(found).gpu.name == "MI300X"


def test_choose_gpu_ties_go_to_the_newer_then_bigger_gpu(gpus: GpuCatalogue) -> None:
    assert choose_gpu([found_on(gpus, "MI300X", 8), found_on(gpus, "MI355X", 8)]).gpu.name == "MI355X"
    assert choose_gpu([found_on(gpus, "MI325X", 8), found_on(gpus, "MI300X", 8)]).gpu.name == "MI325X"
    assert choose_gpu([found_on(gpus, "MI308X", 8), found_on(gpus, "MI300X", 8)]).gpu.name == "MI300X"


def test_choose_gpu_with_a_wanted_count(gpus: GpuCatalogue) -> None:
    found = [found_on(gpus, "MI355X", 4), found_on(gpus, "MI300X", 2)]
    assert choose_gpu(found, wanted_count=4).gpu.name == "MI355X"
    assert choose_gpu(found, wanted_count=1).gpu.name == "MI355X"
    with pytest.raises(AimError) as error:
        choose_gpu(found, wanted_count=8)
    assert one_line(error) == (
        "no node has 8 GPUs of one type: the most is 4 x MI355X on node MI355X-node; "
        "lower aim:gpuCount or add a node with more GPUs"
    )
    with pytest.raises(AimError):
        choose_gpu(found, wanted_count=0)


def test_choose_gpu_from_detected_nodes(gpus: GpuCatalogue) -> None:
    nodes = [node("small", {"amd.com/gpu.device-id": "75a3"}, "4"), node("big", MI300X_LABELS, "8")]
    chosen = choose_gpu(gpus_from_nodes(nodes, gpus))
    assert (chosen.node, chosen.gpu.name, chosen.count) == ("big", "MI300X", 8)


# --- amd-smi static --json --------------------------------------------------------------------------------------------


def amd_smi_gpu(
    index: int,
    device_id: str = "0x74a1",
    market_name: str = "AMD Instinct MI300X",
    compute_units: int = 304,
    vram_mb: int = 196592,
    partition: dict[str, object] | None = None,
) -> dict[str, object]:
    """One GPU of `amd-smi static --json` (amdsmi_cli static_gpu: asic, vram, partition blocks)."""
    return {
        "gpu": index,
        "asic": {
            "market_name": market_name,
            "vendor_id": "0x1002",
            "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
            "subvendor_id": "0x1002",
            "device_id": device_id,
            "subsystem_id": "0x74a1",
            "rev_id": "0x00",
            "asic_serial": "0x8A2E6C1D94E1F00B",
            "oam_id": index,
            "num_compute_units": compute_units,
            "target_graphics_version": "gfx942",
        },
        "bus": {"bdf": f"0000:{0x05 + index:02x}:00.0", "max_pcie_width": 16},
        "vram": {"type": "HBM", "vendor": "N/A", "size": {"value": vram_mb, "unit": "MB"}, "bit_width": 8192},
        "partition": partition or {"compute_partition": "SPX", "memory_partition": "NPS1", "partition_id": 0},
    }


def test_amd_smi_top_level_list(gpus: GpuCatalogue) -> None:
    text = json.dumps([amd_smi_gpu(i) for i in range(8)], indent=4)
    spec, count = gpus_from_amd_smi(text, gpus)
    assert (spec, count) == (gpus.get("MI300X"), 8)


def test_amd_smi_gpu_data_object(gpus: GpuCatalogue) -> None:
    entries = [amd_smi_gpu(i, "0x75a3", "AMD Instinct MI355X", 256, 294896) for i in range(8)]
    text = json.dumps({"cpu_data": [], "core_data": [], "gpu_data": entries})
    assert gpus_from_amd_smi(text.encode(), gpus) == (gpus.get("MI355X"), 8)


def test_amd_smi_parsed_object_and_warning_lines(gpus: GpuCatalogue) -> None:
    entries = [amd_smi_gpu(0, "0x74a5", "AMD Instinct MI325X", 304, 262128)]
    assert gpus_from_amd_smi({"gpu_data": entries}, gpus)[0].name == "MI325X"
    text = "WARNING: User is missing the following required groups: render, video\n" + json.dumps(entries)
    assert gpus_from_amd_smi(text, gpus)[0].name == "MI325X"


def test_amd_smi_cpx_partitions(gpus: GpuCatalogue) -> None:
    partition = {"accelerator_partition": "CPX", "memory_partition": "NPS4", "partition_id": 0}
    entries = [amd_smi_gpu(i, compute_units=38, vram_mb=24560, partition=partition) for i in range(64)]
    spec, count = gpus_from_amd_smi({"gpu_data": entries}, gpus)
    assert count == 64
    assert spec.name == "MI300X"
    assert spec.memory_gib == pytest.approx(24, abs=0.05)


def test_amd_smi_partition_mode_without_smaller_vram(gpus: GpuCatalogue) -> None:
    partition = {"compute_partition": "DPX", "memory_partition": "NPS1"}
    spec, _ = gpus_from_amd_smi([amd_smi_gpu(0, partition=partition)], gpus)
    assert spec.memory_gib == 96


def test_amd_smi_market_name_fallback_and_old_names(gpus: GpuCatalogue) -> None:
    entry = amd_smi_gpu(0, device_id="N/A", market_name="MI308X", compute_units=80)
    assert gpus_from_amd_smi([entry], gpus)[0].name == "MI308X"
    entry = amd_smi_gpu(0, device_id="N/A", market_name="MI300X-O")
    assert gpus_from_amd_smi([entry], gpus)[0].name == "MI300X"


def test_amd_smi_mi250x_gcds(gpus: GpuCatalogue) -> None:
    entries = [amd_smi_gpu(i, "0x740c", "AMD Instinct MI250X / MI250", 110, 65520) for i in range(8)]
    spec, count = gpus_from_amd_smi(entries, gpus)
    assert (spec.name, spec.memory_gib, count) == ("MI250X", 64, 8)


def test_amd_smi_mixed_gpus_give_the_smallest(gpus: GpuCatalogue) -> None:
    entries = [amd_smi_gpu(0), amd_smi_gpu(1, "0x740f", "AMD Instinct MI210", 104, 65520)]
    assert gpus_from_amd_smi(entries, gpus) == (gpus.get("MI210"), 2)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "amd-smi static --json: output is not JSON (got '')"),
        ("amd-smi: command not found", "output is not JSON"),
        ('[{"gpu": 0, "asic": ', "output is not valid JSON"),
        ("[]", "lists no GPU"),
        ('{"gpu_data": 3}', "expected a list of GPUs or an object with a gpu_data list, got int"),
        ('{"cpu_data": []}', "expected a list of GPUs"),
        ("[1, 2]", "GPU entry 0 is int"),
        ('[{"gpu": 0, "vram": {}}]', "GPU 0 has no asic block"),
        (
            json.dumps([amd_smi_gpu(0, "0x74a0", "AMD Instinct MI300A")]),
            "GPU 0 device_id '0x74a0' market_name 'AMD Instinct MI300A' is not a known AMD Instinct GPU",
        ),
        (json.dumps([amd_smi_gpu(0, "N/A", "N/A")]), "device_id 'N/A' market_name None is not a known"),
    ],
)
def test_amd_smi_bad_input_is_one_line(gpus: GpuCatalogue, raw: str, expected: str) -> None:
    with pytest.raises(AimError) as error:
        gpus_from_amd_smi(raw, gpus)
    message = one_line(error)
    assert message.startswith("amd-smi static --json: ")
    assert expected in message


# --- rocm-smi --json ----------------------------------------------------------------------------------------------


def test_rocm_smi_product_name_and_vram(gpus: GpuCatalogue) -> None:
    card = {"Card Series": "AMD Instinct MI300X OAM", "Card Model": "0x74a1", "VRAM Total Memory (B)": "205822885888"}
    text = json.dumps({"card0": card, "card1": card, "system": {"Driver version": "6.8.5"}})
    assert gpus_from_rocm_smi(text, gpus) == (gpus.get("MI300X"), 2)


def test_rocm_smi_device_id_and_old_key_case(gpus: GpuCatalogue) -> None:
    card = {"GPU ID": "0x740c", "Card series": "AMD INSTINCT MI250 (MCM) OAM AC MBA", "Card model": "0x0b0c"}
    spec, count = gpus_from_rocm_smi({"card0": card}, gpus)
    assert (spec.name, count) == ("MI250", 1)


def test_rocm_smi_card_model_is_the_last_resort(gpus: GpuCatalogue) -> None:
    card = {"Card Series": "AMD Instinct Something", "Card Model": "0x74b5", "VRAM Total Memory (B)": "25769803776"}
    spec, _ = gpus_from_rocm_smi({"card0": card}, gpus)
    assert (spec.name, spec.memory_gib) == ("MI300X", 24)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[]", "expected an object keyed by card, got list"),
        ('{"system": {}}', "lists no card"),
        ('{"card0": {"Card Series": "AMD Radeon RX 7900 XTX"}}', "card0 (AMD Radeon RX 7900 XTX, id unknown)"),
    ],
)
def test_rocm_smi_bad_input_is_one_line(gpus: GpuCatalogue, raw: str, expected: str) -> None:
    with pytest.raises(AimError) as error:
        gpus_from_rocm_smi(raw, gpus)
    assert expected in one_line(error)


# --- module hygiene ---------------------------------------------------------------------------------------------------


def test_detect_never_imports_pulumi() -> None:
    tree = ast.parse(Path(detect.__file__).read_text(encoding="utf-8"))
    imported = [alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names] + [
        n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    ]
    assert not [m for m in imported if m.split(".")[0] == "pulumi"]
    assert ast.get_docstring(tree) is not None
