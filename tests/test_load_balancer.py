"""load_balancer: a real reverse proxy, checked with http.client and raw sockets."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from pytest_connleak import RESPONSE_SHAPES, error_page
from pytest_connleak._upstreams.error_pages import STYLES
from pytest_connleak._upstreams.proxy import ReverseProxy
from pytest_connleak._upstreams.shapes import TRUNCATED_LENGTH, TRUNCATED_SENT

LoadBalancer = Callable[..., str]


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)


def echo(request: Request) -> Response:
    body = {
        "method": request.method,
        "path": request.path,
        "query": request.query_string.decode(),
        "headers": dict(request.headers),
        "body": request.get_data().decode(),
    }
    return Response(json.dumps(body), status=201, headers={"X-Upstream": "yes"})


@pytest.fixture
def proxy(lb_httpserver: HTTPServer) -> Iterator[ReverseProxy]:
    """A ReverseProxy in front of lb_httpserver, for the tests that read its counters."""
    p = ReverseProxy(lb_httpserver.url_for("/"))
    yield p
    p.stop()
    assert p.errors == []


# -- pass-through ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_request_is_forwarded(
    lb_httpserver: HTTPServer, load_balancer: LoadBalancer, method: str
) -> None:
    lb_httpserver.expect_request("/api/items", method=method).respond_with_handler(echo)
    conn = connect(load_balancer(lb_httpserver.url_for("/")))
    conn.request(method, "/api/items?a=1&b=two", body=b"payload", headers={"X-Custom": "42"})
    response = conn.getresponse()
    got = json.loads(response.read())
    conn.close()
    assert (response.status, response.getheader("X-Upstream")) == (201, "yes")
    assert (got["method"], got["path"], got["query"]) == (method, "/api/items", "a=1&b=two")
    assert got["headers"]["X-Custom"] == "42"
    assert got["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert got["headers"]["X-Forwarded-Proto"] == "http"
    assert got["body"] == "payload"


def test_chunked_request_body_is_forwarded(
    lb_httpserver: HTTPServer, load_balancer: LoadBalancer
) -> None:
    lb_httpserver.expect_request("/upload", method="POST").respond_with_handler(echo)
    conn = connect(load_balancer(lb_httpserver.url_for("/")))
    conn.request("POST", "/upload", body=iter([b"one ", b"two"]), encode_chunked=True)
    got = json.loads(conn.getresponse().read())
    conn.close()
    assert got["body"] == "one two"
    assert got["headers"]["Content-Length"] == "7"  # buffered, as nginx does by default


@pytest.mark.parametrize("status", [200, 204, 301, 302, 304, 307])
def test_2xx_and_3xx_pass_through_unchanged(
    lb_httpserver: HTTPServer, load_balancer: LoadBalancer, status: int
) -> None:
    body = b"" if status in (204, 304) else b"upstream body"
    lb_httpserver.expect_request("/r").respond_with_response(
        Response(body, status=status, headers={"Location": "/elsewhere", "X-Upstream": "1"})
    )
    conn = connect(load_balancer(lb_httpserver.url_for("/")))
    conn.request("GET", "/r")
    response = conn.getresponse()
    assert response.status == status
    assert response.getheader("Location") == "/elsewhere"
    assert response.getheader("X-Upstream") == "1"
    assert response.read() == body
    conn.close()


def test_chunked_and_large_bodies_pass_through(
    lb_httpserver: HTTPServer, load_balancer: LoadBalancer
) -> None:
    for name in ("chunked", "large", "slow", "json"):
        lb_httpserver.expect_request(f"/{name}").respond_with_handler(RESPONSE_SHAPES[name])
    conn = connect(load_balancer(lb_httpserver.url_for("/")))
    for name in ("chunked", "large", "slow", "json"):
        direct = connect(lb_httpserver.url_for("/"))
        direct.request("GET", f"/{name}")
        expected = direct.getresponse().read()
        direct.close()
        conn.request("GET", f"/{name}")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == expected
    conn.close()


def test_truncated_body_is_cut_for_the_client_too(
    lb_httpserver: HTTPServer, load_balancer: LoadBalancer
) -> None:
    lb_httpserver.expect_request("/t").respond_with_handler(RESPONSE_SHAPES["truncated"])
    port = urlsplit(load_balancer(lb_httpserver.url_for("/"))).port or 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while piece := sock.recv(65536):
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    assert f"Content-Length: {TRUNCATED_LENGTH}".encode() in head
    assert len(body) == TRUNCATED_SENT  # then EOF: the proxy cut the connection


# -- error pages -----------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("upstream_body", [b"", b'{"error": "forbidden"}'], ids=["empty", "json"])
def test_error_body_is_replaced_keeping_the_status(
    lb_httpserver: HTTPServer, load_balancer: LoadBalancer, style: str, upstream_body: bytes
) -> None:
    lb_httpserver.expect_request("/secret").respond_with_data(
        upstream_body, status=403, headers={"WWW-Authenticate": "Bearer"}
    )
    conn = connect(load_balancer(lb_httpserver.url_for("/"), style=style))
    conn.request("GET", "/secret")
    response = conn.getresponse()
    page = error_page(403, style=style)
    assert response.status == 403
    assert response.read() == page.get_data()
    assert response.getheader("Server") == page.headers.get("Server")
    assert response.getheader("Content-Type") == page.headers.get("Content-Type")
    assert response.getheader("WWW-Authenticate") is None  # as with proxy_intercept_errors
    conn.close()


def test_head_of_an_error_has_the_page_length_and_no_body(
    lb_httpserver: HTTPServer, load_balancer: LoadBalancer
) -> None:
    lb_httpserver.expect_request("/gone").respond_with_data(b"", status=503)
    conn = connect(load_balancer(lb_httpserver.url_for("/")))
    conn.request("HEAD", "/gone")
    response = conn.getresponse()
    assert response.status == 503
    assert response.getheader("Content-Length") == str(len(error_page(503).get_data()))
    assert response.read() == b""
    conn.request("GET", "/gone")  # the same connection is still in step
    assert conn.getresponse().read() == error_page(503).get_data()
    conn.close()


def test_unreachable_upstream_is_a_502_page(load_balancer: LoadBalancer) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    conn = connect(load_balancer(f"http://127.0.0.1:{port}", style="aws-alb"))
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 502
    assert response.read() == error_page(502, style="aws-alb").get_data()
    conn.close()


def test_bad_arguments(load_balancer: LoadBalancer) -> None:
    with pytest.raises(ValueError, match="valid styles: nginx, haproxy, envoy"):
        load_balancer("http://127.0.0.1:1", style="traefik")
    with pytest.raises(ValueError, match="must be an http:// URL"):
        load_balancer("https://127.0.0.1:1")


# -- keep-alive and concurrency --------------------------------------------------------


def test_client_connection_is_kept_alive(lb_httpserver: HTTPServer, proxy: ReverseProxy) -> None:
    # Werkzeug closes after every response; the proxy still keeps the client's
    # connection, as nginx does. Even the "close" shape loses its Connection: close.
    for name in ("json", "close", "chunked", "empty"):
        lb_httpserver.expect_request(f"/{name}").respond_with_handler(RESPONSE_SHAPES[name])
    conn = connect(proxy.url)
    ports = set()
    for name in ("json", "close", "chunked", "empty", "json"):
        conn.request("GET", f"/{name}")
        response = conn.getresponse()
        response.read()
        assert response.getheader("Connection") is None
        assert conn.sock is not None
        ports.add(conn.sock.getsockname()[1])
    conn.close()
    assert len(ports) == 1
    assert proxy.connections_accepted == 1
    # werkzeug 3 closes every connection, so each request needed a new upstream one.
    assert proxy.upstream_connections_opened == 5


def test_upstream_connections_are_reused(lb_httpserver: HTTPServer) -> None:
    # A proxy in front of a proxy: the inner one keeps connections alive, so the outer
    # one's upstream pool must reuse a single connection for sequential requests.
    lb_httpserver.expect_request("/json").respond_with_handler(RESPONSE_SHAPES["json"])
    inner = ReverseProxy(lb_httpserver.url_for("/"))
    outer = ReverseProxy(inner.url)
    try:
        conn = connect(outer.url)
        for _ in range(5):
            conn.request("GET", "/json")
            assert conn.getresponse().read()
        conn.close()
        assert outer.upstream_connections_opened == 1
        assert inner.connections_accepted == 1
    finally:
        outer.stop()
        inner.stop()
    assert outer.errors == inner.errors == []


def test_concurrent_requests(lb_httpserver: HTTPServer, proxy: ReverseProxy) -> None:
    # The upstream handler returns only once four requests are inside it at the same
    # time: this passes only if the proxy forwards them concurrently.
    clients = 4
    barrier = threading.Barrier(clients, timeout=10)

    def together(request: Request) -> Response:
        barrier.wait()
        return Response(request.args["n"])

    lb_httpserver.expect_request("/together").respond_with_handler(together)

    def get(n: int) -> bytes:
        conn = connect(proxy.url)
        try:
            conn.request("GET", f"/together?n={n}")
            return conn.getresponse().read()
        finally:
            conn.close()

    with ThreadPoolExecutor(clients) as pool:
        assert list(pool.map(get, range(clients))) == [b"0", b"1", b"2", b"3"]
    assert proxy.connections_accepted == clients


# -- lifecycle -------------------------------------------------------------------------


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("connleak-proxy")]


def test_stop_ends_idle_keep_alive_and_in_flight_requests(lb_httpserver: HTTPServer) -> None:
    arrived, release = threading.Event(), threading.Event()

    def stuck(request: Request) -> Response:
        arrived.set()
        release.wait(10)
        return Response("late")

    lb_httpserver.expect_request("/stuck").respond_with_handler(stuck)
    lb_httpserver.expect_request("/ok").respond_with_data("ok")
    proxy = ReverseProxy(lb_httpserver.url_for("/"))
    idle = connect(proxy.url)
    idle.request("GET", "/ok")
    assert idle.getresponse().read() == b"ok"  # now idle, kept alive by the proxy
    busy = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    busy.sendall(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
    assert arrived.wait(10)
    before = threading.active_count()
    try:
        proxy.stop()  # must not wait for the idle client nor for the stuck upstream
    finally:
        release.set()
    assert proxy_threads() == []
    assert threading.active_count() < before
    assert busy.recv(65536) == b""  # cut, like the idle one
    assert idle.sock is not None
    assert idle.sock.recv(1) == b""
    busy.close()
    idle.close()
    assert proxy.errors == []


def test_fixture_leaves_no_thread_or_socket(pytester: pytest.Pytester, base_url: str) -> None:
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makepyfile(
        f"""
        import http.client, threading

        CLIENTS = []

        def test_uses_it(load_balancer):
            port = int(load_balancer({base_url!r}).rsplit(":", 1)[1])
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("GET", "/ok")
            assert conn.getresponse().read() == b"ok"
            CLIENTS.append(conn)  # still connected: teardown must stop the proxy anyway

        def test_after():
            assert not [t for t in threading.enumerate() if t.name.startswith("connleak-proxy")]
            conn = CLIENTS.pop()
            assert conn.sock.recv(1) == b""  # the proxy closed its end
            conn.close()
        """
    )
    result = pytester.runpytest_subprocess("-W", "error::ResourceWarning")
    result.assert_outcomes(passed=2)


# -- the story -------------------------------------------------------------------------

STORY = """
import logging

import pytest
import requests

log = logging.getLogger(__name__)


def fetch_profile(base_url):
    # The code under test: on a 403 it logs the start of the body and gives up,
    # without closing the streamed response.
    r = requests.get(base_url + "/profile", stream=True, timeout=10)
    if r.status_code == 403:
        log.warning("denied: %r", next(r.iter_content(128), b""))
        return None
    with r:
        return r.json()


@pytest.fixture
def upstream(lb_httpserver):
    lb_httpserver.expect_request("/profile").respond_with_data("", status=403)
    return lb_httpserver.url_for("/").rstrip("/")


def test_against_the_mock(upstream):
    assert fetch_profile(upstream) is None


def test_behind_the_load_balancer(upstream, load_balancer):
    assert fetch_profile(load_balancer(upstream)) is None
"""


def test_story_the_load_balancer_page_exposes_the_leak(pytester: pytest.Pytester) -> None:
    # Against the mock's empty 403 the peek reaches the end of the body and requests
    # gives the connection back; behind the proxy the same 403 carries nginx's 548-byte
    # page, the peek stops after 128 bytes, and the connection stays leased.
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makepyfile(test_story=STORY)
    result = pytester.runpytest_subprocess("--leak-check")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_behind_the_load_balancer*",
            "E   ConnectionLeakError: 1 connection leaked by test_behind_the_load_balancer "
            "(still leased at teardown)",
            "E     http://127.0.0.1:* — leased at test_story.py:12 in fetch_profile",
        ]
    )
    assert "test_against_the_mock" not in "\n".join(
        line for line in result.outlines if line.startswith("ERROR")
    )


def test_idle_timeout_closes_a_silent_client(
    lb_httpserver: HTTPServer, load_balancer: LoadBalancer
) -> None:
    lb_httpserver.expect_request("/ok").respond_with_data("ok")
    url = load_balancer(lb_httpserver.url_for("/").rstrip("/"), idle_timeout=0.2)
    client = connect(url)
    client.request("GET", "/ok")
    response = client.getresponse()
    assert response.read() == b"ok"
    assert response.getheader("Connection") != "close"  # kept alive, then
    assert client.sock is not None
    client.sock.settimeout(10)
    assert client.sock.recv(1) == b""  # closed by the proxy once idle for 0.2 s
    client.close()


def test_idle_timeout_must_be_positive(lb_httpserver: HTTPServer) -> None:
    with pytest.raises(ValueError, match="idle_timeout must be a positive number of seconds"):
        ReverseProxy(lb_httpserver.url_for("/"), idle_timeout=0)
