"""SQLAlchemy 2.x, sync and asyncio: a lease is a pool checkout, a return its checkin.

Returns come from SQLAlchemy's public pool events, listened to on the ``Pool`` class so
that every pool class (``QueuePool``, ``AsyncAdaptedQueuePool``, ``NullPool``,
``StaticPool``, ``SingletonThreadPool``...) and every pool already made is covered:

- ``checkin`` fires when the connection is back in the pool: from ``close()``, and also
  from the finaliser SQLAlchemy puts on a fairy nobody closed ("non-checked-in
  connection"). That second path is a leak the pool papered over: the lease is kept
  open for its owner's verdict, and the report says the garbage collector returned it;
- ``detach`` fires for ``connection.detach()`` (on purpose: not a leak), and for the
  asyncio dialects' garbage-collection path, which detaches instead of checking in.

Checkouts come from a wrapper of the public ``Pool.connect()`` (and of the one pool
class that defines its own, ``SingletonThreadPool``), not from the ``checkout`` event,
for speed: a ``checkout`` listener costs SQLAlchemy its fast path (a pool with one runs
its reconnect-on-checkout loop on every checkout) plus the event's dispatch, about as
much as the whole lease it records (benchmarks/RESULTS-db.md). The wrapper counts
exactly what the event would: a fairy's first checkout (``_counter == 1``), not a
nested re-checkout of the same connection.

Pool events carry no URL, so ``Engine.__init__`` is wrapped only to learn which engine
(and so which URL) a pool belongs to. Finalisers run inside any allocation, maybe while
the ledger's lock is held by this very thread: the garbage-collection path therefore
takes no lock (the lease is only marked) and is settled at the next event.
"""

from __future__ import annotations

import collections
import gc
import weakref
from collections.abc import Callable
from typing import Any

from pytest_connleak._core.adapters import Adapter, Incompatible, Patcher, expect_signature
from pytest_connleak._core.ledger import Lease, Ledger, PoolRecord

__all__ = ["GC_RETURNED", "SqlalchemyAdapter", "url_origin"]

SYNC_HINT = (
    "close the connection or session: `with engine.connect() as conn:`, "
    "`with Session(engine) as session:` (or call .close())"
)
ASYNC_HINT = (
    "close the connection or session: `async with engine.connect() as conn:`, "
    "`async with AsyncSession(engine) as session:` (or await .close())"
)
GC_TEXT = (
    "the connection was never closed: it went back to the pool only when the garbage "
    "collector finalised its holder (SQLAlchemy's non-checked-in connection path)"
)

#: ``Lease.state`` of a checkout that only the garbage collector gave back.
GC_RETURNED = "returned by the garbage collector"


def url_origin(url: Any) -> str:
    """``backend://user@host:port/database`` of a SQLAlchemy URL, never its password.

    SQLite has no host: ``sqlite:///path/to/file.db`` (``sqlite://`` in memory).
    """
    backend = url.get_backend_name()
    database = url.database or ""
    if url.host is None:  # file databases
        return f"{backend}:///{database}" if database else f"{backend}://"
    user = f"{url.username}@" if url.username else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = f":{url.port}" if url.port else ""
    return f"{backend}://{user}{host}{port}/{database}"


def _capacity(pool: Any) -> tuple[int | None, bool]:
    # QueuePool and AsyncAdaptedQueuePool: size + overflow, waiting up to pool_timeout;
    # a negative overflow is unbounded. The other pool classes never make a caller wait.
    size, overflow = getattr(pool, "_pool", None), getattr(pool, "_max_overflow", None)
    maxsize = getattr(size, "maxsize", None)
    if isinstance(maxsize, int) and isinstance(overflow, int):
        if overflow < 0 or maxsize <= 0:
            return None, True
        return maxsize + overflow, True
    return None, False


class SqlalchemyAdapter(Adapter):
    """Tracks every SQLAlchemy ``Pool`` through its checkout, checkin and detach events."""

    name = "sqlalchemy"
    module = "sqlalchemy"
    hint = SYNC_HINT

    def __init__(self) -> None:
        self._async_pools: weakref.WeakSet[PoolRecord] = weakref.WeakSet()

    def advise(self, lease: Lease) -> str:
        hint = ASYNC_HINT if lease.pool in self._async_pools else SYNC_HINT
        if lease.state == GC_RETURNED or lease.holder_collected:
            return f"{GC_TEXT}; {hint}"
        return hint

    def patch(self, ledger: Ledger, patcher: Patcher) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.pool import Pool
        from sqlalchemy.pool.base import _ConnectionFairy

        slots = getattr(_ConnectionFairy, "__slots__", ())
        for slot in ("_pool", "_counter", "_connection_record", "dbapi_connection"):
            if slot not in slots:
                raise Incompatible(f"sqlalchemy.pool.base._ConnectionFairy has no {slot}")
        # Pool.connect() and every pool class that defines its own (SingletonThreadPool).
        connect_owners = [Pool, *_subclasses_defining(Pool, "connect")]
        for owner in connect_owners:
            expect_signature(owner, "connect", ("self",))
        if "url" not in getattr(Engine, "__annotations__", {}):
            raise Incompatible("sqlalchemy.engine.Engine has no url")
        try:
            from greenlet import getcurrent
        except ImportError:  # no asyncio support installed: no greenlets to look through
            getcurrent = None

        engines: weakref.WeakSet[Any] = weakref.WeakSet()
        # id(connection record) -> its open lease(s). Records live as long as their pool
        # keeps them; every checkout of one is balanced by one checkin or detach, except:
        # StaticPool and SingletonThreadPool hand the same record to several holders at
        # once, and check it in once, at the first close: then every lease of it goes
        # back (a missed leak there is better than a false one).
        open_by_record: dict[int, Lease | list[Lease]] = {}
        # Leases the garbage collector returned, settled outside the finaliser.
        collected: collections.deque[Lease] = collections.deque()
        # Leases of a shared record checked in by a finaliser while their holder lives.
        deferred: collections.deque[Lease] = collections.deque()
        async_pools = self._async_pools

        def origin_of(pool: Any, dbapi_connection: Any) -> str:
            for engine in list(engines):
                if engine.pool is pool:
                    return url_origin(engine.url)
            # An engine made before we were installed: its __dict__ refers to the pool.
            # One scan of the heap, once per such pool.
            # (Python 3.11+ keeps attributes inline: the referrer is the engine itself.)
            for referrer in gc.get_referrers(pool):
                if isinstance(referrer, dict):
                    url = referrer.get("url") if referrer.get("pool") is pool else None
                elif isinstance(referrer, Engine) and referrer.pool is pool:
                    url = referrer.url
                else:
                    continue
                if hasattr(url, "get_backend_name"):
                    return url_origin(url)
            # A pool made without an engine (or by a later engine.dispose()): what the
            # driver connection says, never its password.
            info = getattr(dbapi_connection, "info", None)
            host, port = getattr(info, "host", None), getattr(info, "port", None)
            if isinstance(host, str) and host:
                user = getattr(info, "user", "") or ""
                dbname = getattr(info, "dbname", "") or ""
                return f"postgresql://{user + '@' if user else ''}{host}:{port}/{dbname}"
            return f"sqlalchemy://{type(pool).__name__}"

        def settle() -> None:
            # Outside any finaliser: give back the slots of judged collected leases.
            while deferred:
                ledger.release_lease(deferred.popleft())
            for _ in range(len(collected)):
                lease = collected.popleft()
                if lease.owner is None:
                    ledger.release_lease(lease)
                else:
                    collected.append(lease)

        def site_in_greenlet(lease: Lease) -> None:
            # asyncio: the checkout runs in a greenlet whose stack ends at SQLAlchemy's
            # greenlet_spawn; the user's frame is on the parent's (suspended) stack.
            if getcurrent is None or lease.site.lineno:  # found without the parent's help
                return
            parent = getcurrent().parent
            frame = getattr(parent, "gr_frame", None)
            if frame is not None:
                # The lease builds its site lazily from the walk it made; this one is better.
                lease._site = ledger.capture_site(frame)

        # The request path, shaped like the HTTP lease's: one dict lookup by id(pool) and
        # the ledger's own lease/return; the pool's record (origin, capacity) is made once.
        known_pool = ledger._pools.get  # the ledger never rebinds _pools
        lease_of, give_back = ledger.lease, ledger.release_lease

        def first_sight(pool: Any, dbapi_connection: Any) -> PoolRecord:
            rec = ledger.pool_record(
                pool,
                "sqlalchemy",
                lambda: origin_of(pool, dbapi_connection),
                lambda: _capacity(pool),
            )
            if pool._dialect.is_async:
                async_pools.add(rec)
            return rec

        def checked_out(pool: Any, fairy: Any) -> None:
            try:
                if collected or deferred:
                    settle()
                rec = known_pool(id(pool))
                if rec is None:
                    rec = first_sight(pool, fairy.dbapi_connection)
                if rec.leased >= rec.wait_at:  # a bounded pool was full: this one waited
                    ledger.note_wait(rec)
                # The fairy is what the caller holds: the lease refers to it weakly, so
                # that a fairy the garbage collector took shows as the lease's holder gone.
                lease = lease_of(rec, fairy)
                if pool._dialect.is_async:
                    site_in_greenlet(lease)
                key = id(fairy._connection_record)
                held = open_by_record.setdefault(key, lease)
                if held is not lease:  # a shared record (see above)
                    if isinstance(held, list):
                        held.append(lease)
                    else:
                        open_by_record[key] = [held, lease]
            except Exception as exc:  # never break a checkout; reported at the end
                ledger.internal_error("sqlalchemy", "recording a checkout", exc)

        def make_connect(original: Callable[..., Any]) -> Callable[..., Any]:
            def connect(self: Any) -> Any:
                fairy = original(self)
                try:
                    # The checkout event's own test: the fairy's first checkout, not a
                    # nested re-checkout of the same connection (SingletonThreadPool).
                    if fairy._counter == 1:
                        checked_out(self, fairy)
                except Exception as exc:  # a subclass's connect() returned something else
                    ledger.internal_error("sqlalchemy", "recording a checkout", exc)
                return fairy

            return connect

        def returned_shared(leases: list[Lease]) -> None:
            # A holder already collected means this is SQLAlchemy's finaliser, maybe inside
            # one of our locked sections: take no lock, mark and settle at the next event.
            in_finaliser = any(lease.holder_collected for lease in leases)
            for lease in leases:
                if lease.holder_collected:
                    lease.state = GC_RETURNED
                    collected.append(lease)
                elif in_finaliser:
                    deferred.append(lease)
                else:
                    give_back(lease)
            if not in_finaliser and (collected or deferred):
                settle()

        def on_checkin(dbapi_connection: Any, record: Any) -> None:
            try:
                held = open_by_record.pop(id(record), None)
                if held is None:
                    return
                if isinstance(held, list):
                    returned_shared(held)
                    return
                ref = held._conn_ref
                if ref is not None and ref() is None:
                    # The fairy is gone: SQLAlchemy's finaliser (see returned_shared).
                    held.state = GC_RETURNED
                    collected.append(held)
                    return
                give_back(held)
                if collected or deferred:
                    settle()
            except Exception as exc:  # never break a checkin; reported at the end
                ledger.internal_error("sqlalchemy", "recording a checkin", exc)

        on_detach = on_checkin  # a detach on purpose gives the slot up: not a leak

        def make_init(original: Callable[..., Any]) -> Callable[..., Any]:
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                original(self, *args, **kwargs)
                engines.add(self)

            return __init__

        listeners = (("checkin", on_checkin), ("detach", on_detach))
        for name, fn in listeners:
            event.listen(Pool, name, fn)

        def unlisten() -> None:
            for name, fn in listeners:
                if event.contains(Pool, name, fn):
                    event.remove(Pool, name, fn)

        patcher.on_restore(unlisten)
        patcher.wrap(Engine, "__init__", make_init)
        for owner in connect_owners:
            patcher.wrap(owner, "connect", make_connect)


def _subclasses_defining(cls: type, name: str) -> list[type]:
    """Every subclass of *cls*, however deep, whose own ``__dict__`` defines *name*."""
    found: list[type] = []
    todo: list[type] = list(cls.__subclasses__())
    seen: set[type] = set()
    while todo:
        sub = todo.pop()
        if sub in seen:
            continue
        seen.add(sub)
        if name in sub.__dict__:
            found.append(sub)
        todo.extend(sub.__subclasses__())
    return found
