"""The same tests against the fixed status check: they pass with --leak-check too."""

from __future__ import annotations

import httpx
import pytest
from service_fixed import afetch_status, fetch_status


def test_sync(client: httpx.Client, url: str) -> None:
    assert fetch_status(client, url) == 403


@pytest.mark.asyncio
async def test_asyncio(aclient: httpx.AsyncClient, url: str) -> None:
    assert await afetch_status(aclient, url) == 403


@pytest.mark.anyio
async def test_trio(url: str) -> None:
    async with httpx.AsyncClient() as client:
        assert await afetch_status(client, url) == 403


def test_many_checks_fit_in_a_small_pool(url: str) -> None:
    # Two connections, and a request that finds both in use gives up after 1 second
    # (httpx.PoolTimeout). Ten checks in a row pass only if each gives its connection back.
    limits = httpx.Limits(max_connections=2)
    with httpx.Client(limits=limits, timeout=httpx.Timeout(5, pool=1)) as client:
        assert [fetch_status(client, url) for _ in range(10)] == [403] * 10
