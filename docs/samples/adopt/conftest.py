"""A local server for the sample suite of "Adopt it in a suite that already leaks"."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer


@pytest.fixture
def url(lb_httpserver: HTTPServer) -> str:
    lb_httpserver.expect_request("/items").respond_with_json([1, 2, 3])
    return f"http://127.0.0.1:{lb_httpserver.port}"
