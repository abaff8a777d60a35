"""The lease ledger: which pooled connections are out right now, and who took them.

This module knows nothing of pytest. Client adapters call :meth:`Ledger.lease` when a
pool hands out a connection slot and :meth:`Ledger.release` when the slot comes back;
the pytest glue (or :func:`no_leaks`) sets :attr:`Ledger.owner` and later asks which
leases an owner still holds.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any

__all__ = ["Lease", "Ledger", "PoolRecord", "PoolUsage", "Site", "ledger"]


@dataclass(frozen=True)
class Site:
    """Where user code asked for a connection: the first frame outside the HTTP libraries.

    ``library`` names the outermost HTTP library frame below it, which is the library the
    user called (``"requests"`` rather than ``"urllib3"``); it picks the hint in a report.
    """

    filename: str
    lineno: int
    function: str
    module: str
    library: str

    def path(self, relative_to: str | None = None) -> str:
        """The file name, relative to *relative_to* when it lies inside it."""
        if relative_to:
            try:
                rel = os.path.relpath(self.filename, relative_to)
            except ValueError:  # another drive on Windows
                return self.filename
            if not rel.startswith(os.pardir):
                return rel
        return self.filename

    def format(self, relative_to: str | None = None) -> str:
        """Return ``path:line in function``, the path relative to *relative_to* if inside it."""
        return f"{self.path(relative_to)}:{self.lineno} in {self.function}"


UNKNOWN_SITE = Site("<unknown>", 0, "<unknown>", "<unknown>", "")


class PoolRecord:
    """What the ledger knows of one pool: its origin, capacity and lease counters.

    ``capacity`` is the most connections the pool keeps (``None`` when unbounded or
    unknown) and ``block`` whether a request waits for a free one when all are leased;
    ``leased`` is how many are out now, ``high_water`` the most out at once since the
    pool was first seen, ``total_leases`` how many were handed out and ``waits`` how many
    requests found every connection leased and had to wait. ``peak`` is the most out at
    once in the ledger's current usage window (see :meth:`Ledger.take_usage`).
    """

    __slots__ = (
        "__weakref__",
        "_base_leases",
        "_base_waits",
        "_pool_ref",
        "_window",
        "block",
        "capacity",
        "client",
        "high_water",
        "leased",
        "leases",
        "origin",
        "peak",
        "total_leases",
        "waits",
    )

    def __init__(self, client: str, origin: str, capacity: int | None, block: bool) -> None:
        self.client = client
        self.origin = origin
        self.capacity = capacity
        self.block = block
        self.leases: list[Lease] = []
        self.leased = 0
        self.high_water = 0
        self.total_leases = 0
        self.waits = 0
        self.peak = 0
        # The usage window this record was last counted in, and its counters then.
        self._window = -1
        self._base_leases = 0
        self._base_waits = 0
        self._pool_ref: Callable[[], Any] | None = None

    @property
    def pool_object(self) -> Any:
        """The pool this record describes while it is alive, else ``None``."""
        ref = self._pool_ref
        return ref() if ref is not None else None

    def usage(self) -> PoolUsage:
        """What this pool did in the ledger's current usage window."""
        return PoolUsage(
            self.client,
            self.origin,
            self.capacity,
            self.block,
            self.total_leases - self._base_leases,
            self.peak,
            self.waits - self._base_waits,
        )


@dataclass(frozen=True)
class PoolUsage:
    """What one pool (or several of one origin and capacity) did during a usage window.

    ``leases`` is how many connections were handed out, ``peak`` the most leased at once
    (counting those already out when the window opened) and ``waits`` how many requests
    had to wait for a free connection.
    """

    client: str
    origin: str
    capacity: int | None
    block: bool
    leases: int
    peak: int
    waits: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-ready; ``PoolUsage(**d)`` reads it back)."""
        # By hand: dataclasses.asdict deep-copies, and this runs once per test.
        return {
            "client": self.client,
            "origin": self.origin,
            "capacity": self.capacity,
            "block": self.block,
            "leases": self.leases,
            "peak": self.peak,
            "waits": self.waits,
        }

    def merge(self, other: PoolUsage) -> PoolUsage:
        """Two pools' (or windows') usage as one row: counts add up, the peak is the larger.

        Peaks are not added: each pool has its own capacity, and the question a peak answers
        is how close one pool came to it.
        """
        return PoolUsage(
            self.client,
            self.origin,
            self.capacity,
            self.block,
            self.leases + other.leases,
            max(self.peak, other.peak),
            self.waits + other.waits,
        )


class Lease:
    """One connection slot taken from a pool and not yet given back."""

    __slots__ = (
        "__weakref__",
        "_conn_ref",
        "_holder_ref",
        "owner",
        "pool",
        "site",
        "state",
        "thread_name",
    )

    def __init__(
        self,
        pool: PoolRecord,
        conn: object | None,
        site: Site,
        owner: Hashable | None,
        thread_name: str,
    ) -> None:
        self.pool = pool
        self.site = site
        self.owner = owner
        self.thread_name = thread_name
        #: ``"leased"``, or what an adapter saw happen to it since (``"closed"``).
        self.state = "leased"
        # A weak reference only: holding the connection would keep its socket open and
        # change what the code under test sees (a dropped response must still close it).
        self._conn_ref: Callable[[], object | None] | None = None
        if conn is not None:
            # try/except rather than contextlib.suppress: this runs on every request.
            try:  # noqa: SIM105
                self._conn_ref = weakref.ref(conn)
            except TypeError:  # objects with __slots__ and no __weakref__: remember nothing
                pass
        self._holder_ref: Callable[[], object | None] | None = None

    @property
    def origin(self) -> str:
        """The pool's origin, ``scheme://host:port``."""
        return self.pool.origin

    @property
    def client(self) -> str:
        """The adapter that recorded the lease (``urllib3``, ``httpcore``, ``aiohttp``)."""
        return self.pool.client

    @property
    def connection(self) -> object | None:
        """The leased connection object while it is alive, else ``None``."""
        return self._conn_ref() if self._conn_ref is not None else None

    @property
    def connection_collected(self) -> bool:
        """True when the connection object was leased and has since been garbage-collected."""
        return self._conn_ref is not None and self._conn_ref() is None

    def hold(self, holder: object) -> None:
        """Remember, weakly, the response object that holds this lease."""
        self._holder_ref = _weak(holder)

    @property
    def holder_collected(self) -> bool:
        """True when the remembered response (else the connection) was garbage-collected."""
        if self._holder_ref is not None:
            return self._holder_ref() is None
        return self.connection_collected

    def __repr__(self) -> str:
        return f"<Lease {self.origin} at {self.site.format()} owner={self.owner!r}>"


def _weak(obj: object | None) -> Callable[[], object | None] | None:
    if obj is None:
        return None
    try:
        return weakref.ref(obj)
    except TypeError:  # objects with __slots__ and no __weakref__: remember nothing
        return None


def _library_dirs(packages: Iterable[str]) -> dict[str, str]:
    """Map each installed package's directory to its name, without importing it.

    A plain module (``my_sdk.py``) maps its own file, matched whole.
    """
    dirs: dict[str, str] = {}
    for name in packages:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations is None:
            if spec.has_location and spec.origin:
                dirs[os.path.abspath(spec.origin)] = name
            continue
        for location in spec.submodule_search_locations:
            dirs[os.path.abspath(location) + os.sep] = name
    return dirs


# Frames in these stdlib modules sit between user code and a client library
# (``with client.stream(...)``, tasks, executors) and are never the lease site.
_STDLIB_GLUE = ("contextlib", "functools", "asyncio", "concurrent", "threading", "selectors")


class Ledger:
    """Thread-safe record of open leases, per pool, with the owner that took each.

    ``owner`` is whatever the caller uses to attribute leases (a test item, a fixture, a
    ``no_leaks()`` block); it is process-wide, not per thread, so that leases made by
    threads a test starts are the test's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, Lease] = {}
        # Keyed by id(pool): a dict lookup by int is the cheapest thing on the request path.
        # The pool's weak reference callback removes its entry before the id can be reused.
        self._pools: dict[int, PoolRecord] = {}
        self._all_pools: list[weakref.ref[PoolRecord]] = []
        self._prune_at = 64
        # Usage windows (take_usage): records counted in the open window, and what pools
        # that died during it did. Dead pools arrive through ``_dead``, appended to by weak
        # reference callbacks, which may run inside our locked sections and so never lock.
        self._window = 0
        self._touched: dict[int, PoolRecord] = {}
        self._retired: dict[tuple[str, str, int | None, bool], PoolUsage] = {}
        self._dead: list[PoolRecord] = []
        # The current thread's name, cached: current_thread().name costs more than a lease.
        self._thread = threading.local()
        self._frame_cache: dict[str, str | None] = {}
        self._sites: dict[tuple[str, int, str, str], Site] = {}
        self._library_prefixes: dict[str, str] = {}
        self.owner: Hashable | None = None

    # -- configuration -------------------------------------------------------------

    def add_boundary(self, *module_names: str) -> None:
        """Stop the lease-site walk at frames of these packages (the test runner)."""
        with self._lock:
            for prefix in _library_dirs(module_names):
                self._library_prefixes[prefix] = _BOUNDARY
            self._frame_cache.clear()
            self._sites.clear()

    def add_library(self, *module_names: str) -> None:
        """Treat frames from these imported packages as library code, not lease sites."""
        with self._lock:
            self._library_prefixes.update(_library_dirs(module_names))
            self._frame_cache.clear()
            self._sites.clear()

    def remove_library(self, *module_names: str) -> None:
        """Forget packages given to :meth:`add_library` (a run's own list, at its end)."""
        with self._lock:
            for prefix in _library_dirs(module_names):
                self._library_prefixes.pop(prefix, None)
            self._frame_cache.clear()
            self._sites.clear()

    # -- the request path ----------------------------------------------------------

    def known_record(self, pool: object) -> PoolRecord | None:
        """The record of *pool* if it ever leased a connection while we watched, else None.

        The adapters' fast path: one dict lookup by ``id(pool)``.
        """
        return self._pools.get(id(pool))

    def pool_record(
        self,
        pool: Any,
        client: str,
        origin: Callable[[], str],
        capacity: Callable[[], tuple[int | None, bool]],
    ) -> PoolRecord:
        """Return the record for *pool*, creating it on first sight."""
        # By id, so that unhashable pool subclasses (an __eq__ without __hash__) work too.
        key = id(pool)
        rec = self._pools.get(key)
        if rec is None:
            size, block = capacity()
            rec = PoolRecord(client, origin(), size, block)
            pools, dead = self._pools, self._dead

            def gone(_: object, key: int = key, rec: PoolRecord = rec) -> None:
                # Atomic under the GIL and lock-free: this can run inside any locked section.
                if pools.get(key) is rec:
                    del pools[key]
                dead.append(rec)

            with self._lock:
                existing = self._pools.get(key)
                if existing is not None:
                    return existing
                try:
                    rec._pool_ref = weakref.ref(pool, gone)
                except TypeError:
                    # A pool class with __slots__ and no __weakref__ (rare): hold the pool
                    # for the whole run, so that its id is never reused by another object.
                    rec._pool_ref = lambda: pool
                self._pools[key] = rec
                self._all_pools.append(weakref.ref(rec))
                self._reap()
        return rec

    def lease(self, rec: PoolRecord, conn: object | None) -> Lease:
        """Record that *rec*'s pool handed out a slot (holding *conn*, if known)."""
        try:
            thread = self._thread.name
        except AttributeError:  # this thread's first lease
            thread = self._thread.name = threading.current_thread().name
        lease = Lease(rec, conn, self.capture_site(), self.owner, thread)
        with self._lock:
            if rec._window != self._window:
                self._touch(rec)
            self._open[id(lease)] = lease
            rec.leases.append(lease)
            leased = rec.leased = rec.leased + 1
            rec.total_leases += 1
            if leased > rec.high_water:
                rec.high_water = leased
            if leased > rec.peak:
                rec.peak = leased
        return lease

    def find(self, rec: PoolRecord, conn: object) -> Lease | None:
        """The open lease of *rec*'s pool that holds *conn*, if any."""
        with self._lock:
            for lease in reversed(rec.leases):
                ref = lease._conn_ref
                if ref is not None and ref() is conn:
                    return lease
        return None

    def release(self, rec: PoolRecord, conn: object | None = None) -> Lease | None:
        """Record that a slot of *rec*'s pool came back.

        Slots are what is counted: *conn* picks the matching lease when it is known; when it
        is ``None`` (urllib3 returns the slot of a discarded connection with ``None``), the
        newest lease of this pool taken by the current thread balances it, else the newest.
        """
        with self._lock:
            leases = rec.leases
            if not leases:
                return None
            found = -1
            if conn is not None:
                ref = leases[-1]._conn_ref
                if ref is not None and ref() is conn:  # the usual case: the newest lease
                    lease = leases.pop()
                    rec.leased -= 1
                    del self._open[id(lease)]
                    return lease
                for i in range(len(leases) - 1, -1, -1):
                    ref = leases[i]._conn_ref
                    if ref is not None and ref() is conn:
                        found = i
                        break
                if found < 0:
                    return None  # leased before we were watching
            else:
                me = threading.current_thread().name
                for i in range(len(leases) - 1, -1, -1):
                    if leases[i].thread_name == me:
                        found = i
                        break
                if found < 0:
                    found = len(leases) - 1
            lease = leases.pop(found)
            rec.leased -= 1
            self._open.pop(id(lease), None)
            return lease

    def release_lease(self, lease: Lease) -> None:
        """Give back exactly *lease* (adapters that can keep the lease object use this)."""
        with self._lock:
            if self._open.pop(id(lease), None) is None:
                return
            try:
                lease.pool.leases.remove(lease)
            except ValueError:  # pragma: no cover - the two indexes never disagree
                return
            lease.pool.leased -= 1

    def note_wait(self, rec: PoolRecord) -> None:
        """Record that a request had to wait for a free slot of *rec*'s pool."""
        with self._lock:
            if rec._window != self._window:
                self._touch(rec)
            rec.waits += 1

    # -- usage windows ----------------------------------------------------------------

    def _touch(self, rec: PoolRecord) -> None:
        # First activity of this pool in the open window: remember where its counters
        # stood. Called with the lock held.
        rec._window = self._window
        rec._base_leases = rec.total_leases
        rec._base_waits = rec.waits
        rec.peak = rec.leased
        self._touched[id(rec)] = rec

    def _reap(self) -> None:
        # Fold the records of pools that died into per-origin usage, so that a pool a test
        # created and dropped is still reported, and memory stays flat however many pools
        # come and go. Called with the lock held.
        dead = self._dead
        while dead:
            rec = dead.pop()
            if self._touched.pop(id(rec), None) is rec:
                usage = rec.usage()
                key = (rec.client, rec.origin, rec.capacity, rec.block)
                old = self._retired.get(key)
                self._retired[key] = old.merge(usage) if old is not None else usage
        if len(self._all_pools) > self._prune_at:
            self._all_pools = [ref for ref in self._all_pools if ref() is not None]
            self._prune_at = max(64, 2 * len(self._all_pools))

    def take_usage(self) -> list[PoolUsage]:
        """What every pool did since the previous call; then start counting afresh.

        One entry per pool that leased a connection or made a request wait, including
        pools that were garbage-collected meanwhile (folded into one entry per origin,
        capacity and blocking mode). The pytest plugin calls this before the first test and
        at the end of each, so that each test sees only its own usage.
        """
        usage: list[PoolUsage] = []
        with self._lock:
            if self._touched or self._retired or self._dead:  # else: no request since
                self._reap()
                usage = [rec.usage() for rec in self._touched.values()]
                usage += self._retired.values()
                self._touched = {}
                self._retired = {}
            self._window += 1
        return [u for u in usage if u.leases or u.waits]

    def capture_site(self) -> Site:
        """Find the first frame outside the HTTP libraries, this package and stdlib glue."""
        cache = self._frame_cache
        frame: FrameType | None = sys._getframe(1)
        library = ""
        while frame is not None:
            code = frame.f_code
            filename = code.co_filename
            try:
                lib = cache[filename]
            except KeyError:
                lib = cache[filename] = self._classify(filename)
            if lib is None:
                # One Site per call site, made once: building a frozen dataclass costs more
                # than the whole walk, and a program has few lines that make requests.
                key = (filename, frame.f_lineno, code.co_name, library)
                site = self._sites.get(key)
                if site is None:
                    module = frame.f_globals.get("__name__", "?")
                    site = self._sites[key] = Site(*key[:3], module, library)
                return site
            if lib == _BOUNDARY:
                # The test runner is below: no user code asked for this connection here
                # (a request handed straight to asyncio.gather() runs in a task whose
                # stack starts at the event loop). Say so rather than blame the runner.
                break
            if lib:
                library = lib
            frame = frame.f_back
        return replace(UNKNOWN_SITE, library=library) if library else UNKNOWN_SITE

    def _classify(self, filename: str) -> str | None:
        """Return the library a file belongs to, ``""`` for glue to skip, None for user code."""
        for prefix, name in self._library_prefixes.items():
            if filename.startswith(prefix):
                return name
        if filename.startswith(_OWN_DIR):
            return ""
        if filename.startswith("<frozen") or _is_stdlib_glue(filename):
            return ""
        return None

    # -- questions -------------------------------------------------------------------

    def open_leases(self, owner: Hashable | None = None) -> list[Lease]:
        """Open leases, oldest first; only those of *owner* when it is given."""
        with self._lock:
            leases = list(self._open.values())
        if owner is None:
            return leases
        return [lease for lease in leases if lease.owner == owner]

    def disown(self, leases: Iterable[Lease]) -> None:
        """Detach *leases* from their owner so that they are judged once only."""
        with self._lock:
            for lease in leases:
                lease.owner = None

    def pools(self) -> list[PoolRecord]:
        """Every pool record still alive or still holding a lease."""
        with self._lock:
            self._reap()
            alive = [rec for ref in self._all_pools if (rec := ref()) is not None]
            self._all_pools = [weakref.ref(rec) for rec in alive]
        return alive

    def size(self) -> int:
        """How many objects the ledger holds: open leases, pool records, usage entries."""
        with self._lock:
            self._reap()
            self._all_pools = [ref for ref in self._all_pools if ref() is not None]
            return len(self._open) + len(self._all_pools) + len(self._retired)


_BOUNDARY = "<runner>"
# The whole package, not just _core/: no frame of ours is ever a lease site.
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__)) + os.sep
_GLUE_PREFIXES = tuple(_STDLIB_DIR + name for name in _STDLIB_GLUE)


def _is_stdlib_glue(filename: str) -> bool:
    return filename.startswith(_GLUE_PREFIXES)


ledger = Ledger()
"""The process-wide ledger that every adapter records into."""
