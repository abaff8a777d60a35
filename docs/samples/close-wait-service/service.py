"""A service that leaks: three auth checks keep their streamed responses."""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

import pytest_connleak

tracking = pytest_connleak.track()  # at start-up, before the first request

session = requests.Session()
session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=10))
kept = [session.get(sys.argv[1], stream=True) for _ in range(3)]  # the leak


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"pools": pytest_connleak.pool_stats()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


port = int(os.environ.get("PORT", "8081"))
ThreadingHTTPServer(("127.0.0.1", port), Health).serve_forever()
