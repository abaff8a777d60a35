"""Shared fixtures: one real HTTP server on 127.0.0.1 for the whole suite.

Plugin behaviour is tested with ``pytester``: the inner test files reach this server
through the ``BASE_URL`` constant that :func:`base_conftest` writes into their conftest.
"""

from __future__ import annotations

import gc
import http.server
import threading
import warnings
from collections.abc import Iterator

import pytest

# Imported once here so pytester's in-process runs share these modules: a run that
# imported them itself would have them removed afterwards, and the next run would mix
# classes from two copies (requests' cookie jar checks fail that way).
import requests  # noqa: F401
import urllib3  # noqa: F401
from pytest_httpserver import HTTPServer

# The real PostgreSQL and Redis (session fixtures, started on first use).
from dbservers import postgres_url, redis_url  # noqa: F401

LB_403_PAGE = (
    "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n"
    "<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
    + "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n"
    * 6
)


@pytest.fixture(scope="session")
def http_server() -> Iterator[HTTPServer]:
    """A threaded server with fixed routes, shared by every test.

    Werkzeug 3 closes the connection after each response; that does not matter here: a
    lease is taken and owed back whatever the framing (the load_balancer fixture is the
    keep-alive front end where one is needed).

    Routes: ``/ok`` (200, short body), ``/403`` (403 with a load balancer's HTML page),
    ``/empty403`` (403, no body), ``/big`` (200, 1 MiB), ``/json`` (200, JSON).
    """
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request("/ok").respond_with_data("ok")
    server.expect_request("/403").respond_with_data(
        LB_403_PAGE, status=403, content_type="text/html"
    )
    server.expect_request("/empty403").respond_with_data("", status=403)
    server.expect_request("/big").respond_with_data(b"x" * (1 << 20))
    server.expect_request("/json").respond_with_json({"ok": True})
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def base_url(http_server: HTTPServer) -> str:
    """``http://127.0.0.1:PORT`` of :func:`http_server`."""
    return f"http://127.0.0.1:{http_server.port}"


@pytest.fixture(autouse=True)
def _inner_runs_quiet(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Give every pytester run pytest-asyncio's loop scope, or it warns in each run.

    Pytester clears PYTEST_ADDOPTS when it starts, so this runs after it.

    The inner runs leak connections on purpose. Leaked responses caught in reference
    cycles (httpx, aiohttp) would be collected at whatever moment the garbage collector
    picks, and their sockets' ResourceWarning would then fail an unrelated outer test;
    collect them here, right after the test that made them, where they are expected.
    """
    if "pytester" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("pytester")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-o asyncio_default_fixture_loop_scope=function")
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def base_conftest(pytester: pytest.Pytester, base_url: str) -> pytest.Pytester:
    """A pytester project whose conftest defines ``BASE_URL`` and a ``url`` fixture."""
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        """
    )
    pytester.makeconftest(
        f"""
        import pytest

        BASE_URL = {base_url!r}

        @pytest.fixture(scope="session")
        def url():
            return BASE_URL
        """
    )
    return pytester


class _KeepAliveHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # answers keep the connection open

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _KeepAliveServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a test's open client must not hang the session's end

    def handle_error(self, request: object, client_address: object) -> None:
        # Tests close connections mid-answer on purpose; a traceback per reset is noise.
        pass


@pytest.fixture(scope="session")
def keepalive_url() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a server that really keeps connections alive.

    werkzeug (under pytest-httpserver, even threaded) sends ``Connection: close`` on every
    answer, so no pooled connection of :func:`http_server` outlives its request. Any path
    answers 200 ``ok``.
    """
    server = _KeepAliveServer(("127.0.0.1", 0), _KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()
