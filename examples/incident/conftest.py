"""The auth service, behind the load balancer that production puts in front of it.

The auth service answers a refused cookie with an empty 403. In production, nginx stood in
front of it and replaced that with its own HTML error page, so the client saw a body the
tests never did. Here the tests see what production sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

VALID_COOKIE = "s3cr3t"


# --8<-- [start:server]
def check_session(request: Request) -> Response:
    """The auth service: JSON for a good cookie, an empty 403 for any other."""
    if request.cookies.get("session") == VALID_COOKIE:
        return Response('{"user": "ada"}', content_type="application/json")
    return Response(status=403)


@pytest.fixture
def auth_url(lb_httpserver: HTTPServer, load_balancer: Callable[..., str]) -> str:
    """The URL the service calls: nginx in front of the auth service, as deployed."""
    lb_httpserver.expect_request("/session").respond_with_handler(check_session)
    proxy = load_balancer(f"http://127.0.0.1:{lb_httpserver.port}", style="nginx")
    return proxy + "/session"
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
