"""A fake auth service that answers the way the deployed one did, behind its load balancer.

The real auth service answered a bad cookie with an empty 403; the load balancer in front
of it replaced that with its own HTML error page. Tests should see what production sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

VALID_COOKIE = "s3cr3t"

# --8<-- [start:page]
# What nginx sends for a 403 (its default page, padded so browsers show it).
NGINX_403 = (
    "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n"
    "<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
    + "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n"
    * 6
)
# --8<-- [end:page]


# --8<-- [start:server]
@pytest.fixture(scope="session")
def auth_server() -> Iterator[HTTPServer]:
    # threaded=True: werkzeug then speaks HTTP/1.1 and keeps connections alive, so the
    # client pools them as it does in production. The default server closes every
    # connection, and a pool leak can never show.
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def check_session(request: Request) -> Response:
    """The auth service as the client sees it: JSON for a good cookie, else nginx's 403."""
    if request.cookies.get("session") == VALID_COOKIE:
        return Response('{"user": "ada"}', content_type="application/json")
    return Response(NGINX_403, status=403, content_type="text/html", headers={"Server": "nginx"})


@pytest.fixture
def auth_url(auth_server: HTTPServer) -> Iterator[str]:
    auth_server.expect_request("/session").respond_with_handler(check_session)
    yield auth_server.url_for("/session")
    auth_server.clear()
    # --8<-- [end:server]


@pytest.fixture
def valid_cookie() -> str:
    """A session cookie the auth service accepts."""
    return VALID_COOKIE


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """The service's HTTP client: a session whose pool blocks when it is empty."""
    with requests.Session() as session:
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=2, pool_block=True)
        session.mount("http://", adapter)
        yield session
