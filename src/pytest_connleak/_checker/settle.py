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

So the collection keeps them, and hands them to ``sys.unraisablehook`` at the start of the
next full collection that is not ours, which would have found that garbage without us:
the latest moment CPython could have set them off itself, never an earlier test (garbage
young enough for a younger collection is reported a little later than CPython would have).
Whatever is still held when the interpreter exits goes to the hook then in place, as
CPython's own collection at exit would: nothing is dropped. Warnings that a finalizer only shows (not escalated to errors)
are left to pytest: they change no outcome.

One ``gc.callbacks`` entry for the process, added the first time something is held and
kept: what is held may outlive the run (an in-process pytester run's garbage belongs to
the outer run's next full collection), and removing a callback from inside a collection
would make CPython skip the next one in the list. Lock-free: the hand-over runs inside a
garbage collection, on any thread, possibly while this module's own code is running.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import sys
import threading
from collections import deque
from typing import Any

__all__ = ["collect"]

_held: deque[Any] = deque()
_state = {"collecting": False, "watching": False}


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

    _state["collecting"] = True
    sys.unraisablehook = hook
    try:
        gc.collect()
    finally:
        if sys.unraisablehook is hook:  # a finalizer may have installed its own
            sys.unraisablehook = previous
        _state["collecting"] = False
    if held and not _state["watching"]:
        _state["watching"] = True
        gc.callbacks.append(_on_gc)
        atexit.register(_hand_over)


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start" and info.get("generation") == 2 and not _state["collecting"]:
        _hand_over()


def _hand_over() -> None:
    while _held:
        try:
            unraisable = _held.popleft()
        except IndexError:  # another thread took the last one
            return
        # A hook that fails reports its own failure (pytest's queues it); go on.
        with contextlib.suppress(Exception):
            sys.unraisablehook(unraisable)
