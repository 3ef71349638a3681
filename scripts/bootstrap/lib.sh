#!/usr/bin/env bash
# lib.sh: helpers shared by the scripts in scripts/bootstrap/; sourced, never run.
#
# Usage, at the top of a script, after `set -euo pipefail`:
#   # shellcheck source-path=SCRIPTDIR source=lib.sh
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Defines AIM_NAME (the script's file name without .sh: the prefix of its error lines) and the functions
#   aim_die CODE MESSAGE      print "AIM_NAME: MESSAGE" (one line) on stderr and exit CODE
#   aim_help                  print the script's header comment (its -h/--help text)
#   aim_simulated             true when a path override points the script at a fake root (tests): AIM_ETC,
#                             AIM_PROC_SWAPS, AIM_PROC_MODULES, AIM_PROC_SYS, AIM_VAR_LIB, AIM_RUN,
#                             AIM_CONTAINERD_CERTS_D or AIM_CONTAINERD_CONFIG is set
#   aim_require_root CHECK ARGS...
#                             for a real run (CHECK=0) that is not simulated, as a user other than root: re-run the
#                             script as root with `sudo -n` when passwordless sudo works (`sudo -n true`), else exit 1
#                             with one line; ARGS are the script's original arguments
#   aim_need_cmd NAME FIX     exit 1 with one line when NAME is not on PATH
#   aim_valid_stack ID        true for a stack id as the Pulumi program passes it: <project>/<stack>, letters,
#                             digits, '.', '_', '-' and '/' only (it is written into marker files unquoted)
#   aim_marker_field FILE KEY the value of "KEY": "VALUE" in a marker file this directory's scripts wrote (one key a
#                             line, see kubeadm-init.sh); empty when the file or the key is missing
set -euo pipefail

AIM_NAME=$(basename "$0" .sh)

aim_die() {
  local code=$1
  shift
  echo "$AIM_NAME: $*" >&2
  exit "$code"
}

aim_help() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

aim_simulated() {
  [[ -n "${AIM_ETC:-}${AIM_PROC_SWAPS:-}${AIM_PROC_MODULES:-}${AIM_PROC_SYS:-}${AIM_VAR_LIB:-}${AIM_RUN:-}" ||
     -n "${AIM_CONTAINERD_CERTS_D:-}${AIM_CONTAINERD_CONFIG:-}" ]]
}

aim_require_root() {
  local check=$1
  shift
  if (( check )) || aim_simulated || [[ "$(id -u)" == 0 ]]; then
    return 0
  fi
  if sudo -n true >/dev/null 2>&1; then
    # sudo resets the environment; SUDO_UID/SUDO_GID then name this user
    local self
    self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
    exec sudo -n -- bash "$self" "$@"
  fi
  aim_die 1 "needs root: run \`pulumi up\` as root or allow passwordless sudo for this user (sudo -n true failed)"
}

aim_need_cmd() {
  command -v "$1" >/dev/null 2>&1 || aim_die 1 "$1 not found on PATH: $2"
}

aim_valid_stack() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._/-]*$ && ${#1} -le 200 ]]
}

aim_marker_field() {
  [[ -f "$1" && ! -L "$1" ]] || return 0
  sed -n "s/^[[:space:]]*\"$2\":[[:space:]]*\"\([^\"]*\)\",\{0,1\}[[:space:]]*$/\1/p" "$1" | head -n 1
}

# aim_file_sha256 FILE: the sha256 of FILE in hex, empty when it is not a readable regular file.
aim_file_sha256() {
  if [[ -f "$1" && -r "$1" ]]; then
    sha256sum "$1" | awk '{ print $1 }'
  fi
}

# aim_cluster_not_ours MARKER CA STACK: prints why the kubeadm cluster on this host is not proven to be STACK's (the
# marker kubeadm-init.sh writes before it runs `kubeadm init`), nothing when it is. A cluster is STACK's when MARKER
# names STACK and either init is still recorded as running ("initialising": an interrupted or failed init of ours)
# or the cluster CA (CA, kubeadm's pki/ca.crt) is the one recorded after init, so a cluster someone re-initialised
# since (a new CA) is not taken for ours.
aim_cluster_not_ours() {
  local marker=$1 ca=$2 stack=$3 owner state recorded
  if [[ ! -f "$marker" || -L "$marker" ]]; then
    echo "no $marker records that this stack created it"
    return 0
  fi
  owner=$(aim_marker_field "$marker" stack)
  state=$(aim_marker_field "$marker" state)
  if [[ "$owner" != "$stack" ]]; then
    echo "$marker says stack '${owner:-unknown}' created it, not $stack"
  elif [[ "$state" == initialised ]]; then
    recorded=$(aim_marker_field "$marker" caSha256)
    if [[ -z "$recorded" || "$(aim_file_sha256 "$ca")" != "$recorded" ]]; then
      echo "its CA $ca is not the one $marker recorded when this stack created it (re-initialised since)"
    fi
  elif [[ "$state" != initialising ]]; then
    echo "$marker has an unknown state '$state'"
  fi
}
