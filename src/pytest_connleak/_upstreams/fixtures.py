"""Fixtures for mock upstreams that answer like real infrastructure.

:mod:`pytest_connleak.plugin` imports them by name, which is how pytest finds them. The
servers, the proxy and the shapes are imported by the fixtures that use them, not here:
this module is loaded in every pytest run, and most suites never use these fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_httpserver import HTTPServer

    from .proxy import ReverseProxy
    from .shapes import ResponseShape

__all__ = ["lb_httpserver", "load_balancer", "response_shape"]

#: The names of ``RESPONSE_SHAPES``, in order: the parameters of ``response_shape``, known
#: without building the shapes (a test checks that the two agree).
SHAPE_NAMES = (
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
)


def _require(fixture: str, modules: tuple[str, ...]) -> None:
    """Fail the test with the extra to install, not an ImportError from deep inside."""
    from .extra import missing, missing_message

    absent = missing(modules)
    if absent:
        pytest.fail(missing_message(f"the {fixture} fixture", absent), pytrace=False)


@pytest.fixture(scope="session")
def _connleak_lb() -> Iterator[HTTPServer]:
    _require("lb_httpserver", ("pytest_httpserver", "werkzeug"))
    from pytest_httpserver import HTTPServer

    from .one_header import one_header_each

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    # Before any test connects: werkzeug would send "Server" twice with an error page.
    one_header_each(server.server)
    try:
        yield server
    finally:
        server.clear()
        werkzeug_server = server.server
        server.stop()
        # stop() ends the serving thread but leaves the listening socket to the garbage
        # collector, which warns (ResourceWarning) in suites that treat warnings as errors.
        if werkzeug_server is not None:
            werkzeug_server.server_close()


@pytest.fixture
def lb_httpserver(_connleak_lb: HTTPServer) -> HTTPServer:
    """A threaded ``pytest_httpserver.HTTPServer`` on 127.0.0.1, cleared for this test.

    One server serves the whole session (a free port, ``threaded=True``, so requests are
    served concurrently over HTTP/1.1); every test starts with no handlers and an empty
    log, as with pytest-httpserver's ``httpserver``. Use ``lb_httpserver.url_for("/")``
    for its URL. Werkzeug 3 closes the connection after every response; put the
    ``load_balancer`` fixture in front of it for keep-alive connections. Each header is
    sent once: werkzeug's own ``Server`` and ``Date`` give way to a response's.
    """
    _connleak_lb.clear()
    return _connleak_lb


@pytest.fixture(params=list(SHAPE_NAMES), ids=list(SHAPE_NAMES))
def response_shape(request: pytest.FixtureRequest) -> ResponseShape:
    """Runs the test once per response shape in ``pytest_connleak.RESPONSE_SHAPES``.

    Returns a :class:`pytest_connleak.ResponseShape`: ``.name`` (also the test id, e.g.
    ``test_x[truncated]``), ``.status``, and the shape itself is the handler to pass to
    ``lb_httpserver.expect_request(...).respond_with_handler(response_shape)`` (or
    ``.handler``). ``response_shape.with_status(403)`` answers 403 in that shape. The
    faults (``truncated``, ``reset``, ``stall``, ``garbage``, ``no_response``) have
    ``.fault`` true: the client gets an exception instead of a whole answer.
    """
    _require("response_shape", ("werkzeug",))
    from .shapes import RESPONSE_SHAPES

    shape: ResponseShape = RESPONSE_SHAPES[request.param]
    return shape


@pytest.fixture
def load_balancer() -> Iterator[Callable[..., str]]:
    """Factory: ``load_balancer(upstream_url, *, style="nginx", idle_timeout=75.0) -> str``.

    Each call starts a real reverse proxy on 127.0.0.1 in front of ``upstream_url`` (an
    ``http://`` URL; a path in it is prefixed to every request) and returns
    ``http://127.0.0.1:PORT``. The proxy forwards method, path, query, headers (adding
    ``X-Forwarded-For`` and ``X-Forwarded-Proto``) and body; passes 2xx and 3xx responses
    through, streaming the body; and replaces every 4xx/5xx body with the error page of
    *style* (see ``pytest_connleak.error_page``), keeping the status. An unreachable
    upstream is a 502 page. Client connections are kept alive whatever the upstream does
    (like nginx), idle upstream connections are reused, and requests are served
    concurrently; a client connection idle for *idle_timeout* seconds is closed (nginx's
    ``keepalive_timeout``, 75 s by default), which leaves a leaked one in ``CLOSE_WAIT``
    on the client's side. Every proxy started is stopped at the end of the test, its
    threads joined and its sockets closed.
    """
    _require("load_balancer", ("werkzeug",))
    from .proxy import ReverseProxy

    proxies: list[ReverseProxy] = []

    def start(upstream_url: str, *, style: str = "nginx", idle_timeout: float = 75.0) -> str:
        proxy = ReverseProxy(upstream_url, style=style, idle_timeout=idle_timeout)
        proxies.append(proxy)
        return proxy.url

    yield start
    for proxy in proxies:
        proxy.stop()
    errors = [exc for proxy in proxies for exc in proxy.errors]
    if errors:
        raise RuntimeError(f"the load_balancer proxy failed while serving: {errors[0]!r}")
