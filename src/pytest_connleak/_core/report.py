"""Turning open leases into the text a user reads, and the exception that carries it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .ledger import Lease

__all__ = ["ConnectionLeakError", "format_leaks", "lease_line"]


class ConnectionLeakError(AssertionError):
    """Raised when connections leased from a pool were not given back.

    ``leases`` holds the :class:`~pytest_connleak.Lease` objects that were still open.
    It subclasses :class:`AssertionError` so that unittest and other runners count a leak
    as a failure.
    """

    __module__ = "pytest_connleak"

    def __init__(self, message: str, leases: Sequence[Lease] = ()) -> None:
        super().__init__(message)
        self.leases = list(leases)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def lease_line(lease: Lease, relative_to: str | None = None) -> str:
    """``origin — leased at path:line in function`` for one lease."""
    return f"{lease.origin} — leased at {lease.site.format(relative_to)}"


def format_leaks(
    leases: Sequence[Lease],
    culprit: str,
    when: str,
    advise: Callable[[Lease], str],
    relative_to: str | None = None,
) -> str:
    """The full report: a headline, then the leases grouped under the hint that fits them.

    Leases that share origin and site are folded into one line with a count.
    """
    by_hint: dict[str, dict[str, int]] = {}
    for lease in leases:
        lines = by_hint.setdefault(advise(lease), {})
        line = lease_line(lease, relative_to)
        lines[line] = lines.get(line, 0) + 1
    out = [f"{_plural(len(leases), 'connection')} leaked by {culprit} ({when})"]
    for hint, lines in by_hint.items():
        for line, count in lines.items():
            out.append(f"  {line} (×{count})" if count > 1 else f"  {line}")
        out.append(f"  {hint}")
    return "\n".join(out)
