"""asyncpg: a lease is ``Pool._acquire()``, a return is ``Pool.release()``.

``pool.acquire()`` returns a context that awaits ``_acquire`` (awaited directly or
entered with ``async with``), and leaving ``async with pool.acquire()`` calls
``release``; so do the pool's shortcuts (``pool.fetch()``, ``pool.execute()``). A
connection proxy is held by its pool holder while it is out, so a dropped one is never
collected and its slot never comes back.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pytest_connleak._core.adapters import Adapter, Patcher, expect_signature, wait_counter
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
        record = ledger.pool_record
        # The request path, shaped like urllib3's: known_record() inlined (the ledger never
        # rebinds _pools), the pool's record (origin, capacity) made once, on first sight,
        # and the exact signatures rather than *args/**kwargs.
        known_pool = ledger._pools.get
        lease_of, give_back = ledger.lease, ledger.release_lease
        failed = ledger.internal_error
        name = self.name
        # id(proxy) -> its lease; the pool's holder keeps the proxy alive while it is out.
        open_leases: dict[int, Lease] = {}
        release_timeout = inspect.signature(cls.release).parameters["timeout"].default

        note_wait = wait_counter(ledger, name)

        def make_acquire(original: Callable[..., Any]) -> Callable[..., Any]:
            async def _acquire(self: Any, timeout: Any) -> Any:
                # Before the original only what cannot fail: a dict look-up and a compare.
                rec = known_pool(id(self))
                if rec is not None and rec.leased >= rec.wait_at:
                    note_wait(rec)
                proxy = await original(self, timeout)
                try:
                    if rec is None:
                        rec = record(
                            self, name, lambda: proxy_origin(proxy), lambda: _capacity(self)
                        )
                    open_leases[id(proxy)] = lease_of(rec, None)
                except Exception as exc:  # never break the pool; reported at the end
                    failed(name, "recording an acquire()", exc)
                return proxy

            return _acquire

        def make_release(original: Callable[..., Any]) -> Callable[..., Any]:
            async def release(self: Any, connection: Any, *, timeout: Any = release_timeout) -> Any:
                try:
                    return await original(self, connection, timeout=timeout)
                finally:
                    lease = open_leases.pop(id(connection), None)
                    if lease is not None:
                        try:
                            give_back(lease)
                        except Exception as exc:
                            failed(name, "recording a release()", exc)

            return release

        patcher.wrap(cls, "_acquire", make_acquire)
        patcher.wrap(cls, "release", make_release)
