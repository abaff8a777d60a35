"""The verdict's garbage collection changes no test's outcome (issue 16, real suites).

Before it calls an open lease a leak, the verdict collects garbage: a response caught in a
reference cycle gives its connection back when its finalizer runs. That collection also
finalises garbage that is not the test's, and a finalizer can set off an unraisable
exception (a ``ResourceWarning`` under ``filterwarnings = error``). Seen in urllib3's own
suite: pytest reported it at the next test's setup, which then errored; handed to pytest
at the end instead, it failed the whole session where, without the plugin, a later
collection under other filters had let it pass. Without the plugin CPython runs those
finalizers at some later collection, under the filters of that moment; with it, they must
fail nothing, and still be shown (the run's summary lists them).
"""

from __future__ import annotations

import pytest

TEST = """
import gc
import warnings

import urllib3

# Only explicit collections: the verdict's, and pytest's own at the end of the session.
gc.disable()


class Noisy:
    def __del__(self):
        warnings.warn("unclosed noisy thing", ResourceWarning)


class Holder:
    '''A response in a reference cycle whose finalizer gives its connection back.'''

    def __init__(self, response):
        self.response = response
        self.me = self
        self.noisy = Noisy()  # finalised by the same collection

    def __del__(self):
        self.response.release_conn()


pool = urllib3.PoolManager()
responses = []  # alive outside the cycle: only the holder's finalizer releases them


def test_drops_a_cycle(url):
    responses.append(pool.request("GET", url, preload_content=False))
    Holder(responses[-1])


def test_next():
    pool.clear()  # closes the connection the cycle gave back, if it has been collected


def test_own_unraisable():
    Noisy()  # freed at once: reported on this test, with the plugin or without it
"""

IGNORED = "Exception ignored in: <function Noisy.__del__"


def run(base_conftest: pytest.Pytester, *mode: str) -> pytest.RunResult:
    return base_conftest.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider", *mode)


def reports_of_ignored(result: pytest.RunResult) -> int:
    """How often the failures section shows the finalizer's exception.

    The short summary line repeats it only where pytest does not shorten that line to the
    terminal's width (on CI), so it is left out of the count.
    """
    return sum(IGNORED in line for line in result.stdout.lines if not line.startswith("FAILED "))


def test_what_the_collection_sets_off_lands_where_it_would_without_the_plugin(
    base_conftest: pytest.Pytester,
) -> None:
    base_conftest.makepyfile(test_cycle=TEST)
    off = run(base_conftest, "-p", "no:connleak")
    on = run(base_conftest, "--leak-check")
    for result in (off, on):
        # The cycle gave its connection back: no leak, and neither the test whose
        # teardown collected it nor the next one is failed by its finalizer.
        result.assert_outcomes(passed=2, failed=1)
        result.stdout.fnmatch_lines(["FAILED test_cycle.py::test_own_unraisable - *"])
    assert on.ret == off.ret
    # The test's own unraisable is reported on it, with the plugin or without it.
    assert reports_of_ignored(off) == reports_of_ignored(on) == 1
    # Without the plugin the cycle is collected after the last test: pytest 8.4+ reports
    # it then, before 8.4 the interpreter prints it at exit. With it, the verdict's
    # collection ran its finalizer; the summary shows what it said, and nothing fails.
    assert off.stderr.str().count(IGNORED) == 1
    assert on.stderr.str().count(IGNORED) == 0
    on.stdout.fnmatch_lines(
        [
            "*= connleak: garbage collected before a verdict =*",
            "Finalizers run by the collection before a verdict reported these; without the"
            " plugin they would have run at a later collection:",
            "  ResourceWarning: unclosed noisy thing",
        ]
    )
    assert "garbage collected before a verdict" not in off.stdout.str()
