"""A profile lookup, as first written: it leaks a connection when the upstream refuses.

On a 200 the body is read (``response.json()``), which gives the connection back. On an
error the response is simply dropped. aiohttp gives the connection back by itself when the
whole body had already arrived (an empty 403 from a mock), so the tests pass; when the
error body is large, or slow to come, the connection stays leased for good.
"""

from __future__ import annotations

from typing import Any

import aiohttp


async def fetch_profile(session: aiohttp.ClientSession, url: str) -> Any:
    response = await session.get(url)
    if response.status != 200:
        return None  # the response is never released
    return await response.json()
