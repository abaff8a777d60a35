"""The profile lookup, fixed: ``async with`` releases the response on every path."""

from __future__ import annotations

from typing import Any

import aiohttp


async def fetch_profile(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        if response.status != 200:
            return None  # leaving the block releases the connection, body read or not
        return await response.json()
