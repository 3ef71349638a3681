#!/usr/bin/env bash
# registry-volume.sh: use, and on cleanup remove, the local registry's Docker data volume only when it is provably
# this stack's; idempotently.
#
# The proof is the volume label aim.stack=<project>/<stack>, set by the stack when it creates the volume. Docker sets
# labels only at creation (`docker volume create` of an existing name returns that volume as it is), so a volume
# someone else made under the same name never carries it.
#   --claim NAME   before the stack creates the volume: fine when NAME does not exist yet or carries the label;
#                  a volume NAME without it is refused with one line (exit 1), so `pulumi up` never adopts it and a
#                  later cleanup never deletes its data.
#   --remove NAME  on `pulumi destroy` with aim:cleanup registry or all: `docker volume rm NAME` when it carries the
#                  label; otherwise one "kept: ..." line says why, and the exit code is 0 so the destroy finishes.
#
# Usage: registry-volume.sh [--check] --stack ID (--claim | --remove) NAME
#   --stack ID  the Pulumi stack running this, <project>/<stack>
#   --check     dry run: change nothing; with --remove print "would: remove ..." and exit 3 when it would remove it.
#   A real run prints "changed: ...", "unchanged: ..." or "kept: ..." (--remove), or "ok: ..." (--claim).
# Exit codes: 0 ok, 1 error (a volume this stack did not create, docker failing or missing), 2 bad usage,
#             3 (--check) a change is needed.
# Environment: docker is looked up on PATH (and reaches the engine the way the Pulumi docker provider does).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LABEL=aim.stack

usage() {
  aim_die 2 "$1 (usage: registry-volume.sh [--check] --stack ID (--claim | --remove) NAME)"
}

CHECK=0
STACK=""
ACTION=""
NAME=""
while (( $# )); do
  case "$1" in
    --check) CHECK=1; shift ;;
    -h|--help) aim_help; exit 0 ;;
    --stack)
      (( $# >= 2 )) || usage "--stack needs a value"
      STACK=$2
      shift 2
      ;;
    --claim|--remove)
      [[ -z "$ACTION" ]] || usage "give one of --claim and --remove"
      (( $# >= 2 )) || usage "$1 needs a volume NAME"
      ACTION=${1#--}
      NAME=$2
      shift 2
      ;;
    *) usage "unknown argument '$1'" ;;
  esac
done
aim_valid_stack "$STACK" || usage "--stack '$STACK' is not <project>/<stack> (letters, digits, '.', '_', '-')"
[[ -n "$ACTION" ]] || usage "give --claim NAME or --remove NAME"
[[ "$NAME" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$ ]] ||
  usage "volume NAME '$NAME' is not a Docker volume name (letters, digits, '_', '.', '-')"

aim_need_cmd docker "install Docker, or remove the volume $NAME by hand"
listing=$(docker volume ls --quiet 2>&1) || aim_die 1 "docker volume ls failed ($(head -n 1 <<<"$listing")): is Docker running and may this user use it?"
if ! grep -qxF "$NAME" <<<"$listing"; then
  if [[ "$ACTION" == claim ]]; then
    echo "ok: docker volume $NAME does not exist yet: the stack creates it with the label $LABEL=$STACK"
  elif (( ! CHECK )); then
    echo "unchanged: docker volume $NAME is absent"
  fi
  exit 0
fi
# shellcheck disable=SC2016 # a Go template, not a shell expansion
owner=$(docker volume inspect --format '{{ index .Labels "aim.stack" }}' "$NAME" 2>&1) ||
  aim_die 1 "docker volume inspect $NAME failed ($(head -n 1 <<<"$owner"))"
if [[ "$owner" == "<no value>" ]]; then
  owner=""
fi

if [[ "$owner" != "$STACK" ]]; then
  why="its label $LABEL is '${owner}', not $STACK, so this stack did not create it"
  if [[ -z "$owner" ]]; then
    why="it has no label $LABEL=$STACK, so this stack did not create it"
  fi
  if [[ "$ACTION" == claim ]]; then
    aim_die 1 "docker volume $NAME already exists and $why: refusing to use its data as the registry's; remove it (\`docker volume rm $NAME\`) if nothing needs it, or rename it, then re-run"
  fi
  echo "kept: docker volume $NAME (registry data): $why; remove it by hand (\`docker volume rm $NAME\`) if you mean to"
  exit 0
fi

if [[ "$ACTION" == claim ]]; then
  echo "ok: docker volume $NAME is this stack's ($LABEL=$STACK)"
  exit 0
fi
if (( CHECK )); then
  echo "would: remove docker volume $NAME (registry data of stack $STACK)"
  exit 3
fi
if ! out=$(docker volume rm "$NAME" 2>&1); then
  aim_die 1 "docker volume rm $NAME failed ($(head -n 1 <<<"$out")): a container may still use it (\`docker ps -a --filter volume=$NAME\`)"
fi
echo "changed: removed docker volume $NAME (registry data of stack $STACK)"
