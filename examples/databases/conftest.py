"""A real PostgreSQL and Redis for the session (servers.py), and one pool per library."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import redis
from psycopg_pool import ConnectionPool
from servers import PostgresServer, RedisServer
from sqlalchemy import Engine, create_engine


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    server = PostgresServer()
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


# --8<-- [start:pools]
@pytest.fixture(scope="session")
def engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    yield engine
    gc.collect()  # a leaked connection goes back while the server is still up
    engine.dispose()


@pytest.fixture(scope="session")
def pg_pool(pg_url: str) -> Iterator[ConnectionPool[Any]]:
    with ConnectionPool(pg_url, min_size=1, max_size=10) as pool:
        yield pool


@pytest.fixture(scope="session")
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest_asyncio.fixture
async def apg_pool(pg_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=10)
    yield pool
    pool.terminate()  # close() would wait for a connection never released
    # --8<-- [end:pools]
