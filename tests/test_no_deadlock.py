"""Finalizers and weak-reference callbacks inside our own code never hang a run (issue 16).

A garbage collection starts at any allocation and runs finalizers (a dropped response's
``__del__``) on the allocating thread, possibly while our bookkeeping holds a lock. This
test makes that happen deterministically: a ``gc.callbacks`` hook runs a client's finalizer
action (what its response's ``__del__`` calls) at the start of every collection that begins
while our code is the innermost code running, and ``gc.set_threshold(1, 1, 1)`` starts a
collection at nearly every allocation, while every client makes requests against a real
keep-alive server. The run must finish (a deadlock hits the subprocess timeout instead of
hanging the suite) and the ledger must stay exact: every release that arrived inside our
code is counted once, so the leases still open are exactly the responses still parked.
"""

from __future__ import annotations

import pytest

CLIENTS = ("urllib3", "requests", "httpx", "httpx-async", "aiohttp")

CONFTEST = """
import http.server
import threading

import pytest

BIG = b"x" * (1 << 20)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self):
        # aiohttp gives a fully buffered small body back by itself: its parked responses
        # need a body that does not fit its buffer to stay leased.
        body = BIG if self.path == "/big" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # a parked response closed before reading its body
            pass

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass


@pytest.fixture(scope="session")
def url():
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
"""

TEST = '''
import asyncio
import collections
import gc
import os
import sys

import aiohttp
import httpx
import pytest
import requests
import urllib3

import pytest_connleak
from pytest_connleak._core.ledger import ledger

OURS = os.path.dirname(os.path.abspath(pytest_connleak.__file__)) + os.sep
STDLIB = os.path.dirname(os.path.abspath(os.__file__)) + os.sep
ROUNDS = 12

parked = collections.deque()  # (client, response) still leased, oldest first
tasks = []  # httpx async closes started by a collection (aclose() is a coroutine)
ran = collections.Counter()  # finalizer actions run inside our code, per client
errors = []
state = {"busy": False, "client": None}


def ours_running(frame):
    """True when the innermost frame outside the standard library is pytest_connleak's."""
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(OURS):
            return True
        if not filename.startswith(STDLIB) or "site-packages" in filename:
            return False
        frame = frame.f_back
    return False


def finalize(client, response):
    """What a dropped response's finalizer (and the release it leads to) runs."""
    if client == "urllib3":
        response.close()  # HTTPResponse.__del__ -> IOBase.__del__ -> close()
        response.release_conn()  # -> HTTPConnectionPool._put_conn
    elif client in ("requests", "httpx"):
        response.close()  # -> urllib3 close + _put_conn / httpcore PoolByteStream.close
    elif client == "httpx-async":
        tasks.append(asyncio.get_running_loop().create_task(response.aclose()))
    elif client == "aiohttp":
        response.__del__()  # ClientResponse.__del__ -> Connection.release -> _release


def on_gc(phase, info):
    if phase != "start" or state["busy"] or not ours_running(sys._getframe(1)):
        return
    for i, (client, response) in enumerate(parked):
        if client == state["client"]:
            del parked[i]
            break
    else:
        return
    state["busy"] = True
    try:
        finalize(client, response)
        ran[client] += 1
    except BaseException as exc:  # an exception here would only be "unraisable"
        errors.append(exc)
    finally:
        state["busy"] = False


class CountingDeque(collections.deque):
    """The ledger's queue of updates that arrived inside another one, counted."""

    appended = 0

    def append(self, item):
        CountingDeque.appended += 1
        super().append(item)


async def settle():
    while tasks:
        await tasks.pop()


def check_exact(nodeid):
    # No finalizer runs while the check reads the ledger: one that ran between two of its
    # reads would make them disagree, and an httpx-async one only starts aclose() (the
    # lease stays open until its task runs) while its response has already left `parked`.
    # The reads before settle() in each round are where finalizers run inside our lock.
    state["busy"] = True
    try:
        open_leases = ledger.open_leases(nodeid)
        assert len(open_leases) == len(parked), (len(open_leases), list(parked))
        records = ledger.pools()
        assert all(rec.leased == len(rec.leases) for rec in records)
        assert sum(rec.leased for rec in records) == len(ledger.open_leases())
    finally:
        state["busy"] = False


CLIENTS = ("urllib3", "requests", "httpx", "httpx-async", "aiohttp")
SUPPLY = 60


@pytest.mark.asyncio
@pytest.mark.parametrize("client", {clients!r})
async def test_finalizers_inside_our_code(client, url, request):
    nodeid = request.node.nodeid
    state["client"] = client
    pm = urllib3.PoolManager()
    session = requests.Session()
    sync = httpx.Client()
    asynchronous = httpx.AsyncClient()
    aio = aiohttp.ClientSession()

    async def make_request(name):
        if name == "urllib3":
            return pm.request("GET", url + "/ok", preload_content=False)
        if name == "requests":
            return session.get(url + "/ok", stream=True)
        if name == "httpx":
            return sync.send(sync.build_request("GET", url + "/ok"), stream=True)
        if name == "httpx-async":
            req = asynchronous.build_request("GET", url + "/ok")
            return await asynchronous.send(req, stream=True)
        return await aio.get(url + "/big")

    # The finalizers waiting for a collection: responses dropped earlier.
    for _ in range(SUPPLY):
        parked.append((client, await make_request(client)))
    ledger._deferred = CountingDeque(ledger._deferred)
    threshold = gc.get_threshold()
    gc.callbacks.append(on_gc)
    gc.set_threshold(1, 1, 1)
    try:
        for _ in range(ROUNDS):
            for name in CLIENTS:
                parked.append((name, await make_request(name)))
            # The questions the verdict asks, with the ledger's lock held while they
            # allocate: a collection there runs a finalizer inside the locked section.
            ledger.open_leases(nodeid)
            ledger.pools()
            ledger.size()
            await settle()
            check_exact(nodeid)
    finally:
        gc.callbacks.remove(on_gc)
        gc.set_threshold(*threshold)
    assert not errors, errors
    assert ran[client] >= 1, ran  # the shape was really exercised
    if client != "httpx-async":  # its aclose() runs later, in a task
        # Some of those releases arrived inside one of the ledger's own updates.
        assert CountingDeque.appended >= 1
    await settle()
    check_exact(nodeid)
    while parked:
        finalize(*parked.popleft())
    await settle()
    assert ledger.open_leases(nodeid) == []
    pm.clear()
    session.close()
    sync.close()
    await asynchronous.aclose()
    await aio.close()
'''


@pytest.mark.parametrize("client", CLIENTS)
def test_finalizer_inside_our_code_never_hangs(pytester: pytest.Pytester, client: str) -> None:
    pytester.makeini(
        """
        [pytest]
        asyncio_mode = strict
        asyncio_default_fixture_loop_scope = function
        filterwarnings =
            error
            ignore::ResourceWarning
            ignore:Connection pool is full
            ignore::pytest_connleak.PoolHealthWarning
        """
    )
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_finalizers=TEST.replace("{clients!r}", repr([client])))
    # A deadlock fails here (pytester.TimeoutExpired) instead of hanging the suite.
    result = pytester.runpytest_subprocess("--leak-check", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
