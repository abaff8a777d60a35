"""psycopg_pool 3.x: a lease is ``getconn()``, a return is ``putconn()``.

``ConnectionPool.connection()`` (``AsyncConnectionPool.connection()``) is built on the
two public methods, and so are the null pools, so wrapping ``getconn`` and ``putconn``
of the two base classes covers every way in and out. Nothing gives a connection back by
itself: one dropped without ``putconn()`` is closed by psycopg's finaliser (with a
``ResourceWarning``) and its slot never comes back.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any

from pytest_connleak._core.adapters import Adapter, Patcher, expect_signature, wait_counter
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

        record = ledger.pool_record
        # The request path, shaped like urllib3's: known_record() inlined (the ledger never
        # rebinds _pools), the pool's record (origin, capacity) made once, on first sight.
        known_pool = ledger._pools.get
        lease, release = ledger.lease, ledger.release
        failed = ledger.internal_error
        name = self.name
        async_pools = self._async_pools
        get_timeout = inspect.signature(ConnectionPool.getconn).parameters["timeout"].default
        aget_timeout = inspect.signature(AsyncConnectionPool.getconn).parameters["timeout"].default

        def first_sight(pool: Any, conn: Any, is_async: bool) -> PoolRecord:
            rec = record(pool, name, lambda: conn_origin(conn), lambda: _capacity(pool))
            if is_async:
                async_pools.add(rec)
            return rec

        note_wait = wait_counter(ledger, name)

        def make_get(original: Callable[..., Any]) -> Callable[..., Any]:
            # The exact signature, not *args/**kwargs: this runs on every checkout.
            def getconn(self: Any, timeout: Any = get_timeout) -> Any:
                # Before the original only what cannot fail: a dict look-up and a compare.
                rec = known_pool(id(self))
                if rec is not None and rec.leased >= rec.wait_at:
                    note_wait(rec)
                conn = original(self, timeout)
                try:
                    if rec is None:
                        rec = first_sight(self, conn, False)
                    lease(rec, conn)
                except Exception as exc:  # never break the pool; reported at the end
                    failed(name, "recording a getconn()", exc)
                return conn

            return getconn

        def make_put(original: Callable[..., Any]) -> Callable[..., Any]:
            def putconn(self: Any, conn: Any) -> Any:
                try:
                    return original(self, conn)
                finally:
                    # After the original, whatever it did: a connection of another pool
                    # matches no lease of this one, and a closed pool closes it for good.
                    rec = known_pool(id(self))
                    if rec is not None:
                        try:
                            release(rec, conn)
                        except Exception as exc:
                            failed(name, "recording a putconn()", exc)

            return putconn

        def make_aget(original: Callable[..., Any]) -> Callable[..., Any]:
            async def getconn(self: Any, timeout: Any = aget_timeout) -> Any:
                rec = known_pool(id(self))
                if rec is not None and rec.leased >= rec.wait_at:
                    note_wait(rec)
                conn = await original(self, timeout)
                try:
                    if rec is None:
                        rec = first_sight(self, conn, True)
                    lease(rec, conn)
                except Exception as exc:
                    failed(name, "recording a getconn()", exc)
                return conn

            return getconn

        def make_aput(original: Callable[..., Any]) -> Callable[..., Any]:
            async def putconn(self: Any, conn: Any) -> Any:
                try:
                    return await original(self, conn)
                finally:
                    rec = known_pool(id(self))
                    if rec is not None:
                        try:
                            release(rec, conn)
                        except Exception as exc:
                            failed(name, "recording a putconn()", exc)

            return putconn

        patcher.wrap(ConnectionPool, "getconn", make_get)
        patcher.wrap(ConnectionPool, "putconn", make_put)
        patcher.wrap(AsyncConnectionPool, "getconn", make_aget)
        patcher.wrap(AsyncConnectionPool, "putconn", make_aput)
