"""One test, every response shape an upstream can send: the fixed code holds for all."""

from __future__ import annotations

import requests
from pytest_httpserver import HTTPServer

from pytest_connleak import ResponseShape


# --8<-- [start:shapes]
def test_status_check_under_every_shape(
    lb_httpserver: HTTPServer, response_shape: ResponseShape
) -> None:
    # Runs once per shape: empty, html, json, large, chunked, slow, close, and the faults
    # truncated, reset, stall, garbage, no_response.
    lb_httpserver.expect_request("/session").respond_with_handler(response_shape.with_status(403))
    url = lb_httpserver.url_for("/session")
    with requests.Session() as session:
        try:
            with session.get(url, stream=True, timeout=10) as response:
                assert response.status_code == 403
        except requests.ConnectionError:
            assert response_shape.fault  # garbage or no_response: no answer to close
    # --8<-- [end:shapes]
