"""Short, readable names for HTTP transport failures, for the one-line errors of the stack's host steps."""

from __future__ import annotations

import http.client
import socket
import urllib.error


def describe_transport_error(error: BaseException) -> str:
    """`connection refused`, `timed out`, `connection closed by the server`, ... instead of an exception's repr."""
    reason: object = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(reason, ConnectionResetError | http.client.RemoteDisconnected):
        return "connection closed by the server"
    if isinstance(reason, socket.gaierror):
        return f"host name not resolved ({reason.strerror or reason})"
    text = str(getattr(reason, "strerror", None) or reason).strip()
    return text or type(reason).__name__
