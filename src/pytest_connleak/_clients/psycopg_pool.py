"""psycopg_pool 3.x: a lease is ``getconn()``, a return is ``putconn()``.

``ConnectionPool.connection()`` (``AsyncConnectionPool.connection()``) is built on the
two public methods, and so are the null pools, so wrapping ``getconn`` and ``putconn``
of the two base classes covers every way in and out. Nothing gives a connection back by
itself: one dropped without ``putconn()`` is closed by psycopg's finaliser (with a
``ResourceWarning``) and its slot never comes back.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from pytest_connleak._core.adapters import Adapter, Patcher, expect_signature
from pytest_connleak._core.ledger import Lease, Ledger, PoolRecord

__all__ = ["PsycopgPoolAdapter", "conn_origin"]

SYNC_HINT = "use `with pool.connection() as conn:`, or call pool.putconn(conn) after getconn()"
ASYNC_HINT = (
    "use `async with pool.connection() as conn:`, or await pool.putconn(conn) after getconn()"
)
DROPPED = (
    "the connection was dropped without putconn(): the garbage collector closed it, but "
    "the pool never got its slot back"
)


def conn_origin(conn: Any) -> str:
    """``postgresql://user@host:port/dbname`` of a psycopg connection, never its password."""
    info = conn.info
    host = info.host or "localhost"
    if host.startswith("/") or ":" in host:  # a Unix socket directory, or IPv6
        host = f"[{host}]"
    user = f"{info.user}@" if info.user else ""
    return f"postgresql://{user}{host}:{info.port}/{info.dbname}"


def _capacity(pool: Any) -> tuple[int | None, bool]:
    size = getattr(pool, "max_size", None)
    # Every pool waits up to its timeout for a free connection.
    return (size if isinstance(size, int) and size > 0 else None), True


class PsycopgPoolAdapter(Adapter):
    """Tracks ``psycopg_pool.ConnectionPool`` and ``AsyncConnectionPool`` (and null pools)."""

    name = "psycopg_pool"
    module = "psycopg_pool"
    hint = SYNC_HINT

    def __init__(self) -> None:
        self._async_pools: weakref.WeakSet[PoolRecord] = weakref.WeakSet()

    def advise(self, lease: Lease) -> str:
        hint = ASYNC_HINT if lease.pool in self._async_pools else SYNC_HINT
        return f"{DROPPED}; {hint}" if lease.connection_collected else hint

    def patch(self, ledger: Ledger, patcher: Patcher) -> None:
        from psycopg_pool import AsyncConnectionPool, ConnectionPool

        for cls in (ConnectionPool, AsyncConnectionPool):
            expect_signature(cls, "getconn", ("self", "timeout"))
            expect_signature(cls, "putconn", ("self", "conn"))

        known, record = ledger.known_record, ledger.pool_record
        name = self.name

        async_pools = self._async_pools

        def leased(pool: Any, conn: Any, is_async: bool) -> None:
            try:
                rec = known(pool)
                if rec is None:
                    rec = record(pool, name, lambda: conn_origin(conn), lambda: _capacity(pool))
                    if is_async:
                        async_pools.add(rec)
                ledger.lease(rec, conn)
            except Exception as exc:  # never break the pool; reported at the end
                ledger.internal_error(name, "recording a getconn()", exc)

        def waits(pool: Any) -> None:
            rec = known(pool)
            if rec is not None and rec.capacity is not None and rec.leased >= rec.capacity:
                ledger.note_wait(rec)

        def returned(pool: Any, conn: Any) -> None:
            try:
                rec = known(pool)
                if rec is not None:
                    ledger.release(rec, conn)
            except Exception as exc:
                ledger.internal_error(name, "recording a putconn()", exc)

        def make_get(original: Callable[..., Any]) -> Callable[..., Any]:
            def getconn(self: Any, *args: Any, **kwargs: Any) -> Any:
                waits(self)
                conn = original(self, *args, **kwargs)
                leased(self, conn, False)
                return conn

            return getconn

        def make_put(original: Callable[..., Any]) -> Callable[..., Any]:
            def putconn(self: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return original(self, *args, **kwargs)
                finally:
                    # After the original, whatever it did: a connection of another pool
                    # matches no lease of this one, and a closed pool closes it for good.
                    returned(self, args[0] if args else kwargs.get("conn"))

            return putconn

        def make_aget(original: Callable[..., Any]) -> Callable[..., Any]:
            async def getconn(self: Any, *args: Any, **kwargs: Any) -> Any:
                waits(self)
                conn = await original(self, *args, **kwargs)
                leased(self, conn, True)
                return conn

            return getconn

        def make_aput(original: Callable[..., Any]) -> Callable[..., Any]:
            async def putconn(self: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return await original(self, *args, **kwargs)
                finally:
                    returned(self, args[0] if args else kwargs.get("conn"))

            return putconn

        patcher.wrap(ConnectionPool, "getconn", make_get)
        patcher.wrap(ConnectionPool, "putconn", make_put)
        patcher.wrap(AsyncConnectionPool, "getconn", make_aget)
        patcher.wrap(AsyncConnectionPool, "putconn", make_aput)
