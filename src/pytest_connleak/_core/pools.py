"""What a tracked pool keeps between requests: its idle connections and their sockets.

The ledger counts leases at the lease/return boundary; it never looks inside a pool. The
two questions here are only ever asked when reporting (``pool_stats()``) or when the
socket check must tell a pool's keep-alive connection from a leaked socket, so they are
answered by duck typing against each client's pool object, and every answer may be
"unknown" (``None`` / nothing) rather than wrong.
"""

from __future__ import annotations

import socket
from asyncio.trsock import TransportSocket
from collections import deque
from collections.abc import Iterator
from typing import Any

from .ledger import Ledger, PoolRecord

__all__ = ["idle_connections", "live_pools", "socket_fd"]


def live_pools(ledger: Ledger) -> list[tuple[PoolRecord, Any]]:
    """Every pool record with its pool object (``None`` once the pool was collected)."""
    return [(rec, rec.pool_object) for rec in ledger.pools()]


def idle_connections(pool: Any) -> list[Any] | None:
    """The connections *pool* keeps open for reuse, or ``None`` if its kind is unknown.

    - urllib3: ``pool.pool`` is a ``LifoQueue`` pre-filled with ``None`` placeholders;
      the other items are released connections, which count while their socket is open
      (redis-py's ``BlockingConnectionPool`` keeps the same shape).
    - httpcore: ``pool.connections`` with ``is_idle()``.
    - aiohttp: ``connector._conns`` maps a key to ``(protocol, timestamp)`` pairs.
    - SQLAlchemy's queue pools: ``pool._pool.queue`` holds connection records;
      psycopg_pool: ``pool._pool`` is a deque of connections.
    - redis-py's ``ConnectionPool``: ``pool._available_connections``.
    - asyncpg: ``pool._holders``, idle while their ``_in_use`` is ``None``.
    """
    queue = getattr(pool, "pool", None)
    items = getattr(queue, "queue", None)
    if items is not None and hasattr(queue, "qsize"):
        # A copy first: another thread may put or get a connection meanwhile.
        return [c for c in list(items) if c is not None and socket_fd(c) is not None]
    connections = getattr(pool, "connections", None)
    if connections is not None:
        idle = []
        for conn in list(connections):
            try:
                if conn.is_idle():
                    idle.append(conn)
            except Exception:  # a connection in an unexpected state: not idle, not fatal
                continue
        return idle
    conns = getattr(pool, "_conns", None)
    if isinstance(conns, dict):
        return [proto for entries in list(conns.values()) for proto, *_ in list(entries)]
    available = getattr(pool, "_available_connections", None)
    if isinstance(available, list):
        return list(available)
    inner = getattr(pool, "_pool", None)
    inner = getattr(inner, "queue", inner)
    if isinstance(inner, deque | list):
        return list(inner)
    holders = getattr(pool, "_holders", None)
    if isinstance(holders, list):
        return [h for h in list(holders) if getattr(h, "_in_use", True) is None]
    return None


# Attributes that lead from a pooled connection to the driver connection under it:
# SQLAlchemy's record, its asyncio adapters, asyncpg's holder and httpcore's connection.
_INNER = ("dbapi_connection", "_connection", "_con")


def _sockets_of(conn: Any, depth: int = 0) -> Iterator[Any]:
    """Candidate sockets (objects or descriptors) behind a connection of any client."""
    yield getattr(conn, "sock", None)  # urllib3 / http.client
    yield getattr(conn, "_sock", None)  # redis-py
    stream = getattr(conn, "_network_stream", None)  # httpcore's HTTP11Connection
    transport = getattr(conn, "transport", None) or getattr(conn, "_transport", None)
    writer = getattr(conn, "_writer", None)  # redis.asyncio
    for source in (stream, transport, getattr(writer, "transport", None)):
        if source is None:
            continue
        try:
            sock = source.get_extra_info("socket")
        except Exception:  # a stream type without that extra
            continue
        yield sock
    pgconn = getattr(conn, "pgconn", None)  # psycopg: libpq's descriptor
    if pgconn is not None:
        try:
            fd = pgconn.socket
        except Exception:  # closed
            fd = None
        yield fd
    if depth < 3:
        for name in _INNER:
            inner = getattr(conn, name, None)
            if inner is not None and inner is not conn:
                yield from _sockets_of(inner, depth + 1)


def socket_fd(conn: Any) -> int | None:
    """The file descriptor of *conn*'s socket while it is open, else ``None``."""
    for sock in _sockets_of(conn):
        if isinstance(sock, int) and not isinstance(sock, bool):
            if sock >= 0:
                return sock
            continue
        if not isinstance(sock, socket.socket | TransportSocket):
            continue
        try:
            fd = sock.fileno()
        except (OSError, ValueError):
            continue
        if isinstance(fd, int) and fd >= 0:
            return fd
    return None
