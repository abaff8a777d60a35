"""Check every test under this directory for leaked connections, with no flag to remember."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from pytest_connleak import LeakCheck


# --8<-- [start:autouse]
@pytest.fixture(autouse=True)
def _no_connection_leaks(leak_check: LeakCheck) -> LeakCheck:
    """Requesting leak_check turns the check on for every test that sees this conftest."""
    return leak_check
    # --8<-- [end:autouse]


@pytest.fixture
def url(lb_httpserver: HTTPServer) -> str:
    """Base URL of a local server (the plugin's ``lb_httpserver``) serving ``/items``."""
    lb_httpserver.expect_request("/items").respond_with_json([1, 2, 3])
    return f"http://127.0.0.1:{lb_httpserver.port}"
