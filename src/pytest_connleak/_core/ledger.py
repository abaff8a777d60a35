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
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from types import CodeType, FrameType
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
    once in the ledger's current usage window (see :meth:`Ledger.take_usage`), counting
    only the leases taken in that window: a connection leaked earlier is not the window's.
    """

    __slots__ = (
        "__weakref__",
        "_base_leases",
        "_base_waits",
        "_own",
        "_pool_ref",
        "_window",
        "block",
        "capacity",
        "client",
        "group",
        "high_water",
        "last_ref",
        "leased",
        "leases",
        "origin",
        "peak",
        "total_leases",
        "wait_at",
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
        # Leases taken in that window and still open: what ``peak`` is the maximum of.
        self._own = 0
        self._pool_ref: Callable[[], Any] | None = None
        #: ``[leased, capacity]`` over every record of the same pool object, for clients
        #: whose one pool serves several origins (the ledger keeps the count), else None.
        self.group: list[Any] | None = None
        #: How many leased make the next request wait (a blocking pool at capacity).
        self.wait_at = capacity if block and capacity is not None else sys.maxsize
        #: The weak reference to the connection returned last (see Ledger.lease).
        self.last_ref: Callable[[], object | None] | None = None

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

    ``leases`` is how many connections were handed out, ``peak`` the most of those leased
    at once (connections already out when the window opened, such as one an earlier test
    leaked, do not count) and ``waits`` how many requests had to wait for a free
    connection.
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
    """One connection slot taken from a pool and not yet given back.

    On the request path a lease records only pointers: the pool's record, the owner, the
    connection (weakly), the thread, and where it was taken (the code object and line of
    the lease site). The :class:`Site` (file, function, module) is built when someone asks
    for it: a report, an ignore rule or the summary.
    """

    # Slots left unset until used (_site, _state, _holder): every store costs on the
    # request path, and most leases are returned without anyone looking at them.
    __slots__ = (
        "__weakref__",
        "_conn_ref",
        "_holder",
        "_site",
        "_state",
        "_thread",
        "_where",
        "_window",
        "owner",
        "pool",
        "started",
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
        self.owner = owner
        #: When the slot was taken, in :func:`time.monotonic` seconds (the leak alarm's age).
        self.started = time.monotonic()
        # A weak reference only: holding the connection would keep its socket open and
        # change what the code under test sees (a dropped response must still close it).
        self._conn_ref = _weak(conn)
        self._site = site
        self._where: _Where = (None, site.lineno, None, site.library)
        self._thread: int | str = thread_name
        # The ledger's usage window when the lease was counted (set by the ledger).
        self._window = -1

    @property
    def site(self) -> Site:
        """Where user code asked for the connection (built on first use)."""
        try:
            return self._site
        except AttributeError:
            site = self._site = _site_of(*self._where)
            return site

    @property
    def state(self) -> str:
        """``"leased"``, or what an adapter saw happen to it since (``"closed"``)."""
        try:
            return self._state
        except AttributeError:
            return "leased"

    @state.setter
    def state(self, value: str) -> None:
        self._state = value

    @property
    def thread_name(self) -> str:
        """The name of the thread that took the lease (while that thread is alive)."""
        thread = self._thread
        if isinstance(thread, str):
            return thread
        alive = threading._active.get(thread)  # type: ignore[attr-defined]
        return alive.name if alive is not None else f"<thread {thread}>"

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
        self._holder = _weak(holder)

    @property
    def holder_collected(self) -> bool:
        """True when the remembered response (else the connection) was garbage-collected."""
        holder = getattr(self, "_holder", None)
        if holder is not None:
            return bool(holder() is None)
        return self.connection_collected

    def __repr__(self) -> str:
        return f"<Lease {self.origin} at {self.site.format()} owner={self.owner!r}>"


#: Where a lease was taken: the lease site's code object, line and module globals, and the
#: library the user called (code and globals are None when no user frame was found).
_Where = tuple["CodeType | None", int, "dict[str, Any] | None", str]


# One Site per call site, made once, when first asked for: a program has few lines that
# make requests, and building a frozen dataclass costs more than a whole lease.
_SITES: dict[tuple[str, int, str, str, str], Site] = {}


def _site_of(
    code: CodeType | None, lineno: int, globals_: dict[str, Any] | None, library: str
) -> Site:
    """The :class:`Site` of a lease's ``_where``, made once per call site."""
    if code is None:
        return replace(UNKNOWN_SITE, library=library) if library else UNKNOWN_SITE
    module = globals_.get("__name__", "?") if globals_ is not None else "?"
    key = (code.co_filename, lineno, code.co_name, str(module), library)
    site = _SITES.get(key)
    if site is None:
        site = _SITES[key] = Site(*key)
    return site


_new_lease = object.__new__
_monotonic = time.monotonic
# Lease._window of a lease given back: a later release of it is a no-op.
_RELEASED = -2


def _started(lease: Lease) -> float:
    return lease.started


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

    Finalizers and weak-reference callbacks run inside any allocation, on the allocating
    thread: a dropped response's ``__del__`` can give its connection back while this very
    thread is in the middle of one of the ledger's own updates. So the lock is reentrant
    (such a finalizer never waits for itself), and an update that arrives while this
    thread is already inside one is queued and applied before that outer update lets go
    of the lock: it is never lost, never counted twice, and never sees half an update.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # True while a thread holding _lock is inside an update (only that thread can see
        # it True while holding the lock: a finalizer that re-enters on the same thread).
        self._busy = False
        self._deferred: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        # Open leases are kept by their pools' records only (one list append and pop per
        # request); what finds them all is this index of records, keyed by id(record),
        # which changes only when a pool is first seen or found dead (_reap), and a count.
        self._holding: dict[int, PoolRecord] = {}
        self._nopen = 0
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
        # What dead pools did over their whole life (retired_usage), whatever the windows.
        self._gone: dict[tuple[str, str, int | None, bool], PoolUsage] = {}
        self._frame_cache: dict[str, str | None] = {}
        # Recent call paths to a lease site, newest first (see lease()); a new list on
        # every change, so that other threads iterate an unchanging one.
        self._hints: list[tuple[int, CodeType, int, CodeType, _Where]] = []
        self._library_prefixes: dict[str, str] = {}
        #: Bookkeeping that failed, as ``(client, what, error)``; the library went on.
        self.internal_errors: list[tuple[str, str, str]] = []
        self.owner: Hashable | None = None

    # -- the reentrancy guard ----------------------------------------------------------

    def _update(self, op: Callable[..., object], *args: Any) -> None:
        """Run *op* as one update, or queue it when this thread is already inside one."""
        lock = self._lock
        lock.acquire()
        try:
            if self._busy:  # a finalizer inside one of our updates, on this thread
                self._deferred.append((op, args))
                return
            self._busy = True
            try:
                if self._deferred:
                    self._drain()
                op(*args)
                if self._deferred:
                    self._drain()
            finally:
                self._busy = False
        finally:
            lock.release()

    def _drain(self) -> None:
        # Called inside an update: finalizers that run meanwhile queue more, drained here.
        deferred = self._deferred
        while deferred:
            op, args = deferred.popleft()
            try:
                op(*args)
            except Exception as exc:  # pragma: no cover - the ops only touch our own state
                self.internal_error("ledger", "applying a deferred update", exc)

    def _settle(self) -> None:
        """Apply updates queued by finalizers; call with the lock held, outside an update."""
        if self._deferred and not self._busy:
            self._busy = True
            try:
                self._drain()
            finally:
                self._busy = False

    def internal_error(self, client: str, what: str, exc: BaseException) -> None:
        """Record that bookkeeping for *client* failed while doing *what*; never raises.

        Lock-free (a list append), so that it is safe anywhere, finalizers included.
        """
        try:
            text = f"{type(exc).__name__}: {exc}"
        except Exception:  # an exception whose str() fails
            text = type(exc).__name__
        self.internal_errors.append((client, what, text))

    # -- configuration -------------------------------------------------------------

    def add_boundary(self, *module_names: str) -> None:
        """Stop the lease-site walk at frames of these packages (the test runner)."""
        with self._lock:
            for prefix in _library_dirs(module_names):
                self._library_prefixes[prefix] = _BOUNDARY
            self._frame_cache.clear()
            self._hints = []

    def add_library(self, *module_names: str) -> None:
        """Treat frames from these imported packages as library code, not lease sites.

        Code a package generates at run time counts too when its file name starts with
        ``<name `` (SQLAlchemy's ``<sqlalchemy generated _go() wrapper ...>``).
        """
        with self._lock:
            self._library_prefixes.update(_library_dirs(module_names))
            self._library_prefixes.update({f"<{name} ": name for name in module_names})
            self._frame_cache.clear()
            self._hints = []

    def remove_library(self, *module_names: str) -> None:
        """Forget packages given to :meth:`add_library` (a run's own list, at its end)."""
        with self._lock:
            for prefix in _library_dirs(module_names):
                self._library_prefixes.pop(prefix, None)
            for name in module_names:
                self._library_prefixes.pop(f"<{name} ", None)
            self._frame_cache.clear()
            self._hints = []

    # -- the request path ----------------------------------------------------------

    def known_record(self, pool: object) -> PoolRecord | None:
        """The record of *pool* if it ever leased a connection while we watched, else None.

        The adapters' fast path: one dict lookup by ``id(pool)``, no lock.
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
        if rec is not None:
            return rec
        size, block = capacity()
        rec = PoolRecord(client, origin(), size, block)
        pools, dead = self._pools, self._dead

        def gone(_: object, key: int = key, rec: PoolRecord = rec) -> None:
            # Atomic under the GIL and lock-free: this can run inside any locked section.
            if pools.get(key) is rec:
                del pools[key]
            dead.append(rec)

        try:
            pool_ref: Callable[[], Any] = weakref.ref(pool, gone)
        except TypeError:
            # A pool class with __slots__ and no __weakref__ (rare): hold the pool for the
            # whole run, so that its id is never reused by another object.
            pool_ref = lambda: pool  # noqa: E731
        with self._lock:
            existing = pools.get(key)
            if existing is not None:
                return existing
            rec._pool_ref = pool_ref
            pools[key] = rec  # visible at once: a lease may follow inside a finalizer
        self._update(self._register, rec)
        return rec

    def _register(self, rec: PoolRecord) -> None:
        self._all_pools.append(weakref.ref(rec))
        self._holding[id(rec)] = rec
        self._reap()

    def lease(self, rec: PoolRecord, conn: object | None) -> Lease:
        """Record that *rec*'s pool handed out a slot (holding *conn*, if known)."""
        # Where: the first frame outside the HTTP libraries. Walking there materialises a
        # frame object per library frame (most of a lease's cost), so the walks of recent
        # call paths are remembered: the user frame's depth, code object and instruction,
        # and the code object of the library frame it called. When the frames at that
        # depth still match, it is the same call from the same line: no walk.
        frame: FrameType | None = None
        for depth, code, lasti, callee, where in self._hints:  # noqa: B007 (read after break)
            try:
                frame = _getframe(depth)
            except ValueError:  # a shallower stack
                continue
            if (
                frame.f_code is code
                and frame.f_lasti == lasti
                and _getframe(depth - 1).f_code is callee
            ):
                break
        else:
            where = self._walk()
        del frame
        lease = _new_lease(Lease)
        lease.pool = rec
        lease.owner = self.owner
        lease._where = where
        lease._thread = _get_ident()
        lease.started = _monotonic()
        if conn is None:
            lease._conn_ref = None
        else:
            # A keep-alive pool hands out the same connection again and again: reuse the
            # weak reference of its last return rather than make one per request.
            ref = rec.last_ref
            if ref is None or ref() is not conn:
                try:
                    ref = _ref(conn)
                except TypeError:  # __slots__ and no __weakref__: remember nothing
                    ref = None
            lease._conn_ref = ref
        lock = self._lock
        lock.acquire()
        try:
            if self._busy:  # a lease taken inside a finalizer inside one of our updates
                self._deferred.append((self._add, (lease,)))
                return lease
            self._busy = True
            try:
                if self._deferred:
                    self._drain()
                # _add, inlined: this is the request path.
                window = self._window
                if rec._window != window:
                    self._touch(rec)
                lease._window = window
                self._nopen += 1
                rec.leases.append(lease)
                leased = rec.leased = rec.leased + 1
                rec.total_leases += 1
                if leased > rec.high_water:
                    rec.high_water = leased
                own = rec._own = rec._own + 1
                if own > rec.peak:
                    rec.peak = own
                group = rec.group
                if group is not None:
                    group[0] += 1
                if self._deferred:
                    self._drain()
            finally:
                self._busy = False
        finally:
            lock.release()
        return lease

    def _walk(self) -> _Where:
        """Walk from lease()'s caller to the lease site; remember the path as a hint."""
        cache = self._frame_cache
        depth = 2  # lease()'s caller's caller: the caller is always one of our wrappers
        frame: FrameType | None = _getframe(depth)
        library = ""
        while frame is not None:
            filename = frame.f_code.co_filename
            try:
                lib = cache[filename]
            except KeyError:
                lib = cache[filename] = self._classify(filename)
            if lib is None:
                break
            if lib == _BOUNDARY:
                # The test runner is below: no user code asked for this connection here
                # (a request handed straight to asyncio.gather() runs in a task whose
                # stack starts at the event loop). Say so rather than blame the runner.
                frame = None
                break
            if lib:
                library = lib
            frame = frame.f_back
            depth += 1
        if frame is None:
            return (None, 0, None, library)
        code = frame.f_code
        where: _Where = (code, frame.f_lineno, frame.f_globals, library)
        # depth counts from _walk(); lease() is one frame nearer the user frame.
        hint = (depth - 1, code, frame.f_lasti, _getframe(depth - 1).f_code, where)
        self._hints = [hint, *self._hints[: _HINTS - 1]]
        return where

    def _add(self, lease: Lease) -> None:
        rec = lease.pool
        window = self._window
        if rec._window != window:
            self._touch(rec)
        lease._window = window
        self._nopen += 1
        rec.leases.append(lease)
        leased = rec.leased = rec.leased + 1
        rec.total_leases += 1
        if leased > rec.high_water:
            rec.high_water = leased
        own = rec._own = rec._own + 1
        if own > rec.peak:
            rec.peak = own
        group = rec.group
        if group is not None:
            group[0] += 1

    def find(self, rec: PoolRecord, conn: object) -> Lease | None:
        """The open lease of *rec*'s pool that holds *conn*, if any (a lock-free read)."""
        for lease in reversed(list(rec.leases)):
            ref = lease._conn_ref
            if ref is not None and ref() is conn:
                return lease
        return None

    def release(self, rec: PoolRecord, conn: object | None = None) -> None:
        """Record that a slot of *rec*'s pool came back.

        Slots are what is counted: *conn* picks the matching lease when it is known; when it
        is ``None`` (urllib3 returns the slot of a discarded connection with ``None``), the
        newest lease of this pool taken by the current thread balances it, else the newest.
        """
        lock = self._lock
        lock.acquire()
        try:
            if self._busy:  # a finalizer inside one of our updates, on this thread
                self._deferred.append((self._release, (rec, conn, _get_ident())))
                return
            self._busy = True
            try:
                if self._deferred:
                    self._drain()
                leases = rec.leases
                if leases and conn is not None:
                    # The usual case, inlined: the newest lease holds the connection.
                    lease = leases[-1]
                    ref = lease._conn_ref
                    if ref is not None and ref() is conn:
                        leases.pop()
                        rec.last_ref = ref
                        rec.leased -= 1
                        if lease._window == self._window:
                            rec._own -= 1
                        lease._window = _RELEASED
                        group = rec.group
                        if group is not None:
                            group[0] -= 1
                        self._nopen -= 1
                    else:
                        self._release(rec, conn, 0)
                elif leases:
                    self._release(rec, conn, _get_ident())
                if self._deferred:
                    self._drain()
            finally:
                self._busy = False
        finally:
            lock.release()

    def _release(self, rec: PoolRecord, conn: object | None, thread: int) -> None:
        leases = rec.leases
        if not leases:
            return
        found = -1
        if conn is not None:
            for i in range(len(leases) - 1, -1, -1):
                ref = leases[i]._conn_ref
                if ref is not None and ref() is conn:
                    found = i
                    break
            if found < 0:
                return  # leased before we were watching
        else:
            for i in range(len(leases) - 1, -1, -1):
                if leases[i]._thread == thread:
                    found = i
                    break
            if found < 0:
                found = len(leases) - 1
        lease = leases.pop(found)
        rec.leased -= 1
        if lease._window == self._window:
            rec._own -= 1
        lease._window = _RELEASED
        group = rec.group
        if group is not None:
            group[0] -= 1
        self._nopen -= 1

    def release_lease(self, lease: Lease) -> None:
        """Give back exactly *lease* (adapters that can keep the lease object use this)."""
        # _update(self._release_lease, lease), inlined: this is the request path.
        lock = self._lock
        lock.acquire()
        try:
            if self._busy:  # a finalizer inside one of our updates, on this thread
                self._deferred.append((self._release_lease, (lease,)))
                return
            self._busy = True
            try:
                if self._deferred:
                    self._drain()
                self._release_lease(lease)
                if self._deferred:
                    self._drain()
            finally:
                self._busy = False
        finally:
            lock.release()

    def _release_lease(self, lease: Lease) -> None:
        if lease._window == _RELEASED:  # given back already
            return
        rec = lease.pool
        leases = rec.leases
        if leases and leases[-1] is lease:  # the usual case: the pool's newest lease
            leases.pop()
            # As release() does: the next lease of the same connection (a redis-py
            # pool's) reuses this weak reference.
            rec.last_ref = lease._conn_ref
        else:
            try:
                leases.remove(lease)
            except ValueError:  # pragma: no cover - an unreleased lease is in its pool's list
                return
        rec.leased -= 1
        if lease._window == self._window:
            rec._own -= 1
        lease._window = _RELEASED
        group = rec.group
        if group is not None:
            group[0] -= 1
        self._nopen -= 1

    def mark_closed(self, rec: PoolRecord, conn: object, holder: object, state: str) -> None:
        """Set *state* on the open lease of *rec* that holds *conn*, and remember *holder*.

        An update like a release (a finalizer may call it inside another update), so it is
        applied in order with the releases around it.
        """
        self._update(self._mark_closed, rec, conn, _weak(holder), state)

    def _mark_closed(
        self,
        rec: PoolRecord,
        conn: object,
        holder: Callable[[], object | None] | None,
        state: str,
    ) -> None:
        for lease in reversed(rec.leases):
            ref = lease._conn_ref
            if ref is not None and ref() is conn:
                lease._state = state
                lease._holder = holder
                return

    def note_wait(self, rec: PoolRecord) -> None:
        """Record that a request had to wait for a free slot of *rec*'s pool."""
        self._update(self._note_wait, rec)

    def _note_wait(self, rec: PoolRecord) -> None:
        if rec._window != self._window:
            self._touch(rec)
        rec.waits += 1

    # -- usage windows ----------------------------------------------------------------

    def _touch(self, rec: PoolRecord) -> None:
        # First activity of this pool in the open window: remember where its counters
        # stood. Called inside an update.
        rec._window = self._window
        rec._base_leases = rec.total_leases
        rec._base_waits = rec.waits
        # Only this window's own leases count toward its peak: a connection an earlier
        # test leaked (still leased) is not this test's doing.
        rec._own = 0
        rec.peak = 0
        self._touched[id(rec)] = rec

    def _reap(self) -> None:
        # Fold the records of pools that died into per-origin usage, so that a pool a test
        # created and dropped is still reported, and memory stays flat however many pools
        # come and go. Called inside an update.
        dead = self._dead
        while dead:
            rec = dead.pop()
            key = (rec.client, rec.origin, rec.capacity, rec.block)
            life = PoolUsage(*key, rec.total_leases, rec.high_water, rec.waits)
            gone = self._gone.get(key)
            self._gone[key] = gone.merge(life) if gone is not None else life
            if not rec.leases:  # else its leases are still to be judged
                self._holding.pop(id(rec), None)
            if self._touched.pop(id(rec), None) is rec:
                usage = rec.usage()
                old = self._retired.get(key)
                self._retired[key] = old.merge(usage) if old is not None else usage
        if len(self._all_pools) > self._prune_at:
            self._all_pools = [ref for ref in self._all_pools if ref() is not None]
            self._prune_at = max(64, 2 * len(self._all_pools))
            # A pool that died holding leases stays in _holding; if they came back after
            # its death (a cycle's finalizer), nothing else would ever drop it.
            self._holding = {
                key: rec
                for key, rec in self._holding.items()
                if rec.leases or rec.pool_object is not None
            }

    def take_usage(self) -> list[PoolUsage]:
        """What every pool did since the previous call; then start counting afresh.

        One entry per pool that leased a connection or made a request wait, including
        pools that were garbage-collected meanwhile (folded into one entry per origin,
        capacity and blocking mode). The pytest plugin calls this before the first test and
        at the end of each, so that each test sees only its own usage.
        """
        if not (self._touched or self._retired or self._dead or self._deferred):
            # No request since the last call (most tests): no lock, no closure. The window
            # number has one writer, the caller; a lease racing with this lands in either
            # window, as it would under the lock.
            self._window += 1
            return []
        usage: list[PoolUsage] = []

        def take() -> None:
            nonlocal usage
            if self._touched or self._retired or self._dead:  # else: no request since
                self._reap()
                touched, self._touched = self._touched, {}
                retired, self._retired = self._retired, {}
                usage = [rec.usage() for rec in touched.values()]
                usage += retired.values()
            self._window += 1

        self._update(take)
        return [u for u in usage if u.leases or u.waits]

    def capture_site(self, frame: FrameType | None = None) -> Site:
        """Find the first frame outside the HTTP libraries, this package and stdlib glue.

        The walk starts at the caller, or at *frame* (a greenlet's parent, whose stack
        the current one does not continue).
        """
        cache = self._frame_cache
        if frame is None:
            frame = _getframe(1)
        library = ""
        while frame is not None:
            filename = frame.f_code.co_filename
            try:
                lib = cache[filename]
            except KeyError:
                lib = cache[filename] = self._classify(filename)
            if lib is None:
                return _site_of(frame.f_code, frame.f_lineno, frame.f_globals, library)
            if lib == _BOUNDARY:
                break
            if lib:
                library = lib
            frame = frame.f_back
        return _site_of(None, 0, None, library)

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
        if not self._nopen and not self._deferred:  # every test's teardown asks
            return []
        with self._lock:
            self._settle()
            holding = self._holding
            leases = []
            # A copy made in one step: a finalizer that runs in an allocation of this loop
            # and registers a pool (not an update here, so not deferred) changes the
            # original only.
            for key, rec in holding.copy().items():
                if rec.leases:
                    leases += rec.leases
                elif rec.pool_object is None:  # a dead pool whose leases came back late
                    del holding[key]
        leases.sort(key=_started)
        if owner is None:
            return leases
        return [lease for lease in leases if lease.owner == owner]

    def disown(self, leases: Iterable[Lease]) -> None:
        """Detach *leases* from their owner so that they are judged once only."""
        for lease in leases:
            lease.owner = None  # one attribute store each: atomic, needs no lock

    def pools(self) -> list[PoolRecord]:
        """Every pool record still alive or still holding a lease."""
        alive: list[PoolRecord] = []

        def collect() -> None:
            self._reap()
            alive.extend(rec for ref in self._all_pools if (rec := ref()) is not None)
            self._all_pools = [weakref.ref(rec) for rec in alive]

        self._update(collect)
        return alive

    def retired_usage(self) -> list[PoolUsage]:
        """What the pools that died did over their whole life, usage windows aside.

        One entry per origin, capacity and blocking mode: ``leases`` and ``waits`` add up,
        ``peak`` is the largest high-water mark. Bounded by the origins a process talks to,
        however many pools come and go; the Prometheus collector's counters start here.
        """
        usage: list[PoolUsage] = []

        def collect() -> None:
            self._reap()
            usage.extend(self._gone.values())

        self._update(collect)
        return usage

    def size(self) -> int:
        """How many objects the ledger holds: open leases, pool records, usage entries."""
        sizes: list[int] = []

        def count() -> None:
            self._reap()
            self._all_pools = [ref for ref in self._all_pools if ref() is not None]
            sizes.append(self._nopen + len(self._all_pools) + len(self._retired))

        self._update(count)
        return sizes[0] if sizes else 0


_BOUNDARY = "<runner>"
# The whole package, not just _core/: no frame of ours is ever a lease site.
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__)) + os.sep
_GLUE_PREFIXES = tuple(_STDLIB_DIR + name for name in _STDLIB_GLUE)


def _is_stdlib_glue(filename: str) -> bool:
    return filename.startswith(_GLUE_PREFIXES)


_HINTS = 8  # call paths remembered: a test loop makes requests from a few lines
_getframe = sys._getframe
_get_ident = threading.get_ident
_ref = weakref.ref

ledger = Ledger()
"""The process-wide ledger that every adapter records into."""
