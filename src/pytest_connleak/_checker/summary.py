"""The end-of-run summary, built from test reports so that it works under pytest-xdist."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from .health import usage_from_report

__all__ = [
    "KNOWN_SDK_BEHAVIOUR",
    "LEAK_PROPERTY",
    "PoolRow",
    "pool_rows",
    "write_internal_errors",
    "write_pool_table",
    "write_summary",
]

LEAK_PROPERTY = "connection_leak"
"""Name of the ``user_properties`` entry (and JUnit XML property) of each leak."""

KNOWN_SDK_BEHAVIOUR = "known SDK behaviour"
"""Status of a lease an SDK left open on its documented path, where no pool can run dry."""


def write_summary(terminalreporter: pytest.TerminalReporter) -> None:
    write_pool_table(terminalreporter)
    leaking: dict[str, list[str]] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == LEAK_PROPERTY and getattr(report, "when", None) == "teardown":
                    leaking.setdefault(report.nodeid, []).append(str(value))
    if not leaking:
        return
    terminalreporter.write_sep("=", "connection leaks", yellow=True)
    for nodeid, lines in leaking.items():
        count = len(lines)
        headline = f"{nodeid}: {count} connection{'s' if count != 1 else ''} leaked"
        statuses = [_status(line) for line in lines]
        if statuses[0] is not None and statuses.count(statuses[0]) == count:
            # One reason for all (the usual case): say it once, on the headline.
            headline += f" ({statuses[0]})"
            lines = [line[: -len(statuses[0]) - 3] for line in lines]
        elif any(statuses):
            kinds: dict[str, int] = {}
            for status in filter(None, statuses):
                kind = status.partition(":")[0]
                kinds[kind] = kinds.get(kind, 0) + 1
            headline += f" ({', '.join(f'{n} {kind}' for kind, n in kinds.items())})"
        terminalreporter.write_line(headline)
        for line in lines:
            terminalreporter.write_line(f"    {line}")


# A lease line ends "in function" when it counted, or "(why it did not)" when excused by an
# ignore rule, allow_leaks or the baseline (see _policy).
_STATUS = re.compile(
    r" \(((?:ignored|allowed|in baseline|recorded in baseline|known SDK behaviour)(?:: .*)?)\)$"
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

    def cells(self) -> list[str]:
        capacity = "none" if self.capacity is None else str(self.capacity)
        return [
            self.origin,
            ", ".join(sorted(self.clients)),
            str(self.leases),
            str(self.leaks),
            f"{self.high_water}/{capacity}",
            str(self.waits),
        ]


_HEADER = ["pool", "client", "leases", "leaks", "high-water/capacity", "waits"]


def pool_rows(reports: Iterable[object]) -> list[PoolRow]:
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
    reports = (r for reports in terminalreporter.stats.values() for r in reports)
    rows = pool_rows(reports)
    if not rows:
        return
    table = [_HEADER] + [row.cells() for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER))]
    terminalreporter.write_sep("=", "connection pools")
    for line in table:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        terminalreporter.write_line("  ".join(cells).rstrip())


def write_internal_errors(terminalreporter: pytest.TerminalReporter, lines: list[str]) -> None:
    """The "connleak internal errors" section: one line per distinct failure of ours."""
    terminalreporter.write_sep("=", "connleak internal errors", red=True)
    for line in lines:
        terminalreporter.write_line(f"INTERNAL ERROR (not a test failure): {line}")
