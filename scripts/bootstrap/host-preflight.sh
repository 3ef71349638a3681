#!/usr/bin/env bash
# host-preflight.sh: make a Kubernetes node host ready for kubeadm + containerd + AMD GPUs, idempotently.
#
# First checks every prerequisite it cannot fix, and changes nothing unless all are there:
#   - the OS is supported (Ubuntu 22.04/24.04, Debian 12, RHEL/Rocky 9); otherwise one line and exit 2
#   - the AMD GPU kernel driver is present (/dev/kfd): install amdgpu-dkms (ROCm) first
#   - containerd, kubeadm, kubelet and kubectl are on PATH: install containerd (distribution package) and
#     kubeadm, kubelet, kubectl from pkgs.k8s.io
#   Each missing item is one line on stderr, then exit 1 (with --check too) before anything is changed, so a host
#   that cannot become a node is left exactly as it was.
# Then checks, and in a real run fixes:
#   - swap is off (swapoff -a) and swap entries in /etc/fstab are commented out
#   - kernel modules overlay and br_netfilter are loaded (modprobe), persisted in /etc/modules-load.d/aim.conf
#   - sysctls net.bridge.bridge-nf-call-iptables, net.bridge.bridge-nf-call-ip6tables and net.ipv4.ip_forward are 1
#     (sysctl -w), persisted in /etc/sysctl.d/99-aim.conf
#
# Usage: host-preflight.sh [--check] [--undo]
#   --check  dry run: print one "would: ..." line per needed change, change nothing;
#            exit 0 when nothing needs changing, 3 when something would change.
#   --undo   remove the two files a real run persisted, /etc/modules-load.d/aim.conf and /etc/sysctl.d/99-aim.conf,
#            each only while it still starts with this script's "# Managed by" line (else a "note: ..." line).
#            Swap stays off, loaded modules and live sysctls stay as they are (a "note: ..." line says so).
#            Skips the OS, /dev/kfd and PATH checks. With --check: print the "would: ..." lines only.
#   A real run prints one "changed: ..." line per change, or "host-preflight: nothing to change".
#   A real run must be root: run by another user it re-runs itself with `sudo -n` when passwordless sudo works.
# Exit codes: 0 ok, 1 error (/dev/kfd or a command missing, not root), 2 unsupported OS or bad usage,
#             3 (--check) changes needed.
#
# Every system path can be overridden, for tests against a fake root:
#   AIM_OS_RELEASE (/etc/os-release)  AIM_PROC_SWAPS (/proc/swaps)  AIM_PROC_MODULES (/proc/modules)
#   AIM_PROC_SYS (/proc/sys)          AIM_DEV (/dev)                 AIM_ETC (/etc: fstab, modules-load.d, sysctl.d)
# When any AIM_PROC_* or AIM_ETC (or another path override of lib.sh) is set, the run is simulated: no root is needed,
# swapoff/modprobe/sysctl are never run, the script prints "simulated: <command>" and applies the command's effect
# to the fake /proc files instead. containerd, kubeadm, kubelet and kubectl are looked up on PATH.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OS_RELEASE=${AIM_OS_RELEASE:-/etc/os-release}
PROC_SWAPS=${AIM_PROC_SWAPS:-/proc/swaps}
PROC_MODULES=${AIM_PROC_MODULES:-/proc/modules}
PROC_SYS=${AIM_PROC_SYS:-/proc/sys}
DEV=${AIM_DEV:-/dev}
ETC=${AIM_ETC:-/etc}

SIMULATE=0
if aim_simulated; then
  SIMULATE=1
fi

MODULES=(overlay br_netfilter)
SYSCTLS=(net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.ip_forward)
COMMANDS=(containerd kubeadm kubelet kubectl)
INSTALL_HINT="install containerd (distribution package) and kubeadm, kubelet, kubectl from pkgs.k8s.io: \
https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/"
ME=scripts/bootstrap/host-preflight.sh

CHECK=0
UNDO=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    --undo) UNDO=1 ;;
    -h|--help) aim_help; exit 0 ;;
    *) aim_die 2 "unknown argument '$arg' (usage: host-preflight.sh [--check] [--undo])" ;;
  esac
done

PENDING=0
CHANGED=0

# changed WHAT: a real run's report of one change it made.
changed() {
  echo "changed: $1"
  CHANGED=1
}

# report WHAT: in --check mode print "would: WHAT" and remember it; otherwise return 1 so the caller applies it.
report() {
  if (( CHECK )); then
    echo "would: $1"
    PENDING=1
    return 0
  fi
  return 1
}

# run CMD...: run a system command, or in simulated mode only say so.
run() {
  if (( SIMULATE )); then
    echo "simulated: $*"
  else
    "$@"
  fi
}

# write_if_different FILE CONTENT DESCRIPTION
write_if_different() {
  local file=$1 content=$2 what=$3
  if [[ -f "$file" ]] && [[ "$(cat "$file")" == "$content" ]]; then
    return 0
  fi
  report "write $file ($what)" && return 0
  mkdir -p "$(dirname "$file")"
  local tmp
  tmp=$(mktemp "$file.XXXXXX")
  printf '%s\n' "$content" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$file"
  changed "wrote $file ($what)"
}

# finish: the exit status and closing line shared by both modes.
finish() {
  if (( PENDING )); then
    exit 3
  fi
  if (( ! CHANGED )); then
    echo "host-preflight: nothing to change"
  fi
  exit 0
}

# --- --undo: remove the persisted files, nothing else ----------------------------------------------------------------
if (( UNDO )); then
  aim_require_root "$CHECK" "$@"
  for file in "$ETC/modules-load.d/aim.conf" "$ETC/sysctl.d/99-aim.conf"; do
    if [[ ! -e "$file" && ! -L "$file" ]]; then
      continue
    fi
    if [[ ! -f "$file" ]] || [[ "$(head -n 1 "$file")" != "# Managed by $ME" ]]; then
      echo "note: left $file: it does not start with \"# Managed by $ME\", so this script did not write it"
      continue
    fi
    report "remove $file" && continue
    rm -f "$file"
    changed "removed $file"
  done
  echo "note: --undo does not turn swap back on (the swap lines in $ETC/fstab stay commented out), unload ${MODULES[*]} or reset the live sysctls; modules and sysctls revert at the next reboot"
  finish
fi

# --- OS ----------------------------------------------------------------------------------------------------------
os_field() {
  # prints the unquoted value of KEY from os-release, without sourcing the file
  sed -n "s/^$1=//p" "$OS_RELEASE" | head -n 1 | tr -d "\"'"
}

if [[ ! -r "$OS_RELEASE" ]]; then
  echo "host-preflight: unsupported OS: cannot read $OS_RELEASE (supported: Ubuntu 22.04/24.04, Debian 12, RHEL/Rocky 9)" >&2
  exit 2
fi
OS_ID=$(os_field ID)
OS_VERSION=$(os_field VERSION_ID)
case "$OS_ID:$OS_VERSION" in
  ubuntu:22.04|ubuntu:24.04|debian:12|rhel:9|rhel:9.*|rocky:9|rocky:9.*) ;;
  *)
    echo "host-preflight: unsupported OS: ${OS_ID:-unknown} ${OS_VERSION:-unknown} (supported: Ubuntu 22.04/24.04, Debian 12, RHEL/Rocky 9)" >&2
    exit 2
    ;;
esac

aim_require_root "$CHECK" "$@"

# --- prerequisites it cannot fix: all checked before anything changes --------------------------------------------
status=0
if [[ ! -e "$DEV/kfd" ]]; then
  echo "host-preflight: AMD GPU driver missing: $DEV/kfd not found (install the amdgpu kernel driver from ROCm, then reboot)" >&2
  status=1
fi
missing=()
for cmd in "${COMMANDS[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing+=("$cmd")
  fi
done
if (( ${#missing[@]} )); then
  list=$(printf '%s, ' "${missing[@]}")
  echo "host-preflight: not on PATH: ${list%, }: $INSTALL_HINT" >&2
  status=1
fi
if (( status )); then
  exit "$status"
fi

# --- swap --------------------------------------------------------------------------------------------------------
active_swaps=""
if [[ -r "$PROC_SWAPS" ]]; then
  active_swaps=$(tail -n +2 "$PROC_SWAPS" | awk 'NF { print $1 }' | paste -sd ' ' -)
fi
if [[ -n "$active_swaps" ]]; then
  if ! report "turn swap off (swapoff -a; active: $active_swaps)"; then
    run swapoff -a
    if (( SIMULATE )); then
      head -n 1 "$PROC_SWAPS" >"$PROC_SWAPS.tmp" && mv -f "$PROC_SWAPS.tmp" "$PROC_SWAPS"
    fi
    changed "swap turned off (was: $active_swaps)"
  fi
fi

FSTAB=$ETC/fstab
if [[ -f "$FSTAB" ]]; then
  swap_lines=$(awk '$0 !~ /^[[:space:]]*#/ && $3 == "swap"' "$FSTAB")
  if [[ -n "$swap_lines" ]]; then
    if ! report "comment out swap in $FSTAB: $(printf '%s' "$swap_lines" | paste -sd ';' -)"; then
      tmp=$(mktemp "$FSTAB.XXXXXX")
      awk '$0 !~ /^[[:space:]]*#/ && $3 == "swap" { print "# disabled by aim host-preflight: " $0; next } { print }' \
        "$FSTAB" >"$tmp"
      chmod --reference="$FSTAB" "$tmp" 2>/dev/null || chmod 0644 "$tmp"
      mv -f "$tmp" "$FSTAB"
      changed "commented out swap in $FSTAB"
    fi
  fi
fi

# --- kernel modules ----------------------------------------------------------------------------------------------
module_loaded() {
  [[ -r "$PROC_MODULES" ]] && awk -v m="$1" '$1 == m { found = 1 } END { exit !found }' "$PROC_MODULES"
}
for mod in "${MODULES[@]}"; do
  if ! module_loaded "$mod"; then
    if ! report "load kernel module $mod (modprobe $mod)"; then
      run modprobe "$mod"
      if (( SIMULATE )); then
        echo "$mod 0 0 - Live 0x0000000000000000" >>"$PROC_MODULES"
      fi
      changed "loaded kernel module $mod"
    fi
  fi
done
write_if_different "$ETC/modules-load.d/aim.conf" "# Managed by $ME
$(printf '%s\n' "${MODULES[@]}")" "load ${MODULES[*]} at boot"

# --- sysctls -----------------------------------------------------------------------------------------------------
for key in "${SYSCTLS[@]}"; do
  path=$PROC_SYS/${key//.//}
  current="unset"
  if [[ -r "$path" ]]; then
    current=$(tr -d '[:space:]' <"$path")
  fi
  if [[ "$current" != 1 ]]; then
    if ! report "set sysctl $key=1 (currently $current)"; then
      run sysctl -q -w "$key=1"
      if (( SIMULATE )); then
        mkdir -p "$(dirname "$path")"
        echo 1 >"$path"
      fi
      changed "sysctl $key=1 (was $current)"
    fi
  fi
done
write_if_different "$ETC/sysctl.d/99-aim.conf" "# Managed by $ME
$(printf '%s = 1\n' "${SYSCTLS[@]}")" "persist ${SYSCTLS[*]}"

finish
