"""HTTP test servers on 127.0.0.1 (a free port each), started in the background and stopped after the test."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServers:
    """Every server a test started; `stop_all()` shuts them down."""

    def __init__(self) -> None:
        self.servers: list[ThreadingHTTPServer] = []

    def start(self, handler: type[BaseHTTPRequestHandler]) -> str:
        """Serve `handler` on 127.0.0.1 in a daemon thread; returns the base URL."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def stop_all(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
