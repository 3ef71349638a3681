"""The Kubernetes objects the cluster add-ons declare themselves, as plain manifests (Helm installs the rest).

Namespaces, Grafana's admin Secret, and local-path-provisioner object by object (it has no Helm repository)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from aim_infra.stack.manifests.addon_pins import LOCAL_PATH_HELPER_IMAGE, LOCAL_PATH_IMAGE, LOCAL_PATH_VERSION

#: Pod Security admission level for namespaces whose pods need host access (hostPath, hostNetwork, privileged):
#: explicit, so a cluster-wide `baseline` default does not silently reject them.
PRIVILEGED_NAMESPACE = {"pod-security.kubernetes.io/enforce": "privileged"}
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "aim-cluster-addons"}

#: The Secret Grafana reads its admin login from (kube-prometheus-stack's `grafana.admin.existingSecret`).
GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_ADMIN_USER_KEY = "admin-user"
GRAFANA_ADMIN_PASSWORD_KEY = "admin-password"

LOCAL_PATH_NAMESPACE = "local-path-storage"
LOCAL_PATH_NAME = "local-path-provisioner"
LOCAL_PATH_CONFIG_MAP = "local-path-config"
LOCAL_PATH_STORAGE_CLASS = "local-path"
LOCAL_PATH_PROVISIONER = "rancher.io/local-path"
LOCAL_PATH_DATA_DIR = "/opt/local-path-provisioner"
LOCAL_PATH_CONFIG_DIR = "/etc/config/"
LOCAL_PATH_HEALTH_PORT = 8080
RBAC_GROUP = "rbac.authorization.k8s.io"


def namespace(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """A namespace the stack owns (Helm never creates one), so destroy removes it cleanly."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {**MANAGED_BY, **labels}}}


def grafana_admin_secret(namespace_name: str, password: Any) -> dict[str, Any]:
    """The Secret Grafana reads its admin login from. `password` is passed through untouched: the configured secret
    Output, or whatever stands for the generated one until it is declared."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": GRAFANA_ADMIN_SECRET, "namespace": namespace_name, "labels": dict(MANAGED_BY)},
        "type": "Opaque",
        "stringData": {GRAFANA_ADMIN_USER_KEY: "admin", GRAFANA_ADMIN_PASSWORD_KEY: password},
    }


# --- local-path-provisioner: its ConfigMap ------------------------------------------------------------------------


def local_path_config(stack: str) -> dict[str, str]:
    """The ConfigMap data the provisioner reads: config.json, the helper pod template and its two scripts.

    `stack` (`<project>/<stack>`) goes into the marker setup writes beside each volume it creates,
    `<volume dir>.aim-stack.json`: kubeadm-reset.sh removes a leftover volume directory only with that proof."""
    config = {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [LOCAL_PATH_DATA_DIR]}]}
    return {
        "config.json": json.dumps(config, indent=2),
        "setup": _setup_script(stack),
        "teardown": _teardown_script(),
        "helperPod.yaml": yaml.safe_dump(_helper_pod(), sort_keys=False),
    }


def _setup_script(stack: str) -> str:
    """The provisioner runs `/bin/sh /script/setup` (or teardown) in the helper pod with VOL_DIR (the volume
    directory as mounted in the pod), VOL_MODE (Filesystem or Block), VOL_SIZE_BYTES, and VOL_USER / VOL_GROUP /
    VOL_PERM (empty unless the StorageClass sets userPattern / groupPattern / permPattern)."""
    return "\n".join(
        [
            "#!/bin/sh",
            "set -eu",
            "# A host directory cannot back a raw block device.",
            'if [ "${VOL_MODE:-Filesystem}" != "Filesystem" ]; then',
            '  echo "local-path: volume mode ${VOL_MODE} is not supported" >&2',
            "  exit 1",
            "fi",
            'mkdir -p "$VOL_DIR"',
            "# Owner only by default, never world-writable: the engine and the model downloader run as root (uid 0,",
            "# the owner: no capability needed) and are the only writers; any other host user or non-root pod could",
            "# otherwise plant code in the model cache (trust-remote-code) or read gated weights. A workload that",
            "# needs other rights sets permPattern / userPattern / groupPattern on its own StorageClass.",
            'chmod "${VOL_PERM:-0700}" "$VOL_DIR"',
            'if [ -n "${VOL_USER:-}" ] && [ -n "${VOL_GROUP:-}" ]; then chown "$VOL_USER:$VOL_GROUP" "$VOL_DIR";',
            'elif [ -n "${VOL_USER:-}" ]; then chown "$VOL_USER" "$VOL_DIR";',
            'elif [ -n "${VOL_GROUP:-}" ]; then chgrp "$VOL_GROUP" "$VOL_DIR"; fi',
            "# Proof of ownership for the host cleanup, beside the volume (not in it: the workload never sees it).",
            'marker="$VOL_DIR.aim-stack.json"',
            'printf \'{\\n  "createdBy": "local-path setup",\\n  "stack": "%s",\\n  "volume": "%s",\\n'
            '  "createdAt": "%s"\\n}\\n\' \\',
            f'  {shlex.quote(stack)} "${{VOL_DIR##*/}}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$marker.tmp"',
            'mv -f "$marker.tmp" "$marker"',
            "",
        ]
    )


def _teardown_script() -> str:
    return "\n".join(
        [
            "#!/bin/sh",
            "set -eu",
            "# VOL_DIR is always <data mount>/<volume dir>; refuse anything shorter rather than wipe a whole tree.",
            'case "${VOL_DIR:-}" in',
            "  /?*/?*) ;;",
            "  *) echo \"local-path: refusing to remove '${VOL_DIR:-}'\" >&2; exit 1 ;;",
            "esac",
            'rm -rf "$VOL_DIR"',
            'rm -f "$VOL_DIR.aim-stack.json"',
            "",
        ]
    )


def _helper_pod() -> dict[str, Any]:
    """The template the provisioner copies for every helper pod. It adds the name suffix, namespace, node,
    service account, restart policy, command, env, the host data volume and the script volume itself; the
    container must be called `helper-pod` (its log is copied into the provisioner's log under that name)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            # Helper pods free disk too (teardown): they must still schedule on a node under disk pressure.
            "priorityClassName": "system-node-critical",
            "tolerations": [{"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}],
            # They run under the provisioner's service account but never call the API.
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "helper-pod",
                    "image": LOCAL_PATH_HELPER_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    # Root inside the pod is needed to create and remove directories on the host path.
                    "securityContext": {"allowPrivilegeEscalation": False},
                }
            ],
        },
    }


# --- local-path-provisioner: its RBAC -----------------------------------------------------------------------------


def _rule(api_group: str, resources: Sequence[str], verbs: Sequence[str]) -> dict[str, list[str]]:
    """One RBAC PolicyRule."""
    return {"apiGroups": [api_group], "resources": list(resources), "verbs": list(verbs)}


# What local-path-provisioner v0.0.37 calls, cluster-wide (its controller library watches every namespace).
LOCAL_PATH_CLUSTER_RULES = [
    # The claim informer lists/watches PVCs; `update` only when the scheduler's selected node has gone: the
    # controller removes `volume.kubernetes.io/selected-node` so the claim is scheduled again.
    _rule("", ["persistentvolumeclaims"], ["list", "watch", "update"]),
    # The volume informer; create the PV after the setup pod ran, delete it after teardown, patch to drop a
    # stale provisioner finalizer. The readiness probe lists PVs too.
    _rule("", ["persistentvolumes"], ["list", "watch", "create", "patch", "delete"]),
    # The class informer: which claims are ours (provisioner name) and the class parameters/reclaim policy.
    _rule("storage.k8s.io", ["storageclasses"], ["list", "watch"]),
    # The selected node (its hostname label becomes the PV's node affinity), and before teardown whether the
    # node still exists. No node informer is started, so no list/watch.
    _rule("", ["nodes"], ["get"]),
    # Provisioning events on claims (any namespace) and volumes; the event recorder creates and patches them.
    _rule("", ["events"], ["create", "patch"]),
]
# What it calls in its own namespace only.
LOCAL_PATH_NAMESPACE_RULES = [
    # Helper pods: create one per setup/teardown, poll it with get until it succeeded, delete it; the readiness
    # probe lists pods. No watch, no update.
    _rule("", ["pods"], ["create", "get", "list", "delete"]),
    # The helper pod's output is copied into the provisioner's log.
    _rule("", ["pods/log"], ["get"]),
    # At start it reads helperPod.yaml from the ConfigMap (no --helper-pod-file); the readiness probe lists them.
    _rule("", ["configmaps"], ["get", "list"]),
]


def local_path_labels() -> dict[str, str]:
    """The labels of every local-path object (the pod template's too)."""
    return {**MANAGED_BY, "app.kubernetes.io/name": LOCAL_PATH_NAME, "app.kubernetes.io/version": LOCAL_PATH_VERSION}


def _metadata(name: str, namespaced: bool = True) -> dict[str, Any]:
    return {"name": name, **({"namespace": LOCAL_PATH_NAMESPACE} if namespaced else {}), "labels": local_path_labels()}


def _subjects() -> list[dict[str, str]]:
    return [{"kind": "ServiceAccount", "name": LOCAL_PATH_NAME, "namespace": LOCAL_PATH_NAMESPACE}]


def local_path_service_account() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(LOCAL_PATH_NAME)}


def local_path_cluster_role() -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": _metadata(LOCAL_PATH_NAME, namespaced=False),
        "rules": LOCAL_PATH_CLUSTER_RULES,
    }


def local_path_cluster_role_binding() -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _metadata(LOCAL_PATH_NAME, namespaced=False),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": LOCAL_PATH_NAME},
        "subjects": _subjects(),
    }


def local_path_role() -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "Role",
        "metadata": _metadata(LOCAL_PATH_NAME),
        "rules": LOCAL_PATH_NAMESPACE_RULES,
    }


def local_path_role_binding() -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(LOCAL_PATH_NAME),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": LOCAL_PATH_NAME},
        "subjects": _subjects(),
    }


def local_path_config_map(stack: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(LOCAL_PATH_CONFIG_MAP),
        "data": local_path_config(stack),
    }


# --- local-path-provisioner: its workload and class ---------------------------------------------------------------


def local_path_container() -> dict[str, Any]:
    """The provisioner's container: the pinned image, the ConfigMap mounted where the provisioner re-reads it."""
    health = {"path": "/health", "port": "health"}
    return {
        "name": LOCAL_PATH_NAME,
        "image": LOCAL_PATH_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        # The image is `scratch` with the binary and a CMD, no entrypoint: name the binary.
        "command": ["/usr/bin/local-path-provisioner"],
        "args": [
            "start",
            "--config",
            f"{LOCAL_PATH_CONFIG_DIR}config.json",
            "--configmap-name",
            LOCAL_PATH_CONFIG_MAP,
            "--service-account-name",
            LOCAL_PATH_NAME,
            "--provisioner-name",
            LOCAL_PATH_PROVISIONER,
        ],
        "env": [
            # Where helper pods are created and the ConfigMap is read.
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            # Set: the provisioner re-reads helperPod.yaml from here every 30 s (config.json is re-read anyway).
            {"name": "CONFIG_MOUNT_PATH", "value": LOCAL_PATH_CONFIG_DIR},
            {"name": "HEALTH_PORT", "value": str(LOCAL_PATH_HEALTH_PORT)},
        ],
        "ports": [{"name": "health", "containerPort": LOCAL_PATH_HEALTH_PORT, "protocol": "TCP"}],
        "startupProbe": {"httpGet": health, "periodSeconds": 5, "failureThreshold": 12},
        "livenessProbe": {"httpGet": health, "periodSeconds": 10},
        # /ready lists configmaps, pods, PVCs, PVs and storage classes: it proves the RBAC works.
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "health"}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "config-volume", "mountPath": LOCAL_PATH_CONFIG_DIR, "readOnly": True}],
    }


def local_path_deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(LOCAL_PATH_NAME),
        "spec": {
            "replicas": 1,
            # No leader election in this provisioner: never run an old and a new pod side by side.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": LOCAL_PATH_NAME}},
            "template": {
                "metadata": {"labels": local_path_labels()},
                "spec": {
                    "serviceAccountName": LOCAL_PATH_NAME,
                    # The provisioner only talks to the API server; the host work happens in helper pods.
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65534,
                        "runAsGroup": 65534,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [local_path_container()],
                    "volumes": [{"name": "config-volume", "configMap": {"name": LOCAL_PATH_CONFIG_MAP}}],
                },
            },
        },
    }


def local_path_storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": LOCAL_PATH_STORAGE_CLASS,
            "labels": local_path_labels(),
            # Node-local, RWO-only storage must never catch claims that name no class.
            "annotations": {"storageclass.kubernetes.io/is-default-class": "false"},
        },
        "provisioner": LOCAL_PATH_PROVISIONER,
        # Bind when the pod is scheduled: the volume is created on the node the pod landed on.
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    }
