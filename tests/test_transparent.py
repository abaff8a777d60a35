"""Transparency (issue 16): the code under test sees the same outcomes and exceptions.

A differential test: the same client error paths run in a pytester subprocess once with
``-p no:connleak`` and once with ``--leak-check``; every test's outcome and exception type
must be the same. Then: when our bookkeeping fails anyway, the request still succeeds and
the run reports one internal error at its end, never a test failure.
"""

from __future__ import annotations

import json

import pytest

CLIENTS = ("urllib3", "requests", "httpx", "httpx-async", "aiohttp")
CASES = (
    "unsupported-scheme",
    "missing-host",
    "invalid-url",
    "connection-refused",
    "connect-timeout",
    "read-timeout",
    "tls-failure",
    "proxy-error",
    "unusual-pool",
)

CONFTEST = '''
import http.server
import json
import os
import socket
import threading

import pytest

OUTCOMES = {}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass  # the TLS case sends it a ClientHello


@pytest.fixture(scope="session")
def server_port():
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unanswered_port():
    """Listens (the kernel completes the handshake) but nobody ever reads or answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield listener.getsockname()[1]


@pytest.fixture
def unconnectable_port():
    """Listens with a full accept queue: the kernel drops new SYNs, connect() times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        yield listener.getsockname()[1]
        for filler in fillers:
            filler.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    exc = call.excinfo
    kind = f"{exc.type.__module__}.{exc.type.__qualname__}" if exc is not None else None
    if report.when == "call" or report.outcome != "passed":
        OUTCOMES[f"{report.nodeid} {report.when}"] = [report.outcome, kind]
    return report


def pytest_sessionfinish(session):
    with open(os.environ["OUTCOMES_FILE"], "w") as f:
        json.dump(OUTCOMES, f, indent=1, sort_keys=True)
'''

TEST = '''
import asyncio

import aiohttp
import httpcore
import httpx
import pytest
import requests
import urllib3

T = 0.3  # a timeout, never a sleep: the servers below never answer in time


class Unusual:
    """A pool subclass nobody expected: unhashable, equal to anything, and any attribute
    it does not have raises RuntimeError rather than AttributeError."""

    __hash__ = None

    def __eq__(self, other):
        return True

    def __getattr__(self, name):
        raise RuntimeError(f"no attribute {name}")


class UnusualUrllib3Pool(Unusual, urllib3.HTTPConnectionPool):
    pass


class UnusualHttpcorePool(Unusual, httpcore.ConnectionPool):
    pass


class UnusualAsyncHttpcorePool(Unusual, httpcore.AsyncConnectionPool):
    pass


class UnusualConnector(Unusual, aiohttp.TCPConnector):
    pass


def request(client, url, proxy=None, unusual=False):
    if client == "urllib3":
        pm = urllib3.ProxyManager(proxy) if proxy else urllib3.PoolManager()
        if unusual:
            pm.pool_classes_by_scheme = {"http": UnusualUrllib3Pool}
        with pm:
            timeout = urllib3.Timeout(connect=T, read=T)
            return pm.request("GET", url, timeout=timeout, retries=False).status
    if client == "requests":
        with requests.Session() as session:
            if unusual:
                pm = session.get_adapter("http://").poolmanager
                pm.pool_classes_by_scheme = {"http": UnusualUrllib3Pool}
            proxies = {"http": proxy, "https": proxy} if proxy else None
            return session.get(url, timeout=(T, T), proxies=proxies).status_code
    if client == "httpx":
        transport = httpx.HTTPTransport(proxy=proxy)
        if unusual:
            transport._pool = UnusualHttpcorePool()
        with httpx.Client(transport=transport, timeout=T) as http:
            return http.get(url).status_code
    if client == "httpx-async":

        async def main():
            transport = httpx.AsyncHTTPTransport(proxy=proxy)
            if unusual:
                transport._pool = UnusualAsyncHttpcorePool()
            async with httpx.AsyncClient(transport=transport, timeout=T) as http:
                return (await http.get(url)).status_code

        return asyncio.run(main())
    if client == "aiohttp":

        async def main():
            connector = UnusualConnector() if unusual else None
            timeout = aiohttp.ClientTimeout(total=None, connect=T, sock_read=T)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
                async with s.get(url, proxy=proxy) as response:
                    return response.status

        return asyncio.run(main())
    raise AssertionError(client)


@pytest.mark.parametrize("client", {clients!r})
@pytest.mark.parametrize("case", {cases!r})
def test_error_path(case, client, request, server_port, closed_port):
    good = f"http://127.0.0.1:{server_port}/"
    if case == "unsupported-scheme":
        request_ = ("invalid://example.org/",)
    elif case == "missing-host":
        request_ = ("http:///path",)
    elif case == "invalid-url":
        request_ = ("http://127.0.0.1:notaport/",)
    elif case == "connection-refused":
        request_ = (f"http://127.0.0.1:{closed_port}/",)
    elif case == "connect-timeout":
        port = request.getfixturevalue("unconnectable_port")
        request_ = (f"http://127.0.0.1:{port}/",)
    elif case == "read-timeout":
        port = request.getfixturevalue("unanswered_port")
        request_ = (f"http://127.0.0.1:{port}/",)
    elif case == "tls-failure":
        request_ = (f"https://127.0.0.1:{server_port}/",)  # a plain-HTTP port
    elif case == "proxy-error":
        request_ = (good, f"http://127.0.0.1:{closed_port}")
    elif case == "unusual-pool":
        assert request_with(client, good, unusual=True) == 200
        return
    request_with(client, *request_)


request_with = request
'''


def run_outcomes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str, *args: str
) -> dict[str, list[str | None]]:
    out = pytester.path / f"{name}.json"
    monkeypatch.setenv("OUTCOMES_FILE", str(out))
    pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=300)
    result: dict[str, list[str | None]] = json.loads(out.read_text())
    return result


def test_error_paths_see_the_same_outcomes_with_and_without_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        filterwarnings =
            ignore::ResourceWarning
            ignore::pytest.PytestUnraisableExceptionWarning
        """
    )
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_paths=TEST.replace("{clients!r}", repr(list(CLIENTS))).replace(
            "{cases!r}", repr(list(CASES))
        )
    )
    off = run_outcomes(pytester, monkeypatch, "off", "-p", "no:connleak")
    on = run_outcomes(pytester, monkeypatch, "on", "--leak-check")
    assert len(off) == len(CLIENTS) * len(CASES)
    # The error paths really are errors (the unusual pool alone answers), else this test
    # would compare nothing.
    for key, (outcome, kind) in off.items():
        assert (outcome == "passed") == ("unusual-pool" in key), (key, outcome, kind)
    differences = {key: (off.get(key), on.get(key)) for key in off.keys() | on.keys()}
    assert {k: v for k, v in differences.items() if v[0] != v[1]} == {}


FAILING_BOOKKEEPING = '''
import urllib3

from pytest_connleak._core.ledger import ledger


class Broken(dict):
    """The lease-site cache, broken: every lease the ledger records now raises."""

    def __getitem__(self, key):
        raise RuntimeError("injected bookkeeping failure")


def test_requests_succeed_when_bookkeeping_fails(url):
    ledger._frame_cache = Broken()
    with urllib3.PoolManager() as pm:
        for _ in range(3):
            assert pm.request("GET", url + "/ok").status == 200
'''


@pytest.mark.parametrize(
    ("filterwarnings", "xdist"), [("default", []), ("error", []), ("default", ["-n", "2"])]
)
def test_a_bookkeeping_failure_is_reported_once_at_the_end(
    base_conftest: pytest.Pytester, filterwarnings: str, xdist: list[str]
) -> None:
    base_conftest.makeini(
        f"""
        [pytest]
        asyncio_default_fixture_loop_scope = function
        filterwarnings = {filterwarnings}
        """
    )
    base_conftest.makepyfile(test_broken=FAILING_BOOKKEEPING)
    result = base_conftest.runpytest_subprocess("--leak-check", "-p", "no:cacheprovider", *xdist)
    assert result.ret == 0
    result.assert_outcomes(passed=1)
    line = (
        "urllib3: recording a lease (_get_conn) failed (RuntimeError: injected bookkeeping "
        "failure); urllib3 went on unchanged, but its leaks may be missed in this run; "
        "please report this line at https://github.com/pytest-connleak/pytest-connleak/issues"
    )
    result.stdout.fnmatch_lines(
        [
            "*= connleak internal errors =*",
            f"INTERNAL ERROR (not a test failure): {line}",
        ]
    )
    assert result.stdout.str().count(line) == (2 if filterwarnings == "default" else 1)
    if filterwarnings == "default":
        result.stdout.fnmatch_lines(["*InternalErrorWarning: " + line])
