"""redis-py 5+, sync and ``redis.asyncio``: a lease is ``get_connection()``, a return
is ``release()``.

Every command leases a connection for its duration (blocking commands such as ``BLPOP``
hold it until they answer); ``pubsub()`` leases one at its first ``subscribe`` and keeps
it until ``close()``/``reset()``; ``monitor()`` keeps one until its ``with`` block ends;
a ``single_connection_client`` keeps one until ``close()``. The sync ``PubSub``,
``Pipeline`` and ``Redis`` give theirs back from ``__del__`` when nobody closed them:
that is a leak the garbage collector papered over, and the report says so. Such a
return runs inside a finaliser, maybe while the ledger's lock is held by this very
thread, so it takes no lock: the lease is marked and settled at the next lease.

``ConnectionPool`` and ``BlockingConnectionPool`` each define both methods; a subclass
that calls its parent's is counted once, by the outermost of our wrappers.
"""

from __future__ import annotations

import collections
import threading
import weakref
from collections.abc import Callable
from typing import Any

from pytest_connleak._core.adapters import Adapter, Incompatible, Patcher, wait_counter
from pytest_connleak._core.ledger import Lease, Ledger, PoolRecord

__all__ = ["GC_RETURNED", "RedisAdapter", "pool_origin"]

HINT = (
    "close what holds the connection: `with r.pubsub() as pubsub:` or pubsub.close(), "
    "`with r.monitor() as m:`, `with r.pipeline() as pipe:`, r.close() for a "
    "single_connection_client"
)
ASYNC_HINT = (
    "close what holds the connection: `async with r.pubsub() as pubsub:` or "
    "await pubsub.aclose(), `async with r.pipeline() as pipe:`, await r.aclose() for a "
    "single_connection_client"
)
GC_TEXT = (
    "it was never closed: it went back to the pool only when the garbage collector "
    "finalised its holder"
)

#: ``Lease.state`` of a connection that only a finaliser (``__del__``) gave back.
GC_RETURNED = "returned by the garbage collector"
_UNBOUNDED = 2**31 - 1


def pool_origin(pool: Any) -> str:
    """``redis://user@host:port/db`` of a redis-py pool, never its password."""
    kwargs = getattr(pool, "connection_kwargs", {}) or {}
    db = kwargs.get("db", 0)
    user = kwargs.get("username")
    user = f"{user}@" if user else ""
    path = kwargs.get("path")
    if path:
        return f"redis+unix://{user}{path}?db={db}"
    host = str(kwargs.get("host", "localhost"))
    host = f"[{host}]" if ":" in host else host
    return f"redis://{user}{host}:{kwargs.get('port', 6379)}/{db}"


def _capacity(pool: Any, blocking: bool) -> tuple[int | None, bool]:
    size = getattr(pool, "max_connections", None)
    ok = isinstance(size, int) and 0 < size < _UNBOUNDED
    # ConnectionPool raises "Too many connections" at its limit; the blocking one waits.
    return (size if ok else None), blocking


class RedisAdapter(Adapter):
    """Tracks redis-py's ``ConnectionPool`` and ``BlockingConnectionPool``, sync and async."""

    name = "redis"
    module = "redis"
    hint = HINT

    def __init__(self) -> None:
        self._async_pools: weakref.WeakSet[PoolRecord] = weakref.WeakSet()

    def advise(self, lease: Lease) -> str:
        hint = ASYNC_HINT if lease.pool in self._async_pools else HINT
        if lease.state == GC_RETURNED:
            return f"{GC_TEXT}; {HINT}"
        return hint

    def patch(self, ledger: Ledger, patcher: Patcher) -> None:
        from redis import client as sync_client
        from redis import connection as sync_conn
        from redis.asyncio import connection as async_conn

        record = ledger.pool_record
        name = self.name
        # id(connection) -> its open lease; the pool keeps its connections alive.
        open_leases: dict[int, Lease] = {}
        collected: collections.deque[Lease] = collections.deque()
        # Thread id -> how deep that thread is in our __del__ wrappers; empty unless one is
        # running, so that a release asks one truth test, not a thread-local (whose missing
        # attribute raised, and caught, an AttributeError on every release).
        finalising: dict[int, int] = {}
        get_ident = threading.get_ident
        wrappers: set[Any] = set()

        def settle() -> None:
            for _ in range(len(collected)):
                lease = collected.popleft()
                if lease.owner is None:
                    ledger.release_lease(lease)
                else:
                    collected.append(lease)

        async_pools = self._async_pools
        # The request path, shaped like urllib3's: known_record() inlined (the ledger never
        # rebinds _pools), the pool's record (origin, capacity) made once, on first sight.
        known_pool = ledger._pools.get
        lease_of, give_back = ledger.lease, ledger.release_lease
        failed = ledger.internal_error

        def first_sight(pool: Any, blocking: bool, is_async: bool) -> PoolRecord:
            rec = record(pool, name, lambda: pool_origin(pool), lambda: _capacity(pool, blocking))
            if is_async:
                async_pools.add(rec)
            return rec

        # Only a blocking pool makes a caller wait (wait_at is unreachable for the other,
        # which raises at its limit).
        note_wait = wait_counter(ledger, name)

        def leased(
            pool: Any, rec: PoolRecord | None, conn: Any, blocking: bool, is_async: bool
        ) -> None:
            try:
                if collected:
                    settle()
                if rec is None:
                    rec = first_sight(pool, blocking, is_async)
                open_leases[id(conn)] = lease_of(rec, conn)
            except Exception as exc:  # never break the pool; reported at the end
                failed(name, "recording a get_connection()", exc)

        def returned(conn: Any) -> None:
            try:
                lease = open_leases.pop(id(conn), None)
                if lease is None:
                    return
                if finalising and finalising.get(get_ident()):
                    # Inside __del__: no lock here (see the module's docstring).
                    lease.state = GC_RETURNED
                    collected.append(lease)
                    return
                give_back(lease)
            except Exception as exc:
                failed(name, "recording a release()", exc)

        # A call is counted once, in the most derived of our wrappers it goes through: the
        # wrapper compares what type(self) resolves the method to with itself (inlined on
        # the request path rather than a helper call).

        def make_get(blocking: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            def make(original: Callable[..., Any]) -> Callable[..., Any]:
                def get_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
                    # Before the original only what cannot fail: a dict look-up, a compare.
                    rec = known_pool(id(self))
                    if rec is not None and rec.leased >= rec.wait_at:
                        note_wait(rec)
                    conn = original(self, *args, **kwargs)
                    resolved = getattr(type(self), "get_connection", None)
                    if resolved is get_connection or resolved not in wrappers:
                        leased(self, rec, conn, blocking, False)
                    return conn

                wrappers.add(get_connection)
                return get_connection

            return make

        def make_aget(blocking: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            def make(original: Callable[..., Any]) -> Callable[..., Any]:
                async def get_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
                    rec = known_pool(id(self))
                    if rec is not None and rec.leased >= rec.wait_at:
                        note_wait(rec)
                    conn = await original(self, *args, **kwargs)
                    resolved = getattr(type(self), "get_connection", None)
                    if resolved is get_connection or resolved not in wrappers:
                        leased(self, rec, conn, blocking, True)
                    return conn

                wrappers.add(get_connection)
                return get_connection

            return make

        def make_release(original: Callable[..., Any]) -> Callable[..., Any]:
            def release(self: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return original(self, connection, *args, **kwargs)
                finally:
                    resolved = getattr(type(self), "release", None)
                    if resolved is release or resolved not in wrappers:
                        returned(connection)

            wrappers.add(release)
            return release

        def make_arelease(original: Callable[..., Any]) -> Callable[..., Any]:
            async def release(self: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return await original(self, connection, *args, **kwargs)
                finally:
                    resolved = getattr(type(self), "release", None)
                    if resolved is release or resolved not in wrappers:
                        returned(connection)

            wrappers.add(release)
            return release

        def make_del(original: Callable[..., Any]) -> Callable[..., Any]:
            def __del__(self: Any) -> None:
                # Each thread touches only its own key: atomic dict operations, no lock.
                me = get_ident()
                finalising[me] = finalising.get(me, 0) + 1
                try:
                    original(self)
                finally:
                    depth = finalising.get(me, 1) - 1
                    if depth:
                        finalising[me] = depth
                    else:
                        finalising.pop(me, None)

            return __del__

        for module, make_g, make_r in (
            (sync_conn, make_get, make_release),
            (async_conn, make_aget, make_arelease),
        ):
            for cls_name, blocking in (("ConnectionPool", False), ("BlockingConnectionPool", True)):
                cls = getattr(module, cls_name)
                for attr in ("get_connection", "release"):
                    if attr not in cls.__dict__:
                        raise Incompatible(f"{module.__name__}.{cls_name}.{attr} does not exist")
                patcher.wrap(cls, "get_connection", make_g(blocking))
                patcher.wrap(cls, "release", make_r)
        for cls_name in ("PubSub", "Pipeline", "Redis", "Monitor"):
            cls = getattr(sync_client, cls_name, None)
            if cls is not None and "__del__" in cls.__dict__:
                patcher.wrap(cls, "__del__", make_del)
