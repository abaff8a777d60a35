"""Exact under faults: no false leak and no missed leak when the upstream misbehaves.

Every client (urllib3, requests, httpx sync and async, aiohttp) meets every fault of
``RESPONSE_SHAPES`` (and the slow answer), once reading the body and once dropping the
response unread. Two layers:

- the ledger itself, against the library's own state at the same instant (urllib3's
  free slots, httpcore's in-flight requests, aiohttp's acquired connections), and
  against what each case must leave;
- the verdict users see: the same matrix run by pytester with ``--leak-check``, where
  exactly the tests that hold a connection at teardown error, with the exact text.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import aiohttp
import httpx
import pytest
import requests
import urllib3
from pytest_httpserver import HTTPServer
from requests.adapters import HTTPAdapter

from pytest_connleak import RESPONSE_SHAPES
from pytest_connleak._core.adapters import Instrumentation
from pytest_connleak._core.ledger import Ledger

FAULTS = ("truncated", "reset", "stall", "garbage", "no_response", "slow")
CLIENTS = ("urllib3", "requests", "httpx", "httpx_async", "aiohttp")
MODES = ("read", "drop")
READ_TIMEOUT = 0.5  # the stall outlasts it (STALL_SECONDS)

#: No answer at all: the request raises, there is no response to hold a connection.
NO_ANSWER = {"garbage", "no_response"}


def expected_leased(client: str, fault: str, mode: str) -> int:
    """Connections the case leaves leased: the truth the ledger must match.

    Reading the body gives the connection back under every fault, in every client (the
    error paths release it). A dropped response keeps it whenever a status line came,
    except with aiohttp, which reads the body by itself and lets go of the connection
    when the body ends, completely (slow) or not (truncated, reset), or when its read
    timeout fires on a stalled body.
    """
    if mode == "read" or fault in NO_ANSWER or client == "aiohttp":
        return 0
    return 1


@pytest.fixture
def tracked() -> Iterator[Ledger]:
    own = Ledger()
    instrumentation = Instrumentation(own)
    assert instrumentation.install() == []
    try:
        yield own
    finally:
        instrumentation.uninstall()


@pytest.fixture
def fault_url(lb_httpserver: HTTPServer) -> Callable[[str], str]:
    def url(fault: str) -> str:
        lb_httpserver.expect_request(f"/{fault}").respond_with_handler(RESPONSE_SHAPES[fault])
        return lb_httpserver.url_for(f"/{fault}")

    return url


# -- one case per client: run it, then compare the ledger and the library at once --------

Check = Callable[[], tuple[int, int]]  # (ledger's open leases, the library's leased count)


def _urllib3_pool_leased(pools: object) -> int:
    # Every pool has maxsize 1 and one request went through it: its queue is empty
    # while the connection is out.
    keys = pools.keys()  # type: ignore[attr-defined]
    return sum(1 - pools[key].pool.qsize() for key in keys)  # type: ignore[index]


def run_urllib3(url: str, mode: str, ledger: Ledger, stack: contextlib.ExitStack) -> int:
    timeout = urllib3.Timeout(connect=5, read=READ_TIMEOUT)
    pm = stack.enter_context(urllib3.PoolManager(maxsize=1, retries=False, timeout=timeout))
    try:
        response = pm.request("GET", url, preload_content=False)
        if mode == "read":
            response.read()
    except urllib3.exceptions.HTTPError:
        pass
    response = None  # dropped: refcounting frees it now
    return _compare(ledger, _urllib3_pool_leased(pm.pools))


def run_requests(url: str, mode: str, ledger: Ledger, stack: contextlib.ExitStack) -> int:
    session = stack.enter_context(requests.Session())
    adapter = HTTPAdapter(pool_maxsize=1, max_retries=0)
    session.mount("http://", adapter)
    try:
        response = session.get(url, stream=True, timeout=(5, READ_TIMEOUT))
        if mode == "read":
            response.content  # noqa: B018 - reads the body
    except requests.RequestException:
        pass
    response = None
    return _compare(ledger, _urllib3_pool_leased(adapter.poolmanager.pools))


def run_httpx(url: str, mode: str, ledger: Ledger, stack: contextlib.ExitStack) -> int:
    client = stack.enter_context(httpx.Client(timeout=httpx.Timeout(5, read=READ_TIMEOUT)))
    try:
        response = client.send(client.build_request("GET", url), stream=True)
        if mode == "read":
            response.read()
    except httpx.HTTPError:
        pass
    response = None
    return _compare(ledger, len(client._transport._pool._requests))  # type: ignore[attr-defined]


def run_httpx_async(url: str, mode: str, ledger: Ledger, stack: contextlib.ExitStack) -> int:
    async def case() -> int:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=READ_TIMEOUT)) as client:
            try:
                response = await client.send(client.build_request("GET", url), stream=True)
                if mode == "read":
                    await response.aread()
            except httpx.HTTPError:
                pass
            response = None
            pool = client._transport._pool  # type: ignore[attr-defined]
            return _compare(ledger, len(pool._requests))

    return asyncio.run(case())


def run_aiohttp(url: str, mode: str, ledger: Ledger, stack: contextlib.ExitStack) -> int:
    async def case() -> int:
        timeout = aiohttp.ClientTimeout(total=10, sock_read=READ_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            connector = session.connector
            assert connector is not None

            def leased() -> int:
                return len(connector._acquired)  # type: ignore[attr-defined]

            try:
                response = await session.get(url)
                _compare(ledger, leased())  # exact while the body is still on its way
                if mode == "read":
                    await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            response = None
            # Dropped unread, the response is still read by aiohttp, which lets go of the
            # connection when the body ends or its read timeout fires: poll for that.
            deadline = asyncio.get_running_loop().time() + 5
            while leased() and asyncio.get_running_loop().time() < deadline:
                _compare(ledger, leased())
                await asyncio.sleep(0.01)
            return _compare(ledger, leased())

    return asyncio.run(case())


RUNNERS = {
    "urllib3": run_urllib3,
    "requests": run_requests,
    "httpx": run_httpx,
    "httpx_async": run_httpx_async,
    "aiohttp": run_aiohttp,
}


def _compare(ledger: Ledger, library_leased: int) -> int:
    ours = len(ledger.open_leases())
    assert ours == library_leased, f"the ledger says {ours} leased, the library {library_leased}"
    return ours


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("client", CLIENTS)
def test_ledger_matches_the_library(
    tracked: Ledger, fault_url: Callable[[str], str], client: str, fault: str, mode: str
) -> None:
    with contextlib.ExitStack() as stack:
        leased = RUNNERS[client](fault_url(fault), mode, tracked, stack)
        assert leased == expected_leased(client, fault, mode)


# -- the verdict users see ----------------------------------------------------------------

VERDICT_TESTS = """
import asyncio

import aiohttp
import httpx
import pytest
import requests
import urllib3

from pytest_connleak import RESPONSE_SHAPES

READ = 0.5


@pytest.fixture(params=["truncated", "reset", "stall", "garbage", "no_response", "slow"])
def url(request, lb_httpserver):
    shape = RESPONSE_SHAPES[request.param]
    lb_httpserver.expect_request("/fault").respond_with_handler(shape)
    return lb_httpserver.url_for("/fault")


@pytest.fixture(params=["read", "drop"])
def read(request):
    return request.param == "read"


def test_urllib3(url, read):
    with urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(5, read=READ)) as pm:
        try:
            response = pm.request("GET", url, preload_content=False)
            if read:
                response.read()
        except urllib3.exceptions.HTTPError:
            pass


def test_requests(url, read):
    with requests.Session() as session:
        try:
            response = session.get(url, stream=True, timeout=(5, READ))
            if read:
                response.content
        except requests.RequestException:
            pass


def test_httpx(url, read):
    with httpx.Client(timeout=httpx.Timeout(5, read=READ)) as client:
        try:
            response = client.send(client.build_request("GET", url), stream=True)
            if read:
                response.read()
        except httpx.HTTPError:
            pass


def test_httpx_async(url, read):
    async def case():
        async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=READ)) as client:
            try:
                response = await client.send(client.build_request("GET", url), stream=True)
                if read:
                    await response.aread()
            except httpx.HTTPError:
                pass

    asyncio.run(case())


def test_aiohttp(url, read):
    async def case():
        timeout = aiohttp.ClientTimeout(total=10, sock_read=READ)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                response = await session.get(url)
                if read:
                    await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            response = None
            # aiohttp goes on reading a dropped response: wait until it lets go (the body
            # ended or its read timeout fired) before closing the session.
            deadline = asyncio.get_running_loop().time() + 5
            while session.connector._acquired and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)

    asyncio.run(case())
"""


def test_verdict_under_every_fault(pytester: pytest.Pytester) -> None:
    """Exactly the dropped responses that still hold a connection at teardown error.

    Each test closes its client, as good code does; that does not give back a
    connection a live response holds (closing an httpx client cuts the socket, and the
    report says so). aiohttp reads a dropped response on by itself and lets go of its
    connection when the body ends or its read timeout fires: no leak under any fault.
    """
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        filterwarnings =
            error
            ignore::ResourceWarning
        """
    )
    pytester.makepyfile(test_faults_inner=VERDICT_TESTS)
    result = pytester.runpytest_subprocess("--leak-check", "-rE", "-p", "no:randomly")
    errored = {
        line.split("::", 1)[1].split(" ", 1)[0]
        for line in result.outlines
        if line.startswith("ERROR test_faults_inner.py::")
    }
    expected = {
        f"test_{client}[{fault}-{mode}]"
        for client in CLIENTS
        for fault in FAULTS
        for mode in MODES
        if expected_leased(client, fault, mode)
    }
    assert sorted(errored) == sorted(expected)
    result.assert_outcomes(passed=len(CLIENTS) * len(FAULTS) * len(MODES), errors=len(expected))
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 1 connection leaked by test_urllib3[reset-drop] "
            "(still leased at teardown)",
            "E     http://127.0.0.1:* — leased at test_faults_inner.py:29 in test_urllib3",
            "E     the response was dropped without being closed; garbage collection closed its "
            "socket, but the pool never got the connection back; *",
            "E   ConnectionLeakError: 1 connection leaked by test_requests[stall-drop] "
            "(still leased at teardown)",
            "E     http://127.0.0.1:* — leased at test_faults_inner.py:39 in test_requests",
            "E   ConnectionLeakError: 1 connection leaked by test_httpx[truncated-drop] "
            "(still leased at teardown)",
            "E     http://127.0.0.1:* — leased at test_faults_inner.py:49 in test_httpx",
            "E     the client was closed while this response was still open: *",
            "E   ConnectionLeakError: 1 connection leaked by test_httpx_async[slow-drop] "
            "(still leased at teardown)",
            "E     http://127.0.0.1:* — leased at test_faults_inner.py:60 in case",
        ]
    )
