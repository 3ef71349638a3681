#!/usr/bin/env bash
# containerd-registry-mirror.sh: let containerd (the kubelet's runtime) pull from the stack's local registry
# at localhost:PORT over plain HTTP, idempotently.
#
# Writes <certs.d>/localhost:PORT/hosts.toml (containerd's registry host configuration, read from the directory
# named by the CRI plugin's registry `config_path`, conventionally /etc/containerd/certs.d):
#
#   server = "http://localhost:PORT"
#   [host."http://localhost:PORT"]
#     capabilities = ["pull", "resolve"]
#
# containerd reads hosts.toml on each pull, so no restart is needed and containerd is never restarted.
# If /etc/containerd/config.toml exists but sets no config_path, a note on stderr says how to set it (that file is
# not edited here; changing it does need a containerd restart).
#
# Usage: containerd-registry-mirror.sh [--check] PORT
#   --check  dry run: print "would: ..." when the file would change, change nothing;
#            exit 0 when nothing needs changing, 3 when something would change.
#   A real run prints "changed: ..." when it wrote the file, "unchanged: ..." otherwise.
# Exit codes: 0 ok, 2 bad usage, 3 (--check) a change is needed.
# Environment: AIM_CONTAINERD_CERTS_D (default /etc/containerd/certs.d),
#              AIM_CONTAINERD_CONFIG (default /etc/containerd/config.toml).
set -euo pipefail

CERTS_D=${AIM_CONTAINERD_CERTS_D:-/etc/containerd/certs.d}
CONFIG=${AIM_CONTAINERD_CONFIG:-/etc/containerd/config.toml}

usage() {
  echo "usage: containerd-registry-mirror.sh [--check] PORT   (PORT: 1-65535)" >&2
  exit 2
}

CHECK=0
PORT=""
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) usage ;;
    *) [[ -z "$PORT" ]] || usage; PORT=$arg ;;
  esac
done
if [[ ! "$PORT" =~ ^[1-9][0-9]{0,4}$ ]] || (( PORT > 65535 )); then
  usage
fi

HOST=localhost:$PORT
DIR=$CERTS_D/$HOST
FILE=$DIR/hosts.toml
CONTENT="# Managed by scripts/bootstrap/containerd-registry-mirror.sh: pull $HOST over plain HTTP.
server = \"http://$HOST\"

[host.\"http://$HOST\"]
  capabilities = [\"pull\", \"resolve\"]"

if [[ -f "$CONFIG" ]] && ! grep -q 'config_path' "$CONFIG"; then
  echo "note: $CONFIG sets no registry config_path, so containerd ignores $CERTS_D; set config_path = \"$CERTS_D\" in its CRI registry section and restart containerd" >&2
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
