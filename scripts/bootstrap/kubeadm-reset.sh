#!/usr/bin/env bash
# kubeadm-reset.sh: tear down the kubeadm cluster on this host (the undo of kubeadm-init.sh), idempotently.
#
# When /etc/kubernetes/admin.conf or any /etc/kubernetes/manifests/*.yaml exists, and the marker kubeadm-init.sh wrote
# when it ran `kubeadm init`, /etc/kubernetes/aim-stack.json, proves --stack created this cluster (it names --stack,
# and the cluster CA is the one it recorded; see kubeadm-init.sh):
#   - runs `kubeadm reset --force` (its output goes to stderr, so stdout holds only this script's report lines);
#   - removes Calico's leftovers: /etc/cni/net.d/10-calico.conflist, /etc/cni/net.d/calico-kubeconfig,
#     /var/lib/calico, /run/calico, and the network links vxlan.calico, vxlan-v6.calico and tunl0 when
#     `ip link show` lists them (`ip link delete NAME`; a link that cannot be deleted, such as tunl0 while the ipip
#     module is loaded, is left with a "note: ..." line);
#   - prints a "note: ..." line: iptables are never flushed (Docker's rules on this host stay intact), so kube-proxy's
#     and Calico's rules remain until reboot, and how to remove them by hand;
#   - removes the marker.
# A cluster without that proof is kept whole (no reset, Calico's files, links and the --kubeconfig file stay): one
# "kept: ..." line says why, and the exit code is 0 so `pulumi destroy` finishes.
# Without any cluster it prints "unchanged: no kubeadm cluster on this host" and removes the --kubeconfig file when it
# exists (and a marker naming --stack, left by a cluster reset by hand).
# With --local-path-dir DIR --local-path-namespace NS, the volume directories local-path-provisioner left in DIR
# (such as the model cache's, whose PVC deletion raced the provisioner's own removal) are removed, but only those of
# this stack: named pvc-<uid>_NS_<pvc> (the provisioner's <volume>_<namespace>_<claim>) and with the marker
# <dir>.aim-stack.json, which the stack's provisioner writes beside each volume it creates, naming --stack. Every
# other pvc-* directory stays with a "kept: ..." line; nothing else in DIR is touched. Docker is never touched.
#
# Usage: kubeadm-reset.sh [--check] --stack ID --kubeconfig PATH [--local-path-dir DIR --local-path-namespace NS]
#   --stack ID  the Pulumi stack running this, <project>/<stack>: only what its markers name is removed
#   --check  dry run: print one "would: ..." line per needed change, change nothing; exit 0 when nothing needs
#            changing ("kubeadm-reset: nothing to change"), 3 when something would change.
#   A real run prints one "changed: ..." line per change (or the "unchanged: ..." line) and the notes.
#   A real run must be root: run by another user it re-runs itself with `sudo -n` when passwordless sudo works.
# Exit codes: 0 ok, 1 error (kubeadm reset failed, kubeadm missing, not root), 2 bad usage,
#             3 (--check) changes needed.
# Environment: AIM_ETC (/etc), AIM_VAR_LIB (/var/lib), AIM_RUN (/run); any of them set means a simulated run against
#   a fake root (no root needed). kubeadm and ip are looked up on PATH.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ETC=${AIM_ETC:-/etc}
VAR_LIB=${AIM_VAR_LIB:-/var/lib}
RUN=${AIM_RUN:-/run}
ADMIN=$ETC/kubernetes/admin.conf
MARKER=$ETC/kubernetes/aim-stack.json
CLUSTER_CA=$ETC/kubernetes/pki/ca.crt
CALICO_PATHS=("$ETC/cni/net.d/10-calico.conflist" "$ETC/cni/net.d/calico-kubeconfig" "$VAR_LIB/calico" "$RUN/calico")
CALICO_LINKS=(vxlan.calico vxlan-v6.calico tunl0)

usage() {
  aim_die 2 "$1 (usage: kubeadm-reset.sh [--check] --stack ID --kubeconfig PATH [--local-path-dir DIR --local-path-namespace NS])"
}

ARGS=("$@")
CHECK=0
KUBECONFIG_PATH=""
SEEN_KUBECONFIG=0
LOCAL_PATH_DIR=""
LOCAL_PATH_NAMESPACE=""
STACK=""
SEEN_STACK=0
while (( $# )); do
  case "$1" in
    --check) CHECK=1; shift ;;
    -h|--help) aim_help; exit 0 ;;
    --kubeconfig=*) KUBECONFIG_PATH=${1#*=}; SEEN_KUBECONFIG=1; shift ;;
    --local-path-dir=*) LOCAL_PATH_DIR=${1#*=}; shift ;;
    --local-path-namespace=*) LOCAL_PATH_NAMESPACE=${1#*=}; shift ;;
    --stack=*) STACK=${1#*=}; SEEN_STACK=1; shift ;;
    --local-path-dir|--local-path-namespace|--stack)
      (( $# >= 2 )) || usage "$1 needs a value"
      case "$1" in
        --local-path-dir) LOCAL_PATH_DIR=$2 ;;
        --local-path-namespace) LOCAL_PATH_NAMESPACE=$2 ;;
        --stack) STACK=$2; SEEN_STACK=1 ;;
      esac
      shift 2
      ;;
    --kubeconfig)
      (( $# >= 2 )) || usage "--kubeconfig needs a value"
      KUBECONFIG_PATH=$2
      SEEN_KUBECONFIG=1
      shift 2
      ;;
    *) usage "unknown argument '$1'" ;;
  esac
done
(( SEEN_STACK )) || usage "--stack is required"
aim_valid_stack "$STACK" || usage "--stack '$STACK' is not <project>/<stack> (letters, digits, '.', '_', '-')"
(( SEEN_KUBECONFIG )) || usage "--kubeconfig is required"
[[ -n "$KUBECONFIG_PATH" ]] || usage "--kubeconfig needs a non-empty PATH"
if [[ -n "$LOCAL_PATH_DIR" ]]; then
  LOCAL_PATH_DIR=${LOCAL_PATH_DIR%/}
  [[ "$LOCAL_PATH_DIR" == /?* && "$LOCAL_PATH_DIR" != *..* ]] ||
    usage "--local-path-dir must be an absolute directory other than / (got '$LOCAL_PATH_DIR')"
  [[ "$LOCAL_PATH_NAMESPACE" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] ||
    usage "--local-path-namespace '$LOCAL_PATH_NAMESPACE' is not a namespace name (a DNS label); --local-path-dir needs it"
elif [[ -n "$LOCAL_PATH_NAMESPACE" ]]; then
  usage "--local-path-namespace needs --local-path-dir"
fi
aim_require_root "$CHECK" "${ARGS[@]}"

PENDING=0

# step WHAT: in --check mode print "would: WHAT" and return 0; otherwise return 1 so the caller does it.
step() {
  if (( CHECK )); then
    echo "would: $1"
    PENDING=1
    return 0
  fi
  return 1
}

changed() {
  echo "changed: $1"
}

shopt -s nullglob
manifests=("$ETC"/kubernetes/manifests/*.yaml)
shopt -u nullglob

FOREIGN=""
if [[ -e "$ADMIN" ]] || (( ${#manifests[@]} )); then
  FOREIGN=$(aim_cluster_not_ours "$MARKER" "$CLUSTER_CA" "$STACK")
fi
if [[ -n "$FOREIGN" ]]; then
  echo "kept: the kubeadm cluster on this host (kubeadm reset not run; Calico's files and links and $KUBECONFIG_PATH left): stack $STACK did not create it ($FOREIGN); reset it by hand (\`sudo kubeadm reset --force\`) if you mean to"
elif [[ -e "$ADMIN" ]] || (( ${#manifests[@]} )); then
  if ! step "reset the cluster: kubeadm reset --force"; then
    aim_need_cmd kubeadm "install kubeadm from pkgs.k8s.io, or reset by hand"
    if ! kubeadm reset --force >&2; then
      aim_die 1 "kubeadm reset --force failed (its output is above): fix the cause and re-run"
    fi
    changed "reset the cluster (kubeadm reset --force)"
  fi

  for path in "${CALICO_PATHS[@]}"; do
    if [[ -e "$path" || -L "$path" ]]; then
      step "remove $path" && continue
      rm -rf "$path"
      changed "removed $path"
    fi
  done

  if command -v ip >/dev/null 2>&1; then
    links=$(ip link show 2>/dev/null | awk '/^[0-9]+: / { n = $2; sub(/:$/, "", n); sub(/@.*/, "", n); print n }') || links=""
    for link in "${CALICO_LINKS[@]}"; do
      if ! grep -qxF "$link" <<<"$links"; then
        continue
      fi
      step "delete network link $link (ip link delete $link)" && continue
      if ip link delete "$link" >/dev/null 2>&1; then
        changed "deleted network link $link"
      elif [[ "$link" == tunl0 ]]; then
        echo "note: left network link tunl0: it belongs to the ipip kernel module (\`sudo modprobe -r ipip\` or a reboot removes it)"
      else
        echo "note: left network link $link: \`ip link delete $link\` failed; a reboot removes it"
      fi
    done
  else
    echo "note: ip is not on PATH, so Calico's network links (${CALICO_LINKS[*]}) were not looked for; a reboot removes them"
  fi

  echo "note: iptables were not flushed (Docker's rules stay intact), so kube-proxy's KUBE-* and Calico's cali-* rules remain until reboot; to drop them now: sudo iptables-save | grep -v -e KUBE -e cali- | sudo iptables-restore (likewise ip6tables-save | ip6tables-restore)"
  if ! step "remove $MARKER (this stack's record of the cluster)"; then
    rm -f "$MARKER"
    changed "removed $MARKER"
  fi
else
  if (( ! CHECK )); then
    echo "unchanged: no kubeadm cluster on this host"
  fi
  # the record of a cluster of ours that was reset by hand
  if [[ -f "$MARKER" && "$(aim_marker_field "$MARKER" stack)" == "$STACK" ]] &&
     ! step "remove $MARKER (this stack's record of a cluster that is gone)"; then
    rm -f "$MARKER"
    changed "removed $MARKER"
  fi
fi

if [[ -n "$FOREIGN" ]]; then
  :  # the kubeconfig of a cluster that is not ours stays (named in the "kept:" line)
elif [[ -e "$KUBECONFIG_PATH" || -L "$KUBECONFIG_PATH" ]]; then
  if [[ -d "$KUBECONFIG_PATH" && ! -L "$KUBECONFIG_PATH" ]]; then
    echo "note: left $KUBECONFIG_PATH: it is a directory, not a kubeconfig file"
  elif ! step "remove $KUBECONFIG_PATH (the admin kubeconfig)"; then
    rm -f "$KUBECONFIG_PATH"
    changed "removed $KUBECONFIG_PATH"
  fi
fi

if [[ -n "$LOCAL_PATH_DIR" && -d "$LOCAL_PATH_DIR" ]]; then
  shopt -s nullglob
  volumes=("$LOCAL_PATH_DIR"/pvc-*)
  shopt -u nullglob
  for volume in "${volumes[@]}"; do
    [[ -d "$volume" && ! -L "$volume" ]] || continue
    name=${volume##*/}
    volume_marker=$volume.aim-stack.json
    if [[ ! "$name" =~ ^pvc-[^_/]+_${LOCAL_PATH_NAMESPACE}_[^_/]+$ ]]; then
      echo "kept: the local-path volume $volume: not a claim of namespace $LOCAL_PATH_NAMESPACE (the provisioner names volumes pvc-<uid>_<namespace>_<claim>)"
      continue
    fi
    if [[ "$(aim_marker_field "$volume_marker" stack)" != "$STACK" ||
          "$(aim_marker_field "$volume_marker" volume)" != "$name" ]]; then
      echo "kept: the local-path volume $volume: no $volume_marker names stack $STACK, so this stack's provisioner did not create it"
      continue
    fi
    step "remove the local-path volume $volume" && continue
    rm -rf -- "$volume"
    rm -f -- "$volume_marker"
    changed "removed the local-path volume $volume"
  done
fi

if (( PENDING )); then
  exit 3
fi
if (( CHECK )); then
  echo "kubeadm-reset: nothing to change"
fi
exit 0
