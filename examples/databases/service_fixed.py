"""The same data access with every connection given back."""

from __future__ import annotations

from typing import Any

import asyncpg
import redis
from psycopg_pool import ConnectionPool
from sqlalchemy import Engine, text


def count_rows(engine: Engine) -> int:
    """SQLAlchemy: `with engine.connect()` closes the connection."""
    with engine.connect() as conn:
        return int(conn.execute(text("select count(*) from pg_tables")).scalar_one())


class Settings:
    """psycopg_pool: a connection per call, returned when the block ends."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self.pool = pool

    def get(self, name: str) -> str:
        with self.pool.connection() as conn:
            row = conn.execute("select current_setting(%s)", (name,)).fetchone()
        assert row is not None
        return str(row[0])


def first_message(r: redis.Redis, channel: str) -> Any:
    """redis-py: `with r.pubsub()` closes the pubsub and returns its connection."""
    with r.pubsub() as pubsub:
        pubsub.subscribe(channel)
        return pubsub.get_message(timeout=1.0)


async def server_version(pool: asyncpg.Pool) -> str:
    """asyncpg: `async with pool.acquire()` releases the connection."""
    async with pool.acquire() as conn:
        return str(await conn.fetchval("show server_version"))
