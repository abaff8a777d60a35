"""Concurrency: many threads on one client, many tasks on one async client, exact counts.

A thread hammer (16 threads sharing one requests ``Session``, one urllib3 ``PoolManager``,
one ``httpx.Client``) and an asyncio hammer (200 tasks on one ``httpx.AsyncClient``, one
aiohttp ``ClientSession``), against a keep-alive server of our own on 127.0.0.1 so that
connections are really reused across threads and tasks. A few workers leak one response
each; the ledger must count exactly those, after thousands of leases and returns. The
verdict users see is checked through pytester with the same hammers.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
import requests
import urllib3

from pytest_connleak._core.adapters import Instrumentation
from pytest_connleak._core.ledger import Ledger

THREADS = 16
ROUNDS = 20  # requests each thread reads to the end
LEAKING_THREADS = (2, 7, 13)  # these also keep one streamed response open
TASKS = 200
LEAKING_TASKS = (5, 50, 99, 150, 199)
LARGE = 1 << 20  # a body aiohttp does not release by itself


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the connection serves the next request

    def do_GET(self) -> None:
        body = b"x" * LARGE if self.path == "/large" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # a leaked response's socket was closed

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a leaked connection must not hold the end of the module
    request_queue_size = 1024  # 200 tasks connect at once; the default backlog is 5
    accepted = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.accepted += 1  # the serving thread is the only one that accepts
        super().process_request(request, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients close leaked connections mid-body on purpose


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    """A keep-alive server: ``/ok`` answers ``ok``, ``/large`` 1 MiB."""
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def keepalive(server: _Server) -> str:
    """``http://127.0.0.1:PORT`` of :func:`server`."""
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def tracked() -> Iterator[Ledger]:
    own = Ledger()
    instrumentation = Instrumentation(own)
    assert instrumentation.install() == []
    try:
        yield own
    finally:
        instrumentation.uninstall()


# -- threads ------------------------------------------------------------------------------


def _requests_client(base: str) -> tuple[Any, Callable[[], None], Callable[[], Any]]:
    session = requests.Session()

    def clean() -> None:
        assert session.get(base + "/ok", timeout=10).text == "ok"

    def leak() -> Any:
        return session.get(base + "/ok", stream=True, timeout=10)

    return session, clean, leak


def _urllib3_client(base: str) -> tuple[Any, Callable[[], None], Callable[[], Any]]:
    pm = urllib3.PoolManager(maxsize=8)

    def clean() -> None:
        assert pm.request("GET", base + "/ok", timeout=10).data == b"ok"

    def leak() -> Any:
        return pm.request("GET", base + "/ok", preload_content=False, timeout=10)

    return pm, clean, leak


def _httpx_client(base: str) -> tuple[Any, Callable[[], None], Callable[[], Any]]:
    client = httpx.Client(timeout=10)

    def clean() -> None:
        assert client.get(base + "/ok").text == "ok"

    def leak() -> Any:
        return client.send(client.build_request("GET", base + "/ok"), stream=True)

    return client, clean, leak


CLIENTS = {"requests": _requests_client, "urllib3": _urllib3_client, "httpx": _httpx_client}


def hammer_threads(clean: Callable[[], None], leak: Callable[[], Any]) -> list[Any]:
    """Run THREADS threads at once on one client; return the responses the leakers kept."""
    start = threading.Barrier(THREADS)
    kept: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            start.wait()
            for round_ in range(ROUNDS):
                clean()
                if index in LEAKING_THREADS and round_ == ROUNDS // 2:
                    response = leak()
                    with lock:
                        kept.append(response)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return kept


@pytest.mark.parametrize("client_name", list(CLIENTS))
def test_thread_hammer_counts_exactly(
    tracked: Ledger, server: _Server, keepalive: str, client_name: str
) -> None:
    client, clean, leak = CLIENTS[client_name](keepalive)
    accepted = server.accepted
    try:
        kept = hammer_threads(clean, leak)
        # Keep-alive: the threads shared far fewer connections than they made requests.
        assert server.accepted - accepted < THREADS * ROUNDS // 2
        assert len(kept) == len(LEAKING_THREADS)
        assert len(tracked.open_leases()) == len(LEAKING_THREADS)
        (record,) = tracked.pools()
        assert record.leased == len(LEAKING_THREADS)
        assert record.total_leases == THREADS * ROUNDS + len(LEAKING_THREADS)
        assert record.high_water <= THREADS + len(LEAKING_THREADS)
        for response in kept:
            response.close()
            if client_name == "urllib3":
                response.release_conn()
        assert tracked.open_leases() == []
        assert record.leased == 0
    finally:
        getattr(client, "close", getattr(client, "clear", None))()


# -- asyncio ------------------------------------------------------------------------------


async def _hammer_httpx(base: str, ready: Callable[[int], None]) -> tuple[list[Any], Any]:
    client = httpx.AsyncClient(timeout=30)
    go = asyncio.Event()
    kept: list[Any] = []

    async def task(index: int) -> None:
        await go.wait()
        if index in LEAKING_TASKS:
            kept.append(await client.send(client.build_request("GET", base + "/ok"), stream=True))
        else:
            assert (await client.get(base + "/ok")).text == "ok"

    tasks = [asyncio.create_task(task(i)) for i in range(TASKS)]
    await asyncio.sleep(0)  # every task is now waiting on the event
    go.set()
    await asyncio.gather(*tasks)
    ready(len(kept))
    return kept, client


async def _hammer_aiohttp(base: str, ready: Callable[[int], None]) -> tuple[list[Any], Any]:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    go = asyncio.Event()
    kept: list[Any] = []

    async def task(index: int) -> None:
        await go.wait()
        if index in LEAKING_TASKS:
            # A small body is released by aiohttp once it has arrived: leak a large one.
            kept.append(await session.get(base + "/large"))
        else:
            async with session.get(base + "/ok") as response:
                assert await response.read() == b"ok"

    tasks = [asyncio.create_task(task(i)) for i in range(TASKS)]
    await asyncio.sleep(0)
    go.set()
    await asyncio.gather(*tasks)
    ready(len(kept))
    return kept, session


ASYNC_HAMMERS = {"httpx": _hammer_httpx, "aiohttp": _hammer_aiohttp}


@pytest.mark.parametrize("client_name", list(ASYNC_HAMMERS))
def test_asyncio_hammer_counts_exactly(tracked: Ledger, keepalive: str, client_name: str) -> None:
    counts: list[tuple[int, int, int]] = []

    def ready(kept: int) -> None:
        (record,) = tracked.pools()
        counts.append((kept, len(tracked.open_leases()), record.total_leases))

    async def main() -> None:
        kept, client = await ASYNC_HAMMERS[client_name](keepalive, ready)
        for response in kept:
            if client_name == "httpx":
                await response.aclose()
            else:
                response.release()
        counts.append((0, len(tracked.open_leases()), 0))
        await client.close() if client_name == "aiohttp" else await client.aclose()

    asyncio.run(main())
    leaked = len(LEAKING_TASKS)
    assert counts[0] == (leaked, leaked, TASKS)
    assert counts[1][1] == 0


# -- the verdict users see ----------------------------------------------------------------

VERDICT_TESTS = """
import asyncio
import threading

import aiohttp
import httpx
import pytest
import requests
import urllib3

THREADS = 16
LEAKING_THREADS = (2, 7, 13)
TASKS = 200
LEAKING_TASKS = (5, 50, 99, 150, 199)


@pytest.fixture
def base(lb_httpserver, load_balancer):
    lb_httpserver.expect_request("/ok").respond_with_data("ok")
    lb_httpserver.expect_request("/large").respond_with_data(b"x" * (1 << 20))
    return load_balancer(lb_httpserver.url_for("/").rstrip("/"))


def sync_client(name, base):
    if name == "requests":
        session = requests.Session()
        return session, lambda: session.get(base + "/ok", timeout=10).text, (
            lambda: session.get(base + "/ok", stream=True, timeout=10))
    if name == "urllib3":
        pm = urllib3.PoolManager(maxsize=8)
        return pm, lambda: pm.request("GET", base + "/ok").data, (
            lambda: pm.request("GET", base + "/ok", preload_content=False))
    client = httpx.Client(timeout=10)
    return client, lambda: client.get(base + "/ok").text, (
        lambda: client.send(client.build_request("GET", base + "/ok"), stream=True))


@pytest.mark.parametrize("name", ["requests", "urllib3", "httpx"])
def test_threads(base, name):
    client, clean, leak = sync_client(name, base)
    start = threading.Barrier(THREADS)
    kept, errors = [], []

    def worker(index):
        try:
            start.wait()
            for round_ in range(5):
                assert clean() in ("ok", b"ok")
                if index in LEAKING_THREADS and round_ == 2:
                    kept.append(leak())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(kept) == len(LEAKING_THREADS)


@pytest.mark.parametrize("name", ["httpx", "aiohttp"])
def test_tasks(base, name):
    async def main():
        go = asyncio.Event()
        kept = []
        if name == "httpx":
            client = httpx.AsyncClient(timeout=30)

            async def clean():
                assert (await client.get(base + "/ok")).text == "ok"

            async def leak():
                request = client.build_request("GET", base + "/ok")
                kept.append(await client.send(request, stream=True))

            close = client.aclose
        else:
            session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

            async def clean():
                async with session.get(base + "/ok") as response:
                    assert await response.read() == b"ok"

            async def leak():
                kept.append(await session.get(base + "/large"))

            close = session.close

        async def task(index):
            await go.wait()
            await (leak() if index in LEAKING_TASKS else clean())

        tasks = [asyncio.create_task(task(i)) for i in range(TASKS)]
        await asyncio.sleep(0)
        go.set()
        await asyncio.gather(*tasks)
        assert len(kept) == len(LEAKING_TASKS)
        await close()

    asyncio.run(main())
"""


def test_hammer_verdicts(pytester: pytest.Pytester) -> None:
    """The verdict counts exactly the leakers' connections, under 16 threads or 200 tasks."""
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        filterwarnings =
            error
            ignore::ResourceWarning
        """
    )
    pytester.makepyfile(test_hammer=VERDICT_TESTS)
    result = pytester.runpytest_subprocess("--leak-check", "-rE")
    result.assert_outcomes(passed=5, errors=5)
    site = "E     http://127.0.0.1:* — leased at test_hammer.py:{} in {} (×{})"
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 3 connections leaked by test_threads[requests] "
            "(still leased at teardown)",
            site.format(27, "<lambda>", 3),
            "E   ConnectionLeakError: 3 connections leaked by test_threads[urllib3] "
            "(still leased at teardown)",
            site.format(31, "<lambda>", 3),
            "E   ConnectionLeakError: 3 connections leaked by test_threads[httpx] "
            "(still leased at teardown)",
            site.format(34, "<lambda>", 3),
            "E   ConnectionLeakError: 5 connections leaked by test_tasks[httpx] "
            "(still leased at teardown)",
            site.format(75, "leak", 5),
            "E   ConnectionLeakError: 5 connections leaked by test_tasks[aiohttp] "
            "(still leased at teardown)",
            site.format(86, "leak", 5),
        ]
    )
