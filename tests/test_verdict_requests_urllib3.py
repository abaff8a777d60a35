"""The verdict on real requests and urllib3 traffic: every leak caught, every clean twin quiet."""

from __future__ import annotations

import sys

import pytest

HEADLINE = "E   ConnectionLeakError: {n} connection{s} leaked by {test} (still leased at teardown)"


def headline(test: str, n: int = 1) -> str:
    return HEADLINE.format(n=n, s="" if n == 1 else "s", test=test)


LEAKS = {
    "session_stream": """
        import requests

        def test_it(url):
            session = requests.Session()
            r = session.get(url + "/403", stream=True)  # leased here
            assert r.status_code == 403
        """,
    "module_level_get": """
        import requests

        def test_it(url):
            r = requests.get(url + "/403", stream=True)  # leased here
            assert r.status_code == 403
        """,
    "raise_for_status": """
        import pytest, requests

        def test_it(url):
            with pytest.raises(requests.HTTPError):
                requests.get(url + "/403", stream=True).raise_for_status()  # leased here
        """,
    "poolmanager_preload_false": """
        import urllib3

        def test_it(url):
            pm = urllib3.PoolManager()
            r = pm.request("GET", url + "/403", preload_content=False)  # leased here
            assert r.status == 403
        """,
    "connectionpool_preload_false": """
        import urllib3

        def test_it(url):
            pool = urllib3.connection_from_url(url)
            r = pool.urlopen("GET", "/ok", preload_content=False)  # leased here
            assert r.status == 200
        """,
    "partial_iter_content": """
        import requests

        def test_it(url):
            r = requests.get(url + "/big", stream=True)  # leased here
            assert next(r.iter_content(1024))
        """,
    "partial_raw_read": """
        import urllib3

        def test_it(url):
            pm = urllib3.PoolManager()
            r = pm.request("GET", url + "/big", preload_content=False)  # leased here
            assert r.read(10) == b"x" * 10
        """,
    "empty_body_stream": """
        import requests

        def test_it(url):
            r = requests.Session().get(url + "/empty403", stream=True)  # leased here
            assert r.status_code == 403
        """,
}


@pytest.mark.parametrize("source", LEAKS.values(), ids=LEAKS.keys())
def test_leak_is_caught(base_conftest: pytest.Pytester, source: str) -> None:
    path = base_conftest.makepyfile(test_leaky=source)
    lines = path.read_text().splitlines()
    lineno = next(i for i, line in enumerate(lines, 1) if "# leased here" in line)
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_it*",
            headline("test_it"),
            f"E     http://127.0.0.1:* — leased at test_leaky.py:{lineno} in test_it",
        ]
    )


CLEAN = {
    "context_manager": """
        import requests

        def test_it(url):
            with requests.Session() as s, s.get(url + "/403", stream=True) as r:
                assert r.status_code == 403
        """,
    "close_in_finally": """
        import requests

        def test_it(url):
            r = requests.get(url + "/403", stream=True)
            try:
                assert r.status_code == 403
            finally:
                r.close()
        """,
    "body_read": """
        import requests

        def test_it(url):
            r = requests.get(url + "/403", stream=True)
            assert b"403 Forbidden" in r.content
        """,
    "default_preload": """
        import urllib3

        def test_it(url):
            assert urllib3.PoolManager().request("GET", url + "/403").status == 403
        """,
    "release_conn": """
        import urllib3

        def test_it(url):
            r = urllib3.PoolManager().request("GET", url + "/403", preload_content=False)
            r.release_conn()
        """,
    "read_to_eof": """
        import urllib3

        def test_it(url):
            r = urllib3.PoolManager().request("GET", url + "/big", preload_content=False)
            assert len(r.read()) == 1 << 20
        """,
    "iter_content_to_end": """
        import requests

        def test_it(url):
            r = requests.get(url + "/big", stream=True)
            assert sum(len(c) for c in r.iter_content(65536)) == 1 << 20
        """,
    "connection_refused": """
        import socket
        import pytest, requests

        def test_it():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        """,
    "read_timeout": """
        import socket
        import pytest, requests

        def test_it():
            # A listening socket that never answers: connect succeeds, the read times out.
            with socket.socket() as server:
                server.bind(("127.0.0.1", 0))
                server.listen(1)
                port = server.getsockname()[1]
                with pytest.raises(requests.ReadTimeout), requests.Session() as s:
                    s.get(f"http://127.0.0.1:{port}/", timeout=0.2)
        """,
}


@pytest.mark.parametrize("source", CLEAN.values(), ids=CLEAN.keys())
def test_clean_twin_passes(base_conftest: pytest.Pytester, source: str) -> None:
    base_conftest.makepyfile(test_clean=source)
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*ConnectionLeakError*")


def test_closed_but_not_released_says_so(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import urllib3

        KEEP = []

        def test_it(url):
            pm = urllib3.PoolManager()
            with pm.request("GET", url + "/big", preload_content=False) as r:
                assert r.status == 200
            KEEP.append(r)
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            headline("test_it"),
            "E     http://127.0.0.1:* — leased at test_closed_but_not_released_says_so.py:7 in "
            "test_it",
            "E     the response was closed but never released: urllib3's HTTPResponse.close() "
            "(and a `with` around a preload_content=False response whose body was not read) "
            "closes the socket but never returns the connection to the pool; "
            "call response.release_conn() after close(), or read the body to the end",
        ]
    )


def test_dropped_response_hint(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import requests

        def test_it(url):
            requests.get(url + "/403", stream=True)
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.stdout.fnmatch_lines(
        [
            "E     the response was dropped without being closed; garbage collection closed its "
            "socket, but the pool never got the connection back; close the response "
            "(response.close(), or use it as a context manager) or read its body",
        ]
    )


def test_leak_in_helper_module_points_into_it(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        auth_client="""
        import requests

        SESSION = requests.Session()

        def is_session_active(url):
            response = SESSION.get(url + "/403", stream=True)
            return response.status_code == 200
        """,
        test_auth="""
        from auth_client import is_session_active

        def test_session_check(url):
            assert not is_session_active(url)
        """,
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            headline("test_session_check"),
            "E     http://127.0.0.1:* — leased at auth_client.py:6 in is_session_active",
            "E     *close the response (response.close(), or use it as a context manager) "
            "or read its body",
            "",
            "auth_client.py:6: ConnectionLeakError",
        ]
    )


def test_two_leaks_in_one_test(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import urllib3

        def test_two(url):
            pm = urllib3.PoolManager()
            a = pm.request("GET", url + "/ok", preload_content=False)
            b = pm.request("GET", url + "/403", preload_content=False)
            assert (a.status, b.status) == (200, 403)
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            headline("test_two", 2),
            "E     http://127.0.0.1:* — leased at test_two_leaks_in_one_test.py:5 in test_two",
            "E     http://127.0.0.1:* — leased at test_two_leaks_in_one_test.py:6 in test_two",
        ]
    )


def test_same_site_twice_is_folded(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import urllib3

        def test_loop(url):
            pm = urllib3.PoolManager()
            kept = [pm.request("GET", url + "/ok", preload_content=False) for _ in range(3)]
            assert len(kept) == 3
        """
    )
    result = base_conftest.runpytest("--leak-check")
    # Python 3.12 runs a comprehension in its function's frame (PEP 709).
    function = "<listcomp>" if sys.version_info < (3, 12) else "test_loop"
    result.stdout.fnmatch_lines(
        [
            headline("test_loop", 3),
            "E     http://127.0.0.1:* — leased at test_same_site_twice_is_folded.py:5 in "
            f"{function} (×3)",
        ]
    )


def test_leak_from_a_thread_counts_for_the_test(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import threading
        import urllib3

        def fetch(pm, url, out):
            out.append(pm.request("GET", url + "/ok", preload_content=False))

        def test_threaded(url):
            pm, out = urllib3.PoolManager(), []
            t = threading.Thread(target=fetch, args=(pm, url, out))
            t.start()
            t.join()
            assert out[0].status == 200
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            headline("test_threaded"),
            "E     http://127.0.0.1:* — leased at test_leak_from_a_thread_counts_for_the_test.py:5"
            " in fetch",
        ]
    )


def test_parametrized_tests_are_judged_one_by_one(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import pytest, requests

        @pytest.mark.parametrize("close", [True, False])
        def test_param(url, close):
            r = requests.get(url + "/403", stream=True)
            if close:
                r.close()
        """
    )
    result = base_conftest.runpytest("--leak-check", "-v")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_param[[]True[]] PASSED*",
            "*::test_param[[]False[]] PASSED*",
            "*::test_param[[]False[]] ERROR*",
            headline(r"test_param[[]False[]]"),
        ]
    )


def test_failing_test_keeps_its_failure(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import requests

        def test_fails(url):
            r = requests.get(url + "/403", stream=True)
            assert r.status_code == 200
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(["FAILED *::test_fails - assert 403 == 200*"])


def test_real_consequence_blocking_pool(base_conftest: pytest.Pytester) -> None:
    """Without the check the leak surfaces later as EmptyPoolError in another test."""
    base_conftest.makepyfile(
        """
        import pytest, urllib3

        POOL = None

        @pytest.fixture(scope="module")
        def pool(url):
            return urllib3.connection_from_url(url, maxsize=1, block=True)

        def test_leaks(pool):
            pool.urlopen("GET", "/ok", preload_content=False)

        def test_victim(pool):
            pool.urlopen("GET", "/ok", pool_timeout=0.01)
        """
    )
    unchecked = base_conftest.runpytest()
    unchecked.assert_outcomes(passed=1, failed=1)
    unchecked.stdout.fnmatch_lines(["E   *urllib3.exceptions.EmptyPoolError: *"])
    # The victim waited for the one connection: pool health says so too (a warning, when
    # asked for).
    checked = base_conftest.runpytest(
        "--leak-check",
        "--leak-check-pool-warnings",
        "-W",
        "default::pytest_connleak.PoolHealthWarning",
    )
    checked.assert_outcomes(passed=1, failed=1, errors=1, warnings=1)
    checked.stdout.fnmatch_lines(["ERROR *::test_leaks - ConnectionLeak*"])
