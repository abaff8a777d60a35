"""Pool health: the two rules, the warnings they give when asked for, usage on reports.

The ledger counts; this module decides what is worth marking in the pools table and, with
``--leak-check-pool-warnings``, a :class:`PoolHealthWarning`. The checker
(``verdict.LeakChecker``) puts each test's usage on its teardown report, where the
end-of-run summary (and pytest-xdist, which ships reports from the workers to the
controller) finds it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from pytest_connleak._core.ledger import PoolUsage
from pytest_connleak._core.warnings import PoolHealthWarning

from .settings import USAGE_ATTR

__all__ = [
    "SMALL_POOL",
    "USAGE_ATTR",
    "health_flags",
    "health_messages",
    "usage_from_report",
    "warn_health",
]

SMALL_POOL = 2
"""Capacity at or below which any wait for a connection is worth a warning.

A wait on a bigger pool means the test drove it to 100%, which the threshold rule already
reports; a pool this small is the "configured smaller than intended" case, where a service
quietly becomes a one- or two-at-a-time service. A one-connection pool is never reported by
the threshold rule (one request at a time is what it is for), only by this one.
"""


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
        reached, waited = health_flags(u, threshold)
        if reached:
            messages.append(
                f"pool {u.origin} reached {u.peak} of {capacity} connections "
                f"({_percent(u.peak / capacity)}) during {test} "
                f"(threshold {_percent(threshold)})"
            )
        if waited:
            requests = "1 request" if u.waits == 1 else f"{u.waits} requests"
            messages.append(
                f"{requests} waited for a connection of pool {u.origin} "
                f"(capacity {capacity}) during {test}; a pool this small makes concurrent "
                "requests queue"
            )
    return messages


def health_flags(usage: PoolUsage, threshold: float) -> tuple[bool, bool]:
    """Which rules *usage* breaks: (reached the threshold, made requests wait on a small pool).

    The pools table marks a pool by these whether or not warnings are on.
    """
    capacity = usage.capacity
    if capacity is None:
        return False, False
    # "At least two at once": sequential code holds one connection at a time and a
    # pool of one is full whenever it is used; neither is a pool running out.
    # The small tolerance keeps 0.7 x 10 (7.000000000000001 in floats) reachable by 7.
    reached = usage.peak >= 2 and usage.peak >= threshold * capacity - 1e-9
    return reached, bool(usage.waits) and capacity <= SMALL_POOL


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


def warn_health(
    item: pytest.Item, usage: Iterable[PoolUsage], threshold: float, failed: bool
) -> None:
    """Emit *item*'s PoolHealthWarnings (only when the user asked for pool warnings).

    A warning a filter turns into an error becomes this teardown's error, unless teardown
    already *failed* (a leak): that error must not be replaced by ours. The others are
    recorded as warnings, so none goes unseen.
    """
    __tracebackhide__ = True
    name = item.name if isinstance(item, pytest.Function) else item.nodeid
    error: PoolHealthWarning | None = None
    for message in health_messages(usage, threshold, name):
        warning = PoolHealthWarning(message)
        try:
            item.warn(warning)
        except PoolHealthWarning as raised:
            if error is None and not failed:
                error = raised
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("always", PoolHealthWarning)
                item.warn(warning)
    if error is not None:
        raise error
