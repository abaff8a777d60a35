"""A small server speaking OpenAI's chat-completions API on 127.0.0.1.

``POST /v1/chat/completions`` answers with one completion, or with server-sent events
(``stream=True``): one ``chat.completion.chunk`` per word, then ``data: [DONE]``. It keeps
connections alive, as the real API does.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

WORDS = ["Leaks", " hide", " in", " open", " streams", "."]


def _envelope(kind: str, model: str, choice: object) -> dict[str, object]:
    return {"id": "c-1", "object": kind, "created": 0, "model": model, "choices": [choice]}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        model = request.get("model", "test-model")
        if not request.get("stream"):
            message = {"role": "assistant", "content": "".join(WORDS)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._json(_envelope("chat.completion", model, choice))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for word in WORDS:
            choice = {"index": 0, "delta": {"content": word}, "finish_reason": None}
            chunk = _envelope("chat.completion.chunk", model, choice)
            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _json(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError:  # the client went away mid-stream: that is what some tests do
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stream left open must not hang the end of the run

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up mid-stream is not an error here


@contextmanager
def serve() -> Iterator[str]:
    """Run the server in a thread; yield its base URL (``http://127.0.0.1:PORT/v1``)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
