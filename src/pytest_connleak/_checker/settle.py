"""The verdict's garbage collection, without moving what its finalizers report.

The verdict collects garbage before it calls an open lease a leak (a response caught in a
reference cycle gives its connection back when its finalizer runs). That collection also
finalises garbage that is not ours to judge: an earlier test's unclosed socket, an event
loop's socket pair. Their finalizers can set off unraisable exceptions (a
``ResourceWarning`` under ``filterwarnings = error``, a ``__del__`` that raises), which
pytest reports as ``PytestUnraisableExceptionWarning`` on whatever test is running when
CPython hands them to ``sys.unraisablehook``. Without the plugin, CPython finds that
garbage at a later full collection (an automatic one, pytest's own at the end of the
session on pytest 8.4+, or the interpreter's at exit). Handed over by our collection, which
runs after pytest's check of the teardown, they would land on the next test's setup on
pytest 8.4+ (seen in urllib3's own suite), and on the outer test of an in-process
pytester run on pytest 8.2-8.3.

So the collection keeps them, and hands them to ``sys.unraisablehook`` when the run ends,
where CPython's last collection would have found that garbage at the latest: on pytest
8.4+ just before pytest's own last collection and check (they are reported after the last
test, as without the plugin); before 8.4, when the interpreter exits (the hook then in
place prints them, as it would for garbage collected at exit). Never on an earlier test,
never dropped; garbage that an automatic full collection would have found in the middle
of the run is reported at its end instead. Warnings that a finalizer only shows (not
escalated to errors) are left to pytest: they change no outcome.

Not at the next automatic full collection: that starts inside whatever allocation
triggered it (a ``compile()`` in pytest's report formatting, say), and pytest's hook
formats a traceback there, which parses source: CPython 3.11 then fails the outer compile
with ``SystemError: AST constructor recursion depth mismatch`` (seen in urllib3's suite).
"""

from __future__ import annotations

import atexit
import gc
import sys
import threading
from collections import deque
from typing import Any

__all__ = ["collect", "hand_over"]

_held: deque[Any] = deque()
_at_exit = {"registered": False}


def collect() -> None:
    """``gc.collect()``, keeping what the finalizers it runs could not raise."""
    me = threading.get_ident()
    previous = sys.unraisablehook
    held = _held

    def hook(unraisable: Any) -> None:
        if threading.get_ident() == me:
            held.append(unraisable)
        else:  # another thread's finalizer, not set off by this collection
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        gc.collect()
    finally:
        if sys.unraisablehook is hook:  # a finalizer may have installed its own
            sys.unraisablehook = previous


def hand_over(now: bool) -> None:
    """Give what the collections kept to ``sys.unraisablehook``: *now*, or at exit."""
    if not now:
        if _held and not _at_exit["registered"]:
            _at_exit["registered"] = True
            atexit.register(_hand_over)
        return
    _hand_over()


def _hand_over() -> None:
    while _held:
        unraisable = _held.popleft()
        try:
            sys.unraisablehook(unraisable)
        except Exception:  # noqa: S112 - a failing hook reports its own failure (pytest's queues it)
            continue
