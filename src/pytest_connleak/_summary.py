"""The end-of-run summary, built from test reports so that it works under pytest-xdist."""

from __future__ import annotations

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
        terminalreporter.write_line(
            f"{nodeid}: {count} connection{'s' if count != 1 else ''} leaked"
        )
        for line in lines:
            terminalreporter.write_line(f"    {line}")
