"""The verdict's garbage collection, without letting its finalizers change an outcome.

The verdict collects garbage before it calls an open lease a leak (a response caught in a
reference cycle gives its connection back when its finalizer runs). That collection also
finalises garbage that is not ours to judge: an earlier test's unclosed socket, an event
loop's socket pair. Their finalizers can warn (``ResourceWarning``) or raise (an
unraisable exception). Without the plugin CPython would run them at some later collection,
under whatever warning filters are in force then: inside a ``pytest.warns()`` block they
are recorded, between tests ignored, under ``filterwarnings = error`` raised and reported
by pytest on whatever test (or end of session) it is. Run by us, under the judged test's
filters, they would fail that test, the next one (pytest 8.4+ reports them at the next
phase's check: seen in urllib3's own suite) or the whole session.

So the collection records what its finalizers warn and catches what they raise, and the
run's summary lists it (``connleak: garbage collected before a verdict``): shown to the
user, never dropped, never a test's or the session's failure. Handing it to pytest later
instead is no better: its outcome would depend on the filters then, and pytest's hook,
called inside a later collection, formats a traceback inside whatever allocation started
it (a ``compile()``: ``SystemError: AST constructor recursion depth mismatch`` on 3.11).

The recording replaces the warning filters process-wide for the length of the collection,
so a warning another thread emits in that moment is listed here too, not lost.
"""

from __future__ import annotations

import gc
import sys
import threading
import warnings
from typing import Any

__all__ = ["collect", "take_kept"]

_kept: list[str] = []


def collect() -> None:
    """``gc.collect()``, keeping what the finalizers it runs warn or raise for the summary."""
    me = threading.get_ident()
    previous = sys.unraisablehook
    caught: list[Any] = []

    def hook(unraisable: Any) -> None:
        if threading.get_ident() == me:
            caught.append(unraisable)
        else:  # another thread's finalizer, not set off by this collection
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")  # recorded, never escalated to errors here
            gc.collect()
    finally:
        if sys.unraisablehook is hook:  # a finalizer may have installed its own
            sys.unraisablehook = previous
    for message in shown:
        _kept.append(f"{message.category.__name__}: {message.message}")
    for unraisable in caught:
        what = unraisable.err_msg or "Exception ignored in"
        error = unraisable.exc_type.__name__
        _kept.append(f"{what}: {unraisable.object!r}: {error}: {unraisable.exc_value}")


def take_kept() -> list[str]:
    """What the collections kept since the last call, one line each, oldest first."""
    kept = _kept[:]
    del _kept[: len(kept)]
    return kept
