"""Tests of the status check as first written. They pass, unless run with --leak-check."""

from __future__ import annotations

import httpx
import pytest
from service import afetch_status, fetch_status


def test_sync(client: httpx.Client, url: str) -> None:
    assert fetch_status(client, url) == 403


# --8<-- [start:async]
@pytest.mark.asyncio
async def test_asyncio(aclient: httpx.AsyncClient, url: str) -> None:
    assert await afetch_status(aclient, url) == 403


@pytest.mark.anyio
async def test_trio(url: str) -> None:
    async with httpx.AsyncClient() as client:
        assert await afetch_status(client, url) == 403
        # --8<-- [end:async]


# --8<-- [start:mock]
def test_mock_transport_hides_it() -> None:
    # A MockTransport (respx and pytest-httpx work the same way) never touches a pool:
    # no connection, nothing leased, nothing reported, even with the leaking code.
    transport = httpx.MockTransport(lambda request: httpx.Response(403))
    with httpx.Client(transport=transport) as client:
        assert fetch_status(client, "http://auth.test/admin") == 403
    # --8<-- [end:mock]
