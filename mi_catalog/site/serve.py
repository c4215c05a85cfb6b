"""Serve a built site folder on 127.0.0.1 with the standard library (static files only)."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

from mi_catalog.errors import UsageError


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def make_server(root: Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """A server for ``root`` on 127.0.0.1 (port 0 = any free port); the caller runs it."""
    handler = functools.partial(QuietHandler, directory=str(root))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as err:
        raise UsageError(f"cannot listen on 127.0.0.1:{port}: {err.strerror} (try --port 0)") from None


def serve_in_thread(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start serving ``root`` in a daemon thread; return the server and its base URL."""
    server = make_server(root)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"
