"""Host bootstrap scripts: shellcheck, then --check and real runs against a fake root with fake system commands.

Every script runs with a sandbox PATH that holds only links to harmless tools (coreutils, sed, awk, grep, ...) and
fakes of the system commands (kubeadm, kubectl, systemctl, containerd, ip, sudo, id, ...), which log their argv and
answer from files under the sandbox. Real kubeadm, systemctl, sudo, ip, iptables or docker are never reachable, and
every path the scripts change is under tmp_path. The non-root tests, which cannot use a fake root (any path
override means a simulated run without a root check), additionally run as nobody when the tests run as root.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "scripts" / "bootstrap"
PREFLIGHT = BOOTSTRAP / "host-preflight.sh"
MIRROR = BOOTSTRAP / "containerd-registry-mirror.sh"
CONTAINERD_CONFIG = BOOTSTRAP / "containerd-config.sh"
KUBEADM_INIT = BOOTSTRAP / "kubeadm-init.sh"
KUBEADM_RESET = BOOTSTRAP / "kubeadm-reset.sh"
REGISTRY_VOLUME = BOOTSTRAP / "registry-volume.sh"
LIB = BOOTSTRAP / "lib.sh"
CI = os.environ.get("AIM_TESTS_REQUIRE_TOOLS") == "1"
SCRIPTS = sorted(BOOTSTRAP.glob("*.sh"))
EXECUTABLES = [script for script in SCRIPTS if script != LIB]
BASH = shutil.which("bash") or "/bin/bash"
NOBODY = 65534

SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
SWAP_ON = SWAPS_HEADER + "/swap.img                               file\t\t8388604\t\t0\t\t-2\n"
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "net/bridge/bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables": "net/bridge/bridge-nf-call-ip6tables",
    "net.ipv4.ip_forward": "net/ipv4/ip_forward",
}
UBUNTU_2404 = 'NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n'
FSTAB_SWAP = "UUID=abcd / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n"
KUBE_COMMANDS = ("containerd", "kubeadm", "kubelet", "kubectl")
INSTALL_URL = "https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/"
NEEDS_ROOT = "needs root: run `pulumi up` as root or allow passwordless sudo for this user (sudo -n true failed)"
TAINT = "node-role.kubernetes.io/control-plane:NoSchedule"
#: The stack id the Pulumi program passes (--stack): what the host markers record as their creator.
STACK = "aim/dev"
NODES_JSONPATH = (
    '{range .items[*]}{.metadata.name}{":"}{range .spec.taints[*]}{" "}{.key}{":"}{.effect}{end}{"\\n"}{end}'
)
RESET_NOTE = (
    "note: iptables were not flushed (Docker's rules stay intact), so kube-proxy's KUBE-* and Calico's cali-* rules"
    " remain until reboot; to drop them now: sudo iptables-save | grep -v -e KUBE -e cali- | sudo iptables-restore"
    " (likewise ip6tables-save | ip6tables-restore)"
)

#: Real tools the scripts (and the fakes) may use; the sandbox PATH links these and nothing else.
TOOLS = (
    "bash", "env", "cat", "sed", "awk", "grep", "head", "tail", "tr", "paste", "mktemp", "mv", "rm", "rmdir",
    "mkdir", "chmod", "cp", "cmp", "dirname", "basename", "sleep", "ls", "touch", "sort", "cut", "wc", "tee",
    "readlink", "true", "false", "printf", "stat", "date", "sha256sum",
)  # fmt: skip

# --------------------------------------------------------------------------------------------------------------------
# fake system commands: each logs "NAME ARGS" to $FAKE_LOG, then answers from files in $FAKE_STATE

FAKES: dict[str, str] = {
    "containerd": r"""
if [[ "$*" == "config default" ]]; then
  if [[ ! -f "$FAKE_STATE/containerd-default.toml" ]]; then echo "containerd: no default config" >&2; exit 1; fi
  cat "$FAKE_STATE/containerd-default.toml"
fi
""",
    "systemctl": r"""
if [[ "$1" == is-active ]]; then
  [[ ! -f "$FAKE_STATE/containerd-inactive" ]]
  exit
fi
if [[ -f "$FAKE_STATE/systemctl-fails" ]]; then
  echo "Job for containerd.service failed because the control process exited with error code." >&2
  exit 1
fi
""",
    "kubelet": "",
    "kubeadm": r"""
etc=${AIM_ETC:?the fake kubeadm works on a fake root only}
case "$1" in
  init)
    if [[ -f "$FAKE_STATE/kubeadm-init-fails" ]]; then
      echo "kubeadm join 10.0.0.5:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1234"
      echo "[ERROR Port-6443]: Port 6443 is in use" >&2
      exit 1
    fi
    mkdir -p "$etc/kubernetes/manifests" "$etc/kubernetes/pki"
    printf 'a new cluster CA %s\n' "$RANDOM$RANDOM" >"$etc/kubernetes/pki/ca.crt"
    printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n' >"$etc/kubernetes/admin.conf"
    touch "$etc/kubernetes/manifests/kube-apiserver.yaml"
    printf 'networking:\n  podSubnet: %s\n  serviceSubnet: 10.96.0.0/12\n' "${2#--pod-network-cidr=}" \
      >"$FAKE_STATE/cluster-config"
    echo "aim-node-1: node-role.kubernetes.io/control-plane:NoSchedule" >"$FAKE_STATE/nodes"
    echo "Your Kubernetes control-plane has initialized successfully!"
    echo "kubeadm join 10.0.0.5:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1234"
    ;;
  reset)
    if [[ -f "$FAKE_STATE/kubeadm-reset-fails" ]]; then echo "reset: etcd is busy" >&2; exit 1; fi
    rm -rf "$etc/kubernetes/admin.conf" "$etc/kubernetes/manifests" "$etc/kubernetes/pki"
    echo "[reset] Deleted contents of the etcd data directory: /var/lib/etcd"
    ;;
esac
""",
    "kubectl": r"""
if [[ "${1:-}" != --kubeconfig || ! -r "${2:-}" ]]; then echo "error: no readable --kubeconfig" >&2; exit 1; fi
shift 2
case "$*" in
  "get --raw=/readyz")
    if [[ -f "$FAKE_STATE/api-down" ]]; then
      echo "The connection to the server 10.0.0.1:6443 was refused - did you specify the right host or port?" >&2
      exit 1
    fi
    echo ok
    ;;
  "-n kube-system get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}")
    cat "$FAKE_STATE/cluster-config"
    ;;
  "get nodes -o jsonpath="*) cat "$FAKE_STATE/nodes" ;;
  "taint nodes "*" node-role.kubernetes.io/control-plane:NoSchedule-")
    sed -i "/^$3:/ s| node-role.kubernetes.io/control-plane:NoSchedule||" "$FAKE_STATE/nodes"
    echo "node/$3 untainted"
    ;;
  *) echo "fake kubectl: unexpected arguments: $*" >&2; exit 1 ;;
esac
""",
    "ip": r"""
case "$*" in
  "link show") cat "$FAKE_STATE/links" 2>/dev/null || true ;;
  "link delete "*)
    if [[ -f "$FAKE_STATE/undeletable-$3" ]]; then echo "RTNETLINK answers: Operation not supported" >&2; exit 2; fi
    awk -v l="$3" '/^[0-9]+: / { skip = ($2 == l ":" || index($2, l "@") == 1) } !skip' "$FAKE_STATE/links" \
      >"$FAKE_STATE/links.new"
    mv "$FAKE_STATE/links.new" "$FAKE_STATE/links"
    ;;
  *) echo "fake ip: unexpected arguments: $*" >&2; exit 1 ;;
esac
""",
    "id": r"""
case "$*" in
  -u|-g) echo 1000 ;;
  *) echo "uid=1000(aim) gid=1000(aim) groups=1000(aim)" ;;
esac
""",
    "sudo": r"""
if [[ -f "$FAKE_STATE/sudo-ok" ]]; then exit 0; fi
echo "sudo: a password is required" >&2
exit 1
""",
    # never to be called: their calls show up in the log
    "iptables": "",
    "iptables-save": "",
    "iptables-restore": "",
    "ip6tables": "",
    # volumes are files $FAKE_STATE/volumes/NAME holding the value of their aim.stack label (empty: no label)
    "docker": r"""
volumes=$FAKE_STATE/volumes
case "$*" in
  "volume ls --quiet") if [[ -d "$volumes" ]]; then ls "$volumes"; fi ;;
  "volume inspect --format {{ index .Labels \"aim.stack\" }} "*)
    label=$(cat "$volumes/${*: -1}")
    echo "${label:-<no value>}"
    ;;
  "volume rm "*)
    if [[ -f "$FAKE_STATE/volume-in-use" ]]; then echo "Error response from daemon: volume is in use" >&2; exit 1; fi
    rm "$volumes/$3"
    echo "$3"
    ;;
  *) echo "fake docker: unexpected arguments: $*" >&2; exit 1 ;;
esac
""",
    "swapoff": "",
    "modprobe": "",
    "sysctl": "",
    "chown": "",
}
IS_ACTIVE = "systemctl is-active --quiet containerd"
MUTATING = ("kubeadm init", "kubeadm reset", "systemctl", "kubectl --kubeconfig {admin} taint", "ip link delete")


class Sandbox:
    """A fake root (etc, var/lib, run, home) plus a PATH of tool links and fake commands, under one directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.etc = self.root / "etc"
        self.var_lib = self.root / "var" / "lib"
        self.run_dir = self.root / "run"
        self.kubeconfig = self.root / "home" / "aim" / ".kube" / "aim-dev.conf"
        self.admin = self.etc / "kubernetes" / "admin.conf"
        self.bin = base / "bin"
        self.fakes = base / "fakes"
        self.state = base / "state"
        self.log = base / "calls.log"
        self.init_log = base / "var-log" / "aim-kubeadm-init.log"
        for directory in (self.etc, self.var_lib, self.run_dir, self.bin, self.fakes, self.state):
            directory.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        for tool in TOOLS:
            found = shutil.which(tool)
            if found is not None:
                (self.bin / tool).symlink_to(found)
        for name, body in FAKES.items():
            fake = self.fakes / name
            fake.write_text(f'#!{BASH}\nprintf "%s\\n" "{name} $*" >>"$FAKE_LOG"\n{body}')
            fake.chmod(0o755)

    def env(self, *, fake_root: bool = True, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.fakes}:{self.bin}",
            "HOME": str(self.root / "home" / "aim"),
            "LANG": "C",
            "FAKE_LOG": str(self.log),
            "FAKE_STATE": str(self.state),
            # never the real /var/log, even in the tests that run without a fake root
            "AIM_VAR_LOG": str(self.init_log.parent),
        }
        if fake_root:
            env |= {"AIM_ETC": str(self.etc), "AIM_VAR_LIB": str(self.var_lib), "AIM_RUN": str(self.run_dir)}
        return env | extra

    def run(
        self, script: Path, *args: str, env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BASH, str(script), *args],
            env=self.env() if env is None else env,
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            **kwargs,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def clear_calls(self) -> None:
        self.log.write_text("")

    def remove_fake(self, *names: str) -> None:
        for name in names:
            (self.fakes / name).unlink()

    def flag(self, name: str, on: bool = True) -> None:
        """Switch a fake's behaviour: a file in the state directory (api-down, systemctl-fails, sudo-ok, ...)."""
        if on:
            (self.state / name).touch()
        else:
            (self.state / name).unlink(missing_ok=True)

    def tree(self) -> dict[str, tuple[str, int, int, bytes]]:
        return snapshot(self.root)


def snapshot(root: Path) -> dict[str, tuple[str, int, int, bytes]]:
    """Every entry under root: kind, mode, mtime and content, so any change (or rewrite) shows as a difference."""
    tree: dict[str, tuple[str, int, int, bytes]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        name = str(path.relative_to(root))
        if path.is_symlink():
            tree[name] = ("link", 0, 0, os.readlink(path).encode())
        elif path.is_dir():
            tree[name] = ("dir", info.st_mode, info.st_mtime_ns, b"")
        else:
            tree[name] = ("file", info.st_mode, info.st_mtime_ns, path.read_bytes())
    return tree


@pytest.fixture
def sb(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path / "sandbox")


def lines(output: str) -> list[str]:
    return output.splitlines()


def change_lines(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


def assert_one_error_line(result: subprocess.CompletedProcess[str], script: Path, code: int, *needles: str) -> str:
    """The run failed with `code` and exactly one stderr line, prefixed with the script's name; returns that line."""
    assert result.returncode == code, result.stdout + result.stderr
    errors = lines(result.stderr)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{script.stem}: "), errors[0]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def assert_no_mutating_calls(sb: Sandbox) -> None:
    admin = str(sb.admin)
    for call in sb.calls():
        for prefix in MUTATING:
            assert not call.startswith(prefix.format(admin=admin)), call


# --------------------------------------------------------------------------------------------------------------------
# shellcheck and basic shape


def test_scripts_exist() -> None:
    for script in (PREFLIGHT, MIRROR, CONTAINERD_CONFIG, KUBEADM_INIT, KUBEADM_RESET, REGISTRY_VOLUME, LIB):
        assert script in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        if CI:
            pytest.fail("shellcheck is not installed (AIM_TESTS_REQUIRE_TOOLS=1)")
        pytest.skip("shellcheck is not installed")
    # -x follows `source lib.sh` (each script says source-path=SCRIPTDIR), so lib.sh is checked in context too
    result = subprocess.run(
        ["shellcheck", "-x", str(script)], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", EXECUTABLES, ids=lambda p: p.name)
def test_script_header(script: Path) -> None:
    lines_ = script.read_text().splitlines()
    assert lines_[0] == "#!/usr/bin/env bash"
    assert lines_[1].startswith(f"# {script.name}: ")
    assert "set -euo pipefail" in lines_
    assert "# shellcheck source-path=SCRIPTDIR source=lib.sh" in lines_
    assert 'source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"' in lines_
    assert os.access(script, os.X_OK)


def test_lib_is_sourced_not_run() -> None:
    text = LIB.read_text()
    assert text.startswith("#!/usr/bin/env bash\n# lib.sh: ")
    assert not os.access(LIB, os.X_OK)
    for function in ("aim_die", "aim_help", "aim_simulated", "aim_require_root", "aim_need_cmd"):
        assert f"\n{function}() {{" in text


@pytest.mark.parametrize("script", EXECUTABLES, ids=lambda p: p.name)
def test_help(sb: Sandbox, script: Path) -> None:
    for flag in ("-h", "--help"):
        result = sb.run(script, flag)
        assert result.returncode == 0 and result.stderr == ""
        help_lines = lines(result.stdout)
        assert help_lines[0].startswith(f"{script.name}: ")
        assert any(line.startswith(f"Usage: {script.name}") for line in help_lines)
        assert any(line.startswith("Exit codes:") for line in help_lines)
        assert "set -euo" not in result.stdout
    assert sb.calls() == []


@pytest.mark.parametrize(
    ("script", "args"),
    [
        (PREFLIGHT, ("--frobnicate",)),
        (PREFLIGHT, ("--check", "extra")),
        (MIRROR, ("--remove",)),
        (MIRROR, ("--remove", "0")),
        (MIRROR, ("--check", "--remove", "5000", "5001")),
        (CONTAINERD_CONFIG, ("--bogus",)),
        (CONTAINERD_CONFIG, ("extra",)),
        (KUBEADM_INIT, ()),
        (KUBEADM_INIT, ("--kubeconfig", "/tmp/kc")),
        (KUBEADM_INIT, ("--pod-cidr", "10.244.0.0/16")),
        (KUBEADM_INIT, ("--pod-cidr", "10.244.0.0/16", "--kubeconfig", "")),
        (KUBEADM_INIT, ("--pod-cidr", "10.244.0.0/16", "--kubeconfig")),
        (KUBEADM_INIT, ("--pod-cidr", "10.244.0.0/16", "--kubeconfig", "/tmp/kc", "--wait", "soon")),
        (KUBEADM_INIT, ("--pod-cidr", "10.244.0.0/16", "--kubeconfig", "/tmp/kc", "--wait=-1")),
        (KUBEADM_INIT, ("--pod-cidr", "10.244.0.0/16", "--kubeconfig", "/tmp/kc", "--untaint")),
        (KUBEADM_RESET, ()),
        (KUBEADM_RESET, ("--kubeconfig",)),
        (KUBEADM_RESET, ("--kubeconfig", "")),
        (KUBEADM_RESET, ("--kubeconfig", "/tmp/kc", "--force")),
        (KUBEADM_INIT, ("--pod-cidr", "10.244.0.0/16", "--kubeconfig", "/tmp/kc")),  # no --stack
        (KUBEADM_INIT, ("--stack", "dev", "--pod-cidr", "10.244.0.0/16", "--kubeconfig", "/tmp/kc")),
        (KUBEADM_INIT, ("--stack", "aim/dev;rm", "--pod-cidr", "10.244.0.0/16", "--kubeconfig", "/tmp/kc")),
        (KUBEADM_RESET, ("--kubeconfig", "/tmp/kc")),  # no --stack
        (KUBEADM_RESET, ("--stack", STACK, "--kubeconfig", "/tmp/kc", "--local-path-dir", "/opt/lp")),
        (KUBEADM_RESET, ("--stack", STACK, "--kubeconfig", "/tmp/kc", "--local-path-namespace", "aim")),
        (
            KUBEADM_RESET,
            (
                "--stack",
                STACK,
                "--kubeconfig",
                "/tmp/kc",
                "--local-path-dir",
                "/opt/lp",
                "--local-path-namespace",
                "Bad_NS",
            ),
        ),
        (REGISTRY_VOLUME, ()),
        (REGISTRY_VOLUME, ("--stack", STACK)),
        (REGISTRY_VOLUME, ("--claim", "aim-registry-data")),
        (REGISTRY_VOLUME, ("--stack", STACK, "--claim", "aim-registry-data", "--remove", "aim-registry-data")),
        (REGISTRY_VOLUME, ("--stack", STACK, "--remove", "../etc")),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, tuple) else value.stem,
)
def test_bad_usage_is_one_line_and_exit_2(sb: Sandbox, script: Path, args: tuple[str, ...]) -> None:
    before = sb.tree()
    result = sb.run(script, *args)
    assert_one_error_line(result, script, 2)
    assert result.stdout == ""
    assert sb.tree() == before and sb.calls() == []


# --------------------------------------------------------------------------------------------------------------------
# host-preflight.sh


class FakeHost:
    """A fake root for host-preflight.sh: os-release, /proc/swaps, /proc/modules, /proc/sys, /dev and /etc."""

    def __init__(self, base: Path) -> None:
        self.root = base / "host"
        self.os_release = self.root / "os-release"
        self.swaps = self.root / "proc" / "swaps"
        self.modules = self.root / "proc" / "modules"
        self.sys = self.root / "proc" / "sys"
        self.dev = self.root / "dev"
        self.etc = self.root / "etc"
        self.sandbox = Sandbox(base / "sandbox")

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
        self.root.mkdir(parents=True, exist_ok=True)
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
        return self.sandbox.env(fake_root=False) | {
            "AIM_OS_RELEASE": str(self.os_release),
            "AIM_PROC_SWAPS": str(self.swaps),
            "AIM_PROC_MODULES": str(self.modules),
            "AIM_PROC_SYS": str(self.sys),
            "AIM_DEV": str(self.dev),
            "AIM_ETC": str(self.etc),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.sandbox.run(PREFLIGHT, *args, env=self.env())


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


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
    before = snapshot(host.root)
    result = host.run("--check")
    assert result.returncode == 3, result.stdout + result.stderr
    assert lines(result.stdout) == [
        "would: turn swap off (swapoff -a; active: /swap.img)",
        f"would: comment out swap in {host.etc}/fstab: /swap.img none swap sw 0 0",
        "would: load kernel module br_netfilter (modprobe br_netfilter)",
        f"would: write {host.etc}/modules-load.d/aim.conf (load overlay br_netfilter at boot)",
        "would: set sysctl net.ipv4.ip_forward=1 (currently 0)",
        f"would: write {host.etc}/sysctl.d/99-aim.conf (persist {' '.join(SYSCTLS)})",
    ]
    would = "\n".join(change_lines(result.stdout, "would:"))
    assert "swapoff" in would and "/swap.img" in would
    assert "br_netfilter" in would and "load kernel module overlay" not in would
    assert "net.ipv4.ip_forward=1 (currently 0)" in would
    assert [line for line in would.splitlines() if "set sysctl" in line] == [
        "would: set sysctl net.ipv4.ip_forward=1 (currently 0)"
    ]
    assert "fstab" in would and "modules-load.d/aim.conf" in would and "sysctl.d/99-aim.conf" in would
    assert snapshot(host.root) == before and host.sandbox.calls() == []  # nothing changed, nothing run


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
        assert_one_error_line(result, PREFLIGHT, 2, "unsupported OS")
        assert result.stdout == ""
    assert not (host.etc / "sysctl.d").exists()


def test_missing_os_release_refused(host: FakeHost) -> None:
    host.make(persisted=False)
    host.os_release.unlink()
    assert_one_error_line(host.run("--check"), PREFLIGHT, 2, "unsupported OS")


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
    assert_one_error_line(host.run("--check"), PREFLIGHT, 1, f"{host.dev}/kfd", "ROCm")


@pytest.mark.parametrize(
    "missing", [("kubeadm",), ("kubeadm", "kubectl"), KUBE_COMMANDS], ids=["kubeadm", "kubeadm-kubectl", "all"]
)
def test_missing_kubernetes_commands_are_one_error_line(host: FakeHost, missing: tuple[str, ...]) -> None:
    host.make()
    host.sandbox.remove_fake(*missing)
    result = host.run("--check")
    line = assert_one_error_line(result, PREFLIGHT, 1)
    assert line == (
        f"host-preflight: not on PATH: {', '.join(missing)}: install containerd (distribution package) and"
        f" kubeadm, kubelet, kubectl from pkgs.k8s.io: {INSTALL_URL}"
    )


@pytest.mark.parametrize("check", [False, True], ids=["real", "check"])
def test_a_missing_prerequisite_stops_preflight_before_any_change(host: FakeHost, check: bool) -> None:
    """Regression: swap, fstab, modules and sysctls used to be changed before the missing driver/commands stopped it."""
    host.make(kfd=False, swap_on=True, modules=(), sysctl={"net.ipv4.ip_forward": "0"}, persisted=False,
              fstab=FSTAB_SWAP)  # fmt: skip
    host.sandbox.remove_fake("kubelet")
    before = snapshot(host.root)
    result = host.run(*(["--check"] if check else []))
    assert result.returncode == 1
    errors = lines(result.stderr)
    assert len(errors) == 2 and "kfd" in errors[0] and "not on PATH: kubelet:" in errors[1]
    assert result.stdout == ""  # no "changed:", no "would:", no "simulated:" command
    assert snapshot(host.root) == before  # swap still on, fstab, modules, sysctls and /etc untouched
    assert not any(call.split()[0] in {"swapoff", "modprobe", "sysctl"} for call in host.sandbox.calls())
    (host.dev / "kfd").write_text("")
    # the fixes apply once the prerequisites are there (the driver and kubelet back)
    (host.sandbox.fakes / "kubelet").write_text(f"#!{BASH}\n")
    (host.sandbox.fakes / "kubelet").chmod(0o755)
    fixed = host.run()
    assert fixed.returncode == 0, fixed.stderr
    assert "changed: sysctl net.ipv4.ip_forward=1 (was 0)" in lines(fixed.stdout)


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
    assert host.sandbox.calls() == []
    modules_conf = (host.etc / "modules-load.d" / "aim.conf").read_text()
    assert modules_conf.splitlines()[1:] == ["overlay", "br_netfilter"]
    sysctl_conf = (host.etc / "sysctl.d" / "99-aim.conf").read_text()
    assert sysctl_conf.splitlines()[1:] == [f"{key} = 1" for key in SYSCTLS]
    fstab = (host.etc / "fstab").read_text().splitlines()
    assert fstab[0] == "UUID=abcd / ext4 defaults 0 1"
    assert fstab[1].startswith("#") and "/swap.img" in fstab[1]

    before = snapshot(host.root)
    second = host.run()
    assert second.returncode == 0
    assert change_lines(second.stdout, "changed:") == [] and change_lines(second.stdout, "simulated:") == []
    assert "nothing to change" in second.stdout
    assert snapshot(host.root) == before
    assert host.run("--check").returncode == 0


def test_real_run_rewrites_a_drifted_persistence_file(host: FakeHost) -> None:
    host.make()
    conf = host.etc / "sysctl.d" / "99-aim.conf"
    conf.write_text("# Managed by scripts/bootstrap/host-preflight.sh\nnet.ipv4.ip_forward = 0\n")
    assert host.run("--check").returncode == 3
    result = host.run()
    assert change_lines(result.stdout, "changed:") == [f"changed: wrote {conf} (persist {' '.join(SYSCTLS)})"]
    assert "net.ipv4.ip_forward = 1" in conf.read_text()


def undo_note(host: FakeHost) -> str:
    return (
        f"note: --undo does not turn swap back on (the swap lines in {host.etc}/fstab stay commented out), unload"
        " overlay br_netfilter or reset the live sysctls; modules and sysctls revert at the next reboot"
    )


def test_undo_removes_the_persisted_files_once(host: FakeHost) -> None:
    host.make(fstab=FSTAB_SWAP)
    modules_conf = host.etc / "modules-load.d" / "aim.conf"
    sysctl_conf = host.etc / "sysctl.d" / "99-aim.conf"
    assert modules_conf.is_file() and sysctl_conf.is_file()

    before = snapshot(host.root)
    check = host.run("--undo", "--check")
    assert check.returncode == 3, check.stdout + check.stderr
    assert lines(check.stdout) == [f"would: remove {modules_conf}", f"would: remove {sysctl_conf}", undo_note(host)]
    assert snapshot(host.root) == before

    first = host.run("--undo")
    assert first.returncode == 0 and first.stderr == ""
    assert lines(first.stdout) == [
        f"changed: removed {modules_conf}",
        f"changed: removed {sysctl_conf}",
        undo_note(host),
    ]
    assert not modules_conf.exists() and not sysctl_conf.exists()
    kept = {name: entry for name, entry in before.items() if entry[0] == "file" and not name.endswith("aim.conf")}
    assert {name: entry for name, entry in snapshot(host.root).items() if entry[0] == "file"} == kept
    assert "\n/swap.img none swap" in (host.etc / "fstab").read_text()  # fstab, /proc and /dev untouched

    before = snapshot(host.root)
    second = host.run("--undo")
    assert second.returncode == 0
    assert lines(second.stdout) == [undo_note(host), "host-preflight: nothing to change"]
    assert snapshot(host.root) == before
    assert host.run("--check", "--undo").returncode == 0
    assert host.sandbox.calls() == []


def test_undo_leaves_files_it_did_not_write(host: FakeHost) -> None:
    host.make()
    sysctl_conf = host.etc / "sysctl.d" / "99-aim.conf"
    sysctl_conf.write_text("net.ipv4.ip_forward = 1\n# Managed by scripts/bootstrap/host-preflight.sh\n")
    result = host.run("--undo")
    assert result.returncode == 0
    assert lines(result.stdout)[1] == (
        f'note: left {sysctl_conf}: it does not start with "# Managed by scripts/bootstrap/host-preflight.sh",'
        " so this script did not write it"
    )
    assert sysctl_conf.exists() and not (host.etc / "modules-load.d" / "aim.conf").exists()


def test_undo_skips_the_os_driver_and_command_checks(host: FakeHost) -> None:
    host.make(os_release='ID=ubuntu\nVERSION_ID="20.04"\n', kfd=False)
    host.sandbox.remove_fake(*KUBE_COMMANDS)
    result = host.run("--undo")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert len(change_lines(result.stdout, "changed: removed")) == 2


# --------------------------------------------------------------------------------------------------------------------
# containerd-registry-mirror.sh


def certs_dir(sb: Sandbox) -> Path:
    return sb.etc / "containerd" / "certs.d"


def test_mirror_writes_hosts_toml_once(sb: Sandbox) -> None:
    certs_d = certs_dir(sb)
    check = sb.run(MIRROR, "--check", "5000")
    assert check.returncode == 3 and check.stdout.startswith("would: create")
    assert not certs_d.exists()

    first = sb.run(MIRROR, "5000")
    assert first.returncode == 0 and first.stdout.startswith("changed: created"), first.stdout + first.stderr
    hosts = certs_d / "localhost:5000" / "hosts.toml"
    text = hosts.read_text()
    assert text.startswith("# Managed by scripts/bootstrap/containerd-registry-mirror.sh")
    assert tomllib.loads(text) == {
        "server": "http://localhost:5000",
        "host": {"http://localhost:5000": {"capabilities": ["pull", "resolve"]}},
    }
    assert "restart" not in first.stdout.replace("no restart needed", "")

    before = sb.tree()
    second = sb.run(MIRROR, "5000")
    assert second.returncode == 0 and lines(second.stdout) == [f"unchanged: {hosts}"]
    assert sb.tree() == before
    recheck = sb.run(MIRROR, "5000", "--check")
    assert recheck.returncode == 0 and recheck.stdout == ""
    assert sb.calls() == []


def test_mirror_rewrites_a_wrong_file(sb: Sandbox) -> None:
    hosts = certs_dir(sb) / "localhost:5001" / "hosts.toml"
    hosts.parent.mkdir(parents=True)
    hosts.write_text('server = "https://localhost:5001"\n')
    assert sb.run(MIRROR, "--check", "5001").stdout.startswith("would: rewrite")
    assert hosts.read_text() == 'server = "https://localhost:5001"\n'
    result = sb.run(MIRROR, "5001")
    assert result.stdout.startswith("changed: rewrote")
    assert 'server = "http://localhost:5001"' in hosts.read_text()


def test_mirror_honours_the_certs_d_override(sb: Sandbox, tmp_path: Path) -> None:
    env = sb.env(fake_root=False, AIM_CONTAINERD_CERTS_D=str(tmp_path / "certs.d"))
    result = sb.run(MIRROR, "5000", env=env | {"AIM_CONTAINERD_CONFIG": str(tmp_path / "none.toml")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "certs.d" / "localhost:5000" / "hosts.toml").is_file()


@pytest.mark.parametrize("args", [(), ("0",), ("65536",), ("abc",), ("5000", "5001"), ("--bogus", "5000")])
def test_mirror_bad_usage(sb: Sandbox, args: tuple[str, ...]) -> None:
    result = sb.run(MIRROR, *args)
    assert_one_error_line(result, MIRROR, 2, "usage")
    assert list(sb.etc.iterdir()) == []


@pytest.mark.parametrize(
    ("config", "noted"),
    [
        ("version = 2\n", True),
        ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ""\n', True),
        (
            'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n',
            False,
        ),
    ],
    ids=["no-config-path", "empty-config-path", "configured"],
)
def test_mirror_notes_a_config_path_without_certs_d(sb: Sandbox, config: str, noted: bool) -> None:
    (sb.etc / "containerd").mkdir(parents=True)
    (sb.etc / "containerd" / "config.toml").write_text(config)
    result = sb.run(MIRROR, "5000")
    assert result.returncode == 0
    assert ("config_path" in result.stderr and "containerd-config.sh" in result.stderr) is noted, result.stderr
    assert len(lines(result.stderr)) == int(noted)


def test_mirror_remove_deletes_its_own_file_once(sb: Sandbox) -> None:
    assert sb.run(MIRROR, "5000").returncode == 0
    directory = certs_dir(sb) / "localhost:5000"
    hosts = directory / "hosts.toml"

    before = sb.tree()
    check = sb.run(MIRROR, "--check", "--remove", "5000")
    assert check.returncode == 3 and lines(check.stdout) == [f"would: remove {hosts}"]
    assert sb.tree() == before

    first = sb.run(MIRROR, "--remove", "5000")
    assert first.returncode == 0 and first.stderr == ""
    assert lines(first.stdout) == [f"changed: removed {hosts} and the empty {directory}"]
    assert not directory.exists() and certs_dir(sb).is_dir()

    before = sb.tree()
    second = sb.run(MIRROR, "5000", "--remove")
    assert second.returncode == 0 and lines(second.stdout) == [f"unchanged: {hosts} is absent"]
    recheck = sb.run(MIRROR, "--remove", "--check", "5000")
    assert recheck.returncode == 0 and recheck.stdout == ""
    assert sb.tree() == before and sb.calls() == []


def test_mirror_remove_keeps_a_directory_with_other_files(sb: Sandbox) -> None:
    assert sb.run(MIRROR, "5000").returncode == 0
    directory = certs_dir(sb) / "localhost:5000"
    (directory / "ca.crt").write_text("cert\n")
    result = sb.run(MIRROR, "--remove", "5000")
    assert lines(result.stdout) == [f"changed: removed {directory / 'hosts.toml'}"]
    assert sorted(p.name for p in directory.iterdir()) == ["ca.crt"]


def test_mirror_remove_leaves_a_foreign_file(sb: Sandbox) -> None:
    hosts = certs_dir(sb) / "localhost:5000" / "hosts.toml"
    hosts.parent.mkdir(parents=True)
    hosts.write_text('server = "https://registry.example:5000"\n')
    before = sb.tree()
    for args in (("--check", "--remove", "5000"), ("--remove", "5000")):
        result = sb.run(MIRROR, *args)
        assert result.returncode == 0 and result.stderr == ""
        assert lines(result.stdout) == [
            f'note: left {hosts}: its first line is not "# Managed by scripts/bootstrap/containerd-registry-mirror.sh'
            '...", so this script did not write it'
        ]
    assert sb.tree() == before


# --------------------------------------------------------------------------------------------------------------------
# containerd-config.sh

#: `containerd config default` of containerd 1.7 (config version 2), lightly abridged (untrusted_workload_runtime,
#: most plugins and timeouts left out), with its distractors: the CRI plugin's own deprecated `systemd_cgroup` and the
#: empty default_runtime.options and registry.mirrors tables.
CONTAINERD_17_DEFAULT = """\
disabled_plugins = []
imports = []
oom_score = 0
plugin_dir = ""
required_plugins = []
root = "/var/lib/containerd"
state = "/run/containerd"
temp = ""
version = 2

[cgroup]
  path = ""

[debug]
  address = ""
  format = ""
  gid = 0
  level = ""
  uid = 0

[grpc]
  address = "/run/containerd/containerd.sock"
  gid = 0
  max_recv_message_size = 16777216
  max_send_message_size = 16777216
  tcp_address = ""
  tcp_tls_ca = ""
  tcp_tls_cert = ""
  tcp_tls_key = ""
  uid = 0

[metrics]
  address = ""
  grpc_histogram = false

[plugins]

  [plugins."io.containerd.gc.v1.scheduler"]
    deletion_threshold = 0
    mutation_threshold = 100
    pause_threshold = 0.02
    schedule_delay = "0s"
    startup_delay = "100ms"

  [plugins."io.containerd.grpc.v1.cri"]
    cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]
    device_ownership_from_security_context = false
    disable_apparmor = false
    disable_cgroup = false
    disable_hugetlb_controller = true
    disable_proc_mount = false
    disable_tcp_service = true
    drain_exec_sync_io_timeout = "0s"
    enable_cdi = false
    enable_selinux = false
    enable_tls_streaming = false
    enable_unprivileged_icmp = false
    enable_unprivileged_ports = false
    ignore_deprecation_warnings = []
    ignore_image_defined_volumes = false
    image_pull_progress_timeout = "5m0s"
    max_concurrent_downloads = 3
    max_container_log_line_size = 16384
    netns_mounts_under_state_dir = false
    restrict_oom_score_adj = false
    sandbox_image = "registry.k8s.io/pause:3.8"
    selinux_category_range = 1024
    stats_collect_period = 10
    stream_idle_timeout = "4h0m0s"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    systemd_cgroup = false
    tolerate_missing_hugetlb_controller = true
    unset_seccomp_profile = ""

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "/etc/cni/net.d"
      conf_template = ""
      ip_pref = ""
      max_conf_num = 1
      setup_serially = false

    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      disable_snapshot_annotations = true
      discard_unpacked_layers = false
      ignore_blockio_not_enabled_errors = false
      ignore_rdt_not_enabled_errors = false
      no_pivot = false
      snapshotter = "overlayfs"

      [plugins."io.containerd.grpc.v1.cri".containerd.default_runtime]
        base_runtime_spec = ""
        cni_conf_dir = ""
        cni_max_conf_num = 0
        container_annotations = []
        pod_annotations = []
        privileged_without_host_devices = false
        privileged_without_host_devices_all_devices_allowed = false
        runtime_engine = ""
        runtime_path = ""
        runtime_root = ""
        runtime_type = ""
        sandbox_mode = ""
        snapshotter = ""

        [plugins."io.containerd.grpc.v1.cri".containerd.default_runtime.options]

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          base_runtime_spec = ""
          cni_conf_dir = ""
          cni_max_conf_num = 0
          container_annotations = []
          pod_annotations = []
          privileged_without_host_devices = false
          privileged_without_host_devices_all_devices_allowed = false
          runtime_engine = ""
          runtime_path = ""
          runtime_root = ""
          runtime_type = "io.containerd.runc.v2"
          sandbox_mode = "podsandbox"
          snapshotter = ""

          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            BinaryName = ""
            CriuImagePath = ""
            CriuPath = ""
            CriuWorkPath = ""
            IoGid = 0
            IoUid = 0
            NoNewKeyring = false
            NoPivotRoot = false
            Root = ""
            ShimCgroup = ""
            SystemdCgroup = false

    [plugins."io.containerd.grpc.v1.cri".image_decryption]
      key_model = "node"

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""

      [plugins."io.containerd.grpc.v1.cri".registry.auths]

      [plugins."io.containerd.grpc.v1.cri".registry.configs]

      [plugins."io.containerd.grpc.v1.cri".registry.headers]

      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]

    [plugins."io.containerd.grpc.v1.cri".x509_key_pair_streaming]
      tls_cert_file = ""
      tls_key_file = ""

  [plugins."io.containerd.internal.v1.opt"]
    path = "/opt/containerd"

  [plugins."io.containerd.runtime.v2.task"]
    platforms = ["linux/amd64"]
    sched_core = false

  [plugins."io.containerd.snapshotter.v1.overlayfs"]
    mount_options = []
    root_path = ""
    sync_remove = false
    upperdir_label = false

[proxy_plugins]

[stream_processors]

[timeouts]
  "io.containerd.timeout.bolt.open" = "0s"
  "io.containerd.timeout.shim.cleanup" = "5s"
  "io.containerd.timeout.shim.load" = "5s"
  "io.containerd.timeout.shim.shutdown" = "3s"
  "io.containerd.timeout.task.state" = "2s"

[ttrpc]
  address = ""
  gid = 0
  uid = 0
"""

#: `containerd config default` of containerd 2.2 (config version 3, go-toml v2's single quotes), lightly abridged.
CONTAINERD_22_DEFAULT = """\
version = 3
root = '/var/lib/containerd'
state = '/run/containerd'
temp = ''
disabled_plugins = []
required_plugins = []
oom_score = 0
imports = []

[grpc]
  address = '/run/containerd/containerd.sock'
  tcp_address = ''
  tcp_tls_ca = ''
  tcp_tls_cert = ''
  tcp_tls_key = ''
  uid = 0
  gid = 0
  max_recv_message_size = 16777216
  max_send_message_size = 16777216

[ttrpc]
  address = ''
  uid = 0
  gid = 0

[debug]
  address = ''
  uid = 0
  gid = 0
  level = ''
  format = ''

[metrics]
  address = ''
  grpc_histogram = false

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    disable_snapshot_annotations = true
    discard_unpacked_layers = false
    max_concurrent_downloads = 3
    concurrent_layer_fetch_buffer = 0
    image_pull_progress_timeout = '5m0s'
    image_pull_with_sync_fs = false
    stats_collect_period = 10
    use_local_image_pull = false

    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'registry.k8s.io/pause:3.10.1'

    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '/etc/containerd/certs.d:/etc/docker/certs.d'

    [plugins.'io.containerd.cri.v1.images'.image_decryption]
      key_model = 'node'

  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    selinux_category_range = 1024
    max_container_log_line_size = 16384
    disable_apparmor = false
    restrict_oom_score_adj = false
    disable_proc_mount = false
    unset_seccomp_profile = ''
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    device_ownership_from_security_context = false
    ignore_image_defined_volumes = false
    netns_mounts_under_state_dir = false
    enable_unprivileged_ports = true
    enable_unprivileged_icmp = true
    enable_cdi = true
    cdi_spec_dirs = ['/etc/cdi', '/var/run/cdi']
    drain_exec_sync_io_timeout = '0s'
    ignore_deprecation_warnings = []

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      ignore_blockio_not_enabled_errors = false
      ignore_rdt_not_enabled_errors = false

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
          runtime_type = 'io.containerd.runc.v2'
          runtime_path = ''
          pod_annotations = []
          container_annotations = []
          privileged_without_host_devices = false
          privileged_without_host_devices_all_devices_allowed = false
          cgroup_writable = false
          base_runtime_spec = ''
          cni_conf_dir = ''
          cni_max_conf_num = 0
          snapshotter = ''
          sandboxer = 'podsandbox'
          io_type = ''

          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
            BinaryName = ''
            CriuImagePath = ''
            CriuWorkPath = ''
            IoGid = 0
            IoUid = 0
            NoNewKeyring = false
            Root = ''
            ShimCgroup = ''
            SystemdCgroup = false

    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/opt/cni/bin']
      conf_dir = '/etc/cni/net.d'
      max_conf_num = 1
      setup_serially = false
      conf_template = ''
      ip_pref = ''
      use_internal_loopback = false

  [plugins.'io.containerd.gc.v1.scheduler']
    pause_threshold = 0.02
    deletion_threshold = 0
    mutation_threshold = 100
    schedule_delay = '0s'
    startup_delay = '100ms'

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
    stream_idle_timeout = '4h0m0s'
    enable_tls_streaming = false

    [plugins.'io.containerd.grpc.v1.cri'.x509_key_pair_streaming]
      tls_cert_file = ''
      tls_key_file = ''

  [plugins.'io.containerd.snapshotter.v1.overlayfs']
    root_path = ''
    upperdir_label = false
    sync_remove = false
    slow_chown = false
    mount_options = []

[cgroup]
  path = ''

[timeouts]
  'io.containerd.timeout.bolt.open' = '0s'
  'io.containerd.timeout.cri.defercleanup' = '1m0s'
  'io.containerd.timeout.shim.cleanup' = '5s'
  'io.containerd.timeout.shim.load' = '5s'
  'io.containerd.timeout.shim.shutdown' = '3s'
  'io.containerd.timeout.task.state' = '2s'
"""

#: containerd 2.0's default differs where it matters: an empty config_path and no SystemdCgroup among runc's options.
CONTAINERD_20_DEFAULT = CONTAINERD_22_DEFAULT.replace(
    "config_path = '/etc/containerd/certs.d:/etc/docker/certs.d'", "config_path = ''"
).replace("            ShimCgroup = ''\n            SystemdCgroup = false\n", "            ShimCgroup = ''\n")
assert CONTAINERD_20_DEFAULT.count("config_path = ''") == 1 and "SystemdCgroup" not in CONTAINERD_20_DEFAULT

V2_RUNC = 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options'
V2_REGISTRY = 'plugins."io.containerd.grpc.v1.cri".registry'
V3_RUNC = "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options"
V3_REGISTRY = "plugins.'io.containerd.cri.v1.images'.registry"


def v2_keys(config: str) -> tuple[Any, Any]:
    cri = tomllib.loads(config)["plugins"]["io.containerd.grpc.v1.cri"]
    return cri["containerd"]["runtimes"]["runc"]["options"].get("SystemdCgroup"), cri["registry"].get("config_path")


def v3_keys(config: str) -> tuple[Any, Any]:
    plugins = tomllib.loads(config)["plugins"]
    runc = plugins["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
    return runc["options"].get("SystemdCgroup"), plugins["io.containerd.cri.v1.images"]["registry"].get("config_path")


def config_file(sb: Sandbox) -> Path:
    return sb.etc / "containerd" / "config.toml"


def write_config(sb: Sandbox, text: str) -> Path:
    config = config_file(sb)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    return config


def line_diff(old: str, new: str) -> tuple[list[str], list[str]]:
    """The lines removed from and added to old, in order."""
    diff = list(difflib.ndiff(old.splitlines(), new.splitlines()))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


def test_containerd_config_generates_a_missing_file_once(sb: Sandbox) -> None:
    (sb.state / "containerd-default.toml").write_text(CONTAINERD_17_DEFAULT)
    config = config_file(sb)
    expected = [
        f"generate {config} (containerd config default)",
        f"set SystemdCgroup = true (was false) in [{V2_RUNC}]",
        f'set config_path = "/etc/containerd/certs.d" (was empty) in [{V2_REGISTRY}]',
    ]

    before = sb.tree()
    check = sb.run(CONTAINERD_CONFIG, "--check")
    assert check.returncode == 3, check.stdout + check.stderr
    assert lines(check.stdout) == [f"would: {e}" for e in expected] + [
        "would: restart containerd (systemctl restart containerd)"
    ]
    assert sb.tree() == before and sb.calls() == ["containerd config default"]

    sb.clear_calls()
    first = sb.run(CONTAINERD_CONFIG)
    assert first.returncode == 0, first.stdout + first.stderr
    assert lines(first.stdout) == [
        f"changed: generated {config} (containerd config default)",
        *(f"changed: {e}" for e in expected[1:]),
        "changed: restarted containerd",
    ]
    assert sb.calls() == ["containerd config default", "systemctl restart containerd", IS_ACTIVE]
    text = config.read_text()
    assert line_diff(CONTAINERD_17_DEFAULT, text) == (
        ["            SystemdCgroup = false", '      config_path = ""'],
        ["            SystemdCgroup = true", '      config_path = "/etc/containerd/certs.d"'],
    )
    assert v2_keys(text) == (True, "/etc/containerd/certs.d")
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    assert not (config.parent / "config.toml.aim-backup").exists()  # nothing to back up
    assert sorted(p.name for p in config.parent.iterdir()) == ["config.toml"]  # no temporary file left

    sb.clear_calls()
    before = sb.tree()
    second = sb.run(CONTAINERD_CONFIG)
    assert second.returncode == 0
    assert lines(second.stdout) == [
        f"unchanged: {config} (SystemdCgroup = true; config_path includes /etc/containerd/certs.d)"
    ]
    recheck = sb.run(CONTAINERD_CONFIG, "--check")
    assert recheck.returncode == 0 and lines(recheck.stdout) == ["containerd-config: nothing to change"]
    assert sb.tree() == before and sb.calls() == []


@pytest.mark.parametrize(
    ("default", "keys", "edits", "removed", "added"),
    [
        (
            CONTAINERD_17_DEFAULT,
            v2_keys,
            [
                f"set SystemdCgroup = true (was false) in [{V2_RUNC}]",
                f'set config_path = "/etc/containerd/certs.d" (was empty) in [{V2_REGISTRY}]',
            ],
            ["            SystemdCgroup = false", '      config_path = ""'],
            ["            SystemdCgroup = true", '      config_path = "/etc/containerd/certs.d"'],
        ),
        (
            CONTAINERD_22_DEFAULT,
            v3_keys,
            [f"set SystemdCgroup = true (was false) in [{V3_RUNC}]"],
            ["            SystemdCgroup = false"],
            ["            SystemdCgroup = true"],
        ),
        (
            CONTAINERD_20_DEFAULT,
            v3_keys,
            [
                f"set SystemdCgroup = true (was unset) in [{V3_RUNC}]",
                f"set config_path = '/etc/containerd/certs.d' (was empty) in [{V3_REGISTRY}]",
            ],
            ["      config_path = ''"],
            ["      config_path = '/etc/containerd/certs.d'", "            SystemdCgroup = true"],  # in file order
        ),
    ],
    ids=["containerd-1.7", "containerd-2.2", "containerd-2.0"],
)
def test_containerd_config_edits_only_the_two_keys_of_an_existing_file(
    sb: Sandbox,
    default: str,
    keys: Any,
    edits: list[str],
    removed: list[str],
    added: list[str],
) -> None:
    config = write_config(sb, default)
    config.chmod(0o600)
    backup = config.parent / "config.toml.aim-backup"

    before = sb.tree()
    check = sb.run(CONTAINERD_CONFIG, "--check")
    assert check.returncode == 3
    assert lines(check.stdout) == [
        f"would: back up {config} to {backup}",
        *(f"would: {e}" for e in edits),
        "would: restart containerd (systemctl restart containerd)",
    ]
    assert sb.tree() == before and sb.calls() == []

    first = sb.run(CONTAINERD_CONFIG)
    assert first.returncode == 0, first.stdout + first.stderr
    assert lines(first.stdout) == [
        f"changed: backed up {config} to {backup}",
        *(f"changed: {e}" for e in edits),
        "changed: restarted containerd",
    ]
    assert sb.calls() == ["systemctl restart containerd", IS_ACTIVE]
    text = config.read_text()
    assert line_diff(default, text) == (removed, added)
    assert keys(text)[0] is True and "/etc/containerd/certs.d" in keys(text)[1].split(":")
    assert backup.read_text() == default
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # the file's mode is kept

    sb.clear_calls()
    before = sb.tree()
    second = sb.run(CONTAINERD_CONFIG)
    assert second.returncode == 0 and lines(second.stdout)[0].startswith("unchanged: ")
    assert sb.tree() == before and sb.calls() == []

    # the backup is taken once: a later edit keeps the original
    config.write_text(text.replace("SystemdCgroup = true", "SystemdCgroup = false"))
    third = sb.run(CONTAINERD_CONFIG)
    assert lines(third.stdout)[0].startswith("changed: set SystemdCgroup = true (was false)")
    assert backup.read_text() == default


@pytest.mark.parametrize(
    ("text", "keys", "appended"),
    [
        (
            'version = 2\n\n[plugins]\n  [plugins."io.containerd.grpc.v1.cri"]\n'
            '    sandbox_image = "registry.k8s.io/pause:3.9"\n',
            v2_keys,
            [f"[{V2_RUNC}]", "  SystemdCgroup = true", f"[{V2_REGISTRY}]", '  config_path = "/etc/containerd/certs.d"'],
        ),
        (
            "version = 3\n\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'pause'\n",
            v3_keys,
            [f"[{V3_RUNC}]", "  SystemdCgroup = true", f"[{V3_REGISTRY}]", '  config_path = "/etc/containerd/certs.d"'],
        ),
    ],
    ids=["v2", "v3"],
)
def test_containerd_config_appends_missing_sections(sb: Sandbox, text: str, keys: Any, appended: list[str]) -> None:
    config = write_config(sb, text)
    result = sb.run(CONTAINERD_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    new = config.read_text()
    assert new.startswith(text)
    assert [line for line in new[len(text) :].splitlines() if line] == appended
    assert keys(new) == (True, "/etc/containerd/certs.d")
    assert sb.run(CONTAINERD_CONFIG, "--check").returncode == 0


@pytest.mark.parametrize(
    ("line", "wanted"),
    [
        ('config_path = "/etc/docker/certs.d"', '"/etc/containerd/certs.d:/etc/docker/certs.d"'),
        ("config_path = '/etc/containerd/certs.d/'   # with a slash", None),
        ('config_path = "/opt/certs:/etc/containerd/certs.d"', None),
    ],
    ids=["other-directory", "trailing-slash", "second-entry"],
)
def test_containerd_config_keeps_other_config_path_entries(sb: Sandbox, line: str, wanted: str | None) -> None:
    text = f"version = 2\n[{V2_RUNC}]\n  SystemdCgroup = true\n[{V2_REGISTRY}]\n  {line}\n"
    config = write_config(sb, text)
    result = sb.run(CONTAINERD_CONFIG)
    assert result.returncode == 0
    if wanted is None:
        assert lines(result.stdout)[0].startswith("unchanged: ") and config.read_text() == text
    else:
        assert config.read_text() == text.replace(line, f"config_path = {wanted}")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('version = 4\n[plugins."io.containerd.grpc.v1.cri".registry]\n', "config version 4"),
        ('version = "2"\n', 'config version "2"'),
        ('disabled_plugins = ["cri"]\n[grpc]\n  address = "/run/x.sock"\n', "no top-level version line"),
        ("[plugins]\nversion = 2\n", "no top-level version line"),
    ],
    ids=["version-4", "quoted-version", "no-version-with-tables", "version-in-a-table"],
)
def test_containerd_config_refuses_an_unknown_version(sb: Sandbox, text: str, needle: str) -> None:
    write_config(sb, text)
    before = sb.tree()
    for args in (("--check",), ()):
        result = sb.run(CONTAINERD_CONFIG, *args)
        assert_one_error_line(result, CONTAINERD_CONFIG, 1, needle)
        assert result.stdout == ""
    assert sb.tree() == before and sb.calls() == []


DOCKER_STUB = """#   Copyright 2018-2022 Docker Inc.

#   Licensed under the Apache License, Version 2.0 (the "License");

disabled_plugins = ["cri"]

#root = "/var/lib/containerd"
#state = "/run/containerd"
"""


def test_containerd_config_replaces_the_containerd_io_stub_keeping_a_backup(sb: Sandbox) -> None:
    (sb.state / "containerd-default.toml").write_text(CONTAINERD_17_DEFAULT)
    config = write_config(sb, DOCKER_STUB)
    backup = config.parent / "config.toml.aim-backup"
    replaced = f"{config}, the containerd.io stub that disables CRI, with containerd config default"

    check = sb.run(CONTAINERD_CONFIG, "--check")
    assert check.returncode == 3, check.stdout + check.stderr
    assert lines(check.stdout)[:2] == [f"would: back up {config} to {backup}", f"would: replace {replaced}"]
    assert config.read_text() == DOCKER_STUB

    first = sb.run(CONTAINERD_CONFIG)
    assert first.returncode == 0, first.stdout + first.stderr
    assert lines(first.stdout)[:2] == [f"changed: backed up {config} to {backup}", f"changed: replaced {replaced}"]
    assert lines(first.stdout)[-1] == "changed: restarted containerd"
    assert backup.read_text() == DOCKER_STUB
    assert v2_keys(config.read_text()) == (True, "/etc/containerd/certs.d")
    assert "disabled_plugins = []" in config.read_text()
    second = sb.run(CONTAINERD_CONFIG, "--check")
    assert second.returncode == 0 and lines(second.stdout) == ["containerd-config: nothing to change"]


def test_containerd_config_refuses_config_path_beside_registry_mirrors(sb: Sandbox) -> None:
    text = CONTAINERD_17_DEFAULT.replace(
        '      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]\n',
        '      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]\n'
        '        [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
        '          endpoint = ["https://mirror.example"]\n',
    )
    write_config(sb, text)
    before = sb.tree()
    result = sb.run(CONTAINERD_CONFIG)
    assert_one_error_line(result, CONTAINERD_CONFIG, 1, "registry.mirrors", "hosts.toml")
    assert sb.tree() == before and sb.calls() == []


def test_containerd_config_reports_a_failed_restart(sb: Sandbox) -> None:
    config = write_config(sb, CONTAINERD_22_DEFAULT)
    sb.flag("systemctl-fails")
    result = sb.run(CONTAINERD_CONFIG)
    assert result.returncode == 1
    errors = [line for line in lines(result.stderr) if line.startswith("containerd-config:")]
    assert errors == [
        f"containerd-config: systemctl restart containerd failed after {config} changed: see"
        f" `journalctl -u containerd` (the original file is {config}.aim-backup); the next run retries the restart"
    ]
    assert "changed: restarted containerd" not in result.stdout
    assert v3_keys(config.read_text())[0] is True
    pending = Path(f"{config}.aim-restart-pending")
    assert pending.is_file()  # written before the file was replaced

    # Regression: the rerun found the file right and said "unchanged", so containerd kept its old config.
    check = sb.run(CONTAINERD_CONFIG, "--check")
    assert check.returncode == 3
    assert lines(check.stdout) == [
        f"would: restart containerd (systemctl restart containerd): {config} changed but the restart after it did"
        f" not finish ({pending})"
    ]
    sb.flag("systemctl-fails", on=False)
    sb.clear_calls()
    rerun = sb.run(CONTAINERD_CONFIG)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert lines(rerun.stdout) == [
        f"changed: restarted containerd (the restart after an earlier change of {config} had not finished)"
    ]
    assert sb.calls() == ["systemctl restart containerd", IS_ACTIVE]
    assert not pending.exists()
    third = sb.run(CONTAINERD_CONFIG)
    assert third.returncode == 0 and lines(third.stdout)[0].startswith(f"unchanged: {config}")


def test_containerd_config_keeps_the_restart_pending_while_containerd_is_not_active(sb: Sandbox) -> None:
    """A restart that "succeeds" but leaves containerd down (a bad config, a crash loop) is retried too."""
    config = write_config(sb, CONTAINERD_22_DEFAULT)
    sb.flag("containerd-inactive")
    result = sb.run(CONTAINERD_CONFIG, env=sb.env(AIM_CONTAINERD_WAIT="1"))
    assert_one_error_line(result, CONTAINERD_CONFIG, 1, f"containerd is not active 1s after its restart with the"
                          f" changed {config}", "the next run retries the restart")  # fmt: skip
    assert Path(f"{config}.aim-restart-pending").is_file()
    sb.flag("containerd-inactive", on=False)
    rerun = sb.run(CONTAINERD_CONFIG)
    assert rerun.returncode == 0 and lines(rerun.stdout)[0].startswith("changed: restarted containerd (the restart")
    assert not Path(f"{config}.aim-restart-pending").exists()


def test_containerd_config_interrupted_between_file_and_restart_is_retried(sb: Sandbox) -> None:
    """Killed after the new file was in place but before the restart: the marker alone makes the rerun restart."""
    config = write_config(sb, CONTAINERD_22_DEFAULT)
    sb.remove_fake("systemctl")  # the run stops at "systemctl not found" before replacing anything
    assert sb.run(CONTAINERD_CONFIG).returncode == 1
    assert not Path(f"{config}.aim-restart-pending").exists() and v3_keys(config.read_text())[0] is not True
    (sb.fakes / "systemctl").write_text(f'#!{BASH}\nprintf "%s\\n" "systemctl $*" >>"$FAKE_LOG"\nkill -KILL $PPID\n')
    (sb.fakes / "systemctl").chmod(0o755)
    killed = sb.run(CONTAINERD_CONFIG)  # the "restart" kills the script, as a reboot or Ctrl-C would
    assert killed.returncode != 0 and "changed: restarted containerd" not in killed.stdout
    assert v3_keys(config.read_text())[0] is True and Path(f"{config}.aim-restart-pending").is_file()
    (sb.fakes / "systemctl").write_text(f'#!{BASH}\nprintf "%s\\n" "systemctl $*" >>"$FAKE_LOG"\n')
    sb.clear_calls()
    rerun = sb.run(CONTAINERD_CONFIG)
    assert rerun.returncode == 0, rerun.stderr
    assert sb.calls() == ["systemctl restart containerd", IS_ACTIVE]
    assert not Path(f"{config}.aim-restart-pending").exists()


def test_containerd_config_without_containerd(sb: Sandbox) -> None:
    sb.remove_fake("containerd")
    result = sb.run(CONTAINERD_CONFIG, "--check")
    assert_one_error_line(result, CONTAINERD_CONFIG, 1, "containerd not found on PATH")
    write_config(sb, CONTAINERD_22_DEFAULT)
    assert sb.run(CONTAINERD_CONFIG, "--check").returncode == 3  # an existing file needs no containerd binary


def test_containerd_config_reports_a_failing_default(sb: Sandbox) -> None:
    result = sb.run(CONTAINERD_CONFIG)  # no canned default: the fake fails
    assert_one_error_line(result, CONTAINERD_CONFIG, 1, "`containerd config default` failed", "no default config")
    assert not config_file(sb).exists()


# --------------------------------------------------------------------------------------------------------------------
# kubeadm-init.sh


def init_args(sb: Sandbox, *extra: str, cidr: str = "10.244.0.0/16") -> tuple[str, ...]:
    return ("--stack", STACK, "--pod-cidr", cidr, "--kubeconfig", str(sb.kubeconfig), *extra)


def marker(sb: Sandbox) -> Path:
    return sb.etc / "kubernetes" / "aim-stack.json"


def write_marker(sb: Sandbox, stack: str = STACK, state: str = "initialised", ca: str | None = None) -> None:
    """The marker kubeadm-init.sh writes when it creates the cluster (ca: the recorded CA's sha256, default: now's)."""
    if ca is None:
        ca = hashlib.sha256((sb.etc / "kubernetes" / "pki" / "ca.crt").read_bytes()).hexdigest()
    marker(sb).write_text(
        f'{{\n  "createdBy": "scripts/bootstrap/kubeadm-init.sh",\n  "stack": "{stack}",\n'
        f'  "createdAt": "2026-12-01T10:00:00Z",\n  "podCidr": "10.244.0.0/16",\n  "state": "{state}",\n'
        f'  "caSha256": "{ca}"\n}}\n'
    )


def make_cluster(
    sb: Sandbox, pod_subnet: str | None = "10.244.0.0/16", tainted: bool = True, owned: bool = True
) -> None:
    """What `kubeadm init` leaves: admin.conf, manifests and the CA, and the answers of the API server; `owned`: made
    by this stack's kubeadm-init.sh, so with its marker."""
    manifests = sb.etc / "kubernetes" / "manifests"
    manifests.mkdir(parents=True)
    (sb.etc / "kubernetes" / "pki").mkdir()
    (sb.etc / "kubernetes" / "pki" / "ca.crt").write_text("the cluster CA\n")
    if owned:
        write_marker(sb)
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        (manifests / f"{name}.yaml").write_text(f"kind: Pod\nmetadata:\n  name: {name}\n")
    sb.admin.write_text("apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n")
    networking = "networking:\n  dnsDomain: cluster.local\n"
    if pod_subnet is not None:
        networking += f'  podSubnet: "{pod_subnet}"\n'
    (sb.state / "cluster-config").write_text(
        f"apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n{networking}  serviceSubnet: 10.96.0.0/12\n"
    )
    (sb.state / "nodes").write_text(f"aim-node-1:{' ' + TAINT if tainted else ''}\naim-node-2:\n")


def kubectl(sb: Sandbox, *args: str) -> str:
    return " ".join(("kubectl", "--kubeconfig", str(sb.admin), *args))


def test_kubeadm_init_creates_the_cluster_once(sb: Sandbox) -> None:
    kc = sb.kubeconfig
    before = sb.tree()
    check = sb.run(KUBEADM_INIT, "--check", *init_args(sb, "--single-node"))
    assert check.returncode == 3, check.stdout + check.stderr
    assert lines(check.stdout) == [
        "would: initialise the cluster: kubeadm init --pod-network-cidr=10.244.0.0/16",
        f"would: record the cluster as stack {STACK}'s in {marker(sb)}",
        f"would: write {kc} (the admin kubeconfig {sb.admin}, mode 0600)",
        f"would: remove the {TAINT} taint from the new control-plane node",
    ]
    assert sb.tree() == before and sb.calls() == []

    first = sb.run(KUBEADM_INIT, *init_args(sb, "--single-node"), env=sb.env(SUDO_UID="1000", SUDO_GID="1000"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert lines(first.stdout) == [
        "changed: initialised the cluster (kubeadm init --pod-network-cidr=10.244.0.0/16; its output, with the join "
        f"command, is in {sb.init_log})",
        f"changed: recorded the cluster as stack {STACK}'s in {marker(sb)}",
        f"changed: wrote {kc}",
        f"changed: removed the {TAINT} taint from node aim-node-1",
    ]
    # The marker: which stack created the cluster, when, and the CA that identifies this very cluster.
    recorded = json.loads(marker(sb).read_text())
    assert recorded["stack"] == STACK and recorded["state"] == "initialised"
    assert recorded["podCidr"] == "10.244.0.0/16" and recorded["createdAt"].endswith("Z")
    ca = sb.etc / "kubernetes" / "pki" / "ca.crt"
    assert recorded["caSha256"] == hashlib.sha256(ca.read_bytes()).hexdigest()
    # kubeadm's own output carries a join token: it goes to a root-only log, never to what `pulumi up` shows.
    assert "initialized successfully" in sb.init_log.read_text() and "--token abcdef." in sb.init_log.read_text()
    assert stat.S_IMODE(sb.init_log.stat().st_mode) == 0o600
    assert "0123456789abcdef" not in first.stdout + first.stderr
    assert sb.calls() == [
        "kubeadm init --pod-network-cidr=10.244.0.0/16",
        kubectl(sb, "get", "--raw=/readyz"),
        kubectl(sb, "get", "nodes", "-o", f"jsonpath={NODES_JSONPATH}"),
        kubectl(sb, "taint", "nodes", "aim-node-1", f"{TAINT}-"),
    ]
    assert kc.read_bytes() == sb.admin.read_bytes()
    assert stat.S_IMODE(kc.stat().st_mode) == 0o600
    assert sorted(p.name for p in kc.parent.iterdir()) == [kc.name]  # no temporary file left

    sb.clear_calls()
    before = sb.tree()
    second = sb.run(KUBEADM_INIT, *init_args(sb, "--single-node"))
    assert second.returncode == 0, second.stdout + second.stderr
    assert lines(second.stdout) == [
        f"unchanged: cluster already initialised ({sb.admin}, pod subnet 10.244.0.0/16)",
        f"unchanged: {kc}",
        f"unchanged: no node has the {TAINT} taint",
    ]
    recheck = sb.run(KUBEADM_INIT, "--check", *init_args(sb, "--single-node"))
    assert recheck.returncode == 0 and lines(recheck.stdout) == ["kubeadm-init: nothing to change"]
    assert sb.tree() == before
    assert_no_mutating_calls(sb)
    assert kubectl(sb, "-n", "kube-system", "get", "configmap", "kubeadm-config", "-o",
                   "jsonpath={.data.ClusterConfiguration}") in sb.calls()  # fmt: skip


def test_kubeadm_init_without_single_node_keeps_the_taint(sb: Sandbox) -> None:
    result = sb.run(KUBEADM_INIT, *init_args(sb))
    assert result.returncode == 0
    assert [line.split(" (")[0] for line in lines(result.stdout)] == [
        "changed: initialised the cluster",
        f"changed: recorded the cluster as stack {STACK}'s in {marker(sb)}",
        f"changed: wrote {sb.kubeconfig}",
    ]
    assert not any(" taint " in call or "get nodes" in call for call in sb.calls())
    assert TAINT in (sb.state / "nodes").read_text()


def test_kubeadm_init_check_on_an_existing_cluster(sb: Sandbox) -> None:
    make_cluster(sb)
    sb.kubeconfig.parent.mkdir(parents=True)
    sb.kubeconfig.write_text("an old kubeconfig\n")
    before = sb.tree()
    result = sb.run(KUBEADM_INIT, "--check", *init_args(sb, "--single-node", "--wait", "5"))
    assert result.returncode == 3, result.stdout + result.stderr
    assert lines(result.stdout) == [
        f"would: write {sb.kubeconfig} (the admin kubeconfig {sb.admin}, mode 0600)",
        f"would: remove the {TAINT} taint from node aim-node-1",
    ]
    assert sb.tree() == before
    assert_no_mutating_calls(sb)

    real = sb.run(KUBEADM_INIT, *init_args(sb, "--single-node"))
    assert lines(real.stdout) == [
        f"unchanged: cluster already initialised ({sb.admin}, pod subnet 10.244.0.0/16)",
        f"changed: wrote {sb.kubeconfig}",
        f"changed: removed the {TAINT} taint from node aim-node-1",
    ]
    assert not any(call.startswith("kubeadm") for call in sb.calls())


@pytest.mark.parametrize("check", [False, True], ids=["real", "check"])
def test_kubeadm_init_api_not_answering(sb: Sandbox, check: bool) -> None:
    make_cluster(sb)
    sb.flag("api-down")
    before = sb.tree()
    started = time.monotonic()
    result = sb.run(KUBEADM_INIT, *(["--check"] if check else []), *init_args(sb, "--wait", "1"))
    elapsed = time.monotonic() - started
    line = assert_one_error_line(result, KUBEADM_INIT, 1)
    assert line == (
        f"kubeadm-init: found {sb.admin} but the API server does not answer: check `systemctl status kubelet`,"
        " or reset with `sudo kubeadm reset`"
    )
    assert result.stdout == "" and elapsed < 15
    assert sb.tree() == before
    assert set(sb.calls()) == {kubectl(sb, "get", "--raw=/readyz")} and len(sb.calls()) >= 2  # retried


def test_kubeadm_init_api_not_answering_after_init(sb: Sandbox) -> None:
    sb.flag("api-down")
    result = sb.run(KUBEADM_INIT, *init_args(sb, "--wait", "0"))
    assert result.returncode == 1
    assert lines(result.stdout) == [
        "changed: initialised the cluster (kubeadm init --pod-network-cidr=10.244.0.0/16; its output, with the join "
        f"command, is in {sb.init_log})",
        f"changed: recorded the cluster as stack {STACK}'s in {marker(sb)}",
    ]
    assert lines(result.stderr)[-1].startswith(f"kubeadm-init: found {sb.admin} but the API server does not answer")
    assert [line for line in lines(result.stderr) if line.startswith("kubeadm-init:")] == lines(result.stderr)[-1:]
    assert not sb.kubeconfig.exists()


@pytest.mark.parametrize(("subnet", "asked"), [("192.168.0.0/16", "10.244.0.0/16"), ("fd00::/8", "10.244.0.0/16")])
def test_kubeadm_init_refuses_a_different_pod_cidr(sb: Sandbox, subnet: str, asked: str) -> None:
    make_cluster(sb, pod_subnet=subnet)
    before = sb.tree()
    for check in ((), ("--check",)):
        result = sb.run(KUBEADM_INIT, *check, *init_args(sb, "--single-node", cidr=asked))
        line = assert_one_error_line(result, KUBEADM_INIT, 1, subnet, asked, f"set aim:podCidr to {subnet}")
        assert line.startswith(f"kubeadm-init: the cluster's pod subnet is {subnet} but --pod-cidr is {asked}:")
        assert result.stdout == ""
    assert sb.tree() == before
    assert_no_mutating_calls(sb)


def test_kubeadm_init_refuses_a_cluster_without_pod_subnet(sb: Sandbox) -> None:
    make_cluster(sb, pod_subnet=None)
    assert_one_error_line(sb.run(KUBEADM_INIT, *init_args(sb)), KUBEADM_INIT, 1, "without a pod subnet")


def test_kubeadm_init_reports_a_failed_init(sb: Sandbox) -> None:
    sb.flag("kubeadm-init-fails")
    result = sb.run(KUBEADM_INIT, *init_args(sb, "--single-node"))
    assert result.returncode == 1 and result.stdout == ""
    errors = [line for line in lines(result.stderr) if line.startswith("kubeadm-init:")]
    assert errors == [
        f"kubeadm-init: kubeadm init --pod-network-cidr=10.244.0.0/16 failed (last lines above, all in {sb.init_log}):"
        " fix the cause, run `sudo kubeadm reset --force`, then re-run"
    ]
    # kubeadm's last lines are shown, its secrets are not
    assert "[ERROR Port-6443]: Port 6443 is in use" in result.stderr
    assert "--token <redacted> --discovery-token-ca-cert-hash <redacted>" in result.stderr
    assert "0123456789abcdef" not in result.stderr
    assert sb.calls() == ["kubeadm init --pod-network-cidr=10.244.0.0/16"]
    assert not sb.kubeconfig.exists()


def test_kubeadm_init_refuses_leftovers_of_an_unfinished_init(sb: Sandbox) -> None:
    make_cluster(sb)
    sb.admin.unlink()
    for check in ((), ("--check",)):
        result = sb.run(KUBEADM_INIT, *check, *init_args(sb))
        assert_one_error_line(result, KUBEADM_INIT, 1, "did not finish", "kubeadm-reset.sh")
    assert sb.calls() == []


FOREIGN_CLUSTERS = {
    "no-marker": (lambda sb: marker(sb).unlink(), "no {marker} records that this stack created it"),
    "other-stack": (lambda sb: write_marker(sb, stack="team/prod"), "{marker} says stack 'team/prod' created it"),
    # ours once, but someone ran `kubeadm reset` and `kubeadm init` since: a new CA
    "re-initialised": (lambda sb: write_marker(sb, ca="0" * 64), "its CA {ca} is not the one {marker} recorded"),
}


@pytest.mark.parametrize("case", sorted(FOREIGN_CLUSTERS))
def test_kubeadm_init_refuses_a_cluster_this_stack_did_not_create(sb: Sandbox, case: str) -> None:
    """Regression: any kubeadm cluster with a matching pod CIDR was adopted and every node untainted."""
    make_cluster(sb)
    make_foreign, why = FOREIGN_CLUSTERS[case]
    make_foreign(sb)
    before = sb.tree()
    for check in ((), ("--check",)):
        result = sb.run(KUBEADM_INIT, *check, *init_args(sb, "--single-node"))
        line = assert_one_error_line(
            result,
            KUBEADM_INIT,
            1,
            f"found a kubeadm cluster ({sb.admin}) that stack {STACK} did not create (",
            why.format(marker=marker(sb), ca=sb.etc / "kubernetes" / "pki" / "ca.crt"),
            "refusing to adopt it or untaint its nodes; use it with aim:clusterBootstrap none",
        )
        assert "sudo kubeadm reset --force" in line and result.stdout == ""
    assert sb.tree() == before and sb.calls() == []  # not even asked: no kubectl, no taint, no kubeconfig written
    assert TAINT in (sb.state / "nodes").read_text() and not sb.kubeconfig.exists()


@pytest.mark.parametrize("case", sorted(FOREIGN_CLUSTERS))
def test_kubeadm_reset_keeps_a_cluster_this_stack_did_not_create(sb: Sandbox, case: str) -> None:
    make_cluster(sb)
    FOREIGN_CLUSTERS[case][0](sb)
    calico_leftovers(sb)
    sb.kubeconfig.parent.mkdir(parents=True)
    sb.kubeconfig.write_text(sb.admin.read_text())
    before = sb.tree()
    for check in (("--check",), ()):
        result = sb.run(KUBEADM_RESET, "--stack", STACK, *check, "--kubeconfig", str(sb.kubeconfig))
        assert result.returncode == 0, result.stdout + result.stderr  # `pulumi destroy` still finishes
        line, *rest = lines(result.stdout)
        assert rest == (["kubeadm-reset: nothing to change"] if check else [])
        assert line.startswith(
            f"kept: the kubeadm cluster on this host (kubeadm reset not run; Calico's files and links and"
            f" {sb.kubeconfig} left): stack {STACK} did not create it ("
        ), line
        assert line.endswith("reset it by hand (`sudo kubeadm reset --force`) if you mean to")
    assert sb.tree() == before and sb.calls() == []


def test_kubeadm_init_marker_before_init_lets_reset_clean_a_failed_init(sb: Sandbox) -> None:
    """The marker is written before `kubeadm init`: the leftovers of our own failed init are ours to reset."""
    sb.flag("kubeadm-init-fails")
    assert sb.run(KUBEADM_INIT, *init_args(sb)).returncode == 1
    recorded = json.loads(marker(sb).read_text())
    assert (recorded["stack"], recorded["state"], recorded["caSha256"]) == (STACK, "initialising", "")
    (sb.etc / "kubernetes" / "manifests").mkdir(parents=True)
    (sb.etc / "kubernetes" / "manifests" / "etcd.yaml").write_text("kind: Pod\n")  # what the failed init left
    again = sb.run(KUBEADM_INIT, *init_args(sb))
    assert_one_error_line(again, KUBEADM_INIT, 1, "an earlier kubeadm init did not finish", "kubeadm-reset.sh")
    reset = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(sb.kubeconfig))
    assert reset.returncode == 0 and "changed: reset the cluster (kubeadm reset --force)" in lines(reset.stdout)
    assert not marker(sb).exists()
    sb.flag("kubeadm-init-fails", on=False)
    assert sb.run(KUBEADM_INIT, *init_args(sb)).returncode == 0
    assert json.loads(marker(sb).read_text())["state"] == "initialised"


def test_kubeadm_init_refuses_leftovers_of_someone_elses_init(sb: Sandbox) -> None:
    make_cluster(sb, owned=False)
    sb.admin.unlink()
    result = sb.run(KUBEADM_INIT, *init_args(sb))
    assert_one_error_line(result, KUBEADM_INIT, 1, f"stack {STACK} did not start that kubeadm init", "refusing")
    assert sb.calls() == []


def test_kubeadm_init_completes_the_marker_of_an_init_interrupted_after_kubeadm(sb: Sandbox) -> None:
    make_cluster(sb)
    write_marker(sb, state="initialising", ca="")
    check = sb.run(KUBEADM_INIT, "--check", *init_args(sb))
    assert f"would: record the cluster as stack {STACK}'s in {marker(sb)}" in lines(check.stdout)
    result = sb.run(KUBEADM_INIT, *init_args(sb))
    assert result.returncode == 0, result.stderr
    assert f"changed: recorded the cluster as stack {STACK}'s in {marker(sb)}" in lines(result.stdout)
    recorded = json.loads(marker(sb).read_text())
    assert recorded["state"] == "initialised" and recorded["createdAt"] == "2026-12-01T10:00:00Z"
    assert recorded["caSha256"] == hashlib.sha256((sb.etc / "kubernetes" / "pki" / "ca.crt").read_bytes()).hexdigest()


def test_kubeadm_reset_removes_the_marker_of_a_cluster_reset_by_hand(sb: Sandbox) -> None:
    (sb.etc / "kubernetes").mkdir(parents=True)
    (sb.etc / "kubernetes" / "pki").mkdir()
    (sb.etc / "kubernetes" / "pki" / "ca.crt").write_text("gone\n")
    write_marker(sb)
    (sb.etc / "kubernetes" / "pki" / "ca.crt").unlink()
    result = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(sb.kubeconfig))
    assert lines(result.stdout) == ["unchanged: no kubeadm cluster on this host", f"changed: removed {marker(sb)}"]
    write_marker(sb, stack="team/prod", ca="1" * 64)  # another stack's record stays
    again = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(sb.kubeconfig))
    assert lines(again.stdout) == ["unchanged: no kubeadm cluster on this host"] and marker(sb).exists()


def test_kubeadm_init_refuses_a_directory_as_kubeconfig(sb: Sandbox) -> None:
    make_cluster(sb)
    sb.kubeconfig.mkdir(parents=True)
    assert_one_error_line(sb.run(KUBEADM_INIT, *init_args(sb)), KUBEADM_INIT, 1, "is a directory")


def test_kubeadm_init_without_kubeadm(sb: Sandbox) -> None:
    sb.remove_fake("kubeadm")
    result = sb.run(KUBEADM_INIT, *init_args(sb))
    assert_one_error_line(result, KUBEADM_INIT, 1, "kubeadm not found on PATH", "pkgs.k8s.io")


@pytest.mark.parametrize(
    "cidr",
    ["192.168.0.0/16", "10.244.0.0/16", "0.0.0.0/0", "10.0.0.0/8", "172.16.0.0/12", "192.168.1.128/25",
     "fd00::/8", "2001:db8::/32", "::/0", "fd00:0:0:1::/64", "2001:db8:0:0:0:0:0:0/128", "FD00::/8"],
)  # fmt: skip
def test_kubeadm_init_accepts_networks(sb: Sandbox, cidr: str) -> None:
    result = sb.run(KUBEADM_INIT, "--check", *init_args(sb, cidr=cidr))
    assert result.returncode == 3, result.stderr
    assert lines(result.stdout)[0] == f"would: initialise the cluster: kubeadm init --pod-network-cidr={cidr}"


@pytest.mark.parametrize(
    "cidr",
    ["10.244.0.1/16", "300.0.0.0/8", "10.0.0.0/33", "010.0.0.0/8", "10.244.0.0", "10.244.0/16", "10.244.0.0/016",
     "fd00::1/8", "fd00::/129", "1:2:3:4:5:6:7:8:/64", ":1::/64", "1::2::/64", "1:2:3:4:5:6:7/64", "fd00::g/64",
     "10.0.0.0/8,fd00::/8", "", "/16", "localhost/8"],
)  # fmt: skip
def test_kubeadm_init_refuses_bad_networks(sb: Sandbox, cidr: str) -> None:
    result = sb.run(KUBEADM_INIT, "--check", *init_args(sb, cidr=cidr))
    assert_one_error_line(result, KUBEADM_INIT, 2, f"--pod-cidr '{cidr}' is not an IPv4 or IPv6 network")


def test_kubeadm_init_accepts_option_equals_value(sb: Sandbox) -> None:
    result = sb.run(
        KUBEADM_INIT,
        "--check",
        f"--stack={STACK}",
        "--pod-cidr=10.244.0.0/16",
        f"--kubeconfig={sb.kubeconfig}",
        "--wait=5",
    )
    assert result.returncode == 3, result.stderr


# --------------------------------------------------------------------------------------------------------------------
# kubeadm-reset.sh

IP_LINKS = """\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000
    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: eno1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP mode DEFAULT group default qlen 1000
    link/ether 3c:ec:ef:00:11:22 brd ff:ff:ff:ff:ff:ff
3: docker0: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc noqueue state DOWN mode DEFAULT group default
    link/ether 02:42:ac:11:00:01 brd ff:ff:ff:ff:ff:ff
4: tunl0@NONE: <NOARP,UP,LOWER_UP> mtu 1480 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000
    link/ipip 0.0.0.0 brd 0.0.0.0
5: vxlan.calico: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default
    link/ether 66:5e:7a:1b:2c:3d brd ff:ff:ff:ff:ff:ff
7: cali1234567890a@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP mode DEFAULT group default
    link/ether ee:ee:ee:ee:ee:ee brd ff:ff:ff:ff:ff:ff link-netns cni-1234
"""


def calico_leftovers(sb: Sandbox) -> list[Path]:
    net_d = sb.etc / "cni" / "net.d"
    net_d.mkdir(parents=True)
    paths = [net_d / "10-calico.conflist", net_d / "calico-kubeconfig", sb.var_lib / "calico", sb.run_dir / "calico"]
    paths[0].write_text('{"name": "k8s-pod-network"}\n')
    paths[1].write_text("apiVersion: v1\n")
    (paths[2]).mkdir()
    (paths[2] / "nodename").write_text("aim-node-1\n")
    (paths[3]).mkdir()
    (paths[3] / "cgroup").write_text("")
    (net_d / "99-other.conf").write_text("{}\n")  # someone else's: stays
    (sb.state / "links").write_text(IP_LINKS)
    return paths


def test_kubeadm_reset_tears_down_once(sb: Sandbox) -> None:
    make_cluster(sb)
    leftovers = calico_leftovers(sb)
    kc = sb.kubeconfig
    kc.parent.mkdir(parents=True)
    kc.write_text(sb.admin.read_text())

    before = sb.tree()
    check = sb.run(KUBEADM_RESET, "--stack", STACK, "--check", "--kubeconfig", str(kc))
    assert check.returncode == 3, check.stdout + check.stderr
    assert lines(check.stdout) == [
        "would: reset the cluster: kubeadm reset --force",
        *(f"would: remove {path}" for path in leftovers),
        "would: delete network link vxlan.calico (ip link delete vxlan.calico)",
        "would: delete network link tunl0 (ip link delete tunl0)",
        RESET_NOTE,
        f"would: remove {marker(sb)} (this stack's record of the cluster)",
        f"would: remove {kc} (the admin kubeconfig)",
    ]
    assert sb.tree() == before and sb.calls() == ["ip link show"]

    sb.clear_calls()
    first = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(kc))
    assert first.returncode == 0, first.stdout + first.stderr
    assert lines(first.stdout) == [
        "changed: reset the cluster (kubeadm reset --force)",
        *(f"changed: removed {path}" for path in leftovers),
        "changed: deleted network link vxlan.calico",
        "changed: deleted network link tunl0",
        RESET_NOTE,
        f"changed: removed {marker(sb)}",
        f"changed: removed {kc}",
    ]
    assert "[reset]" in first.stderr  # kubeadm's own output goes to stderr
    assert sb.calls() == [
        "kubeadm reset --force",
        "ip link show",
        "ip link delete vxlan.calico",
        "ip link delete tunl0",
    ]
    assert not any(path.exists() for path in [*leftovers, kc, sb.admin, marker(sb)])
    assert (sb.etc / "cni" / "net.d" / "99-other.conf").exists()
    links = (sb.state / "links").read_text()
    assert "docker0" in links and "eno1" in links and "calico" not in links and "tunl0" not in links

    sb.clear_calls()
    before = sb.tree()
    second = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(kc))
    assert second.returncode == 0 and lines(second.stdout) == ["unchanged: no kubeadm cluster on this host"]
    recheck = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(kc), "--check")
    assert recheck.returncode == 0 and lines(recheck.stdout) == ["kubeadm-reset: nothing to change"]
    assert sb.tree() == before and sb.calls() == []


def local_path_volume(data: Path, name: str, stack: str | None = STACK) -> Path:
    """A volume directory as local-path's setup leaves it, with the stack's marker beside it unless stack is None."""
    volume = data / name
    (volume / "models--Qwen").mkdir(parents=True)
    (volume / "models--Qwen" / "model.safetensors").write_text("weights")
    if stack is not None:
        Path(f"{volume}.aim-stack.json").write_text(
            f'{{\n  "createdBy": "local-path setup",\n  "stack": "{stack}",\n  "volume": "{name}",\n'
            '  "createdAt": "2026-12-01T10:00:00Z"\n}\n'
        )
    return volume


def test_kubeadm_reset_removes_only_the_stacks_own_local_path_volumes(sb: Sandbox) -> None:
    """Regression: every pvc-* directory went, other applications' volumes included."""
    data = sb.root / "opt" / "local-path-provisioner"
    cache = local_path_volume(data, "pvc-6f1c_aim_aim-engine-model-cache")
    other_namespace = local_path_volume(data, "pvc-0a2b_team_scratch")  # the provisioner marks every volume
    unmarked = local_path_volume(data, "pvc-77aa_aim_made-by-hand", stack=None)  # our namespace, not our provisioner
    other_stack = local_path_volume(data, "pvc-99bb_aim_aim-engine-model-cache", stack="aim/prod")
    (data / "notes.txt").write_text("not a volume")
    (data / "pvc-looks-like-a-volume.txt").write_text("a file, not a volume directory")
    kc = sb.kubeconfig
    args = ("--kubeconfig", str(kc), "--local-path-dir", f"{data}/", "--local-path-namespace", "aim")
    kept = [
        f"kept: the local-path volume {other_namespace}: not a claim of namespace aim (the provisioner names volumes"
        " pvc-<uid>_<namespace>_<claim>)",
        f"kept: the local-path volume {unmarked}: no {unmarked}.aim-stack.json names stack {STACK}, so this stack's"
        " provisioner did not create it",
        f"kept: the local-path volume {other_stack}: no {other_stack}.aim-stack.json names stack {STACK}, so this"
        " stack's provisioner did not create it",
    ]

    check = sb.run(KUBEADM_RESET, "--stack", STACK, "--check", *args)
    assert check.returncode == 3, check.stdout + check.stderr
    assert lines(check.stdout) == [
        kept[0],
        f"would: remove the local-path volume {cache}",
        kept[1],
        kept[2],
    ]
    assert cache.exists()
    first = sb.run(KUBEADM_RESET, "--stack", STACK, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert lines(first.stdout) == [
        "unchanged: no kubeadm cluster on this host",
        kept[0],
        f"changed: removed the local-path volume {cache}",
        kept[1],
        kept[2],
    ]
    assert sorted(p.name for p in data.iterdir()) == sorted(
        [
            "notes.txt",
            "pvc-looks-like-a-volume.txt",
            *(f"{v.name}{suffix}" for v in (other_namespace, other_stack) for suffix in ("", ".aim-stack.json")),
            unmarked.name,
        ]
    )
    assert (other_namespace / "models--Qwen" / "model.safetensors").read_text() == "weights"
    again = sb.run(KUBEADM_RESET, "--stack", STACK, "--check", *args)
    assert again.returncode == 0 and lines(again.stdout) == [*kept[:1], *kept[1:], "kubeadm-reset: nothing to change"]


@pytest.mark.parametrize("directory", ["/", "relative/dir", "/opt/../etc"])
def test_kubeadm_reset_refuses_a_dangerous_local_path_dir(sb: Sandbox, directory: str) -> None:
    result = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(sb.kubeconfig), "--local-path-dir", directory)
    assert result.returncode == 2 and result.stdout == ""
    assert lines(result.stderr) == [
        f"kubeadm-reset: --local-path-dir must be an absolute directory other than / (got '{directory.rstrip('/')}')"
        " (usage: kubeadm-reset.sh [--check] --stack ID --kubeconfig PATH"
        " [--local-path-dir DIR --local-path-namespace NS])"
    ]


def test_kubeadm_reset_never_flushes_iptables_or_touches_docker(sb: Sandbox) -> None:
    make_cluster(sb)
    calico_leftovers(sb)
    assert sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(sb.kubeconfig)).returncode == 0
    assert not any(call.split()[0] in {"iptables", "iptables-restore", "ip6tables", "docker"} for call in sb.calls())
    code = [line for line in KUBEADM_RESET.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert [line.strip()[:30] for line in code if "iptables" in line or "docker" in line.lower()] == [
        'echo "note: iptables were not '
    ]  # the note is the only mention: no command touches iptables or Docker


def test_kubeadm_reset_leaves_an_undeletable_tunl0_with_a_note(sb: Sandbox) -> None:
    make_cluster(sb)
    calico_leftovers(sb)
    sb.flag("undeletable-tunl0")
    result = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(sb.kubeconfig))
    assert result.returncode == 0
    assert (
        "note: left network link tunl0: it belongs to the ipip kernel module (`sudo modprobe -r ipip` or a reboot"
        " removes it)"
    ) in lines(result.stdout)
    assert "changed: deleted network link vxlan.calico" in lines(result.stdout)


def test_kubeadm_reset_counts_manifests_alone_as_a_cluster(sb: Sandbox) -> None:
    make_cluster(sb)
    sb.admin.unlink()
    result = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(sb.kubeconfig))
    assert result.returncode == 0
    assert lines(result.stdout) == [
        "changed: reset the cluster (kubeadm reset --force)",
        RESET_NOTE,
        f"changed: removed {marker(sb)}",
    ]
    assert sb.calls() == ["kubeadm reset --force", "ip link show"]


def test_kubeadm_reset_without_cluster_still_removes_the_kubeconfig(sb: Sandbox) -> None:
    calico_leftovers(sb)  # without a kubeadm cluster these may be someone else's: left alone
    sb.kubeconfig.parent.mkdir(parents=True)
    sb.kubeconfig.write_text("stale\n")
    result = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(sb.kubeconfig))
    assert result.returncode == 0
    assert lines(result.stdout) == ["unchanged: no kubeadm cluster on this host", f"changed: removed {sb.kubeconfig}"]
    assert sb.calls() == [] and (sb.var_lib / "calico").exists()


def test_kubeadm_reset_reports_a_failed_reset(sb: Sandbox) -> None:
    make_cluster(sb)
    leftovers = calico_leftovers(sb)
    sb.flag("kubeadm-reset-fails")
    result = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(sb.kubeconfig))
    assert result.returncode == 1 and result.stdout == ""
    assert [line for line in lines(result.stderr) if line.startswith("kubeadm-reset:")] == [
        "kubeadm-reset: kubeadm reset --force failed (its output is above): fix the cause and re-run"
    ]
    assert all(path.exists() for path in leftovers) and sb.calls() == ["kubeadm reset --force"]


# --------------------------------------------------------------------------------------------------------------------
# root: a real run as another user re-runs itself through `sudo -n`, or stops with one line


@pytest.fixture
def open_sandbox() -> Iterator[Sandbox]:
    """A sandbox that the user nobody can use: outside pytest's private tmp directory, owned by nobody."""
    base = Path(tempfile.mkdtemp(prefix="aim-bootstrap-"))
    base.chmod(0o755)
    try:
        sandbox = Sandbox(base / "sandbox")
        (sandbox.state / "os-release").write_text(UBUNTU_2404)
        if os.geteuid() == 0:
            for path in [base, *base.rglob("*")]:
                os.lchown(path, NOBODY, NOBODY)
        yield sandbox
    finally:
        shutil.rmtree(base)


def as_non_root() -> dict[str, Any]:
    """subprocess.run arguments: when the tests run as root, run the script as nobody, so that even a script whose
    root check failed could not change the real /etc; otherwise as the (already unprivileged) test user."""
    if os.geteuid() == 0:
        return {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    return {}


REAL_RUNS = [
    (PREFLIGHT, ()),
    (PREFLIGHT, ("--undo",)),
    (MIRROR, ("5000",)),
    (MIRROR, ("--remove", "5000")),
    (CONTAINERD_CONFIG, ()),
    (
        KUBEADM_INIT,
        (
            "--stack",
            STACK,
            "--pod-cidr",
            "10.244.0.0/16",
            "--kubeconfig",
            "/nonexistent/aim/kubeconfig",
            "--single-node",
        ),
    ),
    (KUBEADM_RESET, ("--stack", STACK, "--kubeconfig", "/nonexistent/aim/kubeconfig")),
]
REAL_RUN_IDS = [f"{script.stem}{'-' + args[0] if args else ''}" for script, args in REAL_RUNS]


def non_root_env(sandbox: Sandbox) -> dict[str, str]:
    """No fake-root override (that would make the run simulated, with no root check): only the read-only os-release
    override for host-preflight.sh, whose root check follows its OS check. The fake id says uid 1000."""
    return sandbox.env(fake_root=False, AIM_OS_RELEASE=str(sandbox.state / "os-release"))


@pytest.mark.parametrize(("script", "args"), REAL_RUNS, ids=REAL_RUN_IDS)
def test_non_root_without_passwordless_sudo_stops_with_one_line(
    open_sandbox: Sandbox, script: Path, args: tuple[str, ...]
) -> None:
    result = open_sandbox.run(script, *args, env=non_root_env(open_sandbox), **as_non_root())
    line = assert_one_error_line(result, script, 1)
    assert line == f"{script.stem}: {NEEDS_ROOT}"
    assert result.stdout == ""
    assert open_sandbox.calls() == ["id -u", "sudo -n true"]


@pytest.mark.parametrize(("script", "args"), REAL_RUNS, ids=REAL_RUN_IDS)
def test_non_root_with_passwordless_sudo_reruns_itself_as_root(
    open_sandbox: Sandbox, script: Path, args: tuple[str, ...]
) -> None:
    open_sandbox.flag("sudo-ok")
    if os.geteuid() == 0:
        os.lchown(open_sandbox.state / "sudo-ok", NOBODY, NOBODY)
    result = open_sandbox.run(script, *args, env=non_root_env(open_sandbox), **as_non_root())
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    # the fake sudo only records the re-run; the real one would run the script as root with these arguments
    assert open_sandbox.calls() == ["id -u", "sudo -n true", " ".join(("sudo -n -- bash", str(script), *args))]


def test_check_never_asks_for_root(sb: Sandbox) -> None:
    sb.remove_fake("sudo")
    result = sb.run(
        KUBEADM_RESET,
        "--check",
        "--stack",
        STACK,
        "--kubeconfig",
        "/nonexistent/aim/kubeconfig",
        env=sb.env(fake_root=False),
    )
    assert result.returncode in (0, 3), result.stderr  # reads the real /etc/kubernetes, changes nothing
    assert not any(call.startswith(("id", "sudo")) for call in sb.calls())


def test_a_fake_root_needs_no_root(sb: Sandbox) -> None:
    result = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(sb.kubeconfig))
    assert result.returncode == 0 and sb.calls() == []  # neither id nor sudo was asked


# --------------------------------------------------------------------------------------------------------------------
# registry-volume.sh: the registry's data volume is used and removed only with the stack's label


def docker_volume(sb: Sandbox, name: str, label: str) -> Path:
    """A volume in the fake Docker engine; `label` is its aim.stack label ("" for none)."""
    volumes = sb.state / "volumes"
    volumes.mkdir(exist_ok=True)
    (volumes / name).write_text(label)
    return volumes / name


def test_registry_volume_claim_refuses_a_volume_this_stack_did_not_create(sb: Sandbox) -> None:
    fresh = sb.run(REGISTRY_VOLUME, "--stack", STACK, "--claim", "aim-registry-data")
    assert fresh.returncode == 0 and lines(fresh.stdout) == [
        f"ok: docker volume aim-registry-data does not exist yet: the stack creates it with the label aim.stack={STACK}"
    ]
    docker_volume(sb, "aim-registry-data", "")
    foreign = sb.run(REGISTRY_VOLUME, "--stack", STACK, "--claim", "aim-registry-data")
    assert_one_error_line(
        foreign, REGISTRY_VOLUME, 1, "docker volume aim-registry-data already exists and it has no label"
        f" aim.stack={STACK}, so this stack did not create it: refusing to use its data",
    )  # fmt: skip
    docker_volume(sb, "aim-registry-data", STACK)
    ours = sb.run(REGISTRY_VOLUME, "--stack", STACK, "--claim", "aim-registry-data")
    assert ours.returncode == 0 and lines(ours.stdout) == [
        f"ok: docker volume aim-registry-data is this stack's (aim.stack={STACK})"
    ]
    assert not any(call.startswith("docker volume rm") for call in sb.calls())


@pytest.mark.parametrize("label", ["", "team/prod"], ids=["unlabelled", "other-stack"])
def test_registry_volume_remove_keeps_a_volume_this_stack_did_not_create(sb: Sandbox, label: str) -> None:
    volume = docker_volume(sb, "aim-registry-data", label)
    for check in (("--check",), ()):
        result = sb.run(REGISTRY_VOLUME, *check, "--stack", STACK, "--remove", "aim-registry-data")
        assert result.returncode == 0, result.stderr
        [line] = lines(result.stdout)
        assert (
            line.startswith("kept: docker volume aim-registry-data (registry data): ") and "did not create it" in line
        )
    assert volume.exists() and not any(call.startswith("docker volume rm") for call in sb.calls())


def test_registry_volume_remove_deletes_the_stacks_own_volume_once(sb: Sandbox) -> None:
    volume = docker_volume(sb, "aim-registry-data", STACK)
    check = sb.run(REGISTRY_VOLUME, "--check", "--stack", STACK, "--remove", "aim-registry-data")
    assert check.returncode == 3 and volume.exists()
    sb.flag("volume-in-use")
    busy = sb.run(REGISTRY_VOLUME, "--stack", STACK, "--remove", "aim-registry-data")
    assert_one_error_line(busy, REGISTRY_VOLUME, 1, "docker volume rm aim-registry-data failed", "volume is in use")
    sb.flag("volume-in-use", on=False)
    first = sb.run(REGISTRY_VOLUME, "--stack", STACK, "--remove", "aim-registry-data")
    assert first.returncode == 0 and lines(first.stdout) == [
        f"changed: removed docker volume aim-registry-data (registry data of stack {STACK})"
    ]
    assert not volume.exists()
    second = sb.run(REGISTRY_VOLUME, "--stack", STACK, "--remove", "aim-registry-data")
    assert second.returncode == 0 and lines(second.stdout) == ["unchanged: docker volume aim-registry-data is absent"]


# --------------------------------------------------------------------------------------------------------------------
# local-path's setup and teardown (the stack's ConfigMap) with kubeadm-reset.sh: the marker round trip, the mode


def run_helper(script: str, volume: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a helper-pod script as the provisioner does: sh, VOL_* in the environment (busybox's date in the pod)."""
    variables = {"PATH": os.environ["PATH"], "VOL_DIR": str(volume), "VOL_MODE": "Filesystem",
                 "VOL_SIZE_BYTES": "1073741824", "VOL_USER": "", "VOL_GROUP": "", "VOL_PERM": ""} | env  # fmt: skip
    return subprocess.run(["/bin/sh", "-c", script], env=variables, capture_output=True, text=True, check=False)


def test_local_path_volumes_are_not_world_writable_and_carry_the_stacks_marker(sb: Sandbox) -> None:
    from aim_infra.stack.components.addons import local_path_config

    config = local_path_config(STACK)
    data = sb.root / "opt" / "local-path-provisioner"
    data.mkdir(parents=True)
    ours = data / "pvc-6f1c_aim_aim-engine-model-cache"
    theirs = data / "pvc-0a2b_team_scratch"
    for volume in (ours, theirs):
        done = run_helper(config["setup"], volume)
        assert done.returncode == 0, done.stderr
        # 0700: the engine and the downloader run as root, the owner, and need no capability to write; no other
        # host user or pod can read gated weights or plant code (trust-remote-code) in the cache.
        assert stat.S_IMODE(volume.stat().st_mode) == 0o700
        recorded = json.loads(Path(f"{volume}.aim-stack.json").read_text())
        assert (recorded["stack"], recorded["volume"]) == (STACK, volume.name)
    # A StorageClass's permPattern still decides when it is set.
    shared = data / "pvc-1234_team_shared"
    assert run_helper(config["setup"], shared, VOL_PERM="0770").returncode == 0
    assert stat.S_IMODE(shared.stat().st_mode) == 0o770

    result = sb.run(KUBEADM_RESET, "--stack", STACK, "--kubeconfig", str(sb.kubeconfig), "--local-path-dir", str(data),
                    "--local-path-namespace", "aim")  # fmt: skip
    assert f"changed: removed the local-path volume {ours}" in lines(result.stdout)
    assert not ours.exists() and not Path(f"{ours}.aim-stack.json").exists()
    assert theirs.is_dir() and shared.is_dir()  # other namespaces' volumes stay

    assert run_helper(config["teardown"], theirs).returncode == 0  # the provisioner's own delete takes the marker too
    assert not theirs.exists() and not Path(f"{theirs}.aim-stack.json").exists()
