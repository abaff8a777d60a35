"""The lease site stays right when the ledger skips the walk for a call path it has seen.

The ledger remembers recent call paths (the user frame's depth, code and instruction, and
the library frame it called) to avoid walking the stack on every request. These tests
alternate call paths that share a line, a depth or a callee and check every lease's site.
No network: ``_get_conn`` on a urllib3 pool hands out an unconnected connection.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from urllib3 import connectionpool

from pytest_connleak._core.adapters import Instrumentation
from pytest_connleak._core.ledger import Ledger

# A function that lives in urllib3's file: its frames are library frames.
_LIBRARY: dict[str, Any] = {}
_SOURCE = "def library_get(pool):\n    return pool._get_conn()\n"
exec(compile(_SOURCE, connectionpool.__file__, "exec"), _LIBRARY)
library_get: Callable[[Any], Any] = _LIBRARY["library_get"]


def user_get(pool: Any) -> Any:
    return pool._get_conn()  # line of user_get


def deeper_user_get(pool: Any) -> Any:
    return user_get(pool)


@pytest.fixture
def tracked() -> Iterator[Ledger]:
    instrumentation = Instrumentation(Ledger())
    instrumentation.install()
    try:
        yield instrumentation.ledger
    finally:
        instrumentation.uninstall()


def line_of(func: Callable[..., Any], text: str) -> int:
    lines, start = inspect.getsourcelines(func)
    return start + next(i for i, line in enumerate(lines) if text in line)


def test_alternating_paths_from_one_line_each_get_their_own_site(tracked: Ledger) -> None:
    this = test_alternating_paths_from_one_line_each_get_their_own_site
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=100)
    for _ in range(3):
        for get in (library_get, user_get, deeper_user_get, library_get):
            conn = get(pool)  # the caller's line, when get is library code
            lease = tracked.open_leases()[-1]
            if get is library_get:
                assert lease.site.function == this.__name__
                assert lease.site.lineno == line_of(this, "conn = get(pool)")
                assert lease.site.library == "urllib3"
            else:
                assert lease.site.function == "user_get"
                assert lease.site.lineno == line_of(user_get, "line of user_get")
                assert lease.site.library == ""  # no library frame between: a direct call
            pool._put_conn(conn)
    assert tracked.open_leases() == []


def test_the_same_path_from_two_lines(tracked: Ledger) -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=100)
    sites = []
    for _ in range(3):
        first = library_get(pool)  # first line
        sites.append(tracked.open_leases()[-1].site.lineno)
        second = library_get(pool)  # second line
        sites.append(tracked.open_leases()[-1].site.lineno)
        pool._put_conn(second)
        pool._put_conn(first)
    first_line = line_of(test_the_same_path_from_two_lines, "# first line")
    second_line = line_of(test_the_same_path_from_two_lines, "# second line")
    assert sites == [first_line, second_line] * 3
