"""httpx and httpx2 (httpcore, httpcore2 under them), sync and async on asyncio and trio.

The leak and clean twins run once per flavour: the inner files' ``import httpx`` becomes
``import httpx2 as httpx`` for httpx2 (same lines, same reports), see :class:`Flavour`.

Inner projects reach the suite's keep-alive server through ``url``; async tests run by
pytest-asyncio (asyncio) and by anyio's pytest plugin (trio), with the same test text:
``runner.py`` gives ``MARK`` and ``async_fixture`` for the runner under test.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpcore  # noqa: F401  (see below)
import httpx
import pytest

from pytest_connleak._clients.httpcore import ASYNC_HINT, CLIENT_CLOSED, SYNC_HINT
from pytest_connleak._core.adapters import Instrumentation
from pytest_connleak._core.ledger import Ledger

if sys.version_info >= (3, 11):  # httpx2 needs Python 3.11
    import httpcore2  # noqa: F401  (as httpcore, below)
    import httpx2  # noqa: F401

# httpx imports httpcore lazily. Imported here, httpcore stays in the sys.modules that
# pytester restores after each inline run; otherwise every run would import a new httpcore
# while httpx keeps mapping the exception classes of the first one (ReadTimeout unmapped).

RUNNERS = {
    "asyncio": """
        import pytest, pytest_asyncio

        MARK = pytest.mark.asyncio
        async_fixture = pytest_asyncio.fixture
        MODULE_MARK = pytest.mark.asyncio(loop_scope="module")
        module_fixture = pytest_asyncio.fixture(scope="module", loop_scope="module")
        """,
    "trio": """
        import pytest

        MARK = MODULE_MARK = pytest.mark.anyio
        async_fixture = pytest.fixture
        module_fixture = pytest.fixture(scope="module")

        @pytest.fixture(scope="module")
        def anyio_backend():
            return "trio"
        """,
}

HELPER = """
    import httpx

    def fetch_status(client, url):
        response = client.send(client.build_request("GET", url), stream=True)
        return response.status_code

    async def afetch_status(client, url):
        response = await client.send(client.build_request("GET", url), stream=True)
        return response.status_code
    """

HEADLINE = "E   ConnectionLeakError: 1 connection leaked by {name} (still leased at teardown)"
SITE = "E     http://127.0.0.1:* — leased at {where}"


def hint(text: str) -> str:
    """A hint as an fnmatch line of the report."""
    return f"E     {text}"


@dataclass(frozen=True)
class Flavour:
    """httpx or httpx2: the client package, the httpcore under it, and its adapter's name."""

    package: str
    core: str

    def text(self, source: str) -> str:
        """*source* (written for httpx) using this flavour, on the same lines."""
        if self.package == "httpx":
            return source
        return source.replace("import httpx", f"import {self.package} as httpx")

    def version(self) -> str:
        return str(__import__(self.core).__version__)


FLAVOURS = {"httpx": Flavour("httpx", "httpcore"), "httpx2": Flavour("httpx2", "httpcore2")}


@pytest.fixture(params=sorted(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> Flavour:
    """Each tracked httpx flavour; httpx2 is skipped where it cannot be installed (3.10)."""
    if request.param == "httpx2" and sys.version_info < (3, 11):
        pytest.skip("httpx2 needs Python 3.11+")
    return FLAVOURS[request.param]


@pytest.fixture(params=sorted(RUNNERS))
def project(
    base_conftest: pytest.Pytester, request: pytest.FixtureRequest, flavour: Flavour
) -> pytest.Pytester:
    """``base_conftest`` plus ``helper.py`` and ``runner.py``, once per async runner."""
    base_conftest.makepyfile(runner=RUNNERS[request.param], helper=flavour.text(HELPER))
    return base_conftest


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A listening socket that never accepts: a request there waits for its answer forever.

    The kernel completes the handshake and queues the request; no server thread exists that
    could answer late into a closed connection.
    """
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


# -- sync ----------------------------------------------------------------------------------

SYNC_LEAKS = """
    import gc, httpx, pytest
    from helper import fetch_status

    @pytest.fixture(scope="module")
    def client():
        with httpx.Client() as client:
            yield client

    @pytest.fixture
    def opened(client, url):
        return client.send(client.build_request("GET", url + "/ok"), stream=True)

    def test_stream(client, url):
        response = client.send(client.build_request("GET", url + "/403"), stream=True)
        assert response.status_code == 403

    def test_helper(client, url):
        assert fetch_status(client, url + "/ok") == 200

    def test_fixture(opened):
        assert opened.status_code == 200

    def test_dropped(client, url):
        client.send(client.build_request("GET", url + "/ok"), stream=True)
        gc.collect()

    def test_client_closed(url):
        limits = httpx.Limits(max_connections=1)
        with httpx.Client(limits=limits, timeout=httpx.Timeout(5, pool=0.05)) as client:
            response = client.send(client.build_request("GET", url + "/ok"), stream=True)
            with pytest.raises(httpx.PoolTimeout):
                client.get(url + "/ok")
    """


def test_sync_leaks_are_reported_at_the_user_line(
    base_conftest: pytest.Pytester, flavour: Flavour
) -> None:
    base_conftest.makepyfile(helper=flavour.text(HELPER), test_sync=flavour.text(SYNC_LEAKS))
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=5, errors=5)
    result.stdout.fnmatch_lines(
        [
            HEADLINE.format(name="test_stream"),
            SITE.format(where="test_sync.py:14 in test_stream"),
            hint(SYNC_HINT),
            HEADLINE.format(name="test_helper"),
            SITE.format(where="helper.py:4 in fetch_status"),
            hint(SYNC_HINT),
            HEADLINE.format(name="test_fixture"),
            SITE.format(where="test_sync.py:11 in opened"),
            hint(SYNC_HINT),
            # Garbage collection does not give the slot back: the pool still counts it.
            HEADLINE.format(name="test_dropped"),
            SITE.format(where="test_sync.py:24 in test_dropped"),
            hint(SYNC_HINT),
            # One lease only: the request that hit PoolTimeout never got a connection.
            HEADLINE.format(name="test_client_closed"),
            SITE.format(where="test_sync.py:30 in test_client_closed"),
            hint(f"{CLIENT_CLOSED}; {SYNC_HINT}"),
        ]
    )


def test_leak_in_module_fixture_is_blamed_on_the_fixture(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        test_mod="""
        import httpx, pytest
        from conftest import BASE_URL

        @pytest.fixture(scope="module")
        def client():
            with httpx.Client() as client:
                yield client

        @pytest.fixture(scope="module")
        def warmed(client):
            return client.send(client.build_request("GET", BASE_URL + "/ok"), stream=True)

        def test_one(warmed):
            pass

        def test_two(warmed):
            pass
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_two*",
            "E   ConnectionLeakError: 1 connection leaked by fixture 'warmed' (module scope) "
            "(still leased when it was finalised)",
            SITE.format(where="test_mod.py:11 in warmed"),
            hint(f"{CLIENT_CLOSED}; {SYNC_HINT}"),
        ]
    )


SYNC_CLEAN = """
    import httpx, pytest
    from servers import SILENT_URL

    @pytest.fixture(scope="session")
    def client():
        with httpx.Client() as client:
            yield client

    def test_stream_context_exited_early(client, url):
        with client.stream("GET", url + "/big") as response:
            assert response.status_code == 200

    def test_stream_context_read(client, url):
        with client.stream("GET", url + "/403") as response:
            response.read()

    def test_close(client, url):
        response = client.send(client.build_request("GET", url + "/big"), stream=True)
        response.close()

    def test_read(client, url):
        response = client.send(client.build_request("GET", url + "/ok"), stream=True)
        response.read()

    def test_iterate_to_the_end(client, url):
        response = client.send(client.build_request("GET", url + "/big"), stream=True)
        assert sum(len(chunk) for chunk in response.iter_bytes()) == 1 << 20

    def test_plain_requests(client, url):
        assert client.get(url + "/ok").text == "ok"
        assert client.post(url + "/json").status_code in (200, 405)

    def test_read_timeout(client, url):
        with pytest.raises(httpx.ReadTimeout):
            client.get(SILENT_URL, timeout=0.05)

    def test_refused(client):
        with pytest.raises(httpx.ConnectError):
            client.get("http://127.0.0.1:1/")

    def test_own_client_closed(url):
        with httpx.Client() as client, client.stream("GET", url + "/ok") as response:
            response.read()
    """


def test_sync_clean_twins_pass(
    base_conftest: pytest.Pytester, silent_url: str, flavour: Flavour
) -> None:
    base_conftest.makepyfile(
        test_clean=flavour.text(SYNC_CLEAN), servers=f"SILENT_URL = {silent_url!r}"
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=9)


def test_mock_transport_is_never_a_lease(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        test_mock="""
        import httpx, pytest

        def handler(request):
            return httpx.Response(403, content=b"x" * (1 << 20))

        def test_sync():
            client = httpx.Client(transport=httpx.MockTransport(handler))
            response = client.send(client.build_request("GET", "http://api.test/"), stream=True)
            assert response.status_code == 403

        @pytest.mark.asyncio
        async def test_async():
            client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
            request = client.build_request("GET", "http://api.test/")
            response = await client.send(request, stream=True)
            assert response.status_code == 403
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=2)


def test_one_pool_reports_each_origin(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        test_origins="""
        import httpx

        def test_two_origins(url):
            with httpx.Client() as client:
                a = client.send(client.build_request("GET", url + "/ok"), stream=True)
                other = url.replace("127.0.0.1", "localhost")
                b = client.send(client.build_request("GET", other + "/ok"), stream=True)
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 2 connections leaked by test_two_origins *",
            "E     http://127.0.0.1:* — leased at test_origins.py:5 in test_two_origins",
            "E     http://localhost:* — leased at test_origins.py:7 in test_two_origins",
        ]
    )


# -- async, on asyncio and trio --------------------------------------------------------------

ASYNC_LEAKS = """
    import httpx, pytest
    from runner import *
    from helper import afetch_status

    @module_fixture
    async def client():
        async with httpx.AsyncClient() as client:
            yield client

    @async_fixture
    async def opened(url):
        async with httpx.AsyncClient() as client:
            yield await client.send(client.build_request("GET", url + "/ok"), stream=True)

    @MODULE_MARK
    async def test_stream(client, url):
        response = await client.send(client.build_request("GET", url + "/403"), stream=True)
        assert response.status_code == 403

    @MODULE_MARK
    async def test_helper(client, url):
        assert await afetch_status(client, url + "/ok") == 200

    @MARK
    async def test_fixture(opened):
        assert opened.status_code == 200

    @MARK
    async def test_client_closed(url):
        async with httpx.AsyncClient() as client:
            response = await client.send(client.build_request("GET", url + "/ok"), stream=True)

    @MODULE_MARK
    async def test_raise_for_status(client, url):
        response = await client.send(client.build_request("GET", url + "/403"), stream=True)
        with pytest.raises(httpx.HTTPStatusError):
            response.raise_for_status()
    """


def test_async_leaks_are_reported_at_the_user_line(
    project: pytest.Pytester, flavour: Flavour
) -> None:
    project.makepyfile(test_async=flavour.text(ASYNC_LEAKS))
    # In a subprocess: with pytest 8.2 and httpcore 0.16 (the oldest supported), the leaked
    # transports are collected after the inner run's last test, where an in-process run
    # hands their ResourceWarning to this test's unraisable-exception hook.
    result = project.runpytest_subprocess("--leak-check")
    result.assert_outcomes(passed=5, errors=5)
    result.stdout.fnmatch_lines(
        [
            HEADLINE.format(name="test_stream"),
            SITE.format(where="test_async.py:17 in test_stream"),
            hint(ASYNC_HINT),
            HEADLINE.format(name="test_helper"),
            SITE.format(where="helper.py:8 in afetch_status"),
            hint(ASYNC_HINT),
            HEADLINE.format(name="test_fixture"),
            SITE.format(where="test_async.py:13 in opened"),
            hint(f"{CLIENT_CLOSED}; {ASYNC_HINT}"),
            HEADLINE.format(name="test_client_closed"),
            SITE.format(where="test_async.py:31 in test_client_closed"),
            hint(f"{CLIENT_CLOSED}; {ASYNC_HINT}"),
            HEADLINE.format(name="test_raise_for_status"),
            SITE.format(where="test_async.py:35 in test_raise_for_status"),
            # The last test of the module: its module-scoped client is closed at this
            # test's teardown, before the verdict, so the report says so.
            hint(f"{CLIENT_CLOSED}; {ASYNC_HINT}"),
        ]
    )


ASYNC_CLEAN = """
    import httpx, pytest
    from servers import SILENT_URL
    from runner import *

    @module_fixture
    async def client():
        async with httpx.AsyncClient() as client:
            yield client

    @async_fixture
    async def body(url):
        async with httpx.AsyncClient() as client:
            async with client.stream("GET", url + "/big") as response:
                yield await response.aread()

    @MODULE_MARK
    async def test_stream_context_exited_early(client, url):
        async with client.stream("GET", url + "/big") as response:
            assert response.status_code == 200

    @MODULE_MARK
    async def test_aclose(client, url):
        response = await client.send(client.build_request("GET", url + "/big"), stream=True)
        await response.aclose()

    @MODULE_MARK
    async def test_aread(client, url):
        response = await client.send(client.build_request("GET", url + "/403"), stream=True)
        await response.aread()

    @MODULE_MARK
    async def test_iterate_to_the_end(client, url):
        response = await client.send(client.build_request("GET", url + "/big"), stream=True)
        assert sum([len(chunk) async for chunk in response.aiter_bytes()]) == 1 << 20

    @MODULE_MARK
    async def test_plain_requests(client, url):
        assert (await client.get(url + "/ok")).text == "ok"

    @MODULE_MARK
    async def test_read_timeout(client, url):
        with pytest.raises(httpx.ReadTimeout):
            await client.get(SILENT_URL, timeout=0.05)

    @MARK
    async def test_fixture_read_the_body(body):
        assert len(body) == 1 << 20
    """


def test_async_clean_twins_pass(
    project: pytest.Pytester, silent_url: str, flavour: Flavour
) -> None:
    project.makepyfile(test_clean=flavour.text(ASYNC_CLEAN), servers=f"SILENT_URL = {silent_url!r}")
    result = project.runpytest("--leak-check")
    result.assert_outcomes(passed=7)


# -- an httpcore whose internals moved -------------------------------------------------------


def test_unexpected_internals_warn_once_and_skip_only_httpcore(
    base_conftest: pytest.Pytester, flavour: Flavour
) -> None:
    # A -p plugin whose tryfirst pytest_configure runs before pytest-connleak's installs,
    # as an older or newer httpcore would be in place.
    core = flavour.core
    base_conftest.makepyfile(
        moved_internals=f"""
        import pytest
        from {core}._sync.connection_pool import ConnectionPool

        ORIGINAL = ConnectionPool.__dict__["handle_request"]

        def handle_request(self, request, *, extensions=None):
            return ORIGINAL(self, request)

        @pytest.hookimpl(tryfirst=True)
        def pytest_configure(config):
            ConnectionPool.handle_request = handle_request

        def pytest_unconfigure(config):
            ConnectionPool.handle_request = ORIGINAL
        """,
        test_moved=flavour.text(
            """
            import httpx, requests

            def test_httpx_untracked(url):
                with httpx.Client() as client:
                    client.send(client.build_request("GET", url + "/ok"), stream=True)

            def test_requests_still_tracked(url):
                requests.get(url + "/403", stream=True)
            """
        ),
    )
    base_conftest.syspathinsert()
    result = base_conftest.runpytest("-p", "moved_internals", "--leak-check")
    result.assert_outcomes(passed=2, errors=1, warnings=1)
    version = flavour.version()
    result.stdout.fnmatch_lines(
        [
            f"*IncompatibleClientWarning: pytest-connleak cannot track {core} {version}: "
            f"{core}.ConnectionPool.handle_request"
            "('self', 'request', 'extensions') does not take ('self', 'request'); "
            f"leaks through {core} will not be reported",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*tracking urllib3 *, aiohttp *", "*ERROR at teardown of test_requests_still_tracked*"]
    )
    assert f"{core} {version}," not in result.stdout.str()


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
    from httpcore._async import connection_pool
    from httpcore._async.connection_pool import AsyncConnectionPool
    from httpcore._sync.connection_pool import ConnectionPool

    # httpcore 1.0.3 renamed the stream class.
    stream = (
        getattr(connection_pool, "PoolByteStream", None) or connection_pool.ConnectionPoolByteStream
    )

    for cls, name in [(ConnectionPool, "handle_request"), (ConnectionPool, "close")]:
        method = cls.__dict__[name]
        assert method.__wrapped__ is not None
        assert str(inspect.signature(method)) == str(inspect.signature(method.__wrapped__))
        assert method.__doc__ == method.__wrapped__.__doc__
    for cls, name in [
        (AsyncConnectionPool, "handle_async_request"),
        (AsyncConnectionPool, "aclose"),
        (stream, "aclose"),
    ]:
        assert inspect.iscoroutinefunction(cls.__dict__[name])


def test_uninstall_restores_the_originals() -> None:
    from httpcore._sync.connection_pool import ConnectionPool

    before = ConnectionPool.__dict__["handle_request"]
    instrumentation = Instrumentation(Ledger())
    instrumentation.install()
    assert ConnectionPool.__dict__["handle_request"] is not before
    instrumentation.uninstall()
    assert ConnectionPool.__dict__["handle_request"] is before


def test_errors_pass_through_and_take_no_lease(instrumented: Ledger) -> None:
    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        client.get("http://127.0.0.1:1/")
    assert instrumented.open_leases() == []


def test_response_is_returned_and_lease_follows_its_stream(
    instrumented: Ledger, base_url: str, flavour: Flavour
) -> None:
    client_module = importlib.import_module(flavour.package)
    with client_module.Client() as client:
        response = client.send(client.build_request("GET", base_url + "/ok"), stream=True)
        assert response.status_code == 200
        (lease,) = instrumented.open_leases()
        assert (lease.origin, lease.client, lease.site.function) == (
            base_url,
            flavour.core,
            "test_response_is_returned_and_lease_follows_its_stream",
        )
        assert lease.site.library == flavour.package
        assert response.read() == b"ok"
        assert instrumented.open_leases() == []


def test_dropped_response_stays_leased_after_gc(instrumented: Ledger, base_url: str) -> None:
    with httpx.Client() as client:
        client.send(client.build_request("GET", base_url + "/ok"), stream=True)
        gc.collect()
        (lease,) = instrumented.open_leases()
        # Collected with its stream unclosed: httpcore still counts the connection as busy.
        assert lease.holder_collected
        assert [c.is_idle() for c in client._transport._pool.connections] == [False]


class _CyclicStream:
    """An SDK's stream object: it and the generator reading it form a reference cycle."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.iterator = self._read()

    def _read(self) -> Iterator[bytes]:
        try:
            yield from self.response.iter_bytes()
        finally:
            self.response.close()  # run by the generator's finalizer, inside the cyclic GC


def test_stream_closed_by_a_cycle_finalizer_gives_its_lease_back(
    instrumented: Ledger, base_url: str, flavour: Flavour
) -> None:
    client_module = importlib.import_module(flavour.package)
    with client_module.Client() as client:
        request = client.build_request("GET", base_url + "/big")
        stream = _CyclicStream(client.send(request, stream=True))
        next(stream.iterator)
        gc.disable()  # so that the collection happens where this test says
        try:
            del stream
            assert len(instrumented.open_leases()) == 1
            # The GC clears weak references before finalizers run: the lease must still
            # be found when the finalizer closes the stream.
            gc.collect()
            assert instrumented.open_leases() == []
            # No request in flight (httpcore before 1.0 has no such repr: ask the connections).
            pool = client._transport._pool
            assert all(c.is_idle() or c.is_closed() for c in pool.connections)
        finally:
            gc.enable()


def test_threads_share_a_client_without_losing_count(instrumented: Ledger, base_url: str) -> None:
    errors: list[BaseException] = []
    kept: list[httpx.Response] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        try:
            for _ in range(10):
                request = client.build_request("GET", base_url + "/ok")
                response = client.send(request, stream=True)
                if i % 2:
                    response.read()
                else:
                    with lock:
                        kept.append(response)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with httpx.Client(limits=httpx.Limits(max_connections=100)) as client:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(instrumented.open_leases()) == len(kept) == 40
        for response in kept:
            response.close()
        assert instrumented.open_leases() == []


def test_tasks_share_a_client_without_losing_count(instrumented: Ledger, base_url: str) -> None:
    async def main() -> int:
        async with httpx.AsyncClient() as client:

            async def one(i: int) -> httpx.Response:
                request = client.build_request("GET", base_url + "/ok")
                response = await client.send(request, stream=True)
                if i % 2:
                    await response.aread()
                return response

            responses = await asyncio.gather(*(one(i) for i in range(20)))
            leased = len(instrumented.open_leases())
            for response in responses:
                await response.aclose()
            return leased

    assert asyncio.run(main()) == 10
    assert instrumented.open_leases() == []


def test_task_with_no_user_frame_is_not_blamed_on_the_runner(
    base_conftest: pytest.Pytester,
) -> None:
    """A request handed straight to asyncio.gather() runs with no user code on its stack."""
    base_conftest.makepyfile(
        """
        import asyncio
        import httpx, pytest

        @pytest.mark.asyncio
        async def test_gathered(url):
            async with httpx.AsyncClient() as client:
                request = client.build_request("GET", url + "/ok")
                await asyncio.gather(client.send(request, stream=True))
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([SITE.format(where="<unknown>:0 in <unknown>")])
    result.stdout.no_fnmatch_line("*pytest_asyncio*")
