"""A real gate receiver for tests: an HTTP server on loopback, in a thread, that records every POST
(its JSON body and headers) and answers with the status code the test sets. A 500 echoes the
Authorization header in its body, as a careless receiver might, so that the test can see it never
reaches the status."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class GateReceiver:
    code: int = 500
    seen: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> GateReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with receiver._lock:
                    receiver.seen.append((body, {k.lower(): v for k, v in self.headers.items()}))
                    code = receiver.code
                text = b"ok" if code < 300 else f"smoke test failed; got {self.headers.get('Authorization')}".encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/gate"

    def asked(self) -> int:
        with self._lock:
            return len(self.seen)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
