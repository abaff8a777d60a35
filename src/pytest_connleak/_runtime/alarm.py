"""The leak alarm and the pool alert of ``track()``: a checker thread that reads the ledger.

HikariCP's ``leakDetectionThreshold`` for HTTP pools: a connection leased longer than the
threshold is logged with its pool, its age, the thread and the user's line that leased it;
if it comes back later, that is logged too, so slow work and real leaks tell themselves
apart. The same thread warns (rate-limited) when a live pool reaches the pool-health
threshold the test run uses.

A thread rather than checks piggy-backed on lease and return: the request path stays what
it is without the alarm (the ledger already stamps each lease with its start time), and a
leak is still found when no request comes any more, which is what a pool that leaked dry
looks like. The thread only reads: the ledger's open leases (records that hold their
connection and response weakly) and its pool records. It holds leases it reported by weak
reference, so it keeps nothing alive, and it never raises: an error of ours is logged once,
an error of the callback once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pytest_connleak._core.ledger import Lease, Ledger, PoolRecord, Site

__all__ = [
    "DEFAULT_POOL_THRESHOLD",
    "LOGGER_NAME",
    "POOL_ALERT_EVERY",
    "LeakAlarm",
    "Watchdog",
    "leaks_reported",
]

LOGGER_NAME = "pytest_connleak"
"""The logger the alarm writes to unless ``track(logger=...)`` names another."""

DEFAULT_POOL_THRESHOLD = 0.75
"""The share of a pool's capacity that is worth a warning: the test run's default too
(``leak_check_pool_threshold``; a test keeps the two equal)."""

POOL_ALERT_EVERY = 300.0
"""Seconds between two pool warnings for the same origin while it stays above the threshold."""

MAX_CHECK_INTERVAL = 1.0
"""The checker thread wakes at least this often (seconds), and four times per threshold..."""

MIN_CHECK_INTERVAL = 0.1
"""...but not more often than this unless told to: each wake-up takes the GIL from the
service's threads, and a hundred a second cost a few percent (benchmarks/track_alarm.py)."""

STOP_TIMEOUT = 10.0
"""The longest :meth:`Watchdog.stop` waits for a check in progress (a slow callback)."""

EXTRA_KEY = "connleak_alarm"
"""The :class:`LeakAlarm` rides on the log record as ``record.connleak_alarm``."""


@dataclass(frozen=True)
class LeakAlarm:
    """One event of ``track(leak_threshold=...)``'s leak alarm, as plain data.

    The ``on_leak`` callback receives it, and each log record the alarm writes carries it
    as ``record.connleak_alarm`` (for structured log handlers).

    Attributes:
        event: ``"leaked"`` when a connection has been leased longer than the threshold;
            ``"returned"`` when a connection reported so was later given back.
        client: the library whose pool it is (``"urllib3"``, ``"httpcore"``, ``"aiohttp"``,
            and for database pools ``"sqlalchemy"``, ``"psycopg_pool"``, ``"redis"``,
            ``"asyncpg"``).
        origin: the pool's ``scheme://host:port`` (never a user name or password).
        thread: the name of the thread that leased it, or ``<thread ID>`` when that
            thread had ended before the alarm fired (the ledger keeps thread ids).
        site: the user's line that leased it (a :class:`Site`).
        leased_for: seconds since the lease: when it was found over the threshold, or when
            it was found returned (measured at the check that saw it, so within
            ``check_interval`` of the real moment).
        threshold: the ``leak_threshold`` in force, in seconds.
        message: the log line's text.
    """

    __module__ = "pytest_connleak"

    event: Literal["leaked", "returned"]
    client: str
    origin: str
    thread: str
    site: Site
    leased_for: float
    threshold: float
    message: str


# Connections reported by any alarm in this process, by (client, origin): the collector's
# connleak_pool_leaks_total. Keyed by strings, so it is bounded by the origins, not the pools.
_reported_lock = threading.Lock()
_reported_counts: dict[tuple[str, str], int] = {}


def leaks_reported() -> dict[tuple[str, str], int]:
    """How many connections the alarm reported, by ``(client, origin)``, since start-up."""
    with _reported_lock:
        return dict(_reported_counts)


def _percent(share: float) -> str:
    return f"{round(share * 100, 1):g}%"


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


def check_number(value: object, name: str, *, upper: float | None = None) -> float:
    """*value* as a positive float (at most *upper*), else a ValueError naming *name*."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not number > 0 or math.isinf(number) or (upper is not None and number > upper):
        valid = f"a number in (0, {upper:g}]" if upper is not None else "a positive number"
        raise ValueError(f"{name} must be {valid}, got {value!r}")
    return number


class Watchdog:
    """The checks behind ``track()``: :meth:`check` once, or every *check_interval* in a thread.

    *clock* must count in :func:`time.monotonic` seconds, as ``Lease.started`` does; tests
    pass one that runs ahead to make leases old without waiting.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        leak_threshold: float | None,
        pool_threshold: float | None,
        logger: logging.Logger,
        on_leak: Callable[[LeakAlarm], object] | None = None,
        check_interval: float | None = None,
        pool_alert_every: float = POOL_ALERT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.leak_threshold = leak_threshold
        self.pool_threshold = pool_threshold
        self.logger = logger
        self.on_leak = on_leak
        if check_interval is None:
            check_interval = MAX_CHECK_INTERVAL
            if leak_threshold is not None:
                check_interval = min(check_interval, max(leak_threshold / 4, MIN_CHECK_INTERVAL))
        self.check_interval = check_interval
        self.pool_alert_every = pool_alert_every
        self.clock = clock
        # Leases reported and not yet seen back, by id: (weak ref, when leased, the alarm).
        # A live weak reference pins the id, so an id here is never another lease's.
        self._reported: dict[int, tuple[weakref.ref[Lease], float, LeakAlarm]] = {}
        self._high_water: weakref.WeakKeyDictionary[PoolRecord, int] = weakref.WeakKeyDictionary()
        self._alerted: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()  # one check at a time: the thread's, or a caller's
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False
        self._callback_failed = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the checker thread (a daemon: it never keeps a process from exiting)."""
        if self._thread is None:
            thread = threading.Thread(target=self._run, name="connleak-alarm", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # "can't start new thread": the service starts anyway
                self._log(
                    logging.ERROR,
                    "pytest-connleak: the leak alarm's thread could not start; "
                    "call track().check() to run the checks",
                    exc_info=True,
                )
                return
            self._thread = thread

    def stop(self) -> None:
        """Stop the checker thread and wait for it to end its check (at most 10 s)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # Bounded: a callback of the service's that hangs must not hang its shutdown;
            # the thread is a daemon and ends after that callback returns.
            thread.join(timeout=STOP_TIMEOUT)

    def _run(self) -> None:
        while not self._stopping.wait(self.check_interval):
            self.check()

    # -- checks --------------------------------------------------------------------------

    def check(self) -> list[LeakAlarm]:
        """Run every check once, log what it found, and return the leak alarm's events."""
        try:
            with self._lock:
                alarms, pool_messages = self._check(self.clock())
        except Exception:
            # A bug of ours must not end the thread or reach a caller; say it once.
            if not self._failed:
                self._failed = True
                self._log(
                    logging.ERROR,
                    "pytest-connleak: internal error in the leak alarm; it goes on, and "
                    "this is reported once",
                    exc_info=True,
                )
            return []
        for message in pool_messages:
            self._log(logging.WARNING, message)
        for alarm in alarms:
            self._log(logging.WARNING, alarm.message, extra={EXTRA_KEY: alarm})
            if self.on_leak is not None:
                self._call_back(alarm)
        return alarms

    def _check(self, now: float) -> tuple[list[LeakAlarm], list[str]]:
        alarms: list[LeakAlarm] = []
        if self.leak_threshold is not None:
            alarms = self._check_leases(now, self.leak_threshold)
        messages = []
        if self.pool_threshold is not None:
            messages = self._check_pools(now, self.pool_threshold)
        return alarms, messages

    def _check_leases(self, now: float, threshold: float) -> list[LeakAlarm]:
        open_leases = self.ledger.open_leases()
        open_ids = {id(lease) for lease in open_leases}
        alarms = []
        for key, (ref, started, first) in list(self._reported.items()):
            if ref() is None or key not in open_ids:
                del self._reported[key]
                alarms.append(self._returned(first, now - started))
        cwd = None
        for lease in open_leases:
            key = id(lease)
            age = now - lease.started
            if age < threshold or key in self._reported:
                continue
            cwd = cwd or os.getcwd()
            alarm = self._leaked(lease, age, threshold, cwd)
            self._reported[key] = (weakref.ref(lease), lease.started, alarm)
            alarms.append(alarm)
            with _reported_lock:
                pool = (lease.client, lease.origin)
                _reported_counts[pool] = _reported_counts.get(pool, 0) + 1
        return alarms

    def _leaked(self, lease: Lease, age: float, threshold: float, cwd: str) -> LeakAlarm:
        message = (
            f"possible connection leak: a connection to {lease.origin} ({lease.client}) "
            f"has been leased for {_seconds(age)} (leak_threshold {threshold:g} s), "
            f"by thread {lease.thread_name!r} at {lease.site.format(cwd)}"
        )
        return LeakAlarm(
            "leaked",
            lease.client,
            lease.origin,
            lease.thread_name,
            lease.site,
            age,
            threshold,
            message,
        )

    def _returned(self, first: LeakAlarm, age: float) -> LeakAlarm:
        message = (
            f"previously reported connection returned after {_seconds(age)}: "
            f"{first.origin} ({first.client}), leased by thread {first.thread!r} "
            f"at {first.site.format(os.getcwd())}"
        )
        return LeakAlarm(
            "returned",
            first.client,
            first.origin,
            first.thread,
            first.site,
            age,
            first.threshold,
            message,
        )

    def _check_pools(self, now: float, threshold: float) -> list[str]:
        messages = []
        for rec in self.ledger.pools():
            capacity = rec.capacity
            if not capacity or rec.pool_object is None:
                continue
            # Sampled at each check, plus any new high-water mark since the last one, so a
            # burst between two checks is seen too.
            level = rec.leased
            high = rec.high_water
            if high > self._high_water.get(rec, 0):
                self._high_water[rec] = high
                level = max(level, high)
            # The test run's rule (PoolHealthWarning): at least two at once, and the
            # tolerance that lets 7 reach 0.7 x 10 (7.000000000000001 in floats).
            if level < 2 or level < threshold * capacity - 1e-9:
                continue
            key = (rec.client, rec.origin)
            last = self._alerted.get(key)
            if last is not None and now - last < self.pool_alert_every:
                continue
            self._alerted[key] = now
            messages.append(
                f"pool {rec.origin} ({rec.client}) reached {level} of {capacity} connections "
                f"({_percent(level / capacity)}) (threshold {_percent(threshold)}); "
                f"{rec.leased} leased now"
            )
        return messages

    # -- output ----------------------------------------------------------------------------

    def _log(
        self,
        level: int,
        message: str,
        *,
        exc_info: bool = False,
        extra: dict[str, object] | None = None,
    ) -> None:
        # A logging filter or handler of the service's that raises stops here.
        with contextlib.suppress(Exception):
            self.logger.log(level, message, exc_info=exc_info, extra=extra)

    def _call_back(self, alarm: LeakAlarm) -> None:
        assert self.on_leak is not None
        try:
            self.on_leak(alarm)
        except Exception:
            if not self._callback_failed:
                self._callback_failed = True
                self._log(
                    logging.ERROR,
                    "pytest-connleak: the on_leak callback raised; the alarm goes on "
                    "logging, and this is reported once",
                    exc_info=True,
                )
