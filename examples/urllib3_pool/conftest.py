"""The server these examples talk to."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from pytest_connleak import error_page


@pytest.fixture
def url(lb_httpserver: HTTPServer) -> str:
    """Base URL of a local server (the plugin's ``lb_httpserver``) with this example's routes."""
    # --8<-- [start:error_page]
    # A 403 with the HTML page nginx sends, as a client behind a load balancer gets it.
    lb_httpserver.expect_request("/forbidden").respond_with_handler(lambda _: error_page(403))
    # --8<-- [end:error_page]
    lb_httpserver.expect_request("/big").respond_with_data(b"x" * (1 << 20))
    return f"http://127.0.0.1:{lb_httpserver.port}"
