"""The upstream these examples talk to, and the clients that talk to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from pytest_httpserver import HTTPServer

from pytest_connleak import error_page


@pytest.fixture
def url(lb_httpserver: HTTPServer) -> str:
    """A local upstream (the plugin's ``lb_httpserver``) that refuses ``/admin`` with 403."""
    lb_httpserver.expect_request("/admin").respond_with_handler(lambda _: error_page(403))
    return lb_httpserver.url_for("/admin")


# --8<-- [start:clients]
@pytest.fixture(scope="session")
def client() -> Iterator[httpx.Client]:
    """One sync client for the whole run, as a service keeps one."""
    with httpx.Client() as client:
        yield client


@pytest_asyncio.fixture
async def aclient() -> AsyncIterator[httpx.AsyncClient]:
    """An async client per test, closed at the test's teardown (before the verdict)."""
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def anyio_backend() -> str:
    """Tests marked ``@pytest.mark.anyio`` run on trio."""
    return "trio"
    # --8<-- [end:clients]
