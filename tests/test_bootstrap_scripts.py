"""Host bootstrap scripts: shellcheck, then --check and real runs against fake /proc, /etc and /dev trees."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "scripts" / "bootstrap"
PREFLIGHT = BOOTSTRAP / "host-preflight.sh"
MIRROR = BOOTSTRAP / "containerd-registry-mirror.sh"
CI = os.environ.get("AIM_TESTS_REQUIRE_TOOLS") == "1"
SCRIPTS = sorted(BOOTSTRAP.glob("*.sh"))

SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
SWAP_ON = SWAPS_HEADER + "/swap.img                               file\t\t8388604\t\t0\t\t-2\n"
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "net/bridge/bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables": "net/bridge/bridge-nf-call-ip6tables",
    "net.ipv4.ip_forward": "net/ipv4/ip_forward",
}
UBUNTU_2404 = 'NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n'
FSTAB_SWAP = "UUID=abcd / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n"


class FakeHost:
    """A fake root: os-release, /proc/swaps, /proc/modules, /proc/sys, /dev and /etc under tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.os_release = root / "os-release"
        self.swaps = root / "proc" / "swaps"
        self.modules = root / "proc" / "modules"
        self.sys = root / "proc" / "sys"
        self.dev = root / "dev"
        self.etc = root / "etc"

    def make(
        self,
        *,
        os_release: str = UBUNTU_2404,
        swap_on: bool = False,
        modules: tuple[str, ...] = ("overlay", "br_netfilter"),
        sysctl: dict[str, str] | None = None,
        kfd: bool = True,
        persisted: bool = True,
        fstab: str = "UUID=abcd / ext4 defaults 0 1\n",
    ) -> FakeHost:
        if persisted:
            # a real run against a compliant tree writes exactly the persistence files; then apply the problems
            self._write(UBUNTU_2404, False, ("overlay", "br_netfilter"), {}, True, "UUID=abcd / ext4 defaults 0 1\n")
            assert self.run().returncode == 0
        self._write(os_release, swap_on, modules, sysctl or {}, kfd, fstab)
        return self

    def _write(
        self, os_release: str, swap_on: bool, modules: tuple[str, ...], sysctl: dict[str, str], kfd: bool, fstab: str
    ) -> None:
        self.os_release.write_text(os_release)
        self.swaps.parent.mkdir(parents=True, exist_ok=True)
        self.swaps.write_text(SWAP_ON if swap_on else SWAPS_HEADER)
        self.modules.write_text("".join(f"{m} 151552 0 - Live 0x0000000000000000\n" for m in modules))
        values = {key: "1" for key in SYSCTLS} | sysctl
        for key, rel in SYSCTLS.items():
            path = self.sys / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(values[key] + "\n")
        self.dev.mkdir(parents=True, exist_ok=True)
        (self.dev / "kfd").unlink(missing_ok=True)
        if kfd:
            (self.dev / "kfd").write_text("")
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "fstab").write_text(fstab)

    def env(self) -> dict[str, str]:
        return os.environ | {
            "AIM_OS_RELEASE": str(self.os_release),
            "AIM_PROC_SWAPS": str(self.swaps),
            "AIM_PROC_MODULES": str(self.modules),
            "AIM_PROC_SYS": str(self.sys),
            "AIM_DEV": str(self.dev),
            "AIM_ETC": str(self.etc),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(PREFLIGHT), *args], env=self.env(), capture_output=True, text=True, timeout=60, check=False
        )


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


def change_lines(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


# --------------------------------------------------------------------------------------------------------------------
# shellcheck and basic shape


def test_scripts_exist() -> None:
    assert PREFLIGHT in SCRIPTS and MIRROR in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        if CI:
            pytest.fail("shellcheck is not installed (AIM_TESTS_REQUIRE_TOOLS=1)")
        pytest.skip("shellcheck is not installed")
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_header(script: Path) -> None:
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert lines[1].startswith("# ")
    assert "set -euo pipefail" in lines
    assert os.access(script, os.X_OK)


# --------------------------------------------------------------------------------------------------------------------
# host-preflight.sh --check


def test_check_compliant_host_exits_0_without_changes(host: FakeHost) -> None:
    host.make()
    result = host.run("--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert change_lines(result.stdout, "would:") == []
    assert "nothing to change" in result.stdout


def test_check_names_every_needed_change_and_exits_3(host: FakeHost) -> None:
    host.make(
        swap_on=True, modules=("overlay",), sysctl={"net.ipv4.ip_forward": "0"}, persisted=False, fstab=FSTAB_SWAP
    )
    before = {p: p.read_text() for p in host.root.rglob("*") if p.is_file()}
    result = host.run("--check")
    assert result.returncode == 3, result.stdout + result.stderr
    would = "\n".join(change_lines(result.stdout, "would:"))
    assert "swapoff" in would and "/swap.img" in would
    assert "br_netfilter" in would and "load kernel module overlay" not in would
    assert "net.ipv4.ip_forward=1 (currently 0)" in would
    assert [line for line in would.splitlines() if "set sysctl" in line] == [
        "would: set sysctl net.ipv4.ip_forward=1 (currently 0)"
    ]
    assert "fstab" in would and "modules-load.d/aim.conf" in would and "sysctl.d/99-aim.conf" in would
    assert {p: p.read_text() for p in host.root.rglob("*") if p.is_file()} == before  # nothing changed


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"swap_on": True}, "turn swap off"),
        ({"modules": ("overlay",)}, "load kernel module br_netfilter"),
        ({"sysctl": {"net.bridge.bridge-nf-call-ip6tables": "0"}}, "net.bridge.bridge-nf-call-ip6tables=1"),
    ],
    ids=["swap", "module", "sysctl"],
)
def test_check_single_problem(host: FakeHost, kwargs: dict[str, object], needle: str) -> None:
    host.make(**kwargs)  # type: ignore[arg-type]
    result = host.run("--check")
    assert result.returncode == 3
    would = change_lines(result.stdout, "would:")
    assert len(would) == 1 and needle in would[0], would


@pytest.mark.parametrize(
    "os_release",
    [
        'ID=ubuntu\nVERSION_ID="20.04"\n',
        'ID=debian\nVERSION_ID="11"\n',
        'ID="centos"\nVERSION_ID="7"\n',
        'ID="rocky"\nVERSION_ID="8.9"\n',
        "",
    ],
    ids=["ubuntu-20.04", "debian-11", "centos-7", "rocky-8", "empty"],
)
def test_unsupported_os_refused_with_one_line(host: FakeHost, os_release: str) -> None:
    host.make(os_release=os_release, persisted=False, swap_on=True)
    for args in (("--check",), ()):
        result = host.run(*args)
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and "unsupported OS" in lines[0]
    assert not (host.etc / "sysctl.d").exists()


def test_missing_os_release_refused(host: FakeHost) -> None:
    host.make(persisted=False)
    host.os_release.unlink()
    result = host.run("--check")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "os_release",
    [
        'ID=ubuntu\nVERSION_ID="22.04"\n',
        'ID=debian\nVERSION_ID="12"\n',
        'ID="rhel"\nVERSION_ID="9.4"\n',
        'ID="rocky"\nVERSION_ID="9.5"\n',
    ],
    ids=["ubuntu-22.04", "debian-12", "rhel-9", "rocky-9"],
)
def test_supported_os_accepted(host: FakeHost, os_release: str) -> None:
    host.make(os_release=os_release)
    assert host.run("--check").returncode == 0


def test_missing_gpu_driver_is_an_error(host: FakeHost) -> None:
    host.make(kfd=False)
    result = host.run("--check")
    assert result.returncode == 1
    assert "/dev/kfd" in result.stderr or "kfd" in result.stderr


def test_bad_argument(host: FakeHost) -> None:
    host.make()
    assert host.run("--frobnicate").returncode == 2


# --------------------------------------------------------------------------------------------------------------------
# host-preflight.sh real run against the fake tree


def test_real_run_fixes_everything_once(host: FakeHost) -> None:
    host.make(swap_on=True, modules=(), sysctl={key: "0" for key in SYSCTLS}, persisted=False, fstab=FSTAB_SWAP)
    first = host.run()
    assert first.returncode == 0, first.stdout + first.stderr
    changed = change_lines(first.stdout, "changed:")
    assert len(changed) == 9, changed  # swap, fstab, 2 modules, modules-load.d, 3 sysctls, sysctl.d
    # the system commands were never run against the overridden paths, only announced
    simulated = change_lines(first.stdout, "simulated:")
    assert simulated == [
        "simulated: swapoff -a",
        "simulated: modprobe overlay",
        "simulated: modprobe br_netfilter",
        *(f"simulated: sysctl -q -w {key}=1" for key in SYSCTLS),
    ]
    modules_conf = (host.etc / "modules-load.d" / "aim.conf").read_text()
    assert modules_conf.splitlines()[1:] == ["overlay", "br_netfilter"]
    sysctl_conf = (host.etc / "sysctl.d" / "99-aim.conf").read_text()
    assert sysctl_conf.splitlines()[1:] == [f"{key} = 1" for key in SYSCTLS]
    fstab = (host.etc / "fstab").read_text().splitlines()
    assert fstab[0] == "UUID=abcd / ext4 defaults 0 1"
    assert fstab[1].startswith("#") and "/swap.img" in fstab[1]

    stamps = {p: (p.read_text(), p.stat().st_mtime_ns) for p in host.etc.rglob("*") if p.is_file()}
    second = host.run()
    assert second.returncode == 0
    assert change_lines(second.stdout, "changed:") == [] and change_lines(second.stdout, "simulated:") == []
    assert "nothing to change" in second.stdout
    assert {p: (p.read_text(), p.stat().st_mtime_ns) for p in host.etc.rglob("*") if p.is_file()} == stamps
    assert host.run("--check").returncode == 0


def test_real_run_rewrites_a_drifted_persistence_file(host: FakeHost) -> None:
    host.make()
    conf = host.etc / "sysctl.d" / "99-aim.conf"
    conf.write_text("net.ipv4.ip_forward = 0\n")
    assert host.run("--check").returncode == 3
    result = host.run()
    assert change_lines(result.stdout, "changed:") == [f"changed: wrote {conf} (persist {' '.join(SYSCTLS)})"]
    assert "net.ipv4.ip_forward = 1" in conf.read_text()


# --------------------------------------------------------------------------------------------------------------------
# containerd-registry-mirror.sh


def run_mirror(certs_d: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"AIM_CONTAINERD_CERTS_D": str(certs_d), "AIM_CONTAINERD_CONFIG": str(certs_d / "none.toml")}
    return subprocess.run(
        ["bash", str(MIRROR), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_mirror_writes_hosts_toml_once(tmp_path: Path) -> None:
    certs_d = tmp_path / "certs.d"
    check = run_mirror(certs_d, "--check", "5000")
    assert check.returncode == 3 and check.stdout.startswith("would: create")
    assert not certs_d.exists()

    first = run_mirror(certs_d, "5000")
    assert first.returncode == 0 and first.stdout.startswith("changed: created"), first.stdout + first.stderr
    hosts = certs_d / "localhost:5000" / "hosts.toml"
    lines = [line.strip() for line in hosts.read_text().splitlines()]
    assert 'server = "http://localhost:5000"' in lines
    section = lines.index('[host."http://localhost:5000"]')
    assert lines[section + 1] == 'capabilities = ["pull", "resolve"]'
    assert "restart" not in first.stdout.replace("no restart needed", "")

    mtime = hosts.stat().st_mtime_ns
    second = run_mirror(certs_d, "5000")
    assert second.returncode == 0 and second.stdout.startswith("unchanged:")
    assert hosts.stat().st_mtime_ns == mtime
    recheck = run_mirror(certs_d, "5000", "--check")
    assert recheck.returncode == 0 and recheck.stdout == ""


def test_mirror_rewrites_a_wrong_file(tmp_path: Path) -> None:
    hosts = tmp_path / "localhost:5001" / "hosts.toml"
    hosts.parent.mkdir(parents=True)
    hosts.write_text('server = "https://localhost:5001"\n')
    assert run_mirror(tmp_path, "--check", "5001").stdout.startswith("would: rewrite")
    assert hosts.read_text() == 'server = "https://localhost:5001"\n'
    result = run_mirror(tmp_path, "5001")
    assert result.stdout.startswith("changed: rewrote")
    assert 'server = "http://localhost:5001"' in hosts.read_text()


@pytest.mark.parametrize("args", [(), ("0",), ("65536",), ("abc",), ("5000", "5001"), ("--bogus", "5000")])
def test_mirror_bad_usage(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run_mirror(tmp_path, *args)
    assert result.returncode == 2 and "usage" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_mirror_notes_missing_config_path(tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text("version = 2\n")
    result = run_mirror(tmp_path, "5000")
    assert result.returncode == 0 and "config_path" in result.stderr
