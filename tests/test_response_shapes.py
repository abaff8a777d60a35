"""RESPONSE_SHAPES: each shape sends what its name says, read from a raw socket."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field

import pytest
from pytest_httpserver import HTTPServer

from pytest_connleak import RESPONSE_SHAPES, ResponseShape, error_page
from pytest_connleak._upstreams.shapes import (
    CHUNKS,
    CLOSE_BODY,
    GARBAGE,
    LARGE_SIZE,
    SLOW_INTERVAL,
    SLOW_PIECES,
    TRUNCATED_LENGTH,
    TRUNCATED_SENT,
)


@dataclass
class Wire:
    """Everything the server sent on one connection, and when it arrived."""

    status_line: str
    headers: list[tuple[str, str]]
    body: bytes  # raw: chunk framing included
    headers_at: float
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (time, body bytes)
    eof: bool = False
    raw: bytes = b""  # every byte, headers included (for what is not HTTP)
    error: OSError | None = None  # how reading ended, if not with EOF

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def raw_get(port: int, path: str, timeout: float = 10) -> Wire:
    """Send one HTTP/1.1 request and read until the server closes (or *timeout* passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        wire = Wire("", [], b"", 0.0)
        try:
            while b"\r\n\r\n" not in wire.raw:
                piece = sock.recv(65536)
                if not piece:
                    wire.eof = True
                    return wire
                wire.raw += piece
            wire.headers_at = time.monotonic()
            head, _, wire.body = wire.raw.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            wire.status_line = lines[0]
            wire.headers = [
                (k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])
            ]
            if wire.body:
                wire.arrivals.append((wire.headers_at, len(wire.body)))
            while True:
                piece = sock.recv(65536)
                if not piece:
                    wire.eof = True
                    return wire
                wire.raw += piece
                wire.arrivals.append((time.monotonic(), len(piece)))
                wire.body += piece
        except OSError as exc:  # a reset, or the timeout
            wire.error = exc
            return wire


@pytest.fixture
def served(lb_httpserver: HTTPServer, response_shape: ResponseShape) -> Wire:
    lb_httpserver.expect_request("/shape").respond_with_handler(response_shape)
    return raw_get(lb_httpserver.port, "/shape", timeout=read_timeout(response_shape))


def read_timeout(shape: ResponseShape) -> float:
    # A stall outlasts any timeout a client sets: read it with a short one.
    return 0.5 if shape.name == "stall" else 10


def test_every_shape_is_listed() -> None:
    assert set(RESPONSE_SHAPES) >= {
        "empty",
        "html",
        "json",
        "large",
        "chunked",
        "slow",
        "close",
        "truncated",
        "reset",
        "stall",
        "garbage",
        "no_response",
    }
    for name, shape in RESPONSE_SHAPES.items():
        assert shape.name == name
        assert shape.handler is shape
    faults = {name for name, shape in RESPONSE_SHAPES.items() if shape.fault}
    assert faults == {"truncated", "reset", "stall", "garbage", "no_response"}


def test_response_shape_ids_are_the_names(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile("def test_x(response_shape):\n    assert response_shape.name\n")
    result = pytester.runpytest("--collect-only", "-q")
    module = "test_response_shape_ids_are_the_names.py"
    result.stdout.fnmatch_lines([f"{module}::test_x[{name}]" for name in RESPONSE_SHAPES])


def test_shape_on_the_wire(served: Wire, response_shape: ResponseShape) -> None:
    name = response_shape.name
    if name == "garbage":
        assert served.raw == GARBAGE
        assert served.eof
        return
    if name == "no_response":
        assert served.raw == b""
        assert served.eof
        return
    if name == "html":
        page = error_page(403)
        assert served.status_line == "HTTP/1.1 403 Forbidden"
        assert served.body == page.get_data()
        assert served.header("Content-Length") == [str(len(page.get_data()))]
        assert served.header("Content-Type") == ["text/html"]
        return
    assert served.status_line == "HTTP/1.1 200 OK"
    if name == "empty":
        assert served.header("Content-Length") == ["0"]
        assert served.body == b""
    elif name == "json":
        assert served.header("Content-Type") == ["application/json"]
        assert json.loads(served.body) == {"status": 200, "message": "OK"}
    elif name == "large":
        assert int(served.header("Content-Length")[0]) == LARGE_SIZE >= 256 * 1024
        assert len(served.body) == LARGE_SIZE
    elif name == "chunked":
        assert served.header("Transfer-Encoding") == ["chunked"]
        assert served.header("Content-Length") == []
        framed = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in CHUNKS) + b"0\r\n\r\n"
        assert served.body == framed
    elif name == "slow":
        assert served.header("Content-Length") == [str(len(served.body))]
        # The server waits SLOW_INTERVAL before each piece, so the last byte cannot arrive
        # sooner than that many intervals after the headers went out; allow two intervals
        # of slack for a client thread that was late to read the headers.
        assert served.arrivals[-1][0] - served.headers_at >= SLOW_INTERVAL * (SLOW_PIECES - 2)
        assert len(served.arrivals) >= 3  # in pieces, not in one go
    elif name == "close":
        assert served.header("Connection") == ["close"]
        assert served.body == CLOSE_BODY
    elif name in ("truncated", "reset", "stall"):
        assert served.header("Content-Length") == [str(TRUNCATED_LENGTH)]
        assert len(served.body) == TRUNCATED_SENT < TRUNCATED_LENGTH
        if name == "reset":
            assert isinstance(served.error, ConnectionResetError)
            return
        if name == "stall":
            assert isinstance(served.error, TimeoutError)  # silent, and still open
            return
    else:  # pragma: no cover - a new shape needs a check here
        pytest.fail(f"no wire check for shape {name!r}")
    assert served.eof


def test_every_header_once(served: Wire, response_shape: ResponseShape) -> None:
    # werkzeug adds "Connection: close" to every answer; the close shape once sent it too.
    names = [name.lower() for name, _ in served.headers]
    assert len(names) == len(set(names)), names
    if response_shape.name not in ("garbage", "no_response"):
        assert served.status_line.startswith("HTTP/1.1 ")
        assert names  # the check above looked at real headers


def test_each_request_gets_a_new_response(
    lb_httpserver: HTTPServer, response_shape: ResponseShape
) -> None:
    # A werkzeug response streaming from a generator is served once; a shape must work
    # for every request.
    lb_httpserver.expect_request("/again").respond_with_handler(response_shape)
    first = raw_get(lb_httpserver.port, "/again", read_timeout(response_shape))
    second = raw_get(lb_httpserver.port, "/again", read_timeout(response_shape))
    assert first.body == second.body
    assert first.status_line == second.status_line
    assert [k for k, _ in first.headers] == [k for k, _ in second.headers]


def test_with_status(lb_httpserver: HTTPServer, response_shape: ResponseShape) -> None:
    lb_httpserver.expect_request("/teapot").respond_with_handler(response_shape.with_status(418))
    wire = raw_get(lb_httpserver.port, "/teapot", read_timeout(response_shape))
    if response_shape.name in ("garbage", "no_response"):
        assert wire.raw == (GARBAGE if response_shape.name == "garbage" else b"")
    else:
        assert wire.status_line == "HTTP/1.1 418 I'm a teapot"
    assert response_shape.with_status(418).name == response_shape.name


@pytest.mark.parametrize("status", [99, 600, "200", True])
def test_with_status_rejects_what_is_not_a_status(status: object) -> None:
    with pytest.raises(ValueError, match="status must be an int from 100 to 599"):
        RESPONSE_SHAPES["json"].with_status(status)  # type: ignore[arg-type]


# -- what the leak check sees under every shape ----------------------------------------

LEAK_MATRIX_TESTS = """
import pytest
import requests
import urllib3


@pytest.fixture(params=["direct", "proxied"])
def url(request, lb_httpserver, load_balancer, response_shape):
    lb_httpserver.expect_request("/x").respond_with_handler(response_shape.with_status(403))
    upstream = lb_httpserver.url_for("/")
    if request.param == "proxied":
        return load_balancer(upstream) + "/x"
    return upstream + "x"


def test_requests_status_only(url, response_shape):
    try:
        response = requests.get(url, stream=True, timeout=(10, 1))
    except requests.RequestException:
        assert response_shape.fault  # no answer at all: garbage, no_response, stall
        return
    assert response.status_code in (403, 502)  # 502: the proxy got no answer


def test_urllib3_status_only(url, response_shape):
    pm = urllib3.PoolManager()
    timeout = urllib3.Timeout(connect=10, read=1)
    try:
        response = pm.request("GET", url, preload_content=False, retries=False, timeout=timeout)
    except urllib3.exceptions.HTTPError:
        assert response_shape.fault
        return
    assert response.status in (403, 502)


def test_requests_peek(url):
    # Logs the start of the error body: reaches EOF only when the body is short.
    try:
        r = requests.get(url, stream=True, timeout=(10, 1))
        next(r.iter_content(128), b"")
    except requests.RequestException:
        pass


def test_urllib3_read(url):
    pm = urllib3.PoolManager()
    timeout = urllib3.Timeout(connect=10, read=1)
    try:
        r = pm.request("GET", url, preload_content=False, retries=False, timeout=timeout)
        r.read()
    except urllib3.exceptions.HTTPError:
        pass
    pm.clear()  # urllib3 1.26 leaves a dropped pool's idle sockets to the collector
"""


def test_leak_check_under_every_shape(pytester: pytest.Pytester) -> None:
    """Measured with urllib3 2.x and requests 2.3x: which shapes leave the lease taken.

    A response whose status alone was looked at is leaked under every shape, framing and
    all (empty, chunked, Connection: close, cut short, reset or stalled mid-body). Reading
    the body releases it under every shape, the faults included (urllib3's error path
    gives the slot back). Reading 128 bytes releases it only when that reaches the end
    of the body; through the load balancer every 403 carries nginx's 548-byte page, so
    it never does. No response, no lease: ``garbage`` and ``no_response`` direct raise at
    the request (the proxy answers them with a 502 page), and ``stall`` through the
    proxy times out before the headers (the proxy waits for the whole 403 body).
    """
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makepyfile(test_matrix=LEAK_MATRIX_TESTS)
    result = pytester.runpytest_subprocess("--leak-check", "-rE")
    leaked = {
        line.split("::", 1)[1].split(" ", 1)[0]
        for line in result.outlines
        if line.startswith("ERROR test_matrix.py::")
    }
    shapes = list(RESPONSE_SHAPES)
    answered = {
        "direct": [s for s in shapes if s not in ("garbage", "no_response")],
        "proxied": [s for s in shapes if s != "stall"],
    }
    expected = {
        f"test_{c}_status_only[{w}-{s}]"
        for c in ("requests", "urllib3")
        for w in ("direct", "proxied")
        for s in answered[w]
    }
    expected |= {f"test_requests_peek[proxied-{s}]" for s in answered["proxied"]}
    long_bodies = ("html", "large", "truncated", "reset", "stall")
    expected |= {f"test_requests_peek[direct-{s}]" for s in long_bodies}
    assert sorted(leaked) == sorted(expected)
    result.assert_outcomes(passed=4 * 2 * len(shapes), errors=len(expected))
