"""The status check, fixed: ``client.stream(...)`` closes the response on the way out."""

from __future__ import annotations

import httpx


# --8<-- [start:sync]
def fetch_status(client: httpx.Client, url: str) -> int:
    with client.stream("GET", url) as response:
        return response.status_code  # leaving the block closes it, body read or not
    # --8<-- [end:sync]


# --8<-- [start:async]
async def afetch_status(client: httpx.AsyncClient, url: str) -> int:
    async with client.stream("GET", url) as response:
        return response.status_code
    # --8<-- [end:async]
