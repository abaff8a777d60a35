"""The end-of-run summary, built from test reports so that it works under pytest-xdist."""

from __future__ import annotations

import re

import pytest

__all__ = ["LEAK_PROPERTY", "write_summary"]

LEAK_PROPERTY = "connection_leak"
"""Name of the ``user_properties`` entry (and JUnit XML property) of each leak."""


def write_summary(terminalreporter: pytest.TerminalReporter) -> None:
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
_STATUS = re.compile(r" \(((?:ignored|allowed|in baseline|recorded in baseline)(?:: .*)?)\)$")


def _status(line: str) -> str | None:
    match = _STATUS.search(line)
    return match.group(1) if match else None
