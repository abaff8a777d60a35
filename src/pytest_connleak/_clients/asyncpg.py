"""asyncpg: a lease is ``Pool._acquire()``, a return is ``Pool.release()``.

``pool.acquire()`` returns a context that awaits ``_acquire`` (awaited directly or
entered with ``async with``), and leaving ``async with pool.acquire()`` calls
``release``; so do the pool's shortcuts (``pool.fetch()``, ``pool.execute()``). A
connection proxy is held by its pool holder while it is out, so a dropped one is never
collected and its slot never comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_connleak._core.adapters import Adapter, Patcher, expect_signature
from pytest_connleak._core.ledger import Lease, Ledger

__all__ = ["AsyncpgAdapter", "proxy_origin"]

HINT = "use `async with pool.acquire() as conn:`, or await pool.release(conn) after acquire()"


def proxy_origin(proxy: Any) -> str:
    """``postgresql://user@host:port/database`` of a pooled connection, never its password."""
    con = getattr(proxy, "_con", None)
    addr = getattr(con, "_addr", None)
    params = getattr(con, "_params", None)
    user = getattr(params, "user", "") or ""
    database = getattr(params, "database", "") or ""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        host = f"[{host}]" if ":" in host else host
        where = f"{host}:{addr[1]}"
    else:  # a Unix socket path, or unknown
        where = f"[{addr}]" if addr else "?"
    return f"postgresql://{user + '@' if user else ''}{where}/{database}"


def _capacity(pool: Any) -> tuple[int | None, bool]:
    size = getattr(pool, "_maxsize", None)
    return (size if isinstance(size, int) and size > 0 else None), True


class AsyncpgAdapter(Adapter):
    """Tracks ``asyncpg.pool.Pool``."""

    name = "asyncpg"
    module = "asyncpg"
    hint = HINT

    def advise(self, lease: Lease) -> str:
        return HINT

    def patch(self, ledger: Ledger, patcher: Patcher) -> None:
        from asyncpg import pool as pool_mod

        cls = pool_mod.Pool
        expect_signature(cls, "_acquire", ("self", "timeout"))
        expect_signature(cls, "release", ("self", "connection", "timeout"))
        known, record = ledger.known_record, ledger.pool_record
        name = self.name
        # id(proxy) -> its lease; the pool's holder keeps the proxy alive while it is out.
        open_leases: dict[int, Lease] = {}

        def make_acquire(original: Callable[..., Any]) -> Callable[..., Any]:
            async def _acquire(self: Any, *args: Any, **kwargs: Any) -> Any:
                rec = known(self)
                if rec is not None and rec.capacity is not None and rec.leased >= rec.capacity:
                    ledger.note_wait(rec)
                proxy = await original(self, *args, **kwargs)
                try:
                    if rec is None:
                        rec = record(
                            self, name, lambda: proxy_origin(proxy), lambda: _capacity(self)
                        )
                    open_leases[id(proxy)] = ledger.lease(rec, None)
                except Exception as exc:  # never break the pool; reported at the end
                    ledger.internal_error(name, "recording an acquire()", exc)
                return proxy

            return _acquire

        def make_release(original: Callable[..., Any]) -> Callable[..., Any]:
            async def release(self: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return await original(self, connection, *args, **kwargs)
                finally:
                    lease = open_leases.pop(id(connection), None)
                    if lease is not None:
                        ledger.release_lease(lease)

            return release

        patcher.wrap(cls, "_acquire", make_acquire)
        patcher.wrap(cls, "release", make_release)
