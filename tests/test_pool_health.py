"""Pool health: the threshold warning, the small-pool wait warning, and the option."""

from __future__ import annotations

import re

import pytest

from pytest_connleak._checker.health import health_messages
from pytest_connleak._core.ledger import PoolUsage

# Pool warnings are opt-in. In-process pytester runs inherit this suite's "error" filter,
# which would turn each into a teardown error: these tests ask for plain warnings.
AS_WARNING = ("--leak-check-pool-warnings", "-W", "default::pytest_connleak.PoolHealthWarning")

HOLD = """
import pytest, urllib3

@pytest.mark.parametrize("held", [{held}])
def test_hold(url, held):
    pool = urllib3.connection_from_url(url, maxsize=4, block=True)
    responses = [pool.urlopen("GET", "/ok", preload_content=False) for _ in range(held)]
    for response in responses:
        assert response.read() == b"ok"  # read to the end: every connection goes back
    pool.close()
"""


def escape(text: str) -> str:
    """*text* as an fnmatch pattern matching itself (test ids have brackets)."""
    return "".join(f"[{c}]" if c in "[]*?" else c for c in text)


def warning_line(held: int, capacity: int, percent: str, test: str, threshold: str) -> str:
    return (
        f"*PoolHealthWarning: pool http://127.0.0.1:* reached {held} of {capacity} connections "
        + escape(f"({percent}) during {test} (threshold {threshold})")
    )


@pytest.mark.parametrize(
    ("held", "percent"), [(3, "75%"), (4, "100%")], ids=["at-threshold", "above-threshold"]
)
def test_threshold_reached_warns(base_conftest: pytest.Pytester, held: int, percent: str) -> None:
    base_conftest.makepyfile(HOLD.format(held=held))
    result = base_conftest.runpytest("--leak-check", *AS_WARNING)
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*= warnings summary =*",
            f"test_threshold_reached_warns.py::test_hold[[]{held}[]]",
            "  test_threshold_reached_warns.py:3: "
            + warning_line(held, 4, percent, f"test_hold[{held}]", "75%")[1:],
        ]
    )


def test_below_threshold_is_quiet(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(HOLD.format(held=2))
    result = base_conftest.runpytest("--leak-check", *AS_WARNING)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*PoolHealthWarning*")


@pytest.mark.parametrize("how", ["option", "ini"])
def test_threshold_option_and_ini(base_conftest: pytest.Pytester, how: str) -> None:
    base_conftest.makepyfile(HOLD.format(held="1, 2"))
    args = ["--leak-check", *AS_WARNING]
    if how == "option":
        args.append("--leak-check-pool-threshold=0.5")
    else:
        base_conftest.makeini("[pytest]\nleak_check_pool_threshold = 0.5\n")
    result = base_conftest.runpytest(*args)
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines([warning_line(2, 4, "50%", "test_hold[2]", "50%")])
    result.stdout.no_fnmatch_line("*during test_hold[[]1[]]*")


def test_option_beats_ini(base_conftest: pytest.Pytester) -> None:
    base_conftest.makeini("[pytest]\nleak_check_pool_threshold = 0.5\n")
    base_conftest.makepyfile(HOLD.format(held=2))
    result = base_conftest.runpytest(
        "--leak-check", "--leak-check-pool-threshold", "1", *AS_WARNING
    )
    result.assert_outcomes(passed=1)


def test_sequential_use_of_a_one_connection_pool_is_quiet(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import urllib3

        def test_one_at_a_time(url):
            with urllib3.PoolManager(maxsize=1, block=True) as pm:
                for _ in range(5):
                    assert pm.request("GET", url + "/ok").data == b"ok"
        """
    )
    result = base_conftest.runpytest("--leak-check", *AS_WARNING)
    result.assert_outcomes(passed=1)


def test_only_checked_tests_get_warnings(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        HOLD.format(held=4)
        + """

def test_checked(url, leak_check):
    test_hold(url, 3)
"""
    )
    result = base_conftest.runpytest(*AS_WARNING)
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines([warning_line(3, 4, "75%", "test_checked", "75%")])


def test_warning_as_error_fails_teardown(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(HOLD.format(held=3))
    result = base_conftest.runpytest(
        "--leak-check",
        "--leak-check-pool-warnings",
        "-W",
        "error::pytest_connleak.PoolHealthWarning",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_hold[[]3[]]*",
            "E   "
            + warning_line(3, 4, "75%", "test_hold[3]", "75%")[1:].replace(
                "PoolHealthWarning", "pytest_connleak.PoolHealthWarning", 1
            ),
        ]
    )


def test_leak_error_wins_over_warning_as_error(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import urllib3

        def test_leaks_three(url):
            pool = urllib3.connection_from_url(url, maxsize=4, block=True)
            held = [pool.urlopen("GET", "/ok", preload_content=False) for _ in range(3)]
        """
    )
    result = base_conftest.runpytest(
        "--leak-check",
        "--leak-check-pool-warnings",
        "-W",
        "error::pytest_connleak.PoolHealthWarning",
    )
    result.assert_outcomes(passed=1, errors=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 3 connections leaked by test_leaks_three *",
            "*= warnings summary =*",
            warning_line(3, 4, "75%", "test_leaks_three", "75%"),
        ]
    )


# A server whose handlers hold the first two requests until the test lets them go, and a
# pool whose queue says when a request starts waiting for a connection: the third request
# really waits, with no sleep anywhere.
WAITING = """
import queue, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest, urllib3


@pytest.fixture
def held_server():
    in_flight = threading.Barrier(3)  # two handlers and the test
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if not release.is_set():
                in_flight.wait(timeout=30)
                release.wait(timeout=30)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, in_flight, release
    release.set()
    server.shutdown()
    server.server_close()
    thread.join()


def make_pool(port, capacity, waiting):
    class SignallingQueue(queue.LifoQueue):
        def get(self, block=True, timeout=None):
            if self.empty():
                waiting.set()  # every connection is out: this request waits
            return super().get(block, timeout)

    class Pool(urllib3.HTTPConnectionPool):
        QueueCls = SignallingQueue

    return Pool("127.0.0.1", port, maxsize=capacity, block=True)


def run_three(pool, in_flight, release, waiting):
    results = []

    def fetch():
        results.append(pool.urlopen("GET", "/").data)

    first = [threading.Thread(target=fetch) for _ in range(2)]
    for t in first:
        t.start()
    in_flight.wait(timeout=30)  # both connections are leased and in the handler
    third = threading.Thread(target=fetch)
    third.start()
    assert waiting.wait(timeout=30)
    release.set()
    for t in first + [third]:
        t.join()
    assert results == [b"ok"] * 3


def test_small_pool(held_server):
    port, in_flight, release = held_server
    waiting = threading.Event()
    pool = make_pool(port, {capacity}, waiting)
    run_three(pool, in_flight, release, waiting)
    pool.close()
"""


def test_waits_on_a_small_pool_warn(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(WAITING.format(capacity=2))
    result = base_conftest.runpytest("--leak-check", *AS_WARNING)
    result.assert_outcomes(passed=1, warnings=2)
    result.stdout.fnmatch_lines(
        [
            "*PoolHealthWarning: pool http://127.0.0.1:* reached 2 of 2 connections (100%) "
            "during test_small_pool (threshold 75%)",
            "*PoolHealthWarning: 1 request waited for a connection of pool "
            "http://127.0.0.1:* (capacity 2) during test_small_pool; a pool this small makes "
            "concurrent requests queue",
        ]
    )


def usage(capacity: int | None, peak: int, waits: int = 0) -> PoolUsage:
    return PoolUsage("urllib3", "http://h:1", capacity, True, 10, peak, waits)


@pytest.mark.parametrize(
    ("pool", "threshold", "expected"),
    [
        (
            usage(10, 7),
            0.7,
            ["pool http://h:1 reached 7 of 10 connections (70%) during t (threshold 70%)"],
        ),
        (usage(10, 6), 0.7, []),
        (
            usage(3, 2),
            2 / 3,
            ["pool http://h:1 reached 2 of 3 connections (66.7%) during t (threshold 66.7%)"],
        ),
        (usage(1, 1, waits=0), 0.75, []),
        (
            usage(1, 1, waits=3),
            0.75,
            [
                "3 requests waited for a connection of pool http://h:1 "
                "(capacity 1) during t; a pool this small makes "
                "concurrent requests queue"
            ],
        ),
        (
            usage(3, 3, waits=2),
            0.75,
            ["pool http://h:1 reached 3 of 3 connections (100%) during t (threshold 75%)"],
        ),
        (usage(None, 50, waits=2), 0.75, []),
        (
            usage(10, 12),
            0.75,
            ["pool http://h:1 reached 12 of 10 connections (120%) during t (threshold 75%)"],
        ),
    ],
    ids=[
        "float-edge",
        "below",
        "fraction",
        "one-sequential",
        "one-waited",
        "three-waited",
        "unbounded",
        "non-blocking-overflow",
    ],
)
def test_health_rules(pool: PoolUsage, threshold: float, expected: list[str]) -> None:
    assert health_messages([pool], threshold, "t") == expected


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("option", "0"),
        ("option", "1.5"),
        ("option", "-0.25"),
        ("option", "lots"),
        ("option", "nan"),
        ("ini", "75%"),
    ],
)
def test_bad_threshold_is_a_usage_error(pytester: pytest.Pytester, where: str, value: str) -> None:
    pytester.makepyfile("def test_a(): pass")
    if where == "ini":
        pytester.makeini(f"[pytest]\nleak_check_pool_threshold = {value}\n")
        result = pytester.runpytest()
    else:
        result = pytester.runpytest(f"--leak-check-pool-threshold={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: leak_check_pool_threshold = {value!r} is not a share of a pool's "
            "capacity; use a number greater than 0 and at most 1, like 0.75 (warn at 75%)"
        ]
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_help_lists_the_threshold(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "  --leak-check-pool-threshold=SHARE",
            "*mark a pool in the pools table (and warn, with*",
            "  --leak-check-pool-warnings",
            "*emit a PoolHealthWarning for each checked test that*",
            "*leak_check_pool_threshold (string):*",
            "*leak_check_pool_warnings (string):*",
        ]
    )


# -- quiet by default ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["-W error", "filterwarnings = error"])
def test_quiet_by_default_under_warnings_as_errors(
    base_conftest: pytest.Pytester, how: str
) -> None:
    # A busy pool (4 of 4) and a small pool that made a request wait: both clean tests.
    base_conftest.makepyfile(test_busy=HOLD.format(held=4), test_waits=WAITING.format(capacity=2))
    if how == "-W error":
        # In-process: this suite's own "error" filter applies too.
        result = base_conftest.runpytest("--leak-check", "-p", "no:cacheprovider", "-W", "error")
    else:
        base_conftest.makeini("[pytest]\nfilterwarnings = error\n")
        result = base_conftest.runpytest_subprocess("--leak-check", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*PoolHealthWarning: *")
    # The table still shows pool health: each pool that crossed a rule is marked.
    text = result.stdout.str()
    busy = re.search(
        r"(http://127\.0\.0\.1:\d+) +urllib3 +4 +0 +4/4 +0 +reached 75% in 1 test$", text, re.M
    )
    queued = re.search(
        r"(http://127\.0\.0\.1:\d+) +urllib3 +3 +0 +2/2 +1 +reached 75% in 1 test; "
        r"requests waited in 1 test$",
        text,
        re.M,
    )
    assert busy and queued, text
    result.stdout.fnmatch_lines(
        [
            "pool * client * leases * leaks * high-water/capacity * waits * health",
            "health: --leak-check-pool-warnings names the tests (PoolHealthWarning)",
        ]
    )


def test_quiet_table_below_threshold(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(HOLD.format(held=2))
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines(
        [r"pool +client +leases +leaks +high-water/capacity +waits$", r".* +2/4 +0$"]
    )
    result.stdout.no_fnmatch_line("health: *")


@pytest.mark.parametrize(
    ("ini", "args", "warned"),
    [
        ("leak_check_pool_warnings = true", [], True),
        ("leak_check_pool_warnings = false", [], False),
        ("", ["--leak-check-pool-warnings"], True),
        ("leak_check_pool_warnings = true", ["--no-leak-check-pool-warnings"], False),
    ],
    ids=["ini-on", "ini-off", "option", "option-beats-ini"],
)
def test_pool_warnings_option_and_ini(
    base_conftest: pytest.Pytester, ini: str, args: list[str], warned: bool
) -> None:
    base_conftest.makeini(f"[pytest]\n{ini}\nleak_check_pool_threshold = 0.5\n")
    base_conftest.makepyfile(HOLD.format(held=2))
    result = base_conftest.runpytest(
        "--leak-check", *args, "-W", "default::pytest_connleak.PoolHealthWarning"
    )
    # The threshold applies with or without warnings: 2 of 4 reaches 50%.
    if warned:
        result.assert_outcomes(passed=1, warnings=1)
        result.stdout.fnmatch_lines([warning_line(2, 4, "50%", "test_hold[2]", "50%")])
        result.stdout.no_fnmatch_line("health: *")
    else:
        result.assert_outcomes(passed=1)
        result.stdout.no_fnmatch_line("*PoolHealthWarning: *")
        result.stdout.re_match_lines([r".* +2/4 +0 +reached 50% in 1 test$"])


def test_bad_pool_warnings_ini_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass")
    pytester.makeini("[pytest]\nleak_check_pool_warnings = loud\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: leak_check_pool_warnings = 'loud' is not a boolean; use one of: true, "
            "false (or 1/0, yes/no, on/off)"
        ]
    )


# -- each test's own usage -------------------------------------------------------------------

OWN_PEAK = """
import pytest, urllib3

@pytest.fixture(scope="module")
def pool(url):
    pool = urllib3.connection_from_url(url, maxsize=4, block=True)
    yield pool
    pool.close()

@pytest.mark.allow_leaks(reason="the earlier test's leak")
def test_leaks_one(pool):
    pool.urlopen("GET", "/ok", preload_content=False)

def test_two_at_once(pool):
    held = [pool.urlopen("GET", "/ok", preload_content=False) for _ in range(2)]
    for response in held:
        assert response.read() == b"ok"

def test_three_at_once(pool):
    held = [pool.urlopen("GET", "/ok", preload_content=False) for _ in range(3)]
    for response in held:
        assert response.read() == b"ok"
"""


def test_a_leak_from_an_earlier_test_is_not_the_next_tests_peak(
    base_conftest: pytest.Pytester,
) -> None:
    # One connection of the 4 stays leased from test_leaks_one: test_two_at_once has three
    # out at its busiest (75%), but only two of them are its own (50%).
    base_conftest.makepyfile(OWN_PEAK)
    result = base_conftest.runpytest("--leak-check", *AS_WARNING)
    result.assert_outcomes(passed=3, warnings=1)
    result.stdout.fnmatch_lines([warning_line(3, 4, "75%", "test_three_at_once", "75%")])
    result.stdout.no_fnmatch_line("*during test_two_at_once*")
    # The table's high-water mark is the most one test held at once.
    result.stdout.re_match_lines(
        [r"http://127\.0\.0\.1:\d+ +urllib3 +6 +1 +3/4 +0 +reached 75% in 1 test$"]
    )
