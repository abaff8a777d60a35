"""A leak as a pytest failure: ``E`` lines, then ``path:line: ConnectionLeakError``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_connleak._core.report import ConnectionLeakError

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

__all__ = ["leak_repr"]


def leak_repr(
    error: ConnectionLeakError,
    relative_to: str | None = None,
    fallback: tuple[str, int] = ("<connleak>", 0),
) -> TerminalRepr | str:
    """A pytest report body for *error*: the message, then the first lease site.

    *fallback* (path, line) is the location shown when no lease is attached (a leak of
    plain sockets); the plugin passes the test's own location.

    It reads like any pytest failure (``E`` lines, then ``path:line: ConnectionLeakError``)
    and survives pytest-xdist's serialisation; the short summary shows the headline.
    """
    text = f"ConnectionLeakError: {error}"
    lines = [f"E   {line}" for line in text.splitlines()]
    try:
        from _pytest._code.code import (
            ReprEntry,
            ReprExceptionInfo,
            ReprFileLocation,
            ReprTraceback,
        )

        site = error.leases[0].site if error.leases else None
        path, lineno = (site.path(relative_to), site.lineno) if site else fallback
        location = ReprFileLocation(path, lineno, "ConnectionLeakError")
        entry = ReprEntry(lines, None, None, location, "long")
        return ReprExceptionInfo(
            reprtraceback=ReprTraceback([entry], None, "long"),
            reprcrash=ReprFileLocation(path, lineno, text.splitlines()[0]),
        )
    except Exception:  # a pytest whose report classes changed: plain text still reads well
        return "\n".join(lines)
