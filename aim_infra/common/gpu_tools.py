"""Run the host's GPU tool (amd-smi, else rocm-smi) and return what it printed: standard library only.

Two callers read GPUs this way: the container's preflight (`aim_infra.pod.preflight`) and `aim:gpu auto` on a host
that kubeadm is about to make the cluster (`aim_infra.stack.cluster`). The output is parsed by
`aim_infra.planning.detect.gpus_from_tool_output`, which needs pydantic and so is not in this module."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from aim_infra.common.errors import AimError

AMD_SMI = ("amd-smi", "static", "--json")
ROCM_SMI = ("rocm-smi", "--showproductname", "--showid", "--showmeminfo", "vram", "--json")
DEFAULT_SMI_TIMEOUT = 60.0


class GpuToolError(AimError):
    """The GPU tool is missing, cannot run, failed or hung; the message names which and what to do."""


def read_gpu_tool(env: Mapping[str, str], where: str) -> tuple[str, str, list[str]]:
    """(output, tool name, argv) of the GPU tool `where` ("in the container" or "on this host") has.

    AIM_SMI_COMMAND replaces the tool (tests), AIM_SMI_TIMEOUT its time limit in seconds."""
    argv, tool = smi_command(env, where)
    raw_timeout = env.get("AIM_SMI_TIMEOUT", "").strip()
    try:
        timeout = float(raw_timeout) if raw_timeout else DEFAULT_SMI_TIMEOUT
    except ValueError:
        raise GpuToolError(f"AIM_SMI_TIMEOUT={raw_timeout!r} is not a number of seconds") from None
    return run_smi(argv, tool, timeout), tool, argv


def smi_command(env: Mapping[str, str], where: str = "in the container") -> tuple[list[str], str]:
    """The GPU tool to run and the name to show for it: AIM_SMI_COMMAND, else amd-smi, else rocm-smi."""
    override = env.get("AIM_SMI_COMMAND", "").strip()
    if override:
        try:
            argv = shlex.split(override)
        except ValueError as error:
            raise GpuToolError(f"AIM_SMI_COMMAND={override!r} cannot be split into words: {error}") from None
        if not argv:
            raise GpuToolError("AIM_SMI_COMMAND is blank")
        return argv, Path(argv[0]).name
    rocm_bin = str(Path(env.get("ROCM_PATH") or "/opt/rocm") / "bin")
    search = os.pathsep.join(p for p in (env.get("PATH", os.defpath), rocm_bin) if p)
    for candidate in (AMD_SMI, ROCM_SMI):
        found = shutil.which(candidate[0], path=search)
        if found:
            return [found, *candidate[1:]], candidate[0]
    fix = (
        "use a ROCm base image, set AIM_SMI_COMMAND, or AIM_SKIP_PREFLIGHT=1 to start without the check"
        if where == "in the container"
        else "install ROCm (amd-smi) on this host"
    )
    raise GpuToolError(
        f"neither amd-smi nor rocm-smi is {where} (not on PATH, not in {rocm_bin}), so its GPUs cannot be read: {fix}"
    )


def run_smi(argv: Sequence[str], tool: str, timeout: float) -> str:
    """The tool's standard output; GpuToolError when it cannot run, fails or hangs."""
    shown = " ".join(argv)
    try:
        # A session of its own, so a timeout kills whatever the tool started as well.
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise GpuToolError(f"cannot run {shown}: {argv[0]} not found") from None
    except PermissionError:
        raise GpuToolError(f"cannot run {shown}: {argv[0]} is not executable") from None
    except OSError as error:
        raise GpuToolError(f"cannot run {shown}: {error.strerror or error}") from None
    with process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise GpuToolError(f"{shown} did not answer within {timeout:g} s (AIM_SMI_TIMEOUT)") from None
    result = subprocess.CompletedProcess(list(argv), process.returncode, stdout, stderr)
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        detail = f": {lines[-1][:200]}" if lines else ""
        raise GpuToolError(f"{tool} failed (exit {result.returncode}){detail}")
    return result.stdout.decode("utf-8", "replace")
