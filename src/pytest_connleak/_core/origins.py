"""Pool records per (pool, origin), for clients whose one pool serves every origin.

urllib3 keeps one pool per origin, so the ledger keys its records by pool. httpcore's
``ConnectionPool`` and aiohttp's ``BaseConnector`` serve every host through one object;
a report must still name ``http://127.0.0.1:PORT``, so their adapters take one record per
origin through :class:`OriginPools`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from .ledger import Lease, Ledger, PoolRecord

__all__ = ["OriginPools", "format_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def format_origin(scheme: str, host: str, port: int | None) -> str:
    """``scheme://host:port``, with the default port filled in and IPv6 hosts bracketed."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS.get(scheme, 0)}"


class _OriginKey:
    """The ledger's weak key for one (pool, origin); it lives exactly as long as the pool."""

    __slots__ = ("__weakref__",)


class _Pool:
    """Everything kept for one pool object: its records by origin, and their shared count."""

    __slots__ = ("group", "keys", "records", "ref")

    def __init__(self) -> None:
        self.records: dict[Hashable, PoolRecord] = {}
        # The ledger's key of each record: it must live as long as the pool, no longer.
        self.keys: list[_OriginKey] = []
        # [leased over every origin, the pool's capacity]; the ledger updates the count.
        self.group: list[Any] = [0, None]
        self.ref: Callable[[], object] | None = None


class OriginPools:
    """Hands out one :class:`PoolRecord` per (pool object, origin).

    *key* is any hashable that identifies an origin cheaply (the raw scheme, host and port
    a request carries); the origin's text is made once, when its record is created.
    Look-ups (:meth:`find`, and :meth:`get` for a known origin) take no lock: they are two
    dict reads, safe inside a finalizer that runs in the middle of our own code. The
    records are created through :meth:`Ledger.pool_record`, so the ledger sees them like
    any other pool; nothing here outlives the pool object.
    """

    def __init__(self, ledger: Ledger, client: str) -> None:
        self._ledger = ledger
        self._client = client
        # Reentrant: creating a record allocates, and a finalizer may run in the middle.
        self._lock = threading.RLock()
        # id(pool) -> its records; a weak reference callback drops the entry when the
        # pool dies, before its id can be reused.
        self._pools: dict[int, _Pool] = {}
        #: ``id(pool)`` -> what is kept for it (``records`` by origin key, ``group``): for an
        #: adapter's request path, which reads it with ``.get`` and no method call. Read
        #: only; never rebound.
        self.entries = self._pools
        self._records: weakref.WeakSet[PoolRecord] = weakref.WeakSet()

    def find(self, pool: object, key: Hashable) -> PoolRecord | None:
        """The record of *key* in *pool* if one was ever created; never creates one."""
        entry = self._pools.get(id(pool))
        return entry.records.get(key) if entry is not None else None

    def group(self, pool: object) -> list[Any] | None:
        """``[leased, capacity]`` of *pool* over all its origins; None if it never leased."""
        entry = self._pools.get(id(pool))
        return entry.group if entry is not None else None

    def get(
        self,
        pool: object,
        key: Hashable,
        origin: Callable[[], str],
        capacity: Callable[[], tuple[int | None, bool]],
    ) -> PoolRecord:
        """The record of *key* in *pool*, created on first sight (*origin* names it)."""
        entry = self._pools.get(id(pool))
        if entry is not None:
            rec = entry.records.get(key)
            if rec is not None:
                return rec
        return self._create(pool, key, origin, capacity)

    def _create(
        self,
        pool: object,
        key: Hashable,
        origin: Callable[[], str],
        capacity: Callable[[], tuple[int | None, bool]],
    ) -> PoolRecord:
        text = origin()
        with self._lock:
            pool_id = id(pool)
            entry = self._pools.get(pool_id)
            if entry is None:
                entry = _Pool()
                pools = self._pools

                def gone(_: object, pool_id: int = pool_id, entry: _Pool = entry) -> None:
                    # Lock-free and atomic under the GIL: it may run inside any section.
                    if pools.get(pool_id) is entry:
                        del pools[pool_id]

                try:
                    entry.ref = weakref.ref(pool, gone)
                except TypeError:  # no __weakref__: keep it, so its id is never reused
                    entry.ref = lambda: pool
                pools[pool_id] = entry
            rec = entry.records.get(key)
            if rec is None:
                ledger_key = _OriginKey()
                rec = self._ledger.pool_record(ledger_key, self._client, lambda: text, capacity)
                rec.group = entry.group
                if entry.group[1] is None:
                    entry.group[1] = rec.capacity
                entry.keys.append(ledger_key)
                entry.records[key] = rec
                self._records.add(rec)
            return rec

    def owns(self, rec: PoolRecord) -> bool:
        """True when *rec* was handed out by this object."""
        return rec in self._records

    def records(self, pool: object) -> list[PoolRecord]:
        """Every record of *pool*."""
        entry = self._pools.get(id(pool))
        return list(entry.records.values()) if entry is not None else []

    def leased(self, pool: object) -> int:
        """Slots of *pool* leased right now, over all its origins."""
        entry = self._pools.get(id(pool))
        return entry.group[0] if entry is not None else 0

    def open_leases(self, pool: object) -> list[Lease]:
        """The leases of *pool* still open, over all its origins."""
        # A copy of each list: the ledger mutates them.
        return [lease for rec in self.records(pool) for lease in list(rec.leases)]
