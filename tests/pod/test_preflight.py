"""The serving container's preflight: GPUs from faked amd-smi/rocm-smi output and model directories, one line each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aim_infra.pod import preflight
from aim_infra.pod.download import MARKER_NAME, local_files, record_file, write_marker
from aim_infra.pod.hub_digest import file_digest

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "aim-entrypoint.sh"
CI = os.environ.get("AIM_TESTS_REQUIRE_TOOLS") == "1"

# --------------------------------------------------------------------------------------------------------------------
# faked GPU tools


def amd_smi_gpu(
    index: int,
    market_name: str = "AMD Instinct MI300X",
    device_id: str = "0x74a1",
    compute_units: int = 304,
    vram_mb: int = 196592,
    partition: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One GPU as `amd-smi static --json` prints it (asic, bus, vram, partition blocks)."""
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
            "asic_serial": f"0x8A2E6C1D94E1F0{index:02X}",
            "oam_id": index,
            "num_compute_units": compute_units,
            "target_graphics_version": "gfx942",
        },
        "bus": {"bdf": f"0000:{0x05 + index:02x}:00.0", "max_pcie_width": 16, "max_pcie_speed": "32 GT/s"},
        "vbios": {"name": "AMD MI300X_HW_SRIOV_CVS_1VF", "part_number": "113-M3000100-102"},
        "vram": {"type": "HBM", "vendor": "N/A", "size": {"value": vram_mb, "unit": "MB"}, "bit_width": 8192},
        "partition": partition or {"compute_partition": "SPX", "memory_partition": "NPS1", "partition_id": 0},
    }


def amd_smi_list(count: int, **kwargs: Any) -> str:
    """ROCm 6.x shape: a top-level list of GPUs."""
    return json.dumps([amd_smi_gpu(i, **kwargs) for i in range(count)], indent=4)


def amd_smi_gpu_data(count: int, **kwargs: Any) -> str:
    """Later shape: an object whose gpu_data holds the list (beside cpu_data, core_data)."""
    return json.dumps({"cpu_data": [], "core_data": [], "gpu_data": [amd_smi_gpu(i, **kwargs) for i in range(count)]})


def rocm_smi_cards(count: int) -> str:
    cards = {
        f"card{i}": {
            "Card Series": "AMD Instinct MI300X OAM",
            "Card Model": "0x74a1",
            "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]",
            "GPU ID": "0x74a1",
            "VRAM Total Memory (B)": "205822885888",
            "VRAM Total Used Memory (B)": "296091648",
        }
        for i in range(count)
    }
    return json.dumps({**cards, "system": {"Driver version": "6.10.5"}})


def tool(directory: Path, name: str, stdout: str = "", *, stderr: str = "", code: int = 0, sleep: float = 0) -> Path:
    """An executable shell script standing in for amd-smi/rocm-smi; it records its arguments in `<name>.args`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    (directory / f"{name}.json").write_text(stdout)
    lines = ["#!/bin/sh", f'echo "$@" > "{directory / name}.args"']
    if sleep:
        lines.append(f"sleep {sleep}")
    lines.append(f'cat "{directory / name}.json"')
    if stderr:
        lines.append(f"echo '{stderr}' >&2")
    lines.append(f"exit {code}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------------------------------------------------
# model directories


def make_model(directory: Path, *, shards: int = 2, index: bool = True, marker: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
    (directory / "tokenizer.json").write_text("{}")
    names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    if not index:
        names = ["model.safetensors"]
    for number, name in enumerate(names):
        (directory / name).write_bytes(b"\x08" + bytes(7) + b"{}      " + bytes(1000 * (number + 1)))
    if index:
        weight_map = {f"layers.{i}.weight": name for i, name in enumerate(names)}
        (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    if marker:
        files = local_files(directory)
        records = {name: record_file(directory, name, file_digest(directory / name, "sha256")) for name in files}
        write_marker(directory, "org/tiny", "main", "c0ffee" * 6 + "abcd", records)
    return directory


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A clean AIM_* environment without GPU tools on PATH or /dev/dri; tests set what they check."""
    for name in list(os.environ):
        if name.startswith("AIM_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    values = {
        "PATH": f"{empty}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "ROCM_PATH": str(tmp_path / "no-rocm"),
        "AIM_DRI_DIR": str(tmp_path / "no-dri"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    yield values


def configure(monkeypatch: pytest.MonkeyPatch, **values: str | Path) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))


def run_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = preflight.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_module(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "aim_infra.pod.preflight", *args], env=full, capture_output=True, text=True, timeout=60
    )


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, f"expected exactly one line, got {lines!r}"
    assert "Traceback" not in text
    return lines[0]


def failure(capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run_in_process(capsys)
    assert (code, out) == (1, ""), err
    return one_line(err)


# --------------------------------------------------------------------------------------------------------------------
# GPUs


@pytest.mark.parametrize("shape", [amd_smi_list, amd_smi_gpu_data], ids=["list", "gpu_data"])
def test_matching_gpus_pass_with_one_summary_line(
    shape: Any, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    smi = tool(tmp_path / "bin", "amd-smi", shape(8))
    configure(monkeypatch, AIM_SMI_COMMAND=smi, AIM_GPU="MI300X", AIM_GPU_COUNT="8")
    code, out, err = run_in_process(capsys)
    assert (code, err) == (0, "")
    assert one_line(out) == (
        "aim preflight: ok: 8 × MI300X as the recipe expects (amd-smi); model check skipped (AIM_MODEL_DIR unset)"
    )


def test_wrong_gpu_count(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    smi = tool(tmp_path / "bin", "amd-smi", amd_smi_list(4))
    configure(monkeypatch, AIM_SMI_COMMAND=smi, AIM_GPU="MI300X", AIM_GPU_COUNT="8")
    assert failure(capsys) == "aim preflight: recipe expects 8 × MI300X, amd-smi shows 4 × MI300X"


def test_wrong_gpu_type(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    output = amd_smi_gpu_data(8, market_name="AMD Instinct MI325X", device_id="0x74a5", vram_mb=262128)
    configure(monkeypatch, AIM_SMI_COMMAND=tool(tmp_path / "bin", "amd-smi", output), AIM_GPU="mi300x")
    configure(monkeypatch, AIM_GPU_COUNT="8")
    assert failure(capsys) == "aim preflight: recipe expects 8 × MI300X, amd-smi shows 8 × MI325X"


def test_type_only_and_count_only(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(monkeypatch, AIM_SMI_COMMAND=tool(tmp_path / "bin", "amd-smi", amd_smi_list(2)), AIM_GPU="MI355X")
    assert failure(capsys) == "aim preflight: recipe expects MI355X GPUs, amd-smi shows 2 × MI300X"
    monkeypatch.delenv("AIM_GPU")
    configure(monkeypatch, AIM_GPU_COUNT="2")
    code, out, _ = run_in_process(capsys)
    assert code == 0 and out.startswith("aim preflight: ok: 2 × MI300X as the recipe expects (amd-smi)")


def test_partitioned_gpus_are_not_the_recipe_gpu(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cpx = {"accelerator_partition": "CPX", "memory_partition": "NPS4", "partition_id": 0}
    output = amd_smi_gpu_data(64, compute_units=38, vram_mb=24560, partition=cpx)
    configure(monkeypatch, AIM_SMI_COMMAND=tool(tmp_path / "bin", "amd-smi", output), AIM_GPU="MI300X")
    configure(monkeypatch, AIM_GPU_COUNT="8")
    assert failure(capsys) == (
        "aim preflight: recipe expects 8 × MI300X, amd-smi shows 64 × MI300X partitions of 24 GiB"
    )


def test_render_nodes_limit_what_the_container_can_use(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """amd-smi reads the host's sysfs and lists all 8 GPUs; the device plugin mounted only 4 render nodes."""
    dri = tmp_path / "dri"
    dri.mkdir()
    for number in range(128, 132):
        (dri / f"renderD{number}").touch()
        (dri / f"card{number - 128}").touch()
    smi = tool(tmp_path / "bin", "amd-smi", amd_smi_list(8))
    configure(monkeypatch, AIM_SMI_COMMAND=smi, AIM_GPU="MI300X", AIM_GPU_COUNT="8", AIM_DRI_DIR=dri)
    assert failure(capsys) == (
        "aim preflight: recipe expects 8 × MI300X, amd-smi shows 8 × MI300X and the container has 4 "
        "/dev/dri/renderD* devices"
    )
    configure(monkeypatch, AIM_GPU_COUNT="4")
    code, out, _ = run_in_process(capsys)
    assert code == 0 and "4 × MI300X as the recipe expects (amd-smi, 4 render nodes)" in one_line(out)


def test_amd_smi_is_found_on_path_and_called_with_static_json(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = Path(env["PATH"].split(os.pathsep)[0])
    tool(bin_dir, "amd-smi", amd_smi_list(8))
    tool(bin_dir, "rocm-smi", "not used")
    configure(monkeypatch, AIM_GPU="MI300X", AIM_GPU_COUNT="8")
    code, out, _ = run_in_process(capsys)
    assert code == 0 and "(amd-smi)" in out
    assert (bin_dir / "amd-smi.args").read_text().split() == ["static", "--json"]
    assert not (bin_dir / "rocm-smi.args").exists()


def test_rocm_smi_is_the_fallback_when_amd_smi_is_absent(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rocm_bin = Path(env["ROCM_PATH"]) / "bin"  # /opt/rocm/bin is searched even when it is not on PATH
    tool(rocm_bin, "rocm-smi", "WARNING: AMD GPU device(s) is/are in a low-power state. Check power control\n")
    (rocm_bin / "rocm-smi.json").write_text(
        "WARNING: AMD GPU device(s) is/are in a low-power state.\n" + rocm_smi_cards(8)
    )
    configure(monkeypatch, AIM_GPU="MI300X", AIM_GPU_COUNT="8")
    code, out, err = run_in_process(capsys)
    assert (code, err) == (0, ""), err
    assert "8 × MI300X as the recipe expects (rocm-smi)" in one_line(out)
    called = (rocm_bin / "rocm-smi.args").read_text().split()
    assert called == ["--showproductname", "--showid", "--showmeminfo", "vram", "--json"]
    configure(monkeypatch, AIM_GPU_COUNT="4")
    assert failure(capsys) == "aim preflight: recipe expects 4 × MI300X, rocm-smi shows 8 × MI300X"


def test_no_gpu_tool_in_the_container(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(monkeypatch, AIM_GPU="MI300X", AIM_GPU_COUNT="8")
    assert failure(capsys) == (
        f"aim preflight: neither amd-smi nor rocm-smi is in the container (not on PATH, not in "
        f"{env['ROCM_PATH']}/bin), so its GPUs cannot be read: use a ROCm base image, set AIM_SMI_COMMAND, or "
        "AIM_SKIP_PREFLIGHT=1 to start without the check"
    )
    configure(monkeypatch, AIM_SMI_COMMAND="/nonexistent/amd-smi static --json")
    assert failure(capsys) == (
        "aim preflight: cannot run /nonexistent/amd-smi static --json: /nonexistent/amd-smi not found"
    )


def test_tool_prints_garbage(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    smi = tool(tmp_path / "bin", "amd-smi", "Segmentation fault (core dumped)\n")
    configure(monkeypatch, AIM_SMI_COMMAND=f"{smi} static --json", AIM_GPU="MI300X", AIM_GPU_COUNT="8")
    assert failure(capsys) == (
        f"aim preflight: cannot read the GPUs from {smi} static --json: amd-smi static --json: output is not JSON "
        "(got 'Segmentation fault (core dumped)')"
    )
    (tmp_path / "bin" / "amd-smi.json").write_text('[{"gpu": 0, "asic": {"market_name": "Radeon RX 7900 XTX"')
    assert failure(capsys).startswith(f"aim preflight: cannot read the GPUs from {smi} static --json: ")
    (tmp_path / "bin" / "amd-smi.json").write_text(amd_smi_list(1, market_name="Radeon RX 7900", device_id="0x744c"))
    assert "is not a known AMD Instinct GPU" in failure(capsys)


def test_tool_fails_or_hangs(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tool(tmp_path / "bin", "amd-smi", "", stderr="ERROR:root:Unable to detect any GPU devices", code=2)
    configure(monkeypatch, AIM_SMI_COMMAND=broken, AIM_GPU="MI300X", AIM_GPU_COUNT="8")
    assert failure(capsys) == ("aim preflight: amd-smi failed (exit 2): ERROR:root:Unable to detect any GPU devices")
    slow = tool(tmp_path / "slow", "amd-smi", amd_smi_list(8), sleep=10)
    configure(monkeypatch, AIM_SMI_COMMAND=slow, AIM_SMI_TIMEOUT="0.5")
    assert failure(capsys) == f"aim preflight: {slow} did not answer within 0.5 s (AIM_SMI_TIMEOUT)"


def test_bad_recipe_variables(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(monkeypatch, AIM_GPU="MI999")
    assert failure(capsys).startswith("aim preflight: AIM_GPU: unknown GPU 'MI999': expected one of MI210, ")
    configure(monkeypatch, AIM_GPU="MI300X", AIM_GPU_COUNT="eight")
    assert failure(capsys) == "aim preflight: AIM_GPU_COUNT='eight' is not a whole number ≥ 1"


# --------------------------------------------------------------------------------------------------------------------
# model files


def test_complete_model_directory_passes(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "models" / "tiny")
    configure(monkeypatch, AIM_MODEL_DIR=model, AIM_MODEL="org/tiny", AIM_MODEL_REVISION="main")
    code, out, err = run_in_process(capsys)
    assert (code, err) == (0, "")
    assert one_line(out) == (
        "aim preflight: ok: GPU check skipped (AIM_GPU and AIM_GPU_COUNT unset); "
        f"model org/tiny@main complete in {model} (2 shards, 5 files, 0.0 MiB)"
    )


def test_single_file_model_without_index_passes(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(monkeypatch, AIM_MODEL_DIR=make_model(tmp_path / "m", index=False))
    code, out, _ = run_in_process(capsys)
    assert code == 0 and "(1 safetensors file, 3 files" in out


def test_missing_shard(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "m", shards=5)
    (model / "model-00004-of-00005.safetensors").unlink()
    configure(monkeypatch, AIM_MODEL_DIR=model)
    assert failure(capsys) == (
        f"aim preflight: model in {model} is incomplete: model.safetensors.index.json names 5 shards, 1 are missing "
        "(model-00004-of-00005.safetensors); the model download did not finish"
    )


def test_no_marker(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "m", marker=False)
    configure(monkeypatch, AIM_MODEL_DIR=model)
    assert failure(capsys) == (
        f"aim preflight: {model} has no {MARKER_NAME}: the model download has not completed "
        "(run python3 -m aim_infra.pod.download)"
    )


def test_marker_of_another_model_or_a_shard_cut_short(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "m")
    configure(monkeypatch, AIM_MODEL_DIR=model, AIM_MODEL="meta-llama/Llama-3.1-8B-Instruct")
    assert failure(capsys) == (
        f"aim preflight: {model} holds org/tiny, not meta-llama/Llama-3.1-8B-Instruct: download "
        "meta-llama/Llama-3.1-8B-Instruct into an empty directory"
    )
    monkeypatch.delenv("AIM_MODEL")
    with (model / "model-00002-of-00002.safetensors").open("r+b") as shard:
        shard.truncate(100)
    assert failure(capsys) == (
        f"aim preflight: {model}: 1 of the 5 files of org/tiny are gone or changed since the download: "
        "model-00002-of-00002.safetensors (100 of 2016 bytes); rerun the model download"
    )


def test_model_directory_missing_or_without_config_or_weights(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(monkeypatch, AIM_MODEL_DIR=tmp_path / "nowhere")
    assert failure(capsys) == (
        f"aim preflight: model directory {tmp_path / 'nowhere'} does not exist: is the model cache volume mounted "
        "there?"
    )
    model = make_model(tmp_path / "m")
    (model / "config.json").unlink()
    configure(monkeypatch, AIM_MODEL_DIR=model)
    assert (
        failure(capsys)
        == f"aim preflight: model directory {model} has no config.json: the model download is incomplete"
    )
    bare = make_model(tmp_path / "bare", index=False)
    (bare / "model.safetensors").unlink()
    configure(monkeypatch, AIM_MODEL_DIR=bare)
    assert "has no *.safetensors weights (and no model.safetensors.index.json)" in failure(capsys)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors.index.json").write_text("{truncated")
    configure(monkeypatch, AIM_MODEL_DIR=model)
    assert failure(capsys).startswith(f"aim preflight: cannot read {model / 'model.safetensors.index.json'}: ")


# --------------------------------------------------------------------------------------------------------------------
# the whole program


def test_everything_unset_passes_and_says_what_was_skipped(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_in_process(capsys)
    assert (code, err) == (0, "")
    assert one_line(out) == (
        "aim preflight: ok: GPU check skipped (AIM_GPU and AIM_GPU_COUNT unset); model check skipped "
        "(AIM_MODEL_DIR unset)"
    )


def test_an_unexpected_error_is_still_one_line(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_: Any) -> str:
        raise RuntimeError("disk on fire\n  second line of the message")

    monkeypatch.setattr(preflight, "check_model", broken)
    assert failure(capsys) == "aim preflight: internal error RuntimeError: disk on fire second line of the message"


def test_as_a_module_all_ok_and_mismatch(tmp_path: Path) -> None:
    smi = tool(tmp_path / "bin", "amd-smi", amd_smi_gpu_data(8))
    model = make_model(tmp_path / "models" / "tiny")
    base = {"AIM_SMI_COMMAND": str(smi), "AIM_GPU": "MI300X", "AIM_MODEL_DIR": str(model), "AIM_DRI_DIR": "/none"}
    ok = run_module({**base, "AIM_GPU_COUNT": "8"})
    assert (ok.returncode, ok.stderr) == (0, "")
    assert one_line(ok.stdout) == (
        "aim preflight: ok: 8 × MI300X as the recipe expects (amd-smi); "
        f"model org/tiny@main complete in {model} (2 shards, 5 files, 0.0 MiB)"
    )
    wrong = run_module({**base, "AIM_GPU_COUNT": "4"})
    assert (wrong.returncode, wrong.stdout) == (1, "")
    assert one_line(wrong.stderr) == "aim preflight: recipe expects 4 × MI300X, amd-smi shows 8 × MI300X"
    (model / MARKER_NAME).unlink()
    incomplete = run_module({**base, "AIM_GPU_COUNT": "8"})
    assert incomplete.returncode == 1
    assert one_line(incomplete.stderr).startswith(f"aim preflight: {model} has no {MARKER_NAME}")


def test_missing_or_old_dependencies_are_one_line(tmp_path: Path) -> None:
    old = tmp_path / "old" / "pydantic"
    old.mkdir(parents=True)
    (old / "__init__.py").write_text('VERSION = "1.10.13"\n')
    result = subprocess.run(
        [sys.executable, "-m", "aim_infra.pod.preflight"],
        env={**os.environ, "PYTHONPATH": f"{tmp_path / 'old'}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"aim preflight: the image lacks pydantic>=2 (found 1.10.13) for {sys.executable}: build the AIM image on a "
        "vLLM base image (they ship both) or install them"
    )
    gone = tmp_path / "gone"
    gone.mkdir()
    (gone / "yaml.py").write_text("raise ImportError(\"No module named 'yaml'\")\n")
    result = subprocess.run(
        [sys.executable, "-m", "aim_infra.pod.preflight", "--deps-only"],
        env={**os.environ, "PYTHONPATH": f"{gone}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "the image lacks PyYAML (not installed)" in one_line(result.stderr)


def test_deps_only_and_unexpected_arguments(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_in_process(capsys, "--deps-only")
    assert code == 0 and one_line(out) == "aim preflight: ok: dependencies present; 8 GPUs in the catalogue"
    code, _, err = run_in_process(capsys, "--gpu", "MI300X")
    assert code == 1
    assert one_line(err) == "aim preflight: unexpected arguments --gpu MI300X: the checks read AIM_* variables"


# --------------------------------------------------------------------------------------------------------------------
# the image's entrypoint (docker/aim-entrypoint.sh), run here with the host's sh


def entrypoint(environ: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **environ, "PYTHONPATH": str(ROOT), "AIM_PYTHON": sys.executable}
    return subprocess.run(["sh", str(ENTRYPOINT), *command], env=full, capture_output=True, text=True, timeout=60)


def test_entrypoint_runs_the_command_only_after_the_preflight_passes(tmp_path: Path) -> None:
    smi = tool(tmp_path / "bin", "amd-smi", amd_smi_list(8))
    base = {"AIM_SMI_COMMAND": str(smi), "AIM_GPU": "MI300X", "AIM_DRI_DIR": "/none"}
    passed = entrypoint({**base, "AIM_GPU_COUNT": "8"}, "sh", "-c", 'echo "serving $0 $1"', "a b", "c")
    assert (passed.returncode, passed.stderr) == (0, "")
    assert passed.stdout.splitlines() == [
        "aim preflight: ok: 8 × MI300X as the recipe expects (amd-smi); model check skipped (AIM_MODEL_DIR unset)",
        "serving a b c",  # arguments reach the command unchanged
    ]
    failed = entrypoint({**base, "AIM_GPU_COUNT": "2"}, "sh", "-c", "echo serving")
    assert (failed.returncode, failed.stdout) == (1, "")
    assert one_line(failed.stderr) == "aim preflight: recipe expects 2 × MI300X, amd-smi shows 8 × MI300X"
    skipped = entrypoint({**base, "AIM_GPU_COUNT": "2", "AIM_SKIP_PREFLIGHT": "1"}, "sh", "-c", "echo serving")
    assert skipped.returncode == 0
    assert skipped.stdout.splitlines() == ["aim-entrypoint: preflight skipped (AIM_SKIP_PREFLIGHT=1)", "serving"]
    exit_code = entrypoint({**base, "AIM_GPU_COUNT": "8"}, "sh", "-c", "exit 7")
    assert exit_code.returncode == 7  # exec: the command's status is the container's
    nothing = entrypoint({})
    assert nothing.returncode == 64 and one_line(nothing.stderr).startswith("aim-entrypoint: no command to run")


def test_entrypoint_is_posix_sh_and_shellcheck_clean() -> None:
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    assert os.access(ENTRYPOINT, os.X_OK)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if CI:
            pytest.fail("shellcheck is not installed (apt-get install shellcheck; .ci/run does)")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run([shellcheck, "--shell=sh", str(ENTRYPOINT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------------------------------
# LoRA adapters (AIM_LORA_MODULES, written by stack/decide.py)


def make_adapter(directory: Path, model: str = "org/sql-lora", *, marker: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32, "target_modules": ["q"]}))
    (directory / "adapter_model.safetensors").write_bytes(b"\x08" + bytes(7) + b"{}      " + bytes(500))
    if marker:
        files = local_files(directory)
        records = {name: record_file(directory, name, file_digest(directory / name, "sha256")) for name in files}
        write_marker(directory, model, "main", "be" * 20, records)
    return directory


def lora_env(*entries: dict[str, str]) -> str:
    return json.dumps(list(entries))


def test_complete_adapters_pass_and_are_named_in_the_summary(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "models" / "tiny")
    sql = make_adapter(tmp_path / "models" / "sql")
    chat = make_adapter(tmp_path / "models" / "chat", "org/chat-lora")
    adapters = lora_env(
        {"name": "sql", "path": str(sql), "model": "org/sql-lora", "revision": "main"},
        {"name": "chat-style", "path": str(chat), "model": "org/chat-lora"},
    )
    configure(monkeypatch, AIM_MODEL_DIR=model, AIM_LORA_MODULES=adapters)
    code, out, err = run_in_process(capsys)
    assert (code, err) == (0, "")
    assert one_line(out).endswith("; 2 LoRA adapters complete (sql, chat-style)")


def test_an_incomplete_or_wrong_adapter_stops_the_pod_naming_it(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "m")
    entry = {"name": "sql", "path": str(tmp_path / "sql"), "model": "org/sql-lora"}
    where = f"LoRA adapter sql (org/sql-lora) in {tmp_path / 'sql'}"
    configure(monkeypatch, AIM_MODEL_DIR=model, AIM_LORA_MODULES=lora_env(entry))
    assert failure(capsys) == f"aim preflight: {where}: the directory does not exist: the adapter download has not run"
    sql = make_adapter(tmp_path / "sql", marker=False)
    assert failure(capsys).startswith(f"aim preflight: {where}: {sql} has no {MARKER_NAME}")
    make_adapter(sql, "org/other-lora")
    assert failure(capsys) == (
        f"aim preflight: {where}: {sql} holds org/other-lora, not org/sql-lora: download org/sql-lora into an "
        "empty directory"
    )
    make_adapter(sql)
    (sql / "adapter_model.safetensors").unlink()
    assert failure(capsys) == f"aim preflight: {where} has no *.safetensors weights: the adapter download is incomplete"
    (sql / "adapter_config.json").unlink()
    assert failure(capsys) == f"aim preflight: {where} has no adapter_config.json: the adapter download is incomplete"


@pytest.mark.parametrize(
    "raw",
    ["{not json", '{"name": "sql"}', '[{"name": "sql"}]', '[{"name": "a", "path": "/x", "model": "o/a", "extra": 1}]'],
)
def test_a_malformed_adapter_list_is_one_line(
    raw: str, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(monkeypatch, AIM_MODEL_DIR=make_model(tmp_path / "m"), AIM_LORA_MODULES=raw)
    assert failure(capsys).startswith("aim preflight: AIM_LORA_MODULES is not ")
