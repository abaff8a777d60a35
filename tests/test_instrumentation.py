"""The wrappers: installed only when needed, invisible to the code under test, removed."""

from __future__ import annotations

import gc
import inspect
import threading
from collections.abc import Iterator

import pytest
import urllib3
from urllib3.connectionpool import HTTPConnectionPool

from pytest_connleak._core.adapters import Instrumentation
from pytest_connleak._core.ledger import Ledger

ORIGINAL_GET = HTTPConnectionPool.__dict__["_get_conn"]
ORIGINAL_PUT = HTTPConnectionPool.__dict__["_put_conn"]


@pytest.fixture
def tracked() -> Iterator[Ledger]:
    own = Ledger()
    instrumentation = Instrumentation(own)
    assert instrumentation.install() == []
    try:
        yield own
    finally:
        instrumentation.uninstall()


def test_nothing_patched_when_off(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        from urllib3.connectionpool import HTTPConnectionPool

        def test_pristine():
            assert not hasattr(HTTPConnectionPool._get_conn, "__wrapped__")
            assert not hasattr(HTTPConnectionPool._put_conn, "__wrapped__")
        """
    )
    base_conftest.runpytest().assert_outcomes(passed=1)


def test_patched_during_run_and_restored_after(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import inspect
        from urllib3.connectionpool import HTTPConnectionPool

        def test_wrapped():
            assert HTTPConnectionPool._get_conn.__wrapped__
            assert str(inspect.signature(HTTPConnectionPool._get_conn)).startswith("(self, timeout")
        """
    )
    base_conftest.runpytest("--leak-check").assert_outcomes(passed=1)
    assert HTTPConnectionPool.__dict__["_get_conn"] is ORIGINAL_GET
    assert HTTPConnectionPool.__dict__["_put_conn"] is ORIGINAL_PUT


def test_wrappers_keep_signature_name_and_doc(tracked: Ledger) -> None:
    wrapped = HTTPConnectionPool.__dict__["_get_conn"]
    assert wrapped is not ORIGINAL_GET
    assert inspect.signature(wrapped) == inspect.signature(ORIGINAL_GET)
    assert wrapped.__name__ == "_get_conn"
    assert wrapped.__doc__ == ORIGINAL_GET.__doc__


def test_put_none_gives_the_slot_back(tracked: Ledger, base_url: str) -> None:
    pool = urllib3.connection_from_url(base_url, maxsize=1, block=True)
    conn = pool._get_conn()
    assert conn is not None
    (lease,) = tracked.open_leases()
    assert lease.pool.leased == 1
    conn.close()
    pool._put_conn(None)
    assert tracked.open_leases() == []
    assert lease.pool.leased == 0
    again = pool._get_conn(timeout=0.01)  # the slot really came back
    pool._put_conn(again)
    pool.close()


def test_exceptions_pass_through_unchanged(tracked: Ledger, base_url: str) -> None:
    pool = urllib3.connection_from_url(base_url, maxsize=1, block=True)
    held = pool.urlopen("GET", "/ok", preload_content=False)
    with pytest.raises(urllib3.exceptions.EmptyPoolError) as info:
        pool.urlopen("GET", "/ok", pool_timeout=0.01)
    assert info.value.pool is pool
    assert held.read() == b"ok"  # reading to the end releases the connection
    pool.close()
    (record,) = [rec for rec in tracked.pools() if rec.origin == base_url]
    assert record.waits == 1
    assert record.capacity == 1
    assert tracked.open_leases() == []


def test_memory_stays_flat(tracked: Ledger, base_url: str) -> None:
    with urllib3.PoolManager() as pm:
        for _ in range(200):
            pm.request("GET", base_url + "/ok")
        small = tracked.size()
        for _ in range(2000):
            pm.request("GET", base_url + "/ok")
    assert tracked.size() == small
    assert tracked.open_leases() == []


def test_a_pool_that_died_holding_a_lease_is_dropped_once_it_is_returned(
    tracked: Ledger,
) -> None:
    # The lease outlives its pool (as when a cycle's finalizer returns it after the pool's
    # weak reference died): the ledger keeps the record while the lease is open, and lets
    # go of it once the lease is back, however many pools come and go later.
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1)
    pool._get_conn()  # no I/O: urllib3 connects on the first request
    rec = tracked.known_record(pool)
    assert rec is not None
    del pool
    gc.collect()
    # Another pool's registration takes in the death while the lease is still out.
    other = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1)
    other._put_conn(other._get_conn())
    del other
    (lease,) = tracked.open_leases()
    assert lease.pool is rec
    tracked.release_lease(lease)
    for _ in range(200):  # new pools: their registration prunes the ledger's indexes
        other = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1)
        other._put_conn(other._get_conn())
        del other
    assert tracked.open_leases() == []
    assert rec not in tracked._holding.values()
    assert len(tracked._holding) < 64


def test_thread_safe_counts(tracked: Ledger, base_url: str, request: pytest.FixtureRequest) -> None:
    pm = urllib3.PoolManager(maxsize=4, block=True)
    request.addfinalizer(pm.clear)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            for _ in range(50):
                assert pm.request("GET", base_url + "/ok").data == b"ok"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    (record,) = [rec for rec in tracked.pools() if rec.origin == base_url]
    assert record.leased == 0
    assert record.total_leases == 400
    assert 1 <= record.high_water <= 4
    assert tracked.open_leases() == []


def test_incompatible_internals_warn_and_skip(base_conftest: pytest.Pytester) -> None:
    base_conftest.makeconftest(
        base_conftest.path.joinpath("conftest.py").read_text()
        + """

from urllib3.connectionpool import HTTPConnectionPool

_original = HTTPConnectionPool._get_conn

def _get_conn(self, timeout=None, priority=0):
    return _original(self, timeout)

HTTPConnectionPool._get_conn = _get_conn
"""
    )
    base_conftest.makepyfile(
        """
        import requests

        def test_leaky(url):
            requests.get(url + "/403", stream=True)
        """
    )
    result = base_conftest.runpytest_subprocess("--leak-check", "-W", "default")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            # urllib3 is skipped; the other clients are tracked once imported.
            "connleak: checking every test for leaked connections "
            "(tracking httpcore (when imported), *aiohttp (when imported), "
            "sqlalchemy (when imported), psycopg_pool (when imported), redis (when imported), "
            "asyncpg (when imported))",
            "*IncompatibleClientWarning: pytest-connleak cannot track urllib3 *: "
            "urllib3.connectionpool.HTTPConnectionPool._get_conn('self', 'timeout', 'priority') "
            "does not take ('self', 'timeout'); leaks through urllib3 will not be reported",
        ]
    )


@pytest.mark.parametrize(
    "escalate",
    [
        ["-W", "error::pytest_connleak.IncompatibleClientWarning"],
        ["-o", "filterwarnings=error::pytest_connleak.ConnleakWarning"],
    ],
    ids=["W", "ini-base-class"],
)
def test_escalated_warning_for_an_imported_client_is_a_usage_error(
    base_conftest: pytest.Pytester, escalate: list[str]
) -> None:
    base_conftest.makeconftest(
        base_conftest.path.joinpath("conftest.py").read_text()
        + """

from urllib3.connectionpool import HTTPConnectionPool

_original = HTTPConnectionPool._get_conn

def _get_conn(self, timeout=None, priority=0):
    return _original(self, timeout)

HTTPConnectionPool._get_conn = _get_conn
"""
    )
    base_conftest.makepyfile("def test_x(): pass")
    result = base_conftest.runpytest_subprocess("--leak-check", *escalate)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[:1] == [
        f"ERROR: pytest-connleak cannot track urllib3 {urllib3.__version__}: "
        "urllib3.connectionpool.HTTPConnectionPool._get_conn('self', 'timeout', 'priority') "
        "does not take ('self', 'timeout') (IncompatibleClientWarning is an error in this "
        "run); to go on without tracking urllib3, let the warning through: "
        "-W default::pytest_connleak.IncompatibleClientWarning"
    ]
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    # What the message says to do works: the run goes on, urllib3 untracked.
    result = base_conftest.runpytest_subprocess(
        "--leak-check", *escalate, "-W", "default::pytest_connleak.IncompatibleClientWarning"
    )
    result.assert_outcomes(passed=1, warnings=1)


def test_unhashable_pool_subclass_still_works(tracked: Ledger, base_url: str) -> None:
    class ComparablePool(HTTPConnectionPool):
        def __eq__(self, other: object) -> bool:
            return isinstance(other, ComparablePool) and other.port == self.port

        __hash__ = None  # type: ignore[assignment]

    port = int(base_url.rsplit(":", 1)[1])
    pool = ComparablePool("127.0.0.1", port)
    try:
        response = pool.urlopen("GET", "/ok", preload_content=False)
        assert [lease.origin for lease in tracked.open_leases()] == [base_url]
        assert response.read() == b"ok"
        assert tracked.open_leases() == []
    finally:
        pool.close()
