"""What a tracked pool keeps between requests: its idle connections and their sockets.

The ledger counts leases at the lease/return boundary; it never looks inside a pool. The
two questions here are only ever asked when reporting (``pool_stats()``) or when the
socket check must tell a pool's keep-alive connection from a leaked socket, so they are
answered by duck typing against each client's pool object, and every answer may be
"unknown" (``None`` / nothing) rather than wrong.
"""

from __future__ import annotations

import socket
import sys
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
      the other items are released connections, which count while their socket is open.
    - httpcore: ``pool.connections`` with ``is_idle()``.
    - aiohttp: ``connector._conns`` maps a key to ``(protocol, timestamp)`` pairs.
    """
    queue = getattr(pool, "pool", None)
    items = getattr(queue, "queue", None)
    if items is not None and hasattr(queue, "qsize"):
        # A copy first: another thread may put or get a connection meanwhile.
        return [c for c in list(items) if c is not None and getattr(c, "sock", None) is not None]
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
    return None


def _sockets_of(conn: Any) -> Iterator[Any]:
    """Candidate socket objects behind a connection of any supported client."""
    yield getattr(conn, "sock", None)  # urllib3 / http.client
    inner = getattr(conn, "_connection", None)  # httpcore: HTTPConnection -> HTTP11Connection
    stream = getattr(inner, "_network_stream", None) or getattr(conn, "_network_stream", None)
    transport = getattr(conn, "transport", None)  # aiohttp: ResponseHandler
    for source in (stream, transport):
        if source is None:
            continue
        try:
            sock = source.get_extra_info("socket")
        except Exception:  # a stream type without that extra
            continue
        yield sock


def socket_fd(conn: Any) -> int | None:
    """The file descriptor of *conn*'s socket while it is open, else ``None``."""
    # asyncio's socket wrapper, only if asyncio is loaded: importing it here would cost a
    # run that never uses asyncio about 20 ms of start-up (the socket check imports this).
    trsock = sys.modules.get("asyncio.trsock")
    kinds = (socket.socket, trsock.TransportSocket) if trsock is not None else (socket.socket,)
    for sock in _sockets_of(conn):
        if not isinstance(sock, kinds):
            continue
        try:
            fd = sock.fileno()
        except (OSError, ValueError):
            continue
        if isinstance(fd, int) and fd >= 0:
            return fd
    return None
