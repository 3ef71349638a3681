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
