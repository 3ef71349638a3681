#!/usr/bin/env bash
# containerd-config.sh: make containerd's configuration fit for kubeadm, idempotently.
#
# Ensures /etc/containerd/config.toml exists (written from `containerd config default` when missing, or when it is the
# stub Docker's containerd.io package ships, whose `disabled_plugins = ["cri"]` switches off what the kubelet needs;
# Docker itself does not need that line) and that
#   - the runc runtime uses the systemd cgroup driver (SystemdCgroup = true), as the kubelet does under kubeadm;
#   - the CRI registry config_path includes /etc/containerd/certs.d, so the hosts.toml files written there by
#     containerd-registry-mirror.sh are read (an empty config_path becomes "/etc/containerd/certs.d", another one
#     gets "/etc/containerd/certs.d:" put in front).
# Only these two keys are edited, in their own sections: a missing key is added under its section's header, a missing
# section is appended. Config version 2 (containerd 1.x: [plugins."io.containerd.grpc.v1.cri".registry] and
# [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]) and version 3 (containerd 2.x:
# [plugins.'io.containerd.cri.v1.images'.registry] and
# [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]) are understood; any other is an error.
# Before its first edit of a pre-existing file the script keeps a copy in config.toml.aim-backup (once: an existing
# backup is never overwritten). The file is replaced atomically, and containerd is restarted
# (systemctl restart containerd) only when the file changed, then must report active (systemctl is-active containerd,
# retried for AIM_CONTAINERD_WAIT seconds). A restart that fails or is interrupted is not forgotten: the marker
# config.toml.aim-restart-pending is written before the file is replaced and removed only after a restart that left
# containerd active, so while it exists every run (also one that finds the file already right) restarts containerd.
#
# Usage: containerd-config.sh [--check]
#   --check  dry run: print one "would: ..." line per needed change, change nothing;
#            exit 0 when nothing needs changing ("containerd-config: nothing to change"), 3 when something would change.
#   A real run prints one "changed: ..." line per change, the last "changed: restarted containerd", or one
#   "unchanged: ..." line. --check names a pending restart as "would: restart containerd ...".
#   A real run must be root: run by another user it re-runs itself with `sudo -n` when passwordless sudo works.
# Exit codes: 0 ok, 1 error (unknown config version, config_path clashes with registry mirrors, containerd missing,
#             restart failed or containerd not active after it, not root), 2 bad usage, 3 (--check) changes needed.
# Environment: AIM_ETC (/etc), AIM_CONTAINERD_CONFIG (default $AIM_ETC/containerd/config.toml); either one set means
#   a simulated run against a fake root (no root needed). AIM_CONTAINERD_WAIT (30): seconds containerd may take to
#   become active after the restart. containerd and systemctl are looked up on PATH.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ETC=${AIM_ETC:-/etc}
CONFIG=${AIM_CONTAINERD_CONFIG:-$ETC/containerd/config.toml}
BACKUP=$CONFIG.aim-backup
RESTART_PENDING=$CONFIG.aim-restart-pending
WAIT=${AIM_CONTAINERD_WAIT:-30}
# the directory containerd reads hosts.toml files from; the real path, also when testing against a fake root
CERTS_D=/etc/containerd/certs.d

CHECK=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -h|--help) aim_help; exit 0 ;;
    *) aim_die 2 "unknown argument '$arg' (usage: containerd-config.sh [--check])" ;;
  esac
done
[[ "$WAIT" =~ ^(0|[1-9][0-9]{0,4})$ ]] ||
  aim_die 2 "AIM_CONTAINERD_WAIT '$WAIT' is not a whole number of seconds"
aim_require_root "$CHECK" "$@"

WORK=$(mktemp -d)
TMP=""
cleanup() {
  rm -rf "$WORK"
  if [[ -n "$TMP" ]]; then
    rm -f "$TMP"
  fi
}
trap cleanup EXIT
NEW=$WORK/config.toml
EDITS=()

# --- the starting point: the file, or containerd's defaults -------------------------------------------------------
# is_docker_stub FILE: the config.toml Docker's containerd.io package ships: only comments and
# `disabled_plugins = ["cri"]`, which switches off the CRI plugin the kubelet talks to.
is_docker_stub() {
  grep -Eq '^[[:space:]]*disabled_plugins[[:space:]]*=[[:space:]]*\[[[:space:]]*"cri"[[:space:]]*\]' "$1" &&
    ! grep -Evq '^[[:space:]]*(#.*)?$|^[[:space:]]*disabled_plugins[[:space:]]*=' "$1"
}

generate_default() {
  aim_need_cmd containerd "install containerd (distribution package) first"
  if ! containerd config default >"$NEW" 2>"$WORK/stderr"; then
    aim_die 1 "\`containerd config default\` failed ($(head -n 1 "$WORK/stderr")): check the containerd installation"
  fi
}

EXISTED=0
if [[ -f "$CONFIG" ]] && is_docker_stub "$CONFIG"; then
  EXISTED=1  # so it is backed up before it is replaced
  generate_default
  EDITS+=("replace $CONFIG, the containerd.io stub that disables CRI, with containerd config default")
elif [[ -f "$CONFIG" ]]; then
  EXISTED=1
  cp "$CONFIG" "$NEW"
else
  generate_default
  EDITS+=("generate $CONFIG (containerd config default)")
fi

# the top-level `version = N`, i.e. one before the first [table] header
VERSION=$(awk '
  /^[[:space:]]*\[/ { exit }
  /^[[:space:]]*version[[:space:]]*=/ {
    v = $0; sub(/^[^=]*=[[:space:]]*/, "", v); sub(/[[:space:]]*(#.*)?$/, "", v); print v; exit
  }' "$NEW")
case "$VERSION" in
  2)
    RUNC_SECTION='plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options'
    REGISTRY_SECTION='plugins."io.containerd.grpc.v1.cri".registry'
    ;;
  3)
    RUNC_SECTION="plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options"
    REGISTRY_SECTION="plugins.'io.containerd.cri.v1.images'.registry"
    ;;
  "")
    aim_die 1 "$CONFIG has no top-level version line (config version 1, e.g. the containerd.io package's stub that disables CRI): move it aside and re-run to regenerate it with \`containerd config default\`"
    ;;
  *)
    aim_die 1 "$CONFIG has config version $VERSION, which this script does not know (2 is containerd 1.x, 3 containerd 2.x): fix its version line, or move the file aside and re-run to regenerate it"
    ;;
esac

# toml_find SECTION KEY: print "SECTION_LINE KEY_LINE" (0 when absent) and, on a second line, the raw value of KEY
# in table [SECTION] of $NEW. Headers are compared without blanks and with ' read as ".
toml_find() {
  SECTION=$1 KEY=$2 awk '
    function norm(s) { gsub(/[[:space:]]/, "", s); gsub(/\047/, "\"", s); return s }
    BEGIN { target = "[" norm(ENVIRON["SECTION"]) "]"; key = ENVIRON["KEY"] }
    /^[[:space:]]*\[/ {
      h = $0; sub(/#.*/, "", h); here = (norm(h) == target)
      if (here && !section) section = NR
      next
    }
    here && !keyline && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
      keyline = NR; value = $0; sub(/^[^=]*=[[:space:]]*/, "", value)
    }
    END { print section + 0, keyline + 0; print value }
  ' "$NEW"
}

# toml_set SECTION KEY VALUE SECTION_LINE KEY_LINE: replace the key's line, or add it under the section header, or
# append the section with the key; in $NEW.
toml_set() {
  SECTION=$1 KEY=$2 VALUE=$3 SECTION_LINE=$4 KEY_LINE=$5 awk '
    BEGIN {
      section = ENVIRON["SECTION"]; key = ENVIRON["KEY"]; value = ENVIRON["VALUE"]
      secline = ENVIRON["SECTION_LINE"] + 0; keyline = ENVIRON["KEY_LINE"] + 0
    }
    NR == keyline { match($0, /^[[:space:]]*/); print substr($0, 1, RLENGTH) key " = " value; next }
    { print }
    NR == secline && !keyline { match($0, /^[[:space:]]*/); print substr($0, 1, RLENGTH) "  " key " = " value }
    END { if (!secline) { print ""; print "[" section "]"; print "  " key " = " value } }
  ' "$NEW" >"$WORK/edited"
  mv -f "$WORK/edited" "$NEW"
}

# --- SystemdCgroup = true ------------------------------------------------------------------------------------------
{ read -r sec_line key_line; IFS= read -r raw || true; } < <(toml_find "$RUNC_SECTION" SystemdCgroup)
value=${raw%%#*}
value=${value//[[:space:]]/}
if [[ "$value" != true ]]; then
  toml_set "$RUNC_SECTION" SystemdCgroup true "$sec_line" "$key_line"
  EDITS+=("set SystemdCgroup = true (was ${value:-unset}) in [$RUNC_SECTION]")
fi

# --- config_path includes /etc/containerd/certs.d ------------------------------------------------------------------
{ read -r sec_line key_line; IFS= read -r raw || true; } < <(toml_find "$REGISTRY_SECTION" config_path)
quote='"'
current=""
case "$raw" in
  \"*) current=${raw#\"}; current=${current%%\"*} ;;
  \'*) quote="'"; current=${raw#\'}; current=${current%%\'*} ;;
esac
if [[ ":$current:" != *":$CERTS_D:"* && ":$current:" != *":$CERTS_D/:"* ]]; then
  # containerd refuses config_path next to the deprecated registry.mirrors / registry.configs.*.tls tables
  clash=$(SECTION=$REGISTRY_SECTION awk '
    function norm(s) { gsub(/[[:space:]]/, "", s); gsub(/\047/, "\"", s); return s }
    BEGIN { prefix = "[" norm(ENVIRON["SECTION"]) "." }
    /^[[:space:]]*\[/ {
      h = $0; sub(/#.*/, "", h); h = norm(h)
      if (index(h, prefix "mirrors.") == 1 || (index(h, prefix "configs.") == 1 && h ~ /\.tls\]$/)) { print h; exit }
    }' "$NEW")
  if [[ -n "$clash" ]]; then
    aim_die 1 "$CONFIG configures $clash, which containerd refuses together with a registry config_path: move it to a hosts.toml under $CERTS_D (https://github.com/containerd/containerd/blob/main/docs/hosts.md), then re-run"
  fi
  wanted=$CERTS_D${current:+:$current}
  toml_set "$REGISTRY_SECTION" config_path "$quote$wanted$quote" "$sec_line" "$key_line"
  EDITS+=("set config_path = $quote$wanted$quote (was ${current:+$quote$current$quote}${current:-empty}) in [$REGISTRY_SECTION]")
fi

# --- report or apply -----------------------------------------------------------------------------------------------
# restart_containerd: restart it and wait until systemd reports it active; only then is the pending marker removed.
restart_containerd() {
  local previous="" deadline
  if [[ -f "$BACKUP" ]]; then
    previous=" (the original file is $BACKUP)"
  fi
  if ! systemctl restart containerd >&2; then
    aim_die 1 "systemctl restart containerd failed after $CONFIG changed: see \`journalctl -u containerd\`$previous; the next run retries the restart"
  fi
  deadline=$(( SECONDS + WAIT ))
  until systemctl is-active --quiet containerd; do
    if (( SECONDS >= deadline )); then
      aim_die 1 "containerd is not active ${WAIT}s after its restart with the changed $CONFIG: see \`journalctl -u containerd\`$previous; the next run retries the restart"
    fi
    sleep 1
  done
  rm -f "$RESTART_PENDING"
}

if (( ${#EDITS[@]} == 0 )); then
  if [[ -e "$RESTART_PENDING" ]]; then
    # The file is right, but the restart that should have followed its change failed or was interrupted.
    if (( CHECK )); then
      echo "would: restart containerd (systemctl restart containerd): $CONFIG changed but the restart after it did not finish ($RESTART_PENDING)"
      exit 3
    fi
    aim_need_cmd systemctl "containerd must be restarted to read $CONFIG; restart it by hand, then remove $RESTART_PENDING"
    restart_containerd
    echo "changed: restarted containerd (the restart after an earlier change of $CONFIG had not finished)"
    exit 0
  fi
  if (( CHECK )); then
    echo "containerd-config: nothing to change"
  else
    echo "unchanged: $CONFIG (SystemdCgroup = true; config_path includes $CERTS_D)"
  fi
  exit 0
fi

if (( CHECK )); then
  if (( EXISTED )) && [[ ! -e "$BACKUP" ]]; then
    echo "would: back up $CONFIG to $BACKUP"
  fi
  for edit in "${EDITS[@]}"; do
    echo "would: $edit"
  done
  echo "would: restart containerd (systemctl restart containerd)"
  exit 3
fi

aim_need_cmd systemctl "containerd must be restarted to read $CONFIG; restart it by hand"
mkdir -p "$(dirname "$CONFIG")"
if (( EXISTED )) && [[ ! -e "$BACKUP" ]]; then
  cp -p "$CONFIG" "$BACKUP"
  echo "changed: backed up $CONFIG to $BACKUP"
fi
# Before the file changes: from here until containerd runs with it, a rerun must restart containerd.
printf 'containerd must be restarted to read %s (written by containerd-config.sh)\n' "$CONFIG" >"$RESTART_PENDING"
TMP=$(mktemp "$CONFIG.XXXXXX")
cat "$NEW" >"$TMP"
if (( EXISTED )); then
  chmod --reference="$CONFIG" "$TMP" 2>/dev/null || chmod 0644 "$TMP"
else
  chmod 0644 "$TMP"
fi
mv -f "$TMP" "$CONFIG"
TMP=""
for edit in "${EDITS[@]}"; do
  edit=${edit/#generate/generated}
  echo "changed: ${edit/#replace/replaced}"
done
restart_containerd
echo "changed: restarted containerd"
