"""The API proxy in front of vLLM: an nginx sidecar exposing only the key-guarded /v1 routes, /health and /metrics."""

from __future__ import annotations

from typing import Any

from aim_infra.common.contract import VLLM_INTERNAL_PORT

#: nginx-unprivileged (non-root uid 101, listens on unprivileged ports), slim Alpine variant: nginx without extra
#: modules. Tag and digest both pinned; `aim:apiProxyImage` replaces it (air-gapped mirrors).
#: Evidence (2026-12-05): https://hub.docker.com/r/nginxinc/nginx-unprivileged/tags?name=1.30.4-alpine-slim — the
#: same digest is pinned by several public repositories' Dockerfiles under this tag, under `stable-alpine-slim`, and
#: under ghcr.io/nginx/nginx-unprivileged:1.30.4-alpine3.24-slim (the project's own mirror); source of the image:
#: https://github.com/nginx/docker-nginx-unprivileged (stable/alpine-slim/Dockerfile).
DEFAULT_PROXY_IMAGE = (
    "nginxinc/nginx-unprivileged:1.30.4-alpine-slim"
    "@sha256:e88d990b349df8cf4aa82f16642d7a23375016638c9ace4e5c6ca25028e62e65"
)
PROXY_CONTAINER = "api-proxy"
PROXY_USER_ID = 101  # the image's `nginx` user
CONFIG_DIR = "/etc/aim-proxy"
CONFIG_FILE = "nginx.conf"
#: A streamed completion of a long answer at a slow decode rate can run for many minutes.
STREAM_TIMEOUT_SECONDS = 3600
#: Request bodies (multimodal prompts carry base64 images) are streamed to vLLM, never buffered to disk.
MAX_BODY = "64m"

# Streaming-safe forwarding: HTTP/1.1 with keep-alive to the upstream, no response buffering (tokens reach the
# client as vLLM writes them), no request buffering, and timeouts long enough for a slow generation.
_FORWARD = f"""            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout {STREAM_TIMEOUT_SECONDS}s;
            proxy_send_timeout {STREAM_TIMEOUT_SECONDS}s;"""


# Long: the whole nginx.conf is one template, read top to bottom as nginx reads it; split, it would be harder to audit.
def proxy_config(
    *,
    api_port: int,
    metrics_port: int,
    upstream_port: int = VLLM_INTERNAL_PORT,
    listen_host: str | None = None,
    temp_dir: str = "/tmp",
    workers: int = 2,
    key_check: str | None = None,
) -> str:
    """nginx.conf for the sidecar. `listen_host` None = every address of the pod (tests pass 127.0.0.1).

    vLLM's --api-key guards only paths starting with /v1 (vllm/entrypoints/openai/server_utils.py
    AuthenticationMiddleware); /invocations, /pooling, /score, /rerank, /tokenize, /metrics, /version, … are open.
    The API listener therefore forwards exactly: `/v1/…` whose *raw* request URI also starts with /v1/ (nginx matches
    locations on the normalised URI but forwards the raw one, and `/metrics/../v1/x` must not reach vLLM's /metrics
    mount), and `/health` for the probes. Everything else is 404. The metrics listener forwards only `/metrics`.

    `key_check`: a file nginx includes in the /v1/ location after the raw-URI check, for an upstream that does not
    check the API key on every /v1 route itself (the model router: stack/manifests/router.py renders that file).
    None: nothing included."""
    host = f"{listen_host}:" if listen_host else ""
    include = f"            include {key_check};\n" if key_check else ""
    return f"""# Rendered by aim_infra.stack.components.api_proxy: only /v1 (API key), /health and /metrics reach vLLM.
worker_processes {workers};
daemon off;
pid {temp_dir}/nginx.pid;
error_log stderr warn;

events {{
    worker_connections 4096;
}}

http {{
    server_tokens off;
    access_log /dev/stdout;
    client_body_temp_path {temp_dir}/client_temp;
    proxy_temp_path {temp_dir}/proxy_temp;
    fastcgi_temp_path {temp_dir}/fastcgi_temp;
    uwsgi_temp_path {temp_dir}/uwsgi_temp;
    scgi_temp_path {temp_dir}/scgi_temp;
    client_max_body_size {MAX_BODY};
    default_type application/json;

    upstream vllm {{
        server 127.0.0.1:{upstream_port};
        keepalive 32;
    }}

    server {{
        listen {host}{api_port};

        location /v1/ {{
            if ($request_uri !~ "^/v1/") {{
                return 404;
            }}
{include}            proxy_pass http://vllm;
{_FORWARD}
        }}

        # Without this, nginx would answer /v1 with a redirect to /v1/ (a proxied prefix location's special case).
        location = /v1 {{
            return 404;
        }}

        location = /health {{
            proxy_pass http://vllm/health;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 10s;
        }}

        location / {{
            return 404 '{{"error": "not found"}}';
        }}
    }}

    server {{
        listen {host}{metrics_port};
        access_log off;

        location = /metrics {{
            proxy_pass http://vllm/metrics;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 30s;
        }}

        location / {{
            return 404;
        }}
    }}
}}
"""


def proxy_container(*, image: str, config_map_volume: str, api_port: int, metrics_port: int) -> dict[str, Any]:
    """The sidecar: least privilege (non-root, read-only root filesystem, no capabilities); /tmp is an emptyDir for
    nginx's pid and temp files. It starts nginx directly, skipping the image's entrypoint scripts (they rewrite
    /etc/nginx, which is read-only here)."""
    return {
        "name": PROXY_CONTAINER,
        "image": image,
        "command": ["nginx"],
        "args": ["-e", "stderr", "-c", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": [
            {"name": "http", "containerPort": api_port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": PROXY_USER_ID,
            "runAsGroup": PROXY_USER_ID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "2", "memory": "256Mi"},
        },
        # nginx itself is alive while it accepts connections; whether vLLM answers is the vllm container's probes'.
        "livenessProbe": {"tcpSocket": {"port": api_port}, "periodSeconds": 20, "timeoutSeconds": 5},
        "volumeMounts": [
            {"name": config_map_volume, "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "proxy-tmp", "mountPath": "/tmp"},
        ],
    }


def proxy_volumes(config_map_volume: str, config_map_name: str) -> list[dict[str, Any]]:
    return [
        {"name": config_map_volume, "configMap": {"name": config_map_name}},
        {"name": "proxy-tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
