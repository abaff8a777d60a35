"""Database and cache pools (SQLAlchemy, psycopg_pool, redis-py, asyncpg) on real servers.

Every way of leaking has its clean twin in the same inner file: a connection never
closed (held past teardown), one closed only by the garbage collector, one held by a
module-scoped fixture, one made from a thread and, for async clients, one made from a
task. Inner projects reach the suite's PostgreSQL and Redis through ``PG_URL`` and
``REDIS_URL``, which carry passwords: no report, summary, baseline, JUnit property or
``pool_stats()`` may show them.

Leaked connections are kept in ``held.HELD`` and closed at the end of the inner module
(by a module fixture whose teardown runs before the verdict of the module's last test,
which is therefore always a clean one), so nothing outlives an inner run.
"""

from __future__ import annotations

import asyncio
import gc
import pathlib
import re
import warnings
from collections.abc import Iterator

import asyncpg  # noqa: F401  (imported once: see tests/conftest.py)
import psycopg  # noqa: F401
import psycopg_pool  # noqa: F401
import pytest
import redis  # noqa: F401
import redis.asyncio  # noqa: F401
import sqlalchemy  # noqa: F401
import sqlalchemy.ext.asyncio  # noqa: F401
from sqlalchemy.dialects import registry

from dbservers import PG_PASSWORD, REDIS_PASSWORD

# The dialects too: one imported again by a later inner run registers its functions twice.
for _dialect in ("postgresql.psycopg", "postgresql.asyncpg", "sqlite.pysqlite"):
    registry.load(_dialect)

INI = """
    [pytest]
    asyncio_default_fixture_loop_scope = function
    filterwarnings =
        error
        ignore::ResourceWarning
"""

HELD = """
    HELD = []
    """


@pytest.fixture
def db_project(
    pytester: pytest.Pytester,
    postgres_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[pytest.Pytester]:
    """A pytester project whose conftest knows the servers' URLs (with their passwords)."""
    sqlite = tmp_path_factory.mktemp("sqlite") / "app.db"
    pytester.makeini(INI)
    pytester.makeconftest(
        f"""
        PG_URL = {postgres_url!r}
        REDIS_URL = {redis_url!r}
        SQLITE_URL = {"sqlite:///" + str(sqlite)!r}
        """
    )
    pytester.makepyfile(held=HELD)
    yield pytester
    # Whatever an inner run left for the garbage collector goes now, where it is expected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()


def leak_lines(test: str, origin: str, where: str, hint: str) -> list[str]:
    """The fnmatch lines of one leak's report."""
    return [
        f"*ERROR at teardown of {test}*",
        f"E   ConnectionLeakError: 1 connection leaked by {test} (still leased at teardown)",
        f"E     {origin} — leased at {where}",
        f"E     {hint}",
    ]


def no_teardown_error(result: pytest.RunResult, *tests: str) -> None:
    """The clean twins *tests* were not failed at teardown: nothing of theirs was a leak."""
    text = result.stdout.str()
    for name in tests:
        assert f"ERROR at teardown of {name}" not in text


def no_secret(result: pytest.RunResult, *files: str) -> None:
    text = result.stdout.str() + result.stderr.str()
    for path in files:
        with open(path, encoding="utf-8") as f:
            text += f.read()
    assert PG_PASSWORD not in text
    assert REDIS_PASSWORD not in text


# -- SQLAlchemy --------------------------------------------------------------------------

SQLALCHEMY_SYNC = """
    import gc, threading
    import pytest
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session
    from conftest import PG_URL, SQLITE_URL
    from held import HELD

    engine = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    lite = create_engine(SQLITE_URL)

    @pytest.fixture(scope="module", autouse=True)
    def _close_held():
        yield
        for conn in HELD:
            conn.close()
        engine.dispose()
        lite.dispose()

    @pytest.fixture(scope="module")
    def module_conn():
        return engine.connect()

    @pytest.fixture(scope="module")
    def module_conn_closed():
        with engine.connect() as conn:
            yield conn

    def count(conn):
        return conn.execute(text("select 1")).scalar()

    def test_never_closed():
        conn = engine.connect()
        HELD.append(conn)
        assert count(conn) == 1

    def test_never_closed_clean():
        with engine.connect() as conn:
            assert count(conn) == 1

    def test_session_never_closed():
        session = Session(engine)
        HELD.append(session)
        assert session.execute(text("select 1")).scalar() == 1

    def test_session_clean():
        with Session(engine) as session:
            assert session.execute(text("select 1")).scalar() == 1

    def helper():
        conn = engine.connect()
        return count(conn)

    def test_collected():
        assert helper() == 1
        gc.collect()

    def test_collected_clean():
        with engine.connect() as conn:
            assert count(conn) == 1
        gc.collect()

    def test_from_thread():
        t = threading.Thread(target=lambda: HELD.append(engine.connect()))
        t.start()
        t.join()

    def test_from_thread_clean():
        def work():
            with engine.connect() as conn:
                count(conn)
        t = threading.Thread(target=work)
        t.start()
        t.join()

    def test_detach_is_not_a_leak():
        conn = engine.connect()
        conn.detach()
        conn.close()

    def test_sqlite():
        conn = lite.connect()
        HELD.append(conn)
        count(conn)

    def test_sqlite_clean():
        with lite.connect() as conn:
            count(conn)

    def test_module_fixture(module_conn):
        assert count(module_conn) == 1

    def test_module_fixture_clean(module_conn_closed):
        assert count(module_conn_closed) == 1

    def test_zz_last():
        pass
    """

PG = "postgresql://postgres@127.0.0.1:*/postgres"
SA_SYNC_HINT = (
    "close the connection or session: `with engine.connect() as conn:`, "
    "`with Session(engine) as session:` (or call .close())"
)
SA_GC = (
    "the connection was never closed: it went back to the pool only when the garbage "
    "collector finalised its holder (SQLAlchemy's non-checked-in connection path); "
)


def test_sqlalchemy_sync(
    db_project: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    db_project.makepyfile(test_sa=SQLALCHEMY_SYNC)
    junit = db_project.path / "junit.xml"
    baseline = db_project.path / "baseline.txt"
    # A baseline recorded first: every leak goes in it, and no password does.
    recorded = db_project.runpytest("--leak-check", f"--leak-check-baseline={baseline}")
    recorded.assert_outcomes(passed=14)
    assert baseline.read_text(encoding="utf-8").count("| postgresql://postgres@127.0.0.1 |") == 5
    no_secret(recorded, str(baseline))
    result = db_project.runpytest("--leak-check", f"--junitxml={junit}")
    result.assert_outcomes(passed=14, errors=6)
    result.stdout.fnmatch_lines(
        leak_lines("test_never_closed", PG, "test_sa.py:* in test_never_closed", SA_SYNC_HINT)
    )
    result.stdout.fnmatch_lines(
        leak_lines(
            "test_session_never_closed",
            PG,
            "test_sa.py:* in test_session_never_closed",
            SA_SYNC_HINT,
        )
    )
    result.stdout.fnmatch_lines(
        leak_lines("test_collected", PG, "test_sa.py:* in helper", SA_GC + SA_SYNC_HINT)
    )
    # The thread's connection dies with HELD? No: HELD keeps it; the report is plain.
    result.stdout.fnmatch_lines(
        leak_lines("test_from_thread", PG, "test_sa.py:* in <lambda>", SA_SYNC_HINT)
    )
    result.stdout.fnmatch_lines(
        leak_lines("test_sqlite", "sqlite:///*app.db", "test_sa.py:* in test_sqlite", SA_SYNC_HINT)
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_zz_last*",
            "E   ConnectionLeakError: 1 connection leaked by fixture 'module_conn' (module scope)"
            " (still leased when it was finalised)",
            f"E     {PG} — leased at test_sa.py:* in module_conn",
        ]
    )
    no_teardown_error(
        result,
        "test_never_closed_clean",
        "test_session_clean",
        "test_collected_clean",
        "test_from_thread_clean",
        "test_detach_is_not_a_leak",
        "test_sqlite_clean",
        "test_module_fixture_clean",
    )
    result.stdout.fnmatch_lines(["*connection pools*", f"{PG}*sqlalchemy*"])
    assert "postgresql://postgres@127.0.0.1:" in junit.read_text(encoding="utf-8")
    no_secret(result, str(junit))


SQLALCHEMY_ASYNC = """
    import asyncio, gc
    import pytest, pytest_asyncio
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from conftest import PG_URL
    from held import HELD

    pytestmark = pytest.mark.asyncio(loop_scope="module")
    engine = create_async_engine(PG_URL.replace("postgresql://", "postgresql+asyncpg://"))

    @pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
    async def _close_held():
        yield
        for conn in HELD:
            await conn.close()
        await engine.dispose()

    async def count(conn):
        return (await conn.execute(text("select 1"))).scalar()

    async def test_never_closed():
        conn = await engine.connect()
        HELD.append(conn)
        assert await count(conn) == 1

    async def test_never_closed_clean():
        async with engine.connect() as conn:
            assert await count(conn) == 1

    async def test_session_never_closed():
        session = AsyncSession(engine)
        HELD.append(session)
        assert (await session.execute(text("select 1"))).scalar() == 1

    async def test_session_clean():
        async with AsyncSession(engine) as session:
            assert (await session.execute(text("select 1"))).scalar() == 1

    async def work():
        conn = await engine.connect()
        HELD.append(conn)

    async def test_from_task():
        await asyncio.create_task(work())

    async def test_from_task_clean():
        async def clean():
            async with engine.connect() as conn:
                await count(conn)
        await asyncio.gather(asyncio.create_task(clean()), asyncio.create_task(clean()))

    async def test_zz_last():
        pass
    """

SA_ASYNC_HINT = (
    "close the connection or session: `async with engine.connect() as conn:`, "
    "`async with AsyncSession(engine) as session:` (or await .close())"
)


def test_sqlalchemy_asyncio(db_project: pytest.Pytester) -> None:
    db_project.makepyfile(test_sa_async=SQLALCHEMY_ASYNC)
    result = db_project.runpytest("--leak-check")
    result.assert_outcomes(passed=7, errors=3)
    result.stdout.fnmatch_lines(
        leak_lines(
            "test_never_closed", PG, "test_sa_async.py:* in test_never_closed", SA_ASYNC_HINT
        )
    )
    result.stdout.fnmatch_lines(
        leak_lines(
            "test_session_never_closed",
            PG,
            "test_sa_async.py:* in test_session_never_closed",
            SA_ASYNC_HINT,
        )
    )
    result.stdout.fnmatch_lines(
        leak_lines("test_from_task", PG, "test_sa_async.py:* in work", SA_ASYNC_HINT)
    )
    no_teardown_error(
        result, "test_never_closed_clean", "test_session_clean", "test_from_task_clean"
    )
    no_secret(result)


SQLALCHEMY_ASYNC_GC = """
    import gc
    import pytest
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from conftest import PG_URL

    @pytest.mark.asyncio
    @pytest.mark.filterwarnings("ignore:The garbage collector")
    async def test_collected():
        engine = create_async_engine(PG_URL.replace("postgresql://", "postgresql+asyncpg://"))
        async def helper():
            conn = await engine.connect()
            return (await conn.execute(text("select 1"))).scalar()
        assert await helper() == 1
        gc.collect()
    """


def test_sqlalchemy_asyncio_collected(db_project: pytest.Pytester) -> None:
    """The asyncio dialects' garbage-collection path detaches instead of checking in."""
    db_project.makepyfile(test_sa_gc=SQLALCHEMY_ASYNC_GC)
    result = db_project.runpytest("--leak-check", "-p", "no:unraisableexception")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        leak_lines("test_collected", PG, "test_sa_gc.py:* in helper", SA_GC + SA_ASYNC_HINT)
    )


# -- psycopg_pool ------------------------------------------------------------------------

PSYCOPG_POOL = """
    import asyncio, gc, threading
    import pytest, pytest_asyncio
    from psycopg_pool import AsyncConnectionPool, ConnectionPool
    from conftest import PG_URL
    from held import HELD

    pool = ConnectionPool(PG_URL, min_size=1, max_size=20, open=True)

    @pytest.fixture(scope="module", autouse=True)
    def _close_held():
        yield
        for conn in HELD:
            pool.putconn(conn)
        pool.close()

    @pytest.fixture(scope="module")
    def module_conn():
        return pool.getconn()

    @pytest.fixture(scope="module")
    def module_conn_clean():
        with pool.connection() as conn:
            yield conn

    def test_never_returned():
        conn = pool.getconn()
        HELD.append(conn)
        conn.execute("select 1")

    def test_never_returned_clean():
        with pool.connection() as conn:
            conn.execute("select 1")

    def helper():
        conn = pool.getconn()
        return conn.execute("select 1").fetchone()[0]

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
    def test_dropped():
        assert helper() == 1
        gc.collect()

    def test_dropped_clean():
        conn = pool.getconn()
        try:
            conn.execute("select 1")
        finally:
            pool.putconn(conn)

    def test_from_thread():
        t = threading.Thread(target=lambda: HELD.append(pool.getconn()))
        t.start()
        t.join()

    def test_from_thread_clean():
        def work():
            with pool.connection() as conn:
                conn.execute("select 1")
        t = threading.Thread(target=work)
        t.start()
        t.join()

    def test_module_fixture(module_conn):
        module_conn.execute("select 1")

    def test_module_fixture_clean(module_conn_clean):
        module_conn_clean.execute("select 1")

    def test_zz_last():
        pass
    """

PP_HINT = "use `with pool.connection() as conn:`, or call pool.putconn(conn) after getconn()"
PP_DROPPED = (
    "the connection was dropped without putconn(): the garbage collector closed it, but "
    "the pool never got its slot back; "
)


def test_psycopg_pool_sync(db_project: pytest.Pytester) -> None:
    db_project.makepyfile(test_pp=PSYCOPG_POOL)
    result = db_project.runpytest("--leak-check")
    result.assert_outcomes(passed=9, errors=4)
    result.stdout.fnmatch_lines(
        leak_lines("test_never_returned", PG, "test_pp.py:* in test_never_returned", PP_HINT)
    )
    result.stdout.fnmatch_lines(
        leak_lines("test_dropped", PG, "test_pp.py:* in helper", PP_DROPPED + PP_HINT)
    )
    result.stdout.fnmatch_lines(
        leak_lines("test_from_thread", PG, "test_pp.py:* in <lambda>", PP_HINT)
    )
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 1 connection leaked by fixture 'module_conn' (module scope)"
            " (still leased when it was finalised)",
            f"E     {PG} — leased at test_pp.py:* in module_conn",
        ]
    )
    no_teardown_error(
        result,
        "test_never_returned_clean",
        "test_dropped_clean",
        "test_from_thread_clean",
        "test_module_fixture_clean",
    )
    no_secret(result)


PSYCOPG_POOL_ASYNC = """
    import asyncio
    import pytest, pytest_asyncio
    from psycopg_pool import AsyncConnectionPool
    from conftest import PG_URL
    from held import HELD

    pytestmark = pytest.mark.asyncio(loop_scope="module")

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def pool():
        async with AsyncConnectionPool(PG_URL, min_size=1, max_size=20) as pool:
            yield pool
            for conn in HELD:
                await pool.putconn(conn)

    async def test_never_returned(pool):
        conn = await pool.getconn()
        HELD.append(conn)
        await conn.execute("select 1")

    async def test_never_returned_clean(pool):
        async with pool.connection() as conn:
            await conn.execute("select 1")

    async def test_from_task(pool):
        async def work():
            HELD.append(await pool.getconn())
        await asyncio.create_task(work())

    async def test_from_task_clean(pool):
        async def work():
            async with pool.connection() as conn:
                await conn.execute("select 1")
        await asyncio.gather(work(), work())

    async def test_zz_last(pool):
        pass
    """

PP_ASYNC_HINT = (
    "use `async with pool.connection() as conn:`, or await pool.putconn(conn) after getconn()"
)


def test_psycopg_pool_async(db_project: pytest.Pytester) -> None:
    db_project.makepyfile(test_pp_async=PSYCOPG_POOL_ASYNC)
    result = db_project.runpytest("--leak-check")
    result.assert_outcomes(passed=5, errors=2)
    result.stdout.fnmatch_lines(
        leak_lines(
            "test_never_returned", PG, "test_pp_async.py:* in test_never_returned", PP_ASYNC_HINT
        )
    )
    result.stdout.fnmatch_lines(
        leak_lines("test_from_task", PG, "test_pp_async.py:* in work", PP_ASYNC_HINT)
    )
    no_teardown_error(result, "test_never_returned_clean", "test_from_task_clean")
    no_secret(result)


# -- redis-py ----------------------------------------------------------------------------

REDIS_SYNC = """
    import gc, threading
    import pytest
    import redis
    from conftest import REDIS_URL
    from held import HELD

    r = redis.Redis.from_url(REDIS_URL)
    blocking = redis.Redis(
        connection_pool=redis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=20)
    )

    @pytest.fixture(scope="module", autouse=True)
    def _close_held():
        yield
        for held in HELD:
            if isinstance(held, redis.client.Monitor):
                held.__exit__(None, None, None)
            else:
                held.close()
        r.close()
        blocking.close()

    @pytest.fixture(scope="module")
    def module_pubsub():
        pubsub = r.pubsub()
        pubsub.subscribe("news")
        return pubsub

    @pytest.fixture(scope="module")
    def module_pubsub_clean():
        with r.pubsub() as pubsub:
            pubsub.subscribe("news")
            yield pubsub

    def test_pubsub_never_closed():
        pubsub = r.pubsub()
        HELD.append(pubsub)
        pubsub.subscribe("news")
        assert r.set("k", "v")

    def test_pubsub_clean():
        with r.pubsub() as pubsub:
            pubsub.subscribe("news")
        assert r.get("k") == b"v"

    def test_monitor_never_closed():
        monitor = blocking.monitor()
        HELD.append(monitor)

    def test_monitor_clean():
        with blocking.monitor():
            pass

    def subscribe():
        pubsub = r.pubsub()
        pubsub.subscribe("news")

    def test_collected():
        subscribe()
        gc.collect()

    def test_collected_clean():
        pubsub = r.pubsub()
        pubsub.subscribe("news")
        pubsub.close()
        del pubsub
        gc.collect()

    def test_from_thread():
        def work():
            pubsub = blocking.pubsub()
            HELD.append(pubsub)
            pubsub.subscribe("news")
        t = threading.Thread(target=work)
        t.start()
        t.join()

    def test_from_thread_clean():
        def work():
            with blocking.pubsub() as pubsub:
                pubsub.subscribe("news")
            blocking.blpop(["nothing"], timeout=0.01)
        t = threading.Thread(target=work)
        t.start()
        t.join()

    def test_module_fixture(module_pubsub):
        pass

    def test_module_fixture_clean(module_pubsub_clean):
        pass

    def test_zz_last():
        pass
    """

REDIS_ORIGIN = "redis://127.0.0.1:*/0"
REDIS_HINT = (
    "close what holds the connection: `with r.pubsub() as pubsub:` or pubsub.close(), "
    "`with r.monitor() as m:`, `with r.pipeline() as pipe:`, r.close() for a "
    "single_connection_client"
)
REDIS_GC = (
    "it was never closed: it went back to the pool only when the garbage collector "
    "finalised its holder; "
)


def test_redis_sync(db_project: pytest.Pytester) -> None:
    db_project.makepyfile(test_redis=REDIS_SYNC)
    result = db_project.runpytest("--leak-check")
    result.assert_outcomes(passed=11, errors=5)
    result.stdout.fnmatch_lines(
        leak_lines(
            "test_pubsub_never_closed",
            REDIS_ORIGIN,
            "test_redis.py:* in test_pubsub_never_closed",
            REDIS_HINT,
        )
    )
    result.stdout.fnmatch_lines(
        leak_lines(
            "test_monitor_never_closed",
            REDIS_ORIGIN,
            "test_redis.py:* in test_monitor_never_closed",
            REDIS_HINT,
        )
    )
    result.stdout.fnmatch_lines(
        leak_lines(
            "test_collected", REDIS_ORIGIN, "test_redis.py:* in subscribe", REDIS_GC + REDIS_HINT
        )
    )
    result.stdout.fnmatch_lines(
        leak_lines("test_from_thread", REDIS_ORIGIN, "test_redis.py:* in work", REDIS_HINT)
    )
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 1 connection leaked by fixture 'module_pubsub' (module scope)"
            " (still leased when it was finalised)",
            f"E     {REDIS_ORIGIN} — leased at test_redis.py:* in module_pubsub",
        ]
    )
    no_teardown_error(
        result,
        "test_pubsub_clean",
        "test_monitor_clean",
        "test_collected_clean",
        "test_from_thread_clean",
        "test_module_fixture_clean",
    )
    no_secret(result)


REDIS_ASYNC = """
    import asyncio
    import pytest, pytest_asyncio
    import redis.asyncio as aredis
    from conftest import REDIS_URL
    from held import HELD

    pytestmark = pytest.mark.asyncio(loop_scope="module")

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def r():
        client = aredis.Redis.from_url(REDIS_URL)
        yield client
        for pubsub in HELD:
            await pubsub.aclose()
        await client.aclose()

    async def test_pubsub_never_closed(r):
        pubsub = r.pubsub()
        HELD.append(pubsub)
        await pubsub.subscribe("news")

    async def test_pubsub_clean(r):
        async with r.pubsub() as pubsub:
            await pubsub.subscribe("news")
        assert await r.ping()

    async def test_from_task(r):
        async def work():
            pubsub = r.pubsub()
            HELD.append(pubsub)
            await pubsub.subscribe("news")
        await asyncio.create_task(work())

    async def test_from_task_clean(r):
        async def work():
            async with r.pubsub() as pubsub:
                await pubsub.subscribe("news")
        await asyncio.gather(work(), work())

    async def test_zz_last(r):
        pass
    """

REDIS_ASYNC_HINT = (
    "close what holds the connection: `async with r.pubsub() as pubsub:` or "
    "await pubsub.aclose(), `async with r.pipeline() as pipe:`, await r.aclose() for a "
    "single_connection_client"
)


def test_redis_asyncio(db_project: pytest.Pytester) -> None:
    db_project.makepyfile(test_aredis=REDIS_ASYNC)
    result = db_project.runpytest("--leak-check")
    result.assert_outcomes(passed=5, errors=2)
    result.stdout.fnmatch_lines(
        leak_lines(
            "test_pubsub_never_closed",
            REDIS_ORIGIN,
            "test_aredis.py:* in test_pubsub_never_closed",
            REDIS_ASYNC_HINT,
        )
    )
    result.stdout.fnmatch_lines(
        leak_lines("test_from_task", REDIS_ORIGIN, "test_aredis.py:* in work", REDIS_ASYNC_HINT)
    )
    no_teardown_error(result, "test_pubsub_clean", "test_from_task_clean")
    no_secret(result)


# -- asyncpg -----------------------------------------------------------------------------

ASYNCPG = """
    import asyncio
    import pytest, pytest_asyncio
    import asyncpg
    from conftest import PG_URL
    from held import HELD

    pytestmark = pytest.mark.asyncio(loop_scope="module")

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def pool():
        pool = await asyncpg.create_pool(PG_URL, min_size=1, max_size=20)
        yield pool
        for conn in HELD:
            await pool.release(conn)
        pool.terminate()  # close() would wait for module_conn, which is never released

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def module_conn(pool):
        return await pool.acquire()

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def module_conn_clean(pool):
        async with pool.acquire() as conn:
            yield conn

    async def test_never_released(pool):
        conn = await pool.acquire()
        HELD.append(conn)
        assert await conn.fetchval("select 1") == 1

    async def test_never_released_clean(pool):
        async with pool.acquire() as conn:
            assert await conn.fetchval("select 1") == 1
        assert await pool.fetchval("select 2") == 2

    async def test_from_task(pool):
        async def work():
            HELD.append(await pool.acquire())
        await asyncio.create_task(work())

    async def test_from_task_clean(pool):
        async def work():
            async with pool.acquire() as conn:
                await conn.fetchval("select 1")
        await asyncio.gather(work(), work())

    async def test_module_fixture(module_conn):
        await module_conn.fetchval("select 1")

    async def test_module_fixture_clean(module_conn_clean):
        await module_conn_clean.fetchval("select 1")

    async def test_zz_last(pool):
        pass
    """

ASYNCPG_HINT = (
    "use `async with pool.acquire() as conn:`, or await pool.release(conn) after acquire()"
)


def test_asyncpg(db_project: pytest.Pytester) -> None:
    db_project.makepyfile(test_apg=ASYNCPG)
    result = db_project.runpytest("--leak-check")
    result.assert_outcomes(passed=7, errors=3)
    result.stdout.fnmatch_lines(
        leak_lines("test_never_released", PG, "test_apg.py:* in test_never_released", ASYNCPG_HINT)
    )
    result.stdout.fnmatch_lines(
        leak_lines("test_from_task", PG, "test_apg.py:* in work", ASYNCPG_HINT)
    )
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 1 connection leaked by fixture 'module_conn' (module scope)"
            " (still leased when it was finalised)",
            f"E     {PG} — leased at test_apg.py:* in module_conn",
        ]
    )
    no_teardown_error(
        result, "test_never_released_clean", "test_from_task_clean", "test_module_fixture_clean"
    )
    no_secret(result)


# -- the socket check --------------------------------------------------------------------

SOCKETS = """
    import psycopg, redis
    import pytest
    from psycopg_pool import ConnectionPool
    from sqlalchemy import create_engine, text
    from conftest import PG_URL, REDIS_URL
    from held import HELD

    engine = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    r = redis.Redis.from_url(REDIS_URL)

    @pytest.fixture(scope="module", autouse=True)
    def _close_held():
        yield
        for conn in HELD:
            conn.close()
        engine.dispose()
        r.close()

    def test_idle_pooled_sqlalchemy():
        with engine.connect() as conn:
            conn.execute(text("select 1"))

    def test_idle_pooled_psycopg_pool():
        pool = ConnectionPool(PG_URL, min_size=0, max_size=2, open=True)
        HELD.append(pool)
        with pool.connection() as conn:
            conn.execute("select 1")

    def test_idle_pooled_redis():
        assert r.set("k", "v")

    def test_raw_psycopg_connect():
        conn = psycopg.connect(PG_URL)
        HELD.append(conn)
        conn.execute("select 1")

    def test_zz_last():
        pass
    """


def test_socket_check_tells_pooled_from_leaked(db_project: pytest.Pytester) -> None:
    """An idle pooled connection is not a leak; a raw ``psycopg.connect()`` never closed is."""
    db_project.makepyfile(test_sockets=SOCKETS)
    result = db_project.runpytest("--leak-check", "--leak-check-sockets")
    result.assert_outcomes(passed=5, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_raw_psycopg_connect*"])
    no_teardown_error(
        result, *(f"test_idle_pooled_{pool}" for pool in ("sqlalchemy", "psycopg_pool", "redis"))
    )
    no_secret(result)


# -- the rest of the machinery: ignore rules, warn mode, pool_stats(), xdist --------------

MACHINERY = """
    import json
    import pytest, redis
    import pytest_connleak
    from sqlalchemy import create_engine, text
    from conftest import PG_URL, REDIS_URL, SQLITE_URL
    from held import HELD

    r = redis.Redis.from_url(REDIS_URL)
    engine = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))

    @pytest.fixture(scope="module", autouse=True)
    def _close_held():
        yield
        for held in HELD:
            held.close()
        r.close()
        engine.dispose()

    def test_redis_leak():
        pubsub = r.pubsub()
        HELD.append(pubsub)
        pubsub.subscribe("news")

    def test_postgres_leak():
        conn = engine.connect()
        HELD.append(conn)
        conn.execute(text("select 1"))

    def test_stats():
        print("STATS", json.dumps(pytest_connleak.pool_stats()))

    def test_zz_last():
        pass
    """


def test_ignore_rules_warn_mode_and_pool_stats(db_project: pytest.Pytester) -> None:
    db_project.makepyfile(test_machinery=MACHINERY)
    ignored = db_project.runpytest(
        "--leak-check", "-o", "leak_check_ignore=redis://127.0.0.1\npostgresql://postgres@127.0.0.1"
    )
    ignored.assert_outcomes(passed=4)
    warned = db_project.runpytest(
        "--leak-check", "--leak-check-mode=warn", "-W", "default::pytest_connleak.LeakWarning", "-s"
    )
    warned.assert_outcomes(passed=4, warnings=2)
    warned.stdout.fnmatch_lines(
        [
            "*LeakWarning: 1 connection leaked by test_redis_leak (still leased at teardown)",
            "*LeakWarning: 1 connection leaked by test_postgres_leak (still leased at teardown)",
        ],
        consecutive=False,
    )
    stats = [line[line.index("STATS") :] for line in warned.outlines if "STATS [" in line]
    assert len(stats) == 1
    assert '"origin": "redis://127.0.0.1:' in stats[0]
    assert '"origin": "postgresql://postgres@127.0.0.1:' in stats[0]
    no_secret(ignored)
    no_secret(warned)


def test_xdist_merges_db_leaks(db_project: pytest.Pytester) -> None:
    """Two workers, one file each (the cleanup of each file runs after its last test)."""
    db_project.makepyfile(test_one=MACHINERY, test_two=MACHINERY)
    result = db_project.runpytest_subprocess(
        "--leak-check", "-n", "2", "-p", "xdist", "--dist", "loadfile"
    )
    result.assert_outcomes(passed=8, errors=4)
    out = result.stdout.str()
    for module in ("test_one", "test_two"):
        assert f"{module}.py::test_redis_leak: 1 connection leaked" in out
        assert f"{module}.py::test_postgres_leak: 1 connection leaked" in out
    result.stdout.fnmatch_lines(["*connection pools*", "redis://127.0.0.1:*/0 *redis*"])
    no_secret(result)


# -- every SQLAlchemy pool class, through no_leaks() --------------------------------------


@pytest.mark.parametrize(
    "poolclass", ["QueuePool", "NullPool", "StaticPool", "SingletonThreadPool"]
)
def test_every_sqlalchemy_pool_class(poolclass: str, tmp_path: pathlib.Path) -> None:
    """A checkout never checked in is a leak whatever the pool class; ``with`` is clean."""
    from sqlalchemy import create_engine, pool, text

    from pytest_connleak import ConnectionLeakError, no_leaks

    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}", poolclass=getattr(pool, poolclass))
    try:
        with no_leaks("clean block"), engine.connect() as conn:
            conn.execute(text("select 1"))
        held = []
        with pytest.raises(ConnectionLeakError) as excinfo, no_leaks("leaky block"):
            held.append(engine.connect())
        message = str(excinfo.value)
        assert message.startswith("1 connection leaked by leaky block (still leased at its end)")
        assert f"  sqlite:///{tmp_path / 'app.db'} — leased at " in message
        assert "test_db_pools.py:" in message
        assert "in test_every_sqlalchemy_pool_class" in message
        held[0].close()
    finally:
        engine.dispose()


def test_asyncio_pool_class(postgres_url: str) -> None:
    """``AsyncAdaptedQueuePool`` (create_async_engine) through no_leaks(), on PostgreSQL."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from pytest_connleak import ConnectionLeakError, no_leaks

    async def main() -> str:
        engine = create_async_engine(postgres_url.replace("postgresql://", "postgresql+asyncpg://"))
        assert type(engine.pool).__name__ == "AsyncAdaptedQueuePool"
        try:
            async with engine.connect():
                pass
            conn = await engine.connect()
            try:
                with pytest.raises(ConnectionLeakError) as excinfo, no_leaks("block"):
                    await conn.close()
                    conn = await engine.connect()
            finally:
                await conn.close()
            return str(excinfo.value)
        finally:
            await engine.dispose()

    message = asyncio.run(main())
    assert "postgresql://postgres@127.0.0.1:" in message
    assert "in main" in message
    assert PG_PASSWORD not in message


def test_benchmark_script_runs() -> None:
    """``benchmarks/db_pools.py --quick`` runs against its own servers and prints its table."""
    import subprocess
    import sys

    script = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "db_pools.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--no-write"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "×" in line]
    assert len(rows) == 10, done.stdout  # five loops, CPU and wall each
    assert "| asyncpg | wall |" in done.stdout


# -- pool health -------------------------------------------------------------------------

HEALTH = """
    import pytest, redis
    from sqlalchemy import create_engine, text
    from conftest import PG_URL, REDIS_URL

    engine = create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), pool_size=2, max_overflow=2
    )
    blocking = redis.Redis(
        connection_pool=redis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=4)
    )

    @pytest.fixture(scope="module", autouse=True)
    def _close():
        yield
        engine.dispose()
        blocking.close()

    def test_three_of_four_sqlalchemy():
        conns = [engine.connect() for _ in range(3)]
        for conn in conns:
            conn.close()

    def test_three_of_four_redis():
        pubsubs = [blocking.pubsub() for _ in range(3)]
        for pubsub in pubsubs:
            pubsub.subscribe("news")
        for pubsub in pubsubs:
            pubsub.close()

    def test_one_of_four():
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    """


def test_pool_health_of_db_pools(db_project: pytest.Pytester) -> None:
    """A clean test that drives a pool to 3 of its 4 connections is warned about, once
    (pool warnings are opt-in: --leak-check-pool-warnings)."""
    db_project.makepyfile(test_health=HEALTH)
    result = db_project.runpytest(
        "--leak-check",
        "--leak-check-pool-warnings",
        "--leak-check-pool-threshold=0.75",
        "--leak-check-pool-warnings",  # pool health warns only when asked (issue 16)
        "-W",
        "default::pytest_connleak.PoolHealthWarning",
    )
    result.assert_outcomes(passed=3, warnings=2)
    out = result.stdout.str()
    assert re.search(
        r"PoolHealthWarning: pool postgresql://postgres@127\.0\.0\.1:\d+/postgres reached 3 of 4 "
        r"connections \(75%\) during test_three_of_four_sqlalchemy",
        out,
    ), out
    assert re.search(
        r"PoolHealthWarning: pool redis://127\.0\.0\.1:\d+/0 reached 3 of 4 connections \(75%\) "
        r"during test_three_of_four_redis",
        out,
    ), out
    assert "during test_one_of_four" not in out
    no_secret(result)


ONE_REPORT = """
    import pytest
    from sqlalchemy import create_engine, text
    from conftest import PG_URL
    from held import HELD

    engine = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))

    @pytest.fixture(scope="module", autouse=True)
    def _close_held():
        yield
        for conn in HELD:
            conn.close()
        engine.dispose()

    def test_leak():
        conn = engine.connect()
        HELD.append(conn)
        conn.execute(text("select 1"))

    def test_zz_last():
        pass
    """


def test_one_leak_one_report_with_the_socket_check(db_project: pytest.Pytester) -> None:
    """The pool report accounts for the leaked connection's socket (matched by host:port)."""
    db_project.makepyfile(test_one=ONE_REPORT)
    result = db_project.runpytest("--leak-check", "--leak-check-sockets")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        leak_lines("test_leak", PG, "test_one.py:* in test_leak", SA_SYNC_HINT)
    )
    assert "socket" not in result.stdout.str().split("ERROR at teardown of test_leak")[1]


SQLALCHEMY_CONNECT_PATCH = """
import inspect
from sqlalchemy.pool import Pool, SingletonThreadPool
from pytest_connleak._core.adapters import acquire_instrumentation, release_instrumentation

originals = {cls: cls.__dict__["connect"] for cls in (Pool, SingletonThreadPool)}
acquire_instrumentation()
for cls, original in originals.items():
    wrapped = cls.__dict__["connect"]
    assert wrapped is not original and wrapped.__wrapped__ is original, cls
    assert inspect.signature(wrapped) == inspect.signature(original), cls
release_instrumentation()
for cls, original in originals.items():
    assert cls.__dict__["connect"] is original, cls
print("restored")
"""


def test_sqlalchemy_connect_wrapper_keeps_its_signature_and_goes_away() -> None:
    """Checkouts are seen through ``Pool.connect()`` (and ``SingletonThreadPool``'s own),
    wrapped with the same signature while tracking is on and put back at the end."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", SQLALCHEMY_CONNECT_PATCH],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "restored"


@pytest.mark.parametrize("poolclass", ["StaticPool", "SingletonThreadPool"])
def test_shared_record_two_holders_is_not_a_leak(poolclass: str) -> None:
    """These pools hand one connection to two holders at once and check it in once."""
    from sqlalchemy import create_engine, pool, text

    from pytest_connleak import no_leaks

    engine = create_engine("sqlite://", poolclass=getattr(pool, poolclass))
    try:
        with no_leaks("two holders"):
            first = engine.connect()
            second = engine.connect()
            first.execute(text("select 1"))
            second.execute(text("select 1"))
            first.close()
            second.close()
        with no_leaks("two holders, closed the other way round"):
            first, second = engine.connect(), engine.connect()
            second.close()
            first.close()
    finally:
        engine.dispose()
