"""A small server speaking the part of Docker's Engine API this example calls, on 127.0.0.1.

``POST /v1.45/images/create`` (an image pull) answers, as the daemon does, with chunked
JSON progress lines, one per layer, and keeps the connection alive.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

API_VERSION = "1.45"
LAYERS = ["a1b2", "c3d4", "e5f6"]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [{"status": "Pulling fs layer", "id": layer} for layer in LAYERS]
        events.append({"status": "Status: Downloaded newer image"})
        for event in events:
            line = json.dumps(event).encode() + b"\r\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


@contextmanager
def serve() -> Iterator[str]:
    """Run the server in a thread; yield its address as docker wants it (``tcp://...``)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
