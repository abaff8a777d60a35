"""Pool metrics for Prometheus: the logic of ``pytest_connleak.prometheus.PoolCollector``.

A custom collector reads the ledger at each scrape, so it costs nothing per request.
Series are per ``(client, origin)``, never per pool object: pools come and go (a
``requests.get()`` makes one per call), and a label per pool would grow without bound and
name nothing an operator can act on. The pools of one origin add up; the pools that died
are folded into their origin by the ledger (``retired_usage``), so the counters never go
back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pytest_connleak._core.ledger import Ledger, ledger
from pytest_connleak._core.pools import idle_connections, live_pools

from .alarm import leaks_reported

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError as exc:
    # The package, not the extra's index form: pytest-connleak is not on an index yet.
    raise ImportError(
        "pytest_connleak.prometheus needs prometheus_client: pip install prometheus_client "
        "(the 'prometheus' extra of pytest-connleak)"
    ) from exc

__all__ = ["METRICS", "PoolCollector"]

LABELS = ("client", "origin")

# name, type, help. Counters are named with their _total suffix, as exposed.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("connleak_pool_leased", "gauge", "Connections handed out and not yet returned."),
    ("connleak_pool_idle", "gauge", "Open connections kept by the pool for reuse."),
    (
        "connleak_pool_capacity",
        "gauge",
        "The most connections the pools keep (not listed for a pool without a limit).",
    ),
    (
        "connleak_pool_high_water",
        "gauge",
        "The most connections leased at once by one pool since it was first seen.",
    ),
    ("connleak_pool_leases_total", "counter", "Connections handed out."),
    (
        "connleak_pool_waits_total",
        "counter",
        "Requests that found a blocking pool full and waited for a connection.",
    ),
    (
        "connleak_pool_leaks_total",
        "counter",
        "Connections the leak alarm reported as leased longer than track(leak_threshold).",
    ),
)
"""Every metric the collector exposes: ``(name, type, help)``."""


@dataclass
class _Origin:
    """The pools of one (client, origin), summed; ``live`` when one of them is alive."""

    live: bool = False
    leased: int = 0
    idle: int | None = 0
    capacity: int | None = 0
    high_water: int = 0
    leases: int = 0
    waits: int = 0
    leaks: int = 0


class PoolCollector:
    """A ``prometheus_client`` collector of the pools ``track()`` sees.

    Register it once, next to ``track()`` at start-up::

        from prometheus_client import REGISTRY
        from pytest_connleak.prometheus import PoolCollector

        tracking = pytest_connleak.track(leak_threshold=30)
        REGISTRY.register(PoolCollector())

    Each scrape exposes, per ``client`` and ``origin`` label pair: the gauges
    ``connleak_pool_leased``, ``connleak_pool_idle``, ``connleak_pool_capacity`` (the
    pools alive now, summed) and ``connleak_pool_high_water`` (the largest of the origin's
    pools, dead ones included); the counters ``connleak_pool_leases_total``,
    ``connleak_pool_waits_total`` and ``connleak_pool_leaks_total`` (connections the leak
    alarm reported), which count the pools that died too. Nothing is measured per request:
    the collector reads the tracker's records when scraped.
    """

    __module__ = "pytest_connleak.prometheus"

    def __init__(self) -> None:
        self._ledger: Ledger = ledger
        # The last value of each counter series: a pool dying between the two reads of a
        # scrape can be missed once, and a counter must never be seen going back.
        self._last: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (the registry checks names with these)."""
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        """The metric families with one sample per ``(client, origin)``."""
        origins = self._origins()
        families = {family.name: family for family in self._families()}
        with self._lock:
            for (client, origin), o in sorted(origins.items()):
                labels = [client, origin]
                if o.live:
                    families["connleak_pool_leased"].add_metric(labels, o.leased)
                    if o.idle is not None:
                        families["connleak_pool_idle"].add_metric(labels, o.idle)
                    if o.capacity is not None:
                        families["connleak_pool_capacity"].add_metric(labels, o.capacity)
                families["connleak_pool_high_water"].add_metric(labels, o.high_water)
                for name, value in (
                    ("connleak_pool_leases", o.leases),
                    ("connleak_pool_waits", o.waits),
                    ("connleak_pool_leaks", o.leaks),
                ):
                    key = (name, client, origin)
                    shown = max(float(value), self._last.get(key, 0.0))
                    self._last[key] = shown
                    families[name].add_metric(labels, shown)
        return list(families.values())

    def _families(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for name, kind, text in METRICS:
            if kind == "counter":
                yield CounterMetricFamily(name, text, labels=LABELS)
            else:
                yield GaugeMetricFamily(name, text, labels=LABELS)

    def _origins(self) -> dict[tuple[str, str], _Origin]:
        origins: dict[tuple[str, str], _Origin] = {}
        # The dead first, then the living: a pool that dies in between is missed once
        # (and the counters hold their last value) rather than counted twice.
        for usage in self._ledger.retired_usage():
            o = origins.setdefault((usage.client, usage.origin), _Origin())
            o.leases += usage.leases
            o.waits += usage.waits
            o.high_water = max(o.high_water, usage.peak)
        for rec, pool in live_pools(self._ledger):
            if pool is None:  # died: in retired_usage() from the next scrape on
                continue
            o = origins.setdefault((rec.client, rec.origin), _Origin())
            o.live = True
            o.leased += rec.leased
            o.high_water = max(o.high_water, rec.high_water)
            o.leases += rec.total_leases
            o.waits += rec.waits
            o.capacity = _add(o.capacity, rec.capacity)
            o.idle = _add(o.idle, _count(idle_connections(pool)))
        for key, count in leaks_reported().items():
            origins.setdefault(key, _Origin()).leaks = count
        return origins


def _add(total: int | None, value: int | None) -> int | None:
    # One pool of unknown size makes the origin's total unknown.
    return None if total is None or value is None else total + value


def _count(items: list[Any] | None) -> int | None:
    return len(items) if items is not None else None
