#!/bin/sh
# AIM Engine entrypoint: check that the container's GPUs and model files match the recipe, then run the command.
#
# The command is the pod's `args` (or the image's CMD), e.g. `vllm serve /models/<name> ...`; the pod spec must not
# set `command`, which would replace this entrypoint. The preflight prints one line (to stdout when it passes, to
# stderr when it fails) so that `kubectl logs` says why a pod did not start. AIM_SKIP_PREFLIGHT=1 skips it.
set -eu

if [ "$#" -eq 0 ]; then
    echo "aim-entrypoint: no command to run (give one as the container's args, e.g. vllm serve <model>)" >&2
    exit 64
fi

if [ "${AIM_SKIP_PREFLIGHT:-0}" = "1" ]; then
    echo "aim-entrypoint: preflight skipped (AIM_SKIP_PREFLIGHT=1)"
elif ! "${AIM_PYTHON:-python3}" -m aim_infra.pod.preflight; then
    exit 1
fi

exec "$@"
