"""The upstream these examples talk to, and the session that talks to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from pytest_httpserver import HTTPServer

from pytest_connleak import RESPONSE_SHAPES


@pytest.fixture
def url(lb_httpserver: HTTPServer) -> str:
    """Base URL of a local upstream (the plugin's ``lb_httpserver``) with three answers."""
    lb_httpserver.expect_request("/profile").respond_with_json({"name": "Ada"})
    # --8<-- [start:routes]
    # What the team's mock answered: a 403 with no body.
    lb_httpserver.expect_request("/refused").respond_with_data("", status=403)
    # What production can answer: an error with a body of 1 MiB.
    large_503 = RESPONSE_SHAPES["large"].with_status(503)
    lb_httpserver.expect_request("/overloaded").respond_with_handler(large_503)
    # --8<-- [end:routes]
    return f"http://127.0.0.1:{lb_httpserver.port}"


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A session per test, closed at the test's teardown (before the verdict)."""
    async with aiohttp.ClientSession() as session:
        yield session
