"""Requests that succeed although the plugin fails to record them (see conftest.py)."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest, urllib3


@pytest.fixture
def port():
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()
    thread.join()


def test_requests_succeed(port):
    with urllib3.HTTPConnectionPool("127.0.0.1", port) as pool:
        for _ in range(3):
            assert pool.request("GET", "/ok").data == b"ok"
