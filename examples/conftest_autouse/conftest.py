"""Check every test under this directory for leaked connections, with no flag to remember."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer

from pytest_connleak import LeakCheck


# --8<-- [start:autouse]
@pytest.fixture(autouse=True)
def _no_connection_leaks(leak_check: LeakCheck) -> LeakCheck:
    """Requesting leak_check turns the check on for every test that sees this conftest."""
    return leak_check
    # --8<-- [end:autouse]


@pytest.fixture(scope="session")
def server() -> Iterator[HTTPServer]:
    # threaded=True: HTTP/1.1 keep-alive, so connections are pooled as in production.
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request("/items").respond_with_json([1, 2, 3])
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def url(server: HTTPServer) -> str:
    return server.url_for("/").rstrip("/")
