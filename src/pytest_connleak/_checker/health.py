"""Pool health: each checked test's pool usage, the two warning rules, and usage on reports.

The ledger counts; this module decides what is worth a :class:`PoolHealthWarning` and puts
each test's usage on its teardown report, where the end-of-run summary (and pytest-xdist,
which ships reports from the workers to the controller) finds it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any

import pytest

from pytest_connleak._core.ledger import Ledger, PoolUsage
from pytest_connleak._core.warnings import PoolHealthWarning

__all__ = [
    "SMALL_POOL",
    "USAGE_ATTR",
    "PoolHealth",
    "health_messages",
    "usage_from_report",
]

SMALL_POOL = 2
"""Capacity at or below which any wait for a connection is worth a warning.

A wait on a bigger pool means the test drove it to 100%, which the threshold rule already
reports; a pool this small is the "configured smaller than intended" case, where a service
quietly becomes a one- or two-at-a-time service. A one-connection pool is never reported by
the threshold rule (one request at a time is what it is for), only by this one.
"""

USAGE_ATTR = "connleak_pools"
"""Attribute of a teardown report holding that test's pool usage, a list of dicts.

Reports carry extra attributes through pytest-xdist (and pytest-reportlog), so the summary
can be built from reports alone. It is not a ``user_properties`` entry: that would add a
JUnit XML property to every test that made a request.
"""

_USAGE_KEY = pytest.StashKey[list[PoolUsage]]()


def _percent(share: float) -> str:
    return f"{round(share * 100, 1):g}%"


def health_messages(usage: Iterable[PoolUsage], threshold: float, test: str) -> list[str]:
    """The PoolHealthWarning texts that *test*'s pool usage calls for, in a stable order.

    Two independent rules: the test held at least two connections of a pool at once and
    so reached *threshold* of its capacity; requests waited for a connection of a pool of
    at most :data:`SMALL_POOL` connections.
    """
    messages = []
    for u in sorted(usage, key=lambda u: (u.origin, u.capacity or 0)):
        capacity = u.capacity
        if capacity is None:
            continue
        # "At least two at once": sequential code holds one connection at a time and a
        # pool of one is full whenever it is used; neither is a pool running out.
        # The small tolerance keeps 0.7 x 10 (7.000000000000001 in floats) reachable by 7.
        if u.peak >= 2 and u.peak >= threshold * capacity - 1e-9:
            messages.append(
                f"pool {u.origin} reached {u.peak} of {capacity} connections "
                f"({_percent(u.peak / capacity)}) during {test} "
                f"(threshold {_percent(threshold)})"
            )
        if u.waits and capacity <= SMALL_POOL:
            requests = "1 request" if u.waits == 1 else f"{u.waits} requests"
            messages.append(
                f"{requests} waited for a connection of pool {u.origin} "
                f"(capacity {capacity}) during {test}; a pool this small makes concurrent "
                "requests queue"
            )
    return messages


def usage_from_report(report: object) -> list[PoolUsage]:
    """The pool usage a teardown report carries (none for other reports)."""
    entries: Sequence[dict[str, Any]] = getattr(report, USAGE_ATTR, None) or ()
    usage = []
    for entry in entries:
        try:
            usage.append(PoolUsage(**entry))
        except TypeError:  # a report from another version of the plugin: skip it
            continue
    return usage


class PoolHealth:
    """The pytest hooks of pool health, registered next to the leak checker."""

    def __init__(
        self, ledger: Ledger, threshold: float, should_check: Callable[[pytest.Item], bool]
    ) -> None:
        self.ledger = ledger
        self.threshold = threshold
        self.should_check = should_check

    @classmethod
    def register(
        cls,
        config: pytest.Config,
        ledger: Ledger,
        threshold: float,
        should_check: Callable[[pytest.Item], bool],
    ) -> PoolHealth:
        """Register the hooks for this run; unregistered when the run ends.

        Call this after the leak checker is registered: the teardown wrapper must then be
        the outer one, so that it sees the verdict and a warning turned into an error
        cannot stop the verdict from being reached.
        """
        health = cls(ledger, threshold, should_check)
        config.pluginmanager.register(health, "connleak-pool-health")

        def unregister() -> None:
            if config.pluginmanager.is_registered(health):
                config.pluginmanager.unregister(health)

        config.add_cleanup(unregister)
        return health

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        # Open the first test's window: requests made at collection are no test's. Each
        # teardown then opens the next test's window (there is nothing in between), which
        # spares every test a setup hook.
        self.ledger.take_usage()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        __tracebackhide__ = True
        try:
            result = yield
        except BaseException:
            self._finish(item, failed=True)
            raise
        self._finish(item, failed=False)
        return result

    def _finish(self, item: pytest.Item, failed: bool) -> None:
        __tracebackhide__ = True
        # After every fixture of this scope is finalised, so their requests count too.
        usage = self.ledger.take_usage()
        if not usage or not self.should_check(item):
            return
        item.stash[_USAGE_KEY] = usage
        name = item.name if isinstance(item, pytest.Function) else item.nodeid
        error: PoolHealthWarning | None = None
        for message in health_messages(usage, self.threshold, name):
            warning = PoolHealthWarning(message)
            try:
                item.warn(warning)
            except PoolHealthWarning as raised:
                # A filter made it an error. The first becomes this teardown's error,
                # unless teardown already failed (a leak): that error must not be replaced
                # by ours. The others are recorded as warnings, so none goes unseen.
                if error is None and not failed:
                    error = raised
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("always", PoolHealthWarning)
                    item.warn(warning)
        if error is not None:
            raise error

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when == "teardown":
            usage = item.stash.get(_USAGE_KEY, None)
            if usage:
                setattr(report, USAGE_ATTR, [u.to_dict() for u in usage])
        return report
