"""A status check against an upstream, as first written: every call leaks a connection.

Only the status code is needed, so the body is streamed (``stream=True``) to skip
downloading it. That hands the caller the connection until the response is closed, and
this code never closes it: httpx's pool counts the connection as in use for good, even
after the response is garbage-collected, until ``PoolTimeout``.
"""

from __future__ import annotations

import httpx


def fetch_status(client: httpx.Client, url: str) -> int:
    response = client.send(client.build_request("GET", url), stream=True)
    return response.status_code  # the response is never closed


async def afetch_status(client: httpx.AsyncClient, url: str) -> int:
    response = await client.send(client.build_request("GET", url), stream=True)
    return response.status_code  # the response is never closed
