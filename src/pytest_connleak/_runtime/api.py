"""The plain-Python API: :class:`no_leaks`, :class:`LeakCheckMixin` and :func:`pool_stats`.

Nothing here needs pytest to be running: unittest suites, scripts and services use the
same ledger and the same report as the plugin.

The instrumentation is one process-wide object shared with the plugin and counted by
its users, so that a ``no_leaks()`` block inside a pytest run never patches the clients a
second time (which would count every lease twice) and never removes the plugin's patches
when it ends.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

# They live in _adapters so that the plugin can use them without importing this module.
from pytest_connleak._core.adapters import SHARED_INSTRUMENTATION as _instrumentation
from pytest_connleak._core.adapters import acquire_instrumentation, release_instrumentation
from pytest_connleak._core.ledger import Lease, ledger
from pytest_connleak._core.pools import idle_connections, live_pools
from pytest_connleak._core.report import ConnectionLeakError, format_leaks
from pytest_connleak._core.sdks import known_behaviour

from .alarm import DEFAULT_POOL_THRESHOLD, LOGGER_NAME, POOL_ALERT_EVERY, LeakAlarm, Watchdog
from .alarm import check_number as _check_number

__all__ = ["LeakCheckMixin", "no_leaks", "pool_stats", "track"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, eq=False)
class BlockOwner:
    """Ledger owner of one ``no_leaks()`` block: unique, compared by identity."""

    label: str
    serial: int


_serials = itertools.count(1)


class no_leaks:  # lower case: used like contextlib.suppress, a function in all but name
    """Raise :class:`ConnectionLeakError` for connections leased inside and not returned.

    Use it as a context manager or a decorator (plain or ``async def`` functions)::

        with pytest_connleak.no_leaks():
            call_the_service()

        @pytest_connleak.no_leaks()
        def test_download(self): ...

    On entry it installs the instrumentation if nothing has (and removes it when the block
    that installed it ends). Leases made inside the block are attributed to the block; at
    its end, those still open raise :class:`ConnectionLeakError` with the plugin's report.
    Blocks nest: the enclosing owner (an outer block, or the current pytest test) is
    restored on exit.

    Connections an SDK is known to lose on its own, where that cannot run a pool dry
    (botocore's ``StreamingBody.close()``), are not the block's leaks: like the plugin, the
    block lets them pass and hands them to the enclosing owner.

    When the block ends with an exception, that exception propagates unchanged and the
    block's open leases are handed to the enclosing owner instead, so an outer block or
    the pytest plugin still sees them.

    The owner is process-wide, like the plugin's, so that leases made by threads the block
    starts are the block's: do not run ``no_leaks()`` blocks concurrently in several
    threads (one request per block in a threaded server would blame the wrong block).

    Args:
        label: names the block in the report; defaults to ``the no_leaks() block`` (or,
            as a decorator, to the decorated function's name).
    """

    __module__ = "pytest_connleak"

    def __init__(self, label: str | None = None) -> None:
        self.label = label
        self._frames: list[tuple[BlockOwner, Hashable | None]] = []

    def __call__(self, func: F) -> F:
        """Decorate *func* so that every call runs inside a fresh ``no_leaks()`` block."""
        label = self.label or func.__qualname__
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with no_leaks(label):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            with no_leaks(label):
                return func(*args, **kwargs)

        return cast(F, wrapper)

    def __enter__(self) -> no_leaks:
        acquire_instrumentation()
        owner = BlockOwner(self.label or "the no_leaks() block", next(_serials))
        self._frames.append((owner, ledger.owner))
        ledger.owner = owner
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        owner, previous = self._frames.pop()
        try:
            leases = ledger.open_leases(owner)
            ledger.owner = previous
            if exc_type is not None:
                # Never mask what is already propagating; whoever encloses us judges them.
                for lease in leases:
                    lease.owner = previous
                return
            # A slot an SDK loses on its own (botocore's close()) is not this block's leak;
            # whoever encloses the block (the plugin lists it in its summary) sees it still.
            leaked = []
            for lease in leases:
                if known_behaviour(lease) is None:
                    leaked.append(lease)
                else:
                    lease.owner = previous
            leases = leaked
            ledger.disown(leases)
            # Before the release below: the last user's release forgets the adapters,
            # and with them the client-specific advice.
            message = report(leases, owner.label, "still leased at its end") if leases else ""
        finally:
            release_instrumentation()
        if leases:
            raise ConnectionLeakError(message, leases)


def report(leases: list[Lease], culprit: str, when: str) -> str:
    """The plugin's report for *leases*, with paths relative to the working directory."""
    return format_leaks(leases, culprit, when, _instrumentation.advise, os.getcwd())


if TYPE_CHECKING:
    import unittest

    _MixinBase = unittest.TestCase
else:  # a mixin must not put TestCase in the MRO twice, or before the user's own bases
    _MixinBase = object


class LeakCheckMixin(_MixinBase):
    """A ``unittest.TestCase`` mixin that fails every test leaving a connection leased.

    Put it before ``TestCase`` in the bases and call ``super().setUp()`` first in your
    own ``setUp``::

        class TestAPI(pytest_connleak.LeakCheckMixin, unittest.TestCase):
            def setUp(self):
                super().setUp()
                self.session = requests.Session()
                self.addCleanup(self.session.close)

    ``setUp`` opens a :class:`no_leaks` block and registers its check with
    ``addCleanup``. Cleanups run last-in first-out, after ``tearDown``, so the check runs
    after every cleanup the test registers later: a session closed by a cleanup is not a
    leak. A leak fails the test with :class:`ConnectionLeakError`, an
    :class:`AssertionError`, under ``python -m unittest`` and under pytest alike.
    """

    __module__ = "pytest_connleak"

    def setUp(self) -> None:
        """Start the leak check; it ends in a cleanup registered here."""
        super().setUp()
        block = no_leaks(self.id().rpartition(".")[2])
        block.__enter__()
        self.addCleanup(self._connleak_check, block)

    def _connleak_check(self, block: no_leaks) -> None:
        __tracebackhide__ = True
        block.__exit__(None, None, None)


def pool_stats() -> list[dict[str, Any]]:
    """A snapshot of every pool the instrumentation has seen, as plain dicts.

    Ready for a metrics or health endpoint (``json.dumps(pool_stats())``). Each dict has:

    - ``client``: the adapter that tracks the pool (``"urllib3"``, ...);
    - ``origin``: ``scheme://host:port``;
    - ``capacity``: the pool's size, ``None`` if unbounded or unknown;
    - ``leased``: connections handed out and not yet returned;
    - ``idle``: open connections the pool keeps for reuse, ``None`` if unknown;
    - ``high_water``: the most connections ever leased at once;
    - ``leases_total``: how many times a connection was handed out;
    - ``waits``: how many requests found a blocking pool full and had to wait.

    Only pools used while the instrumentation was installed (by the plugin, a
    :class:`no_leaks` block, the mixin, or :func:`track` in a service) are listed; a pool
    appears on its first lease.
    """
    stats = []
    for rec, pool in live_pools(ledger):
        idle = idle_connections(pool) if pool is not None else []
        stats.append(
            {
                "client": rec.client,
                "origin": rec.origin,
                "capacity": rec.capacity,
                "leased": rec.leased,
                "idle": len(idle) if idle is not None else None,
                "high_water": rec.high_water,
                "leases_total": rec.total_leases,
                "waits": rec.waits,
            }
        )
    return stats


class track:  # lower case: called like a function, like no_leaks
    """Track every pool from now on, outside any test: for services and scripts.

    Call it once at start-up so that :func:`pool_stats` (and the Prometheus
    ``PoolCollector``) see the pools a running service uses; nothing is ever raised into
    the service. Stop with :meth:`stop`, or use it as a context manager::

        tracking = pytest_connleak.track(leak_threshold=30)
        ...
        json.dumps(pytest_connleak.pool_stats())

    A checker thread (a daemon, started here unless both thresholds are ``None``) logs
    through :mod:`logging` as the checks below find something; it only reads the
    lease records, so requests cost what they cost with tracking alone.

    Args:
        leak_threshold: seconds a connection may stay leased before the leak alarm logs a
            warning naming its pool, its age, the thread and the line that leased it (and,
            if it comes back later, "previously reported connection returned after N s").
            ``None`` (the default) turns the alarm off.
        pool_threshold: share of a pool's capacity, in (0, 1], at which a live pool is worth
            a warning (at least two connections leased at once, as in the test run); at
            most one per origin every *pool_alert_every* seconds. Defaults to 0.75, the test
            run's default; ``None`` turns it off.
        logger: the :class:`logging.Logger`, or its name, to write to; defaults to
            ``logging.getLogger("pytest_connleak")``.
        on_leak: called with a :class:`LeakAlarm` for every alarm event, on the checker
            thread. An exception it raises is logged once and otherwise ignored.
        check_interval: seconds between checks; defaults to a quarter of *leak_threshold*,
            at least 0.1 and at most 1.
        pool_alert_every: seconds between two pool warnings for the same origin while it
            stays above *pool_threshold* (default 300).

    Raises:
        ValueError: a threshold or interval that is not a positive number (a
            *pool_threshold* above 1).

    Returns the object whose :attr:`problems` lists the clients that could not be tracked.
    """

    __module__ = "pytest_connleak"

    def __init__(
        self,
        leak_threshold: float | None = None,
        *,
        pool_threshold: float | None = DEFAULT_POOL_THRESHOLD,
        logger: logging.Logger | str | None = None,
        on_leak: Callable[[LeakAlarm], object] | None = None,
        check_interval: float | None = None,
        pool_alert_every: float = POOL_ALERT_EVERY,
    ) -> None:
        # Every argument is checked before anything is patched or started.
        if leak_threshold is not None:
            leak_threshold = _check_number(leak_threshold, "leak_threshold")
        if pool_threshold is not None:
            pool_threshold = _check_number(pool_threshold, "pool_threshold", upper=1)
        if check_interval is not None:
            check_interval = _check_number(check_interval, "check_interval")
        pool_alert_every = _check_number(pool_alert_every, "pool_alert_every")
        if on_leak is not None and not callable(on_leak):
            raise ValueError(f"on_leak must be a callable, got {on_leak!r}")
        if logger is None or isinstance(logger, str):
            logger = logging.getLogger(logger or LOGGER_NAME)
        elif not isinstance(logger, logging.Logger):
            raise ValueError(f"logger must be a logging.Logger or a name, got {logger!r}")
        self._watchdog: Watchdog | None = None
        if leak_threshold is not None or pool_threshold is not None:
            self._watchdog = Watchdog(
                ledger,
                leak_threshold=leak_threshold,
                pool_threshold=pool_threshold,
                logger=logger,
                on_leak=on_leak,
                check_interval=check_interval,
                pool_alert_every=pool_alert_every,
            )
        _, self.problems = acquire_instrumentation()
        self._active = True
        if self._watchdog is not None:
            self._watchdog.start()

    def check(self) -> list[LeakAlarm]:
        """Run the checks now (the thread runs them every ``check_interval``).

        Logs what it finds, as the thread would, and returns the leak alarm's events; an
        empty list once stopped or when both thresholds are ``None``.
        """
        if not self._active or self._watchdog is None:
            return []
        return self._watchdog.check()

    def stop(self) -> None:
        """Stop the checker thread and tracking (the patches go once nothing needs them)."""
        if self._active:
            self._active = False
            if self._watchdog is not None:
                self._watchdog.stop()
            release_instrumentation()

    def __enter__(self) -> track:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
