"""track()'s leak alarm and pool alert, against real servers and real clients.

The checks are driven by hand (``Watchdog.check()`` with a clock that runs ahead), so no
test waits for a threshold to pass; one end-to-end test runs the real checker thread with
a short threshold and waits, with a deadline, for the line it logs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import requests
import urllib3

import pytest_connleak
from pytest_connleak import LeakAlarm, track
from pytest_connleak._checker.settings import DEFAULT_POOL_THRESHOLD
from pytest_connleak._core.ledger import Lease, Ledger, ledger
from pytest_connleak._runtime import alarm as alarm_module
from pytest_connleak._runtime.alarm import Watchdog

HERE = Path(__file__).name
LOGGER = "tests.leak_alarm"


class Clock:
    """time.monotonic(), plus however far a test moves it ahead."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.ahead


@pytest.fixture
def tracking() -> Iterator[track]:
    """The instrumentation, with no checker thread: the tests run the checks."""
    with track(pool_threshold=None) as tracker:
        yield tracker


@pytest.fixture
def clock() -> Clock:
    return Clock()


def watchdog(clock: Clock, **kwargs: object) -> tuple[Watchdog, list[LeakAlarm]]:
    events: list[LeakAlarm] = []
    options: dict[str, object] = {
        "leak_threshold": 30.0,
        "pool_threshold": None,
        "logger": logging.getLogger(LOGGER),
        "on_leak": events.append,
        "clock": clock,
    }
    options.update(kwargs)
    return Watchdog(ledger, **options), events  # type: ignore[arg-type]


def line_of(marker: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.endswith(marker))


def mine(alarms: list[LeakAlarm], function: str) -> list[LeakAlarm]:
    # Other tests' deliberate leaks share the process-wide ledger: keep this test's.
    return [a for a in alarms if a.site.function == function]


def test_a_connection_leased_too_long_is_logged_with_its_line_and_its_return(
    tracking: track, clock: Clock, keepalive_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    dog, events = watchdog(clock)
    with urllib3.PoolManager(maxsize=2) as pm:
        held = pm.request("GET", keepalive_url + "/ok", preload_content=False)  # lease: alarm
        assert (
            mine(
                dog.check(),
                "test_a_connection_leased_too_long_is_logged_with_its_line_and_its_return",
            )
            == []
        )
        clock.ahead = 31
        name = "test_a_connection_leased_too_long_is_logged_with_its_line_and_its_return"
        (leaked,) = mine(dog.check(), name)
        assert mine(dog.check(), name) == []  # reported once
        held.read()
        held.release_conn()
        clock.ahead = 45
        (returned,) = mine(dog.check(), name)
    site = f"{HERE}:{line_of('# lease: alarm')} in {name}"
    assert leaked.event == "leaked"
    assert (leaked.client, leaked.origin, leaked.thread) == ("urllib3", keepalive_url, "MainThread")
    assert leaked.site.format(str(Path(__file__).parent)) == site
    assert 31 <= leaked.leased_for < 32
    assert leaked.threshold == 30
    assert re.fullmatch(
        rf"possible connection leak: a connection to {re.escape(keepalive_url)} \(urllib3\) "
        rf"has been leased for 31\.\d s \(leak_threshold 30 s\), by thread 'MainThread' "
        rf"at \S*{re.escape(site)}",
        leaked.message,
    ), leaked.message
    assert returned.event == "returned"
    assert (returned.origin, returned.site, returned.thread) == (
        leaked.origin,
        leaked.site,
        leaked.thread,
    )
    assert 45 <= returned.leased_for < 46
    assert re.fullmatch(
        rf"previously reported connection returned after 45\.\d s: "
        rf"{re.escape(keepalive_url)} \(urllib3\), leased by thread 'MainThread' "
        rf"at \S*{re.escape(site)}",
        returned.message,
    ), returned.message
    # The log has the same lines, with the event on the record for structured handlers.
    logged = [r for r in caplog.records if getattr(r, "connleak_alarm", None) in (leaked, returned)]
    assert [(r.levelname, r.getMessage()) for r in logged] == [
        ("WARNING", leaked.message),
        ("WARNING", returned.message),
    ]
    assert mine(events, name) == [leaked, returned]


def test_the_alarm_names_the_leasing_thread_and_httpx_lines(
    tracking: track, clock: Clock, keepalive_url: str
) -> None:
    dog, _ = watchdog(clock, leak_threshold=5.0)
    held: list[httpx.Response] = []
    leased, done = threading.Event(), threading.Event()
    with httpx.Client() as client:

        def worker() -> None:
            request = client.build_request("GET", keepalive_url + "/ok")
            held.append(client.send(request, stream=True))  # lease: httpx
            leased.set()
            done.wait(timeout=10)  # a pool's worker thread: alive when the alarm fires

        thread = threading.Thread(target=worker, name="worker-7")
        thread.start()
        assert leased.wait(timeout=10)
        clock.ahead = 6
        (alarm,) = mine(dog.check(), "worker")
        done.set()
        thread.join()
        # The ledger keeps the thread's id, not its name: once the thread has ended, a
        # lease's thread is named by that id (the alarm above named it in time).
        (lease,) = [x for x in ledger.open_leases() if x.site.function == "worker"]
        assert re.fullmatch(r"<thread \d+>", lease.thread_name)
        held[0].close()
    assert (alarm.client, alarm.thread) == ("httpcore", "worker-7")
    assert (alarm.site.lineno, alarm.site.function) == (line_of("# lease: httpx"), "worker")
    assert "by thread 'worker-7'" in alarm.message


def test_the_alarm_keeps_no_response_alive(
    tracking: track, clock: Clock, keepalive_url: str
) -> None:
    dog, _ = watchdog(clock)
    with requests.Session() as session:
        response = session.get(keepalive_url + "/ok", stream=True)  # lease: dropped
        clock.ahead = 60
        (alarm,) = mine(dog.check(), "test_the_alarm_keeps_no_response_alive")
        gone = weakref.ref(response)
        del response
        # Freed by reference counting while the alarm still remembers the lease.
        assert gone() is None
        assert mine(dog.check(), "test_the_alarm_keeps_no_response_alive") == []
    assert alarm.site.lineno == line_of("# lease: dropped")


def test_the_leak_count_per_origin(tracking: track, clock: Clock, keepalive_url: str) -> None:
    dog, _ = watchdog(clock)
    before = alarm_module.leaks_reported().get(("urllib3", keepalive_url), 0)
    with urllib3.PoolManager(maxsize=3) as pm:
        held = []
        for _ in range(2):
            held.append(pm.request("GET", keepalive_url + "/ok", preload_content=False))
        clock.ahead = 31
        alarms = dog.check() + dog.check()
        for response in held:
            response.read()
            response.release_conn()
        alarms += dog.check()
    assert len(mine(alarms, "test_the_leak_count_per_origin")) == 4  # 2 leaked, 2 returned
    # Counted once each when found, by (client, origin): with any other test's leftovers.
    leaked = [a for a in alarms if a.event == "leaked" and a.origin == keepalive_url]
    assert alarm_module.leaks_reported()[("urllib3", keepalive_url)] - before == len(leaked) >= 2


def test_the_pool_alert_uses_the_test_runs_threshold_and_is_rate_limited(
    tracking: track, clock: Clock, keepalive_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert alarm_module.DEFAULT_POOL_THRESHOLD == DEFAULT_POOL_THRESHOLD == 0.75
    default = inspect.signature(track).parameters["pool_threshold"].default
    assert default == DEFAULT_POOL_THRESHOLD
    caplog.set_level(logging.WARNING, LOGGER)
    dog, _ = watchdog(clock, leak_threshold=None, pool_threshold=DEFAULT_POOL_THRESHOLD)
    expected = (
        f"pool {keepalive_url} (urllib3) reached 3 of 4 connections (75%) (threshold 75%); "
        "3 leased now"
    )

    def alerts() -> list[str]:
        texts = [r.getMessage() for r in caplog.records if "of 4 connections" in r.getMessage()]
        caplog.clear()
        return [t for t in texts if keepalive_url in t]

    with urllib3.PoolManager(maxsize=4, block=True) as pm:

        def lease() -> urllib3.BaseHTTPResponse:
            return pm.request("GET", keepalive_url + "/ok", preload_content=False)

        held = [lease(), lease()]
        dog.check()
        assert alerts() == []  # 2 of 4: below the threshold
        held.append(lease())
        dog.check()
        assert alerts() == [expected]
        dog.check()
        assert alerts() == []  # once per origin every pool_alert_every seconds
        clock.ahead = 301
        dog.check()
        assert alerts() == [expected]
        for response in held:
            response.read()
            response.release_conn()
        # A burst between two checks is seen through the pool's new high-water mark.
        burst = [lease() for _ in range(4)]
        for response in burst:
            response.read()
            response.release_conn()
        clock.ahead = 700
        dog.check()
        assert alerts() == [
            f"pool {keepalive_url} (urllib3) reached 4 of 4 connections (100%) "
            "(threshold 75%); 0 leased now"
        ]


def test_a_failing_callback_or_handler_never_reaches_the_service(
    tracking: track, clock: Clock, keepalive_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    calls = []

    def on_leak(alarm: LeakAlarm) -> None:
        calls.append(alarm)
        raise RuntimeError("the pager is down")

    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise OSError("disk full")

        def handleError(self, record: logging.LogRecord) -> None:
            raise OSError("still full")

    broken = Broken()
    logger = logging.getLogger(LOGGER)
    dog, _ = watchdog(clock, on_leak=on_leak, leak_threshold=1.0)
    with urllib3.PoolManager(maxsize=2) as pm:
        held = []
        for _ in range(2):
            held.append(pm.request("GET", keepalive_url + "/ok", preload_content=False))
        clock.ahead = 2
        name = "test_a_failing_callback_or_handler_never_reaches_the_service"
        assert len(mine(dog.check(), name)) == 2
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert [r.getMessage() for r in errors] == [
            "pytest-connleak: the on_leak callback raised; the alarm goes on logging, "
            "and this is reported once"
        ]
        assert errors[0].exc_info is not None
        assert len(mine(calls, name)) == 2
        logger.addHandler(broken)
        try:
            for response in held:
                response.read()
                response.release_conn()
            assert len(mine(dog.check(), name)) == 2  # logged into a broken handler
        finally:
            logger.removeHandler(broken)


def test_an_internal_error_is_logged_once(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    class BrokenLedger(Ledger):
        def open_leases(self, owner: object = None) -> list[Lease]:
            raise RuntimeError("a bug of ours")

    caplog.set_level(logging.WARNING, LOGGER)
    dog = Watchdog(
        BrokenLedger(),
        leak_threshold=1.0,
        pool_threshold=None,
        logger=logging.getLogger(LOGGER),
        clock=clock,
    )
    assert dog.check() == []
    assert dog.check() == []
    assert [r.getMessage() for r in caplog.records] == [
        "pytest-connleak: internal error in the leak alarm; it goes on, and this is reported once"
    ]


def test_a_leak_is_found_while_the_service_keeps_serving(keepalive_url: str) -> None:
    """The real checker thread, a short threshold, a service thread that goes on serving."""
    name = "test_a_leak_is_found_while_the_service_keeps_serving"
    found = threading.Event()
    lines: list[str] = []

    class Wait(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())
            alarm = getattr(record, "connleak_alarm", None)
            if alarm is not None and alarm.site.function == name:
                found.set()

    logger = logging.getLogger(LOGGER + ".e2e")
    logger.propagate = False
    handler = Wait()
    logger.addHandler(handler)
    served = 0
    stop = threading.Event()
    with requests.Session() as session:

        def serve() -> None:
            nonlocal served
            while not stop.is_set():
                session.get(keepalive_url + "/ok").raise_for_status()
                served += 1

        try:
            with track(leak_threshold=0.2, logger=logger) as tracking:
                service = threading.Thread(target=serve, name="service")
                service.start()
                leaked = session.get(keepalive_url + "/ok", stream=True)  # lease: e2e
                assert found.wait(timeout=10), lines
                at_alarm = served
                deadline = time.monotonic() + 10
                while served < at_alarm + 20 and time.monotonic() < deadline:
                    time.sleep(0.01)
                stop.set()
                service.join()
                thread = tracking._watchdog._thread  # type: ignore[union-attr]
                assert thread is not None and thread.is_alive()
            assert not thread.is_alive()  # stopped and joined by the context manager
        finally:
            stop.set()
            logger.removeHandler(handler)
        leaked.close()
    assert served >= at_alarm + 20, "the service stopped serving"
    # Other tests' deliberate leaks are in the process-wide ledger too: keep this one's.
    alarm_lines = [line for line in lines if line.endswith(f" in {name}")]
    assert len(alarm_lines) == 1, lines
    assert alarm_lines[0].startswith("possible connection leak: ")
    assert alarm_lines[0].endswith(f"{HERE}:{line_of('# lease: e2e')} in {name}")
    assert "by thread 'MainThread'" in alarm_lines[0]
    assert "connleak-alarm" not in [t.name for t in threading.enumerate()]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"leak_threshold": 0}, "leak_threshold must be a positive number, got 0"),
        ({"leak_threshold": -1}, "leak_threshold must be a positive number, got -1"),
        ({"leak_threshold": "soon"}, "leak_threshold must be a positive number, got 'soon'"),
        ({"leak_threshold": float("nan")}, "leak_threshold must be a positive number, got nan"),
        ({"pool_threshold": 1.5}, "pool_threshold must be a number in (0, 1], got 1.5"),
        ({"check_interval": 0}, "check_interval must be a positive number, got 0"),
        ({"logger": 42}, "logger must be a logging.Logger or a name, got 42"),
        ({"on_leak": "pager"}, "on_leak must be a callable, got 'pager'"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    kwargs: dict[str, object], message: str
) -> None:
    before = threading.active_count()
    with pytest.raises(ValueError) as excinfo:
        track(**kwargs)  # type: ignore[arg-type]
    assert str(excinfo.value) == message
    assert threading.active_count() == before


def test_track_without_thresholds_starts_no_thread() -> None:
    with track(pool_threshold=None) as tracking:
        assert tracking._watchdog is None
        assert tracking.check() == []
    assert pytest_connleak.track.__module__ == "pytest_connleak"
    assert LeakAlarm.__module__ == "pytest_connleak"


def test_the_alarm_with_aiohttp(tracking: track, clock: Clock, base_url: str) -> None:
    dog, _ = watchdog(clock)

    async def leak_then_release() -> tuple[list[LeakAlarm], list[LeakAlarm]]:
        async with aiohttp.ClientSession() as session:
            # 1 MiB: aiohttp does not release it by itself before it is read.
            response = await session.get(base_url + "/big")  # lease: aiohttp
            clock.ahead = 31
            found = mine(dog.check(), "leak_then_release")
            response.release()
            clock.ahead = 32
            return found, mine(dog.check(), "leak_then_release")

    (leaked,), (returned,) = asyncio.run(leak_then_release())
    assert (leaked.client, leaked.origin) == ("aiohttp", base_url)
    assert leaked.site.lineno == line_of("# lease: aiohttp")
    assert returned.event == "returned"
    assert returned.message.startswith("previously reported connection returned after 32.")


def test_stop_from_the_callback_ends_the_thread(tracking: track, keepalive_url: str) -> None:
    # The tracking fixture keeps the clients patched after this tracker stops, so that the
    # release below is seen and no lease of this test outlives it.
    stopped = threading.Event()

    def on_leak(event: LeakAlarm) -> None:
        tracker.stop()  # on the checker thread itself: must not wait for itself
        stopped.set()

    with urllib3.PoolManager(maxsize=1) as pm:
        tracker = track(leak_threshold=0.05, pool_threshold=None, logger=LOGGER, on_leak=on_leak)
        held = pm.request("GET", keepalive_url + "/ok", preload_content=False)
        assert stopped.wait(timeout=10)
        assert tracker._watchdog is not None
        thread = tracker._watchdog._thread
        assert thread is not None
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert tracker.check() == []  # stopped: nothing runs any more
        held.read()
        held.release_conn()
    assert [
        lease
        for lease in ledger.open_leases()
        if lease.site.function == "test_stop_from_the_callback_ends_the_thread"
    ] == []
