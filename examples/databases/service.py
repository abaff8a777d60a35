"""A small service's data access: one leak per pool library (fixed in service_fixed.py)."""

from __future__ import annotations

from typing import Any

import asyncpg
import redis
from psycopg_pool import ConnectionPool
from sqlalchemy import Engine, text


def count_rows(engine: Engine) -> int:
    """SQLAlchemy: the connection is never closed."""
    conn = engine.connect()
    return int(conn.execute(text("select count(*) from pg_tables")).scalar_one())


class Settings:
    """psycopg_pool: a repository that takes a connection and never gives it back."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self.conn = pool.getconn()

    def get(self, name: str) -> str:
        row = self.conn.execute("select current_setting(%s)", (name,)).fetchone()
        assert row is not None
        return str(row[0])


def first_message(r: redis.Redis, channel: str) -> Any:
    """redis-py: the pubsub is never closed."""
    pubsub = r.pubsub()
    pubsub.subscribe(channel)
    return pubsub.get_message(timeout=1.0)


async def server_version(pool: asyncpg.Pool) -> str:
    """asyncpg: the connection is never released."""
    conn = await pool.acquire()
    return str(await conn.fetchval("show server_version"))
