"""The same tests against the fixed lookup: they pass with --leak-check too."""

from __future__ import annotations

import aiohttp
import pytest
from service_fixed import fetch_profile


@pytest.mark.asyncio
async def test_found(session: aiohttp.ClientSession, url: str) -> None:
    assert await fetch_profile(session, url + "/profile") == {"name": "Ada"}


@pytest.mark.asyncio
async def test_refused_with_an_empty_body(session: aiohttp.ClientSession, url: str) -> None:
    # Released by `async with`, and by aiohttp itself, whichever comes first.
    assert await fetch_profile(session, url + "/refused") is None


@pytest.mark.asyncio
async def test_refused_with_a_large_body(session: aiohttp.ClientSession, url: str) -> None:
    # Released by `async with`, with most of the body never read.
    assert await fetch_profile(session, url + "/overloaded") is None
