#!/usr/bin/env bash
# containerd-registry-mirror.sh: let containerd (the kubelet's runtime) pull from the stack's local registry
# at localhost:PORT over plain HTTP, idempotently; or, with --remove, take that back.
#
# Writes <certs.d>/localhost:PORT/hosts.toml (containerd's registry host configuration, read from the directory
# named by the CRI plugin's registry `config_path`, conventionally /etc/containerd/certs.d):
#
#   server = "http://localhost:PORT"
#   [host."http://localhost:PORT"]
#     capabilities = ["pull", "resolve"]
#
# containerd reads hosts.toml on each pull, so no restart is needed and containerd is never restarted.
# If /etc/containerd/config.toml exists but its config_path does not name the certs.d directory, a note on stderr
# says how to set it (that file is not edited here: containerd-config.sh does that, and restarts containerd).
#
# Usage: containerd-registry-mirror.sh [--check] PORT
#        containerd-registry-mirror.sh [--check] --remove PORT
#   --check   dry run: print "would: ..." when the file would change, change nothing;
#             exit 0 when nothing needs changing, 3 when something would change.
#   --remove  delete <certs.d>/localhost:PORT/hosts.toml, but only if its first line is this script's
#             "# Managed by" line (otherwise it is left and a "note: ..." line says so), then the
#             localhost:PORT directory if that left it empty.
#   A real run prints "changed: ..." when it wrote or removed the file, "unchanged: ..." otherwise.
#   A real run must be root: run by another user it re-runs itself with `sudo -n` when passwordless sudo works.
# Exit codes: 0 ok, 1 error (not root), 2 bad usage, 3 (--check) a change is needed.
# Environment: AIM_ETC (/etc), AIM_CONTAINERD_CERTS_D (default $AIM_ETC/containerd/certs.d),
#              AIM_CONTAINERD_CONFIG (default $AIM_ETC/containerd/config.toml); any of them set means a simulated
#              run against a fake root (no root needed).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ETC=${AIM_ETC:-/etc}
CERTS_D=${AIM_CONTAINERD_CERTS_D:-$ETC/containerd/certs.d}
CONFIG=${AIM_CONTAINERD_CONFIG:-$ETC/containerd/config.toml}
# the directory containerd itself is told about in config.toml (a fake root's AIM_ETC is not part of it)
CONFIGURED_CERTS_D=${AIM_CONTAINERD_CERTS_D:-/etc/containerd/certs.d}
MANAGED="# Managed by scripts/bootstrap/containerd-registry-mirror.sh"

usage() {
  aim_die 2 "usage: containerd-registry-mirror.sh [--check] [--remove] PORT   (PORT: 1-65535)"
}

CHECK=0
REMOVE=0
PORT=""
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    --remove) REMOVE=1 ;;
    -h|--help) aim_help; exit 0 ;;
    -*) usage ;;
    *) [[ -z "$PORT" ]] || usage; PORT=$arg ;;
  esac
done
if [[ ! "$PORT" =~ ^[1-9][0-9]{0,4}$ ]] || (( PORT > 65535 )); then
  usage
fi
aim_require_root "$CHECK" "$@"

HOST=localhost:$PORT
DIR=$CERTS_D/$HOST
FILE=$DIR/hosts.toml
CONTENT="$MANAGED: pull $HOST over plain HTTP.
server = \"http://$HOST\"

[host.\"http://$HOST\"]
  capabilities = [\"pull\", \"resolve\"]"

# --- --remove ------------------------------------------------------------------------------------------------------
if (( REMOVE )); then
  if [[ ! -e "$FILE" && ! -L "$FILE" ]]; then
    if (( ! CHECK )); then
      echo "unchanged: $FILE is absent"
    fi
    exit 0
  fi
  first=""
  if [[ -f "$FILE" ]]; then
    first=$(head -n 1 "$FILE")
  fi
  if [[ "$first" != "$MANAGED"* ]]; then
    echo "note: left $FILE: its first line is not \"$MANAGED...\", so this script did not write it"
    exit 0
  fi
  if (( CHECK )); then
    echo "would: remove $FILE"
    exit 3
  fi
  rm -f "$FILE"
  if [[ -z "$(ls -A "$DIR")" ]]; then
    rmdir "$DIR"
    echo "changed: removed $FILE and the empty $DIR"
  else
    echo "changed: removed $FILE"
  fi
  exit 0
fi

# --- write ---------------------------------------------------------------------------------------------------------
if [[ -f "$CONFIG" ]] && ! grep -qE "^[[:space:]]*config_path[[:space:]]*=.*$CONFIGURED_CERTS_D" "$CONFIG"; then
  echo "note: $CONFIG has no registry config_path naming $CONFIGURED_CERTS_D, so containerd ignores it; run containerd-config.sh (or add it to the CRI registry section's config_path) and restart containerd" >&2
fi

if [[ -f "$FILE" ]] && [[ "$(cat "$FILE")" == "$CONTENT" ]]; then
  if (( ! CHECK )); then
    echo "unchanged: $FILE"
  fi
  exit 0
fi

what=create
done_what=created
if [[ -e "$FILE" ]]; then
  what=rewrite
  done_what=rewrote
fi
if (( CHECK )); then
  echo "would: $what $FILE (server http://$HOST, capabilities pull, resolve)"
  exit 3
fi

mkdir -p "$DIR"
tmp=$(mktemp "$DIR/.hosts.toml.XXXXXX")
printf '%s\n' "$CONTENT" >"$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$FILE"
echo "changed: $done_what $FILE (containerd reads it on the next pull; no restart needed)"
