#!/usr/bin/env bash
# kubeadm-init.sh: initialise a kubeadm control plane on this host once, wait for its API server, hand the admin
# kubeconfig to the user, and (--single-node) let ordinary pods run on the control-plane node; idempotently.
#
#   - Ownership: before it runs `kubeadm init` on a host without a cluster, the script writes the marker
#     /etc/kubernetes/aim-stack.json (which stack --stack names, when, the pod CIDR, state "initialising"); after a
#     successful init it records state "initialised" and the sha256 of the new cluster CA (/etc/kubernetes/pki/ca.crt).
#     A cluster is this stack's only while that marker names --stack and (once initialised) the CA is unchanged.
#   - If /etc/kubernetes/admin.conf exists the cluster exists and is never re-initialised. A cluster that is not this
#     stack's (no marker, another stack's, or re-initialised since) is refused with one line: never adopted, its nodes
#     never untainted, nothing changed. Ours: its API server must answer (kubectl get --raw=/readyz, retried for
#     --wait seconds) and its pod subnet (podSubnet in the kube-system/kubeadm-config ConfigMap) must equal --pod-cidr.
#   - Otherwise runs `kubeadm init --pod-network-cidr=CIDR` and waits for /readyz the same way. kubeadm's output holds
#     a bootstrap token (the `kubeadm join` command), so it goes to a root-only log, /var/log/aim-kubeadm-init.log
#     (mode 0600), never to this script's output, which `pulumi up` shows and may keep; on failure its last lines
#     are shown with token, hash and certificate key redacted.
#   - Copies /etc/kubernetes/admin.conf to the --kubeconfig path when the content differs: parent directories are
#     created, the file is mode 0600, replaced atomically, and owned by the invoking user when run through sudo
#     (SUDO_UID:SUDO_GID).
#   - --single-node: removes the node-role.kubernetes.io/control-plane:NoSchedule taint from every node that has it
#     (of this stack's cluster only).
#
# Usage: kubeadm-init.sh [--check] --stack ID --pod-cidr CIDR --kubeconfig PATH [--single-node] [--wait SECONDS]
#   --stack ID         the Pulumi stack running this, <project>/<stack>: recorded in, and compared with, the marker
#   --pod-cidr CIDR    the pod network, an IPv4 or IPv6 network such as 192.168.0.0/16 (no host bits set)
#   --kubeconfig PATH  where the admin kubeconfig is written
#   --single-node      untaint the control-plane node(s)
#   --wait SECONDS     how long to wait for the API server to answer (default 300)
#   --check  dry run: print one "would: ..." line per needed change, change nothing; exit 0 when nothing needs
#            changing ("kubeadm-init: nothing to change"), 3 when something would change. Which taints would go is
#            only known once the cluster exists.
#   A real run prints one "changed: ..." or "unchanged: ..." line per step: the cluster, the kubeconfig, the taint.
#   A real run must be root: run by another user it re-runs itself with `sudo -n` when passwordless sudo works.
# Exit codes: 0 ok, 1 error (a cluster this stack did not create, API server not answering, pod CIDR mismatch,
#             kubeadm init failed, leftovers of an unfinished init, not root), 2 bad usage, 3 (--check) changes needed.
# Environment: AIM_ETC (/etc); set means a simulated run against a fake root (no root needed, no chown).
#   AIM_VAR_LOG (/var/log): where the kubeadm init log goes.
#   kubeadm and kubectl are looked up on PATH.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ETC=${AIM_ETC:-/etc}
ADMIN=$ETC/kubernetes/admin.conf
MARKER=$ETC/kubernetes/aim-stack.json
CLUSTER_CA=$ETC/kubernetes/pki/ca.crt
INIT_LOG=${AIM_VAR_LOG:-/var/log}/aim-kubeadm-init.log
TAINT="node-role.kubernetes.io/control-plane:NoSchedule"
INSTALL_HINT="install kubeadm, kubelet, kubectl from pkgs.k8s.io (host-preflight.sh checks this)"

usage() {
  aim_die 2 "$1 (usage: kubeadm-init.sh [--check] --stack ID --pod-cidr CIDR --kubeconfig PATH [--single-node] [--wait SECONDS])"
}

# valid_cidr CIDR: true for an IPv4 or IPv6 network in CIDR notation whose host bits are all zero.
valid_cidr() {
  local addr=${1%/*} prefix=${1##*/} ip=0 octet i bits group head tail
  local -a groups=() front=() back=()
  [[ "$1" == */* && "$prefix" =~ ^(0|[1-9][0-9]{0,2})$ ]] || return 1
  if [[ "$addr" =~ ^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$ ]]; then
    (( prefix <= 32 )) || return 1
    for octet in "${BASH_REMATCH[@]:1}"; do
      (( octet <= 255 )) || return 1
      ip=$(( ip * 256 + octet ))
    done
    (( (ip & ((1 << (32 - prefix)) - 1)) == 0 ))
    return
  fi
  [[ "$addr" =~ ^[0-9a-fA-F:]+$ ]] && (( prefix <= 128 )) || return 1
  [[ ( "$addr" != :* || "$addr" == ::* ) && ( "$addr" != *: || "$addr" == *:: ) ]] || return 1
  if [[ "$addr" == *::* ]]; then
    head=${addr%%::*}
    tail=${addr#*::}
    [[ "$tail" != *::* ]] || return 1
    if [[ -n "$head" ]]; then IFS=: read -ra front <<<"$head"; fi
    if [[ -n "$tail" ]]; then IFS=: read -ra back <<<"$tail"; fi
    (( ${#front[@]} + ${#back[@]} <= 7 )) || return 1
    groups=("${front[@]}")
    for (( i = ${#front[@]} + ${#back[@]}; i < 8; i++ )); do
      groups+=(0)
    done
    groups+=("${back[@]}")
  else
    IFS=: read -ra groups <<<"$addr"
  fi
  (( ${#groups[@]} == 8 )) || return 1
  for (( i = 0; i < 8; i++ )); do
    group=${groups[i]}
    [[ "$group" =~ ^[0-9a-fA-F]{1,4}$ ]] || return 1
    bits=$(( prefix - 16 * i ))  # network bits within this group
    if (( bits < 0 )); then
      bits=0
    fi
    if (( bits < 16 && (16#$group & ((1 << (16 - bits)) - 1)) != 0 )); then
      return 1
    fi
  done
}

ARGS=("$@")
CHECK=0
SINGLE_NODE=0
WAIT=300
POD_CIDR=""
KUBECONFIG_PATH=""
STACK=""
SEEN_STACK=0
SEEN_CIDR=0
SEEN_KUBECONFIG=0
while (( $# )); do
  opt=$1
  case "$opt" in
    --check) CHECK=1; shift; continue ;;
    --single-node) SINGLE_NODE=1; shift; continue ;;
    -h|--help) aim_help; exit 0 ;;
    --stack=*|--pod-cidr=*|--kubeconfig=*|--wait=*) value=${opt#*=}; opt=${opt%%=*}; shift ;;
    --stack|--pod-cidr|--kubeconfig|--wait)
      (( $# >= 2 )) || usage "$opt needs a value"
      value=$2
      shift 2
      ;;
    *) usage "unknown argument '$opt'" ;;
  esac
  case "$opt" in
    --stack) STACK=$value; SEEN_STACK=1 ;;
    --pod-cidr) POD_CIDR=$value; SEEN_CIDR=1 ;;
    --kubeconfig) KUBECONFIG_PATH=$value; SEEN_KUBECONFIG=1 ;;
    --wait) WAIT=$value ;;
  esac
done
(( SEEN_STACK )) || usage "--stack is required"
aim_valid_stack "$STACK" || usage "--stack '$STACK' is not <project>/<stack> (letters, digits, '.', '_', '-')"
(( SEEN_CIDR )) || usage "--pod-cidr is required"
(( SEEN_KUBECONFIG )) || usage "--kubeconfig is required"
valid_cidr "$POD_CIDR" || usage "--pod-cidr '$POD_CIDR' is not an IPv4 or IPv6 network in CIDR notation (e.g. 192.168.0.0/16)"
[[ -n "$KUBECONFIG_PATH" ]] || usage "--kubeconfig needs a non-empty PATH"
[[ "$WAIT" =~ ^(0|[1-9][0-9]{0,5})$ ]] || usage "--wait '$WAIT' is not a whole number of seconds"
aim_require_root "$CHECK" "${ARGS[@]}"

PENDING=0
TMP=""
trap 'if [[ -n "$TMP" ]]; then rm -f "$TMP"; fi' EXIT

# would WHAT: a --check run's report of one needed change.
would() {
  echo "would: $1"
  PENDING=1
}

# wait_ready: true once the API server answers /readyz, trying for $WAIT seconds.
wait_ready() {
  local deadline=$(( SECONDS + WAIT ))
  while :; do
    if kubectl --kubeconfig "$ADMIN" get --raw=/readyz >/dev/null 2>&1; then
      return 0
    fi
    if (( SECONDS >= deadline )); then
      return 1
    fi
    sleep 2
  done
}

require_ready() {
  wait_ready || aim_die 1 "found $ADMIN but the API server does not answer: check \`systemctl status kubelet\`, or reset with \`sudo kubeadm reset\`"
}

# own PATH: hand PATH to the user who ran sudo (only as real root, never against a fake root).
own() {
  if [[ -n "${SUDO_UID:-}" ]] && ! aim_simulated && [[ "$(id -u)" == 0 ]]; then
    chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$1"
  fi
}

# tainted_nodes: the names of the nodes that carry $TAINT, one a line.
tainted_nodes() {
  local listing
  # shellcheck disable=SC2016 # a jsonpath template, not a shell expansion
  listing=$(kubectl --kubeconfig "$ADMIN" get nodes \
    -o jsonpath='{range .items[*]}{.metadata.name}{":"}{range .spec.taints[*]}{" "}{.key}{":"}{.effect}{end}{"\n"}{end}') ||
    aim_die 1 "cannot list the nodes with $ADMIN: check \`kubectl --kubeconfig $ADMIN get nodes\`"
  awk -v taint="$TAINT" '{ name = $1; sub(/:$/, "", name); for (i = 2; i <= NF; i++) if ($i == taint) { print name; break } }' \
    <<<"$listing"
}

# write_marker STATE: record in $MARKER that this stack is creating (STATE initialising) or created (initialised,
# with the cluster CA's sha256) the cluster; replaced atomically, so a reader never sees half a marker.
write_marker() {
  local state=$1 created ca="" tmp
  created=$(aim_marker_field "$MARKER" createdAt)
  if [[ "$state" == initialising || -z "$created" ]]; then
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  fi
  if [[ "$state" == initialised ]]; then
    ca=$(aim_file_sha256 "$CLUSTER_CA")
  fi
  mkdir -p "$(dirname "$MARKER")"
  tmp=$(mktemp "$MARKER.XXXXXX")
  printf '{\n  "createdBy": "scripts/bootstrap/kubeadm-init.sh",\n  "stack": "%s",\n  "createdAt": "%s",\n  "podCidr": "%s",\n  "state": "%s",\n  "caSha256": "%s"\n}\n' \
    "$STACK" "$created" "$POD_CIDR" "$state" "$ca" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$MARKER"
}

# redacted_tail FILE: the last lines of kubeadm's output without the secrets a join command carries.
redacted_tail() {
  tail -n 15 "$1" | sed -E \
    -e 's/(--token[ =])[^ ]+/\1<redacted>/g' \
    -e 's/(--discovery-token-ca-cert-hash[ =])[^ ]+/\1<redacted>/g' \
    -e 's/(--certificate-key[ =])[^ ]+/\1<redacted>/g' \
    -e 's/[a-z0-9]{6}\.[a-z0-9]{16}/<redacted-token>/g'
}

# --- the cluster -----------------------------------------------------------------------------------------------------
INIT="kubeadm init --pod-network-cidr=$POD_CIDR"
CLUSTER=0
if [[ -e "$ADMIN" ]]; then
  CLUSTER=1
  [[ -r "$ADMIN" ]] || aim_die 1 "cannot read $ADMIN: run this as root (--check too)"
  foreign=$(aim_cluster_not_ours "$MARKER" "$CLUSTER_CA" "$STACK")
  if [[ -n "$foreign" ]]; then
    aim_die 1 "found a kubeadm cluster ($ADMIN) that stack $STACK did not create ($foreign): refusing to adopt it or untaint its nodes; use it with aim:clusterBootstrap none and its kubeconfig, or reset it yourself (\`sudo kubeadm reset --force\`) so the stack creates its own"
  fi
  aim_need_cmd kubectl "$INSTALL_HINT"
  require_ready
  cluster_config=$(kubectl --kubeconfig "$ADMIN" -n kube-system get configmap kubeadm-config \
    -o jsonpath='{.data.ClusterConfiguration}' 2>/dev/null) ||
    aim_die 1 "cannot read the kube-system/kubeadm-config ConfigMap with $ADMIN: check \`kubectl --kubeconfig $ADMIN -n kube-system get configmap kubeadm-config\`"
  subnet=$(awk '/^[[:space:]]*podSubnet:/ { v = $2; gsub(/["\047]/, "", v); print v; exit }' <<<"$cluster_config")
  if [[ -z "$subnet" ]]; then
    aim_die 1 "the cluster of $ADMIN was initialised without a pod subnet but --pod-cidr is $POD_CIDR: reset it with kubeadm-reset.sh (or \`sudo kubeadm reset\`) to re-initialise it"
  fi
  if [[ "$subnet" != "$POD_CIDR" ]]; then
    aim_die 1 "the cluster's pod subnet is $subnet but --pod-cidr is $POD_CIDR: set aim:podCidr to $subnet (or reset the cluster with kubeadm-reset.sh)"
  fi
  if (( ! CHECK )); then
    echo "unchanged: cluster already initialised ($ADMIN, pod subnet $subnet)"
  fi
  # An init of ours that succeeded but was interrupted before the marker recorded it.
  if [[ "$(aim_marker_field "$MARKER" state)" == initialising ]]; then
    if (( CHECK )); then
      would "record the cluster as stack $STACK's in $MARKER"
    else
      write_marker initialised
      echo "changed: recorded the cluster as stack $STACK's in $MARKER"
    fi
  fi
else
  shopt -s nullglob
  leftovers=("$ETC"/kubernetes/manifests/*.yaml)
  shopt -u nullglob
  if (( ${#leftovers[@]} )); then
    foreign=$(aim_cluster_not_ours "$MARKER" "$CLUSTER_CA" "$STACK")
    if [[ -n "$foreign" ]]; then
      aim_die 1 "found ${leftovers[0]} but no $ADMIN, and stack $STACK did not start that kubeadm init ($foreign): refusing to touch it; finish or reset it yourself (\`sudo kubeadm reset --force\`), then re-run"
    fi
    aim_die 1 "found ${leftovers[0]} but no $ADMIN: an earlier kubeadm init did not finish; reset with kubeadm-reset.sh (or \`sudo kubeadm reset --force\`), then re-run"
  fi
  if (( CHECK )); then
    would "initialise the cluster: $INIT"
    would "record the cluster as stack $STACK's in $MARKER"
  else
    aim_need_cmd kubeadm "$INSTALL_HINT"
    aim_need_cmd kubectl "$INSTALL_HINT"
    mkdir -p "$(dirname "$INIT_LOG")"
    (umask 077 && : >"$INIT_LOG")
    # Written before init, so a failed or interrupted init of ours can still be reset by kubeadm-reset.sh.
    write_marker initialising
    if ! kubeadm init --pod-network-cidr="$POD_CIDR" >"$INIT_LOG" 2>&1; then
      redacted_tail "$INIT_LOG" >&2
      aim_die 1 "$INIT failed (last lines above, all in $INIT_LOG): fix the cause, run \`sudo kubeadm reset --force\`, then re-run"
    fi
    [[ -r "$ADMIN" ]] || aim_die 1 "$INIT succeeded but $ADMIN is missing: check $INIT_LOG"
    write_marker initialised
    echo "changed: initialised the cluster ($INIT; its output, with the join command, is in $INIT_LOG)"
    echo "changed: recorded the cluster as stack $STACK's in $MARKER"
    require_ready
  fi
fi

# --- the kubeconfig --------------------------------------------------------------------------------------------------
if [[ -d "$KUBECONFIG_PATH" ]]; then
  aim_die 1 "--kubeconfig $KUBECONFIG_PATH is a directory: pass a file path such as $KUBECONFIG_PATH/config"
fi
if [[ -f "$KUBECONFIG_PATH" && -r "$ADMIN" ]] && cmp -s "$ADMIN" "$KUBECONFIG_PATH"; then
  if (( ! CHECK )); then
    echo "unchanged: $KUBECONFIG_PATH"
  fi
elif (( CHECK )); then
  would "write $KUBECONFIG_PATH (the admin kubeconfig $ADMIN, mode 0600)"
else
  dir=$(dirname "$KUBECONFIG_PATH")
  missing=()
  parent=$dir
  while [[ ! -d "$parent" ]]; do
    missing=("$parent" "${missing[@]}")
    parent=$(dirname "$parent")
  done
  mkdir -p "$dir"
  for created in "${missing[@]}"; do
    own "$created"
  done
  TMP=$(mktemp "$dir/.$(basename "$KUBECONFIG_PATH").XXXXXX")
  cat "$ADMIN" >"$TMP"
  chmod 0600 "$TMP"
  own "$TMP"
  mv -f "$TMP" "$KUBECONFIG_PATH"
  TMP=""
  echo "changed: wrote $KUBECONFIG_PATH"
fi

# --- the control-plane taint -----------------------------------------------------------------------------------------
if (( SINGLE_NODE )); then
  if (( ! CLUSTER && CHECK )); then
    would "remove the $TAINT taint from the new control-plane node"
  else
    nodes=$(tainted_nodes)
    if [[ -z "$nodes" ]]; then
      if (( ! CHECK )); then
        echo "unchanged: no node has the $TAINT taint"
      fi
    fi
    while IFS= read -r node; do
      [[ -n "$node" ]] || continue
      if (( CHECK )); then
        would "remove the $TAINT taint from node $node"
        continue
      fi
      kubectl --kubeconfig "$ADMIN" taint nodes "$node" "$TAINT-" >&2 ||
        aim_die 1 "cannot remove the $TAINT taint from node $node: check \`kubectl --kubeconfig $ADMIN describe node $node\`"
      echo "changed: removed the $TAINT taint from node $node"
    done <<<"$nodes"
  fi
fi

if (( PENDING )); then
  exit 3
fi
if (( CHECK )); then
  echo "kubeadm-init: nothing to change"
fi
exit 0
