"""aiohttp: leaks, the library's own release of small bodies, and the clean twins.

aiohttp runs on asyncio only, so its async tests run under pytest-asyncio (and one under
anyio's plugin with the asyncio backend).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import pytest
from aiohttp import connector as connector_mod

from pytest_connleak._clients.aiohttp import HINT, SESSION_CLOSED, AiohttpAdapter
from pytest_connleak._core.adapters import Incompatible, Instrumentation, Patcher
from pytest_connleak._core.ledger import Ledger

HEADLINE = "E   ConnectionLeakError: 1 connection leaked by {name} (still leased at teardown)"
SITE = "E     http://127.0.0.1:* — leased at {where}"

HELPER = """
    async def fetch_status(session, url):
        response = await session.get(url)
        return response.status
    """


def hint(text: str) -> str:
    """A hint as an fnmatch line of the report."""
    return f"E     {text}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A listening socket that never accepts: a request there waits for its answer forever.

    The kernel completes the handshake and queues the request; no server thread exists that
    could answer late into a closed connection.
    """
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


SMALL_403_PAGE = (
    "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n"
    "<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class _OneWrite(BaseHTTPRequestHandler):
    """Answers every GET with the load balancer's 403 page, headers and body in one write.

    aiohttp gives a connection back by itself once the whole body has arrived; werkzeug
    sends headers and body separately, and whether the body is there before the test's
    last ``await`` is then a matter of timing. One write, as nginx does for a small page,
    makes it certain.
    """

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = SMALL_403_PAGE.encode()
        head = (
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode() + body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def one_write_url() -> Iterator[str]:
    """URL of a keep-alive server whose small 403 page arrives in one segment."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OneWrite)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


LEAKS = """
    import aiohttp, pytest, pytest_asyncio
    from helper import fetch_status

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def session():
        async with aiohttp.ClientSession() as session:
            yield session

    @pytest_asyncio.fixture
    async def opened(url):
        async with aiohttp.ClientSession() as session:
            yield await session.get(url + "/big")

    @pytest.mark.asyncio(loop_scope="module")
    async def test_big_body_unread(session, url):
        response = await session.get(url + "/big")
        assert response.status == 200

    @pytest.mark.asyncio(loop_scope="module")
    async def test_helper(session, url):
        assert await fetch_status(session, url + "/big") == 200

    @pytest.mark.asyncio
    async def test_fixture(opened):
        assert opened.status == 200

    @pytest.mark.asyncio
    async def test_session_closed(url):
        async with aiohttp.ClientSession() as session:
            response = await session.get(url + "/big")
    """


def test_unreleased_large_bodies_are_leaks(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(helper=HELPER, test_leaks=LEAKS)
    # In a subprocess: the leaked responses are collected whenever the garbage collector
    # runs, and aiohttp warns then ("Unclosed connection"), which in-process would be
    # during some later test of this suite.
    result = base_conftest.runpytest_subprocess("--leak-check")
    result.assert_outcomes(passed=4, errors=4)
    result.stdout.fnmatch_lines(
        [
            HEADLINE.format(name="test_big_body_unread"),
            SITE.format(where="test_leaks.py:16 in test_big_body_unread"),
            hint(HINT),
            HEADLINE.format(name="test_helper"),
            SITE.format(where="helper.py:2 in fetch_status"),
            hint(HINT),
            # The fixture closed its session at teardown, before the verdict.
            HEADLINE.format(name="test_fixture"),
            SITE.format(where="test_leaks.py:12 in opened"),
            hint(f"{SESSION_CLOSED}; {HINT}"),
            HEADLINE.format(name="test_session_closed"),
            SITE.format(where="test_leaks.py:30 in test_session_closed"),
            hint(f"{SESSION_CLOSED}; {HINT}"),
        ]
    )


CLEAN = """
    import asyncio, aiohttp, gc, pytest, pytest_asyncio
    from servers import ONE_WRITE_URL, SILENT_URL

    @pytest_asyncio.fixture(scope="session", loop_scope="session")
    async def session():
        async with aiohttp.ClientSession() as session:
            yield session

    @pytest.mark.asyncio(loop_scope="session")
    async def test_small_403_page_is_released_by_aiohttp(session):
        response = await session.get(ONE_WRITE_URL + "/403")
        assert response.status == 403

    @pytest.mark.asyncio(loop_scope="session")
    async def test_empty_403_is_released_by_aiohttp(session, url):
        response = await session.get(url + "/empty403")
        assert response.status == 403

    @pytest.mark.asyncio(loop_scope="session")
    async def test_context_manager_unread(session, url):
        async with session.get(url + "/big") as response:
            assert response.status == 200

    @pytest.mark.asyncio(loop_scope="session")
    async def test_release(session, url):
        response = await session.get(url + "/big")
        await response.release()

    @pytest.mark.asyncio(loop_scope="session")
    async def test_close(session, url):
        response = await session.get(url + "/big")
        response.close()

    @pytest.mark.asyncio(loop_scope="session")
    async def test_read(session, url):
        response = await session.get(url + "/big")
        assert len(await response.read()) == 1 << 20

    @pytest.mark.asyncio(loop_scope="session")
    async def test_timeout(session, url):
        with pytest.raises(asyncio.TimeoutError):
            await session.get(SILENT_URL, timeout=aiohttp.ClientTimeout(total=0.05))

    @pytest.mark.asyncio(loop_scope="session")
    async def test_refused(session):
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get("http://127.0.0.1:1/")

    @pytest.mark.asyncio
    async def test_limit_one_reused(url):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            for _ in range(3):
                async with session.get(url + "/big") as response:
                    await response.read()

    @pytest.mark.asyncio
    async def test_released_after_session_closed(url):
        async with aiohttp.ClientSession() as session:
            response = await session.get(url + "/big")
        response.release()

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_under_anyio(url, anyio_backend):
        # An event loop that an earlier test left unclosed (pytest-asyncio 0.2x did, after
        # each of its tests, once anyio's runner replaced it) is found here, not at a random
        # later allocation of a random later test.
        gc.collect()
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/big") as response:
                assert response.status == 200
    """


def test_clean_twins_pass(
    base_conftest: pytest.Pytester, silent_url: str, one_write_url: str
) -> None:
    servers = f"ONE_WRITE_URL = {one_write_url!r}\nSILENT_URL = {silent_url!r}"
    base_conftest.makepyfile(test_clean=CLEAN, servers=servers)
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=11)


# -- the wrappers themselves -----------------------------------------------------------------


@pytest.fixture
def instrumented() -> Iterator[Ledger]:
    """A private ledger with every adapter installed, removed afterwards."""
    own = Ledger()
    own.owner = "probe"
    instrumentation = Instrumentation(own)
    assert instrumentation.install() == []
    yield own
    instrumentation.uninstall()


def test_wrappers_keep_signature_and_kind(instrumented: Ledger) -> None:
    cls = connector_mod.BaseConnector
    # aiohttp 3.10+ (a method of its own for waiting) is tracked at Connection.__init__
    # and _release, with no coroutine added; older versions at connect().
    if "_wait_for_available_connection" in cls.__dict__:
        wrapped = [
            (cls, "_release"),
            (cls, "_close"),
            (cls, "_wait_for_available_connection"),
            (connector_mod.Connection, "__init__"),
        ]
    else:
        wrapped = [(cls, name) for name in ("connect", "_release_acquired", "_release", "_close")]
    for owner, name in wrapped:
        method = owner.__dict__[name]
        assert str(inspect.signature(method)) == str(inspect.signature(method.__wrapped__))
        assert inspect.iscoroutinefunction(method) == inspect.iscoroutinefunction(
            method.__wrapped__
        )
    assert inspect.iscoroutinefunction(cls.__dict__["connect"])


def test_tasks_share_a_session_without_losing_count(instrumented: Ledger, base_url: str) -> None:
    async def main() -> tuple[int, str]:
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> aiohttp.ClientResponse:
                response = await session.get(base_url + "/big")
                if i % 2:
                    await response.read()
                return response

            responses = await asyncio.gather(*(one(i) for i in range(20)))
            leases = instrumented.open_leases()
            for response in responses:
                response.release()
            return len(leases), leases[0].origin

    assert asyncio.run(main()) == (10, base_url)
    assert instrumented.open_leases() == []


def test_connect_errors_pass_through_and_take_no_lease(instrumented: Ledger) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get("http://127.0.0.1:1/")

    asyncio.run(main())
    assert instrumented.open_leases() == []


def test_moved_release_method_is_incompatible(monkeypatch: pytest.MonkeyPatch) -> None:
    def _release_acquired(self: Any, key: Any) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(connector_mod.BaseConnector, "_release_acquired", _release_acquired)
    patcher = Patcher()
    with pytest.raises(Incompatible, match=r"_release_acquired\('self', 'key'\) does not take"):
        AiohttpAdapter().patch(Ledger(), patcher)
    assert len(patcher) == 0
