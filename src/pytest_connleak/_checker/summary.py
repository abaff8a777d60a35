"""The end-of-run summary, built from test reports so that it works under pytest-xdist."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from .health import health_flags, usage_from_report

# The names the reports carry are defined with the settings, which every run loads, so
# that a run whose reports carry none never imports this module (see ``has_results``).
from .settings import (
    DEFAULT_POOL_THRESHOLD,
    LEAK_PROPERTY,
    SETTINGS_KEY,
    SOCKET_PROPERTY,
)

__all__ = [
    "KNOWN_SDK_BEHAVIOUR",
    "LEAK_PROPERTY",
    "SOCKET_PROPERTY",
    "PoolRow",
    "pool_rows",
    "write_internal_errors",
    "write_pool_table",
    "write_summary",
]

_KINDS = (LEAK_PROPERTY, SOCKET_PROPERTY)
_KIND_NOUNS = {LEAK_PROPERTY: "connection", SOCKET_PROPERTY: "socket"}

KNOWN_SDK_BEHAVIOUR = "known SDK behaviour"
"""Status of a lease an SDK left open on its documented path, where no pool can run dry."""


def write_summary(terminalreporter: pytest.TerminalReporter) -> None:
    write_pool_table(terminalreporter)
    # One block per test and kind: pooled connections, then sockets (the socket check).
    leaking: dict[tuple[str, str], list[str]] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "teardown":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name in _KINDS:
                    leaking.setdefault((report.nodeid, name), []).append(str(value))
    if not leaking:
        return
    terminalreporter.write_sep("=", "connection leaks", yellow=True)
    # Insertion order: tests as reported; a test's pool leaks before its sockets.
    for (nodeid, kind), lines in leaking.items():
        count = len(lines)
        noun = _KIND_NOUNS[kind]
        headline = f"{nodeid}: {count} {noun}{'s' if count != 1 else ''} leaked"
        statuses = [_status(line) for line in lines]
        if statuses[0] is not None and statuses.count(statuses[0]) == count:
            # One reason for all (the usual case): say it once, on the headline.
            headline += f" ({statuses[0]})"
            lines = [line[: -len(statuses[0]) - 3] for line in lines]
        elif any(statuses):
            kinds: dict[str, int] = {}
            for status in filter(None, statuses):
                why = status.partition(":")[0]
                kinds[why] = kinds.get(why, 0) + 1
            headline += f" ({', '.join(f'{n} {why}' for why, n in kinds.items())})"
        terminalreporter.write_line(headline)
        for line in lines:
            terminalreporter.write_line(f"    {line}")


# A lease line ends "in function" when it counted, or "(why it did not fail the test)" when
# excused by an ignore rule, allow_leaks, the baseline or a known SDK behaviour, or warned
# in warn mode (_policy).
_STATUS = re.compile(
    r" \(((?:ignored|allowed|in baseline|recorded in baseline|known SDK behaviour|warned)"
    r"(?:: .*)?)\)$"
)


def _status(line: str) -> str | None:
    match = _STATUS.search(line)
    return match.group(1) if match else None


@dataclass
class PoolRow:
    """One origin's line of the pool table, summed over every checked test's report."""

    origin: str
    clients: set[str] = field(default_factory=set)
    leases: int = 0
    leaks: int = 0  # excused ones included: the pool lost those connections too
    high_water: int = 0
    capacity: int | None = None
    waits: int = 0
    #: How many tests drove one pool of this origin to the threshold, and how many made
    #: requests wait on a small one (pool health's two rules).
    busy_tests: int = 0
    queued_tests: int = 0

    def health(self, threshold: float) -> str:
        """The pool health mark: which rule tests broke on this origin, and how often."""
        marks = []
        if self.busy_tests:
            marks.append(f"reached {round(threshold * 100, 1):g}% in {_tests(self.busy_tests)}")
        if self.queued_tests:
            marks.append(f"requests waited in {_tests(self.queued_tests)}")
        return "; ".join(marks)

    def cells(self) -> list[str]:
        # "-": an unbounded pool has no capacity to be measured against.
        capacity = "-" if self.capacity is None else str(self.capacity)
        return [
            self.origin,
            ", ".join(sorted(self.clients)),
            str(self.leases),
            str(self.leaks),
            f"{self.high_water}/{capacity}",
            str(self.waits),
        ]


_HEADER = ["pool", "client", "leases", "leaks", "high-water/capacity", "waits"]


def _tests(n: int) -> str:
    return "1 test" if n == 1 else f"{n} tests"


def pool_rows(
    reports: Iterable[object], threshold: float = DEFAULT_POOL_THRESHOLD
) -> list[PoolRow]:
    """One row per origin from teardown reports: their pool usage and their leaks.

    The high-water mark is the most connections one pool of that origin had out at once,
    shown against that pool's capacity: each pool has its own, and peaks of different
    pools are never added up.
    """
    rows: dict[str, PoolRow] = {}
    for report in reports:
        if getattr(report, "when", None) != "teardown":
            continue
        for usage in usage_from_report(report):
            row = rows.setdefault(usage.origin, PoolRow(usage.origin))
            row.clients.add(usage.client)
            row.leases += usage.leases
            row.waits += usage.waits
            busy, queued = health_flags(usage, threshold)
            row.busy_tests += busy
            row.queued_tests += queued
            # The fullest pool wins; on a tie, the smaller capacity (the closer call).
            if (usage.peak, -(usage.capacity or 0)) > (row.high_water, -(row.capacity or 0)):
                row.high_water, row.capacity = usage.peak, usage.capacity
        for name, value in getattr(report, "user_properties", ()):
            if name == LEAK_PROPERTY:
                # The property reads "origin — leased at path:line in function", then
                # " (why it was excused)" for an excused leak, which counts here too:
                # the pool lost that connection all the same.
                origin = str(value).split(" — ", 1)[0]
                rows.setdefault(origin, PoolRow(origin)).leaks += 1
    return [rows[origin] for origin in sorted(rows)]


def write_pool_table(terminalreporter: pytest.TerminalReporter) -> None:
    """The "connection pools" section: one row per origin, when any test used a pool."""
    settings = terminalreporter.config.stash.get(SETTINGS_KEY, None)
    threshold = settings.pool_threshold if settings else DEFAULT_POOL_THRESHOLD
    reports = (r for reports in terminalreporter.stats.values() for r in reports)
    rows = pool_rows(reports, threshold)
    if not rows:
        return
    header = _HEADER
    table = [row.cells() for row in rows]
    marks = [row.health(threshold) for row in rows]
    if any(marks):
        # Pool health, quiet by default: the table marks the pools; the warnings that
        # name each test are there for whoever asks (--leak-check-pool-warnings).
        header = [*_HEADER, "health"]
        table = [[*cells, mark] for cells, mark in zip(table, marks, strict=True)]
    table = [header, *table]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    terminalreporter.write_sep("=", "connection pools")
    for line in table:
        cells = [
            cell.ljust(width) if i < 2 or i >= len(_HEADER) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        terminalreporter.write_line("  ".join(cells).rstrip())
    if any(marks) and not (settings and settings.pool_warnings):
        terminalreporter.write_line(
            "health: --leak-check-pool-warnings names the tests (PoolHealthWarning)"
        )


def write_internal_errors(terminalreporter: pytest.TerminalReporter, lines: list[str]) -> None:
    """The "connleak internal errors" section: one line per distinct failure of ours."""
    terminalreporter.write_sep("=", "connleak internal errors", red=True)
    for line in lines:
        terminalreporter.write_line(f"INTERNAL ERROR (not a test failure): {line}")
