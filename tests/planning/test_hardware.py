"""The bundled GPU catalogue (recipes/gpus.yaml): it loads, covers every Instinct GPU and says what each arch runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aim_infra.common.errors import AimError
from aim_infra.planning.hardware import GpuCatalogue, GpuSpec, load_gpus
from aim_infra.planning.paths import GPUS_FILE
from aim_infra.planning.yamlio import load_model

FACTS_GPUS = ["MI210", "MI250", "MI250X", "MI300X", "MI308X", "MI325X", "MI350X", "MI355X"]


@pytest.fixture(scope="module")
def gpus() -> GpuCatalogue:
    return load_gpus()


def one_line(error: pytest.ExceptionInfo[AimError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_the_bundled_catalogue_loads(gpus: GpuCatalogue) -> None:
    assert isinstance(gpus, GpuCatalogue)
    assert load_gpus() is gpus  # cached: read once per process


def test_every_gpu_from_the_facts_sheet_is_present(gpus: GpuCatalogue) -> None:
    assert sorted(gpus.names) == sorted(FACTS_GPUS)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("mi300x", "MI300X"),
        ("MI300X", "MI300X"),
        ("AMD Instinct MI300X", "MI300X"),
        ("amd instinct mi355x", "MI355X"),
        ("MI300X-O", "MI300X"),
        ("mi250x", "MI250X"),
        ("MI250", "MI250"),
        ("Instinct MI210", "MI210"),
    ],
)
def test_lookup_by_name_or_alias(gpus: GpuCatalogue, text: str, name: str) -> None:
    assert gpus.get(text).name == name


def test_unknown_name_is_one_line_listing_the_known_gpus(gpus: GpuCatalogue) -> None:
    with pytest.raises(AimError) as error:
        gpus.get("H100")
    message = one_line(error)
    assert "'H100'" in message
    for name in FACTS_GPUS:
        assert name in message


@pytest.mark.parametrize(
    ("device_id", "name"),
    [
        ("740f", "MI210"),
        ("740c", "MI250"),  # shared with MI250X: the conservative (first listed) GPU
        ("7408", "MI250X"),
        ("74a1", "MI300X"),
        ("0x74A1", "MI300X"),
        ("74b5", "MI300X"),  # MI300X VF (SR-IOV guest)
        ("74a2", "MI308X"),
        ("74a8", "MI308X"),
        ("74a5", "MI325X"),
        ("75a0", "MI350X"),
        ("75a3", "MI355X"),
    ],
)
def test_pci_device_ids(gpus: GpuCatalogue, device_id: str, name: str) -> None:
    spec = gpus.by_device_id(device_id)
    assert spec is not None
    assert spec.name == name


def test_740c_belongs_to_both_mi250_and_mi250x(gpus: GpuCatalogue) -> None:
    assert "740c" in gpus.get("MI250").pci_device_ids
    assert "740c" in gpus.get("MI250X").pci_device_ids


def test_no_other_pci_id_is_shared(gpus: GpuCatalogue) -> None:
    seen: dict[str, str] = {}
    for gpu in gpus.gpus:
        for device_id in gpu.pci_device_ids:
            if device_id in seen:
                assert {seen[device_id], gpu.name} == {"MI250", "MI250X"}, device_id
            seen[device_id] = gpu.name


@pytest.mark.parametrize(
    ("product_name", "name"),
    [
        ("AMD_Instinct_MI300X_OAM", "MI300X"),  # node labeller (sysfs product_name, spaces -> _)
        ("AMD Instinct MI300X", "MI300X"),  # amd-smi market_name / libdrm amdgpu.ids
        ("AMD Instinct MI300X VF", "MI300X"),
        ("AMD Instinct MI300X HF", "MI300X"),
        ("MI300X-O", "MI300X"),  # older amd-smi market name
        ("AMD_Instinct_MI308X", "MI308X"),
        ("MI308X", "MI308X"),
        ("AMD Instinct MI308X HF", "MI308X"),
        ("AMD_Instinct_MI325X_OAM", "MI325X"),
        ("AMD Instinct MI325X VF", "MI325X"),
        ("Instinct_MI210", "MI210"),
        ("AMD INSTINCT MI250 (MCM) OAM AC MBA", "MI250"),
        ("AMD_INSTINCT_MI250_MCM_OAM_AC_MBA", "MI250"),
        ("AMD Instinct MI250X", "MI250X"),
        ("AMD Instinct MI350X", "MI350X"),
        ("AMD_Instinct_MI355X_OAM", "MI355X"),
        ("amd instinct mi355x", "MI355X"),
    ],
)
def test_product_name_patterns(gpus: GpuCatalogue, product_name: str, name: str) -> None:
    matching = [g.name for g in gpus.gpus if g.matches_product(product_name)]
    assert matching == [name]


@pytest.mark.parametrize(
    "product_name", ["AMD Instinct MI300A", "AMD Instinct MI350P", "AMD Radeon RX 7900 XTX", "MI300"]
)
def test_other_products_match_nothing(gpus: GpuCatalogue, product_name: str) -> None:
    assert gpus.by_product_name(product_name) is None


def test_mi300x_pattern_does_not_take_its_siblings(gpus: GpuCatalogue) -> None:
    mi300x, mi308x, mi325x = gpus.get("MI300X"), gpus.get("MI308X"), gpus.get("MI325X")
    for sibling in ("AMD Instinct MI308X", "AMD_Instinct_MI325X_OAM", "MI3000X"):
        assert not mi300x.matches_product(sibling)
    assert not mi308x.matches_product("AMD Instinct MI300X")
    assert not mi325x.matches_product("AMD_Instinct_MI300X_OAM")
    assert not gpus.get("MI250").matches_product("AMD Instinct MI250X")


@pytest.mark.parametrize("name", ["MI210", "MI250", "MI250X"])
def test_gfx90a_has_no_fp8_and_no_aiter(gpus: GpuCatalogue, name: str) -> None:
    spec = gpus.get(name)
    assert spec.arch == "gfx90a"
    assert spec.fp8_format == "none"
    assert "fp8" not in spec.weight_precisions
    assert "fp8" not in spec.peak_tflops
    assert spec.kv_cache_dtypes == ["auto"]
    assert spec.aiter is False
    assert not spec.supports_weights("fp8", None)
    assert not spec.supports_weights("mxfp4", "mxfp4")
    assert spec.supports_weights("int4", "awq")
    assert spec.supports_weights("int4", "gptq")
    assert spec.supports_weights("bf16", None)


@pytest.mark.parametrize(("arch", "fp8_format"), [("gfx942", "fnuz"), ("gfx950", "ocp")])
def test_newer_archs_have_fp8_kv_cache_and_aiter(gpus: GpuCatalogue, arch: str, fp8_format: str) -> None:
    specs = [g for g in gpus.gpus if g.arch == arch]
    assert specs
    for spec in specs:
        assert spec.fp8_format == fp8_format
        assert spec.aiter is True
        assert spec.kv_cache_dtypes == ["auto", "fp8"]
        assert spec.supports_weights("fp8", "fp8")
        assert spec.supports_weights("fp8", "compressed-tensors")


@pytest.mark.parametrize("name", ["MI300X", "MI308X", "MI325X"])
def test_gfx942_runs_mxfp4_only_for_the_gpt_oss_format(gpus: GpuCatalogue, name: str) -> None:
    spec = gpus.get(name)
    assert spec.supports_weights("mxfp4", "mxfp4")
    assert not spec.supports_weights("mxfp4", "quark")
    assert not spec.supports_weights("mxfp6", "quark")
    assert "mxfp4" not in spec.peak_tflops  # no MXFP4 matrix cores: compute falls back to bf16
    assert spec.tflops("mxfp4") == spec.peak_tflops["bf16"]


@pytest.mark.parametrize("name", ["MI350X", "MI355X"])
def test_gfx950_runs_every_mx_checkpoint(gpus: GpuCatalogue, name: str) -> None:
    spec = gpus.get(name)
    for method in ("mxfp4", "quark"):
        assert spec.supports_weights("mxfp4", method)
        assert spec.supports_weights("mxfp6", method)
    assert spec.tflops("mxfp4") == spec.tflops("mxfp6") == pytest.approx(4 * spec.tflops("bf16"), rel=1e-4)


def test_mi250_numbers_are_per_gcd(gpus: GpuCatalogue) -> None:
    mi250, mi250x, mi210 = gpus.get("MI250"), gpus.get("MI250X"), gpus.get("MI210")
    assert mi250.devices_per_package == mi250x.devices_per_package == 2
    assert mi210.devices_per_package == 1
    # Per OAM package AMD quotes 128 GB, 3.2 TB/s and 362.1 (MI250) / 383.0 (MI250X) TFLOPS FP16.
    for spec in (mi250, mi250x):
        assert spec.memory_gib == 64
        assert spec.bandwidth_tbps == pytest.approx(3.2768 / 2)
    assert mi250.tflops("bf16") == pytest.approx(362.1 / 2)
    assert mi250x.tflops("fp16") == pytest.approx(383.0 / 2)
    assert mi250.gpus_per_node == mi250x.gpus_per_node == 8  # 4 OAM packages


@pytest.mark.parametrize(
    ("name", "memory", "bandwidth", "bf16", "fp8"),
    [
        ("MI210", 64, 1.6384, 181.0, None),
        ("MI300X", 192, 5.3, 1307.4, 2614.9),
        ("MI308X", 192, 5.3, 344.1, 688.1),
        ("MI325X", 256, 6.0, 1307.4, 2614.9),
        ("MI350X", 288, 8.0, 2306.9, 4613.7),
        ("MI355X", 288, 8.0, 2516.6, 5033.2),
    ],
)
def test_published_numbers(
    gpus: GpuCatalogue, name: str, memory: float, bandwidth: float, bf16: float, fp8: float | None
) -> None:
    spec = gpus.get(name)
    assert spec.memory_gib == memory
    assert spec.bandwidth_tbps == pytest.approx(bandwidth)
    assert spec.peak_tflops["bf16"] == pytest.approx(bf16)
    assert spec.peak_tflops.get("fp8") == (pytest.approx(fp8) if fp8 else None)


def test_every_spec_names_a_public_source(gpus: GpuCatalogue) -> None:
    for spec in gpus.gpus:
        assert "https://" in spec.provenance or "pci.ids" in spec.provenance, spec.name
        assert spec.xgmi_gbps > 0
        assert spec.tflops("int4") == spec.peak_tflops["bf16"]  # int4 weights compute in bf16


def test_partitioned_mi300x_scales_memory_bandwidth_and_compute(gpus: GpuCatalogue) -> None:
    cpx = gpus.get("MI300X").partitioned(24)
    assert cpx.name == "MI300X"
    assert cpx.memory_gib == 24
    assert cpx.bandwidth_tbps == pytest.approx(5.3 / 8)
    assert cpx.tflops("fp8") == pytest.approx(2614.9 / 8)
    assert "partition" in cpx.notes


# --- a broken gpus.yaml is one line naming the file and the field ---------------------------------------------------


def bundled_entries() -> list[dict[str, object]]:
    return yaml.safe_load(GPUS_FILE.read_text(encoding="utf-8"))["gpus"]


def write_gpus(tmp_path: Path, entries: list[dict[str, object]]) -> Path:
    path = tmp_path / "gpus.yaml"
    path.write_text(yaml.safe_dump({"gpus": entries}), encoding="utf-8")
    return path


def test_a_copy_of_the_bundled_file_loads_through_the_uncached_loader(tmp_path: Path) -> None:
    path = write_gpus(tmp_path, bundled_entries())
    catalogue = load_gpus.__wrapped__(path)
    assert catalogue.names == load_gpus().names


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"memory_gib": "lots"}, "gpus.0.memory_gib", "valid number"),
        ({"memory_gib": -1}, "gpus.0.memory_gib", "greater than 0"),
        ({"pci_device_ids": ["74a1x"]}, "gpus.0.pci_device_ids", "not four hex digits"),
        ({"product_name_patterns": ["MI300X("]}, "gpus.0.product_name_patterns", "not a valid regex"),
        ({"fp8_format": "fnuz"}, "gpus.0", "fp8 must be in weight_precisions"),
        ({"aiter": True}, "gpus.0", "aiter is available exactly on gfx942 and gfx950"),
        ({"arch": "gfx1100"}, "gpus.0.arch", "gfx90a"),
        ({"colour": "red"}, "gpus.0.colour", "Extra inputs"),
    ],
)
def test_a_bad_entry_is_one_line_naming_file_and_field(
    tmp_path: Path, change: dict[str, object], field: str, problem: str
) -> None:
    entries = bundled_entries()
    entries[0] = {**entries[0], **change}
    path = write_gpus(tmp_path, entries)
    with pytest.raises(AimError) as error:
        load_gpus.__wrapped__(path)
    message = one_line(error)
    assert str(path) in message
    assert f"field {field}" in message
    assert problem in message


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    entries = bundled_entries()
    del entries[3]["memory_gib"]
    path = write_gpus(tmp_path, entries)
    with pytest.raises(AimError) as error:
        load_model(path, GpuCatalogue)
    assert f"{path}: field gpus.3.memory_gib: required but missing" == one_line(error)


def test_a_duplicate_name_is_rejected(tmp_path: Path) -> None:
    entries = bundled_entries()
    entries.append({**entries[3], "aliases": []})
    with pytest.raises(AimError) as error:
        load_model(write_gpus(tmp_path, entries), GpuCatalogue)
    assert "'MI300X' is listed twice" in one_line(error)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "gpus.yaml"
    path.write_text("gpus:\n  - name: MI300X\n    memory_gib: [192\n", encoding="utf-8")
    with pytest.raises(AimError) as error:
        load_gpus.__wrapped__(path)
    assert one_line(error).startswith(f"{path}: line ")


def test_gpu_spec_is_frozen(gpus: GpuCatalogue) -> None:
    spec: GpuSpec = gpus.get("MI300X")
    with pytest.raises(ValueError):
        spec.memory_gib = 1  # type: ignore[misc]
