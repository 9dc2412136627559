"""A real external flag service for webhook tests: an HTTP server on loopback, in a thread.

It takes `PUT /flags` with the webhook contract's JSON, records every request (weight, headers),
and answers as the test says: `ok` (204), `fail` (500 whose body echoes the Authorization header,
as a careless service might), `hang` (answers 504 only after `hang_seconds`), or 401 for a wrong
token.
`stop()` closes the socket (the service is down: connection refused), `start()` binds the same
port again.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    """One request the service received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    answered: int


@dataclass
class FlagService:
    token: str | None = None
    mode: str = "ok"
    hang_seconds: float = 3.0
    fail_body_bytes: int = 0  # extra bytes after the 500's message, to test the size limit
    tls: ssl.SSLContext | None = None
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    # per answer with a body, in order: whether all of it was written (False: the client cut the
    # connection before it had read the body, as the size limit does)
    written_in_full: list[bool] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connections: set[socket.socket] = field(default_factory=set)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/flags"

    def accepted(self) -> list[float]:
        """The weights the service acknowledged (2xx), in order."""
        with self._lock:
            return [s.body["weight"] for s in self.seen if s.answered < 300 and s.body is not None]

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def start(self) -> FlagService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                with service._lock:
                    service._connections.add(self.connection)

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                auth = self.headers.get("Authorization", "")
                if service.token is not None and auth != f"Bearer {service.token}":
                    code, text = 401, b'{"error": "unauthorized"}'
                elif service.mode == "fail":
                    code = 500
                    text = f'{{"error": "backend exploded", "auth": "{auth}"}}'.encode()
                    text += b"x" * service.fail_body_bytes
                elif service.mode == "hang":
                    # Too slow, then failing: a late answer never applies the weight (a late 2xx
                    # could, and the operator, having given up, would send it again: PUT is idempotent).
                    time.sleep(service.hang_seconds)
                    code, text = 504, b'{"error": "upstream timeout"}'
                else:
                    code, text = 204, b""
                with service._lock:
                    service.seen.append(Seen("PUT", self.path, dict(self.headers.items()), body, code))
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                if not text:
                    return
                try:
                    self.wfile.write(text)
                    self.wfile.flush()
                    full = True
                except OSError:  # the client stopped reading (the size limit) and closed the connection
                    full = False
                with service._lock:
                    service.written_in_full.append(full)

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down for real: no new connections, and the kept-alive ones are cut too."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
