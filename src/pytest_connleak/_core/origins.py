"""Pool records per (pool, origin), for clients whose one pool serves every origin.

urllib3 keeps one pool per origin, so the ledger keys its records by pool. httpcore's
``ConnectionPool`` and aiohttp's ``BaseConnector`` serve every host through one object;
a report must still name ``http://127.0.0.1:PORT``, so their adapters take one record per
origin through :class:`OriginPools`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

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


_Entry = tuple[_OriginKey, PoolRecord]


class OriginPools:
    """Hands out one :class:`PoolRecord` per (pool object, origin string).

    The records are created through :meth:`Ledger.pool_record`, so the ledger sees them
    like any other pool; nothing here outlives the pool object.
    """

    def __init__(self, ledger: Ledger, client: str) -> None:
        self._ledger = ledger
        self._client = client
        self._lock = threading.Lock()
        # pool -> origin -> (the ledger's key, its record); weak on the pool only.
        self._pools: weakref.WeakKeyDictionary[object, dict[str, _Entry]] = (
            weakref.WeakKeyDictionary()
        )
        self._records: weakref.WeakSet[PoolRecord] = weakref.WeakSet()

    def get(
        self, pool: object, origin: str, capacity: Callable[[], tuple[int | None, bool]]
    ) -> PoolRecord:
        """The record of *origin* in *pool*, created on first sight."""
        with self._lock:
            origins = self._pools.get(pool)
            if origins is None:
                origins = self._pools[pool] = {}
            entry = origins.get(origin)
            if entry is None:
                key = _OriginKey()
                rec = self._ledger.pool_record(key, self._client, lambda: origin, capacity)
                entry = origins[origin] = (key, rec)
                self._records.add(rec)
            return entry[1]

    def find(self, pool: object, origin: str) -> PoolRecord | None:
        """The record of *origin* in *pool* if one was ever created; never creates one."""
        with self._lock:
            entry = self._pools.get(pool, {}).get(origin)
            return entry[1] if entry is not None else None

    def owns(self, rec: PoolRecord) -> bool:
        """True when *rec* was handed out by this object."""
        with self._lock:
            return rec in self._records

    def records(self, pool: object) -> list[PoolRecord]:
        """Every record of *pool*."""
        with self._lock:
            return [rec for _, rec in self._pools.get(pool, {}).values()]

    def leased(self, pool: object) -> int:
        """Slots of *pool* leased right now, over all its origins."""
        return sum(rec.leased for rec in self.records(pool))

    def open_leases(self, pool: object) -> list[Lease]:
        """The leases of *pool* still open, over all its origins."""
        # A copy of each list: the ledger mutates them under its own lock.
        return [lease for rec in self.records(pool) for lease in list(rec.leases)]
