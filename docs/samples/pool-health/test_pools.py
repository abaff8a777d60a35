"""Pool health: a busy pool, and requests queueing on a small one."""
import queue, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest, urllib3


@pytest.fixture
def held_server():
    in_flight = threading.Barrier(3)  # two handlers and the test
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if not release.is_set():
                in_flight.wait(timeout=30)
                release.wait(timeout=30)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, in_flight, release
    release.set()
    server.shutdown()
    server.server_close()
    thread.join()


def make_pool(port, capacity, waiting):
    class SignallingQueue(queue.LifoQueue):
        def get(self, block=True, timeout=None):
            if self.empty():
                waiting.set()  # every connection is out: this request waits
            return super().get(block, timeout)

    class Pool(urllib3.HTTPConnectionPool):
        QueueCls = SignallingQueue

    return Pool("127.0.0.1", port, maxsize=capacity, block=True)


def run_three(pool, in_flight, release, waiting):
    results = []

    def fetch():
        results.append(pool.urlopen("GET", "/").data)

    first = [threading.Thread(target=fetch) for _ in range(2)]
    for t in first:
        t.start()
    in_flight.wait(timeout=30)  # both connections are leased and in the handler
    third = threading.Thread(target=fetch)
    third.start()
    assert waiting.wait(timeout=30)
    release.set()
    for t in first + [third]:
        t.join()
    assert results == [b"ok"] * 3


def test_x(held_server):
    port, in_flight, release = held_server
    waiting = threading.Event()
    pool = make_pool(port, 2, waiting)
    run_three(pool, in_flight, release, waiting)
    pool.close()


def test_busy(held_server):
    port, _, release = held_server
    release.set()
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=4, block=True)
    held = [pool.urlopen("GET", "/", preload_content=False) for _ in range(3)]
    for response in held:
        response.read()
        response.release_conn()
    pool.close()
