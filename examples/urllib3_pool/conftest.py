"""A local server that keeps connections alive, as real servers do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer


@pytest.fixture(scope="session")
def server() -> Iterator[HTTPServer]:
    # threaded=True makes werkzeug speak HTTP/1.1 with keep-alive, so connections are
    # pooled; the default server closes each one and would hide every pool leak.
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request("/forbidden").respond_with_data(
        "<html><body><h1>403 Forbidden</h1></body></html>", status=403, content_type="text/html"
    )
    server.expect_request("/big").respond_with_data(b"x" * (1 << 20))
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def url(server: HTTPServer) -> str:
    return server.url_for("/").rstrip("/")
