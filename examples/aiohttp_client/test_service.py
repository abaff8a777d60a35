"""Tests of the lookup as first written: they pass, and --leak-check catches one of them."""

from __future__ import annotations

import aiohttp
import pytest
from service import fetch_profile


@pytest.mark.asyncio
async def test_found(session: aiohttp.ClientSession, url: str) -> None:
    assert await fetch_profile(session, url + "/profile") == {"name": "Ada"}


# --8<-- [start:halves]
@pytest.mark.asyncio
async def test_refused_with_an_empty_body(session: aiohttp.ClientSession, url: str) -> None:
    # The whole answer arrived with the headers: aiohttp released the connection itself.
    assert await fetch_profile(session, url + "/refused") is None


@pytest.mark.asyncio
async def test_refused_with_a_large_body(session: aiohttp.ClientSession, url: str) -> None:
    # Most of the 1 MiB body is still on the wire: the connection stays leased.
    assert await fetch_profile(session, url + "/overloaded") is None
    # --8<-- [end:halves]
