"""When leases are judged: after function fixtures, and when a wider scope ends."""

from __future__ import annotations

import pytest


def test_stream_closed_by_function_fixture_is_clean(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import pytest, requests

        @pytest.fixture
        def response(url):
            r = requests.get(url + "/403", stream=True)
            yield r
            r.close()

        def test_it(response):
            assert response.status_code == 403
        """
    )
    base_conftest.runpytest("--leak-check").assert_outcomes(passed=1)


def test_leak_in_function_fixture_is_the_tests(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import pytest, requests

        @pytest.fixture
        def response(url):
            return requests.get(url + "/403", stream=True)

        def test_it(response):
            assert response.status_code == 403
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 1 connection leaked by test_it (still leased at teardown)",
            "E     http://127.0.0.1:* — leased at test_leak_in_function_fixture_is_the_tests.py:5"
            " in response",
        ]
    )


def test_module_fixture_holding_a_stream_across_tests(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import pytest, requests

        @pytest.fixture(scope="module")
        def stream(url):
            r = requests.get(url + "/big", stream=True)
            yield r
            r.close()

        def test_first(stream):
            assert stream.raw.read(10)

        def test_second(stream):
            assert stream.raw.read(10)
        """
    )
    base_conftest.runpytest("--leak-check").assert_outcomes(passed=2)


def test_module_fixture_leak_is_the_fixtures(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        test_mod="""
        import pytest, requests

        @pytest.fixture(scope="module")
        def stream(url):
            return requests.get(url + "/big", stream=True)

        def test_first(stream):
            pass

        def test_second(stream):
            pass

        def test_third():
            pass
        """,
        test_other="""
        def test_other():
            pass
        """,
    )
    result = base_conftest.runpytest("--leak-check", "-v", "-p", "no:randomly")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_third*",
            "E   ConnectionLeakError: 1 connection leaked by fixture 'stream' (module scope) "
            "(still leased when it was finalised)",
            "E     http://127.0.0.1:* — leased at test_mod.py:5 in stream",
        ]
    )
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_first*")


def test_session_fixture_leak_is_judged_at_the_end(base_conftest: pytest.Pytester) -> None:
    base_conftest.makeconftest(
        base_conftest.path.joinpath("conftest.py").read_text()
        + "\n\n@pytest.fixture(scope='session')\n"
        "def held(url):\n"
        "    import requests\n"
        "    return requests.get(url + '/403', stream=True)\n"
    )
    base_conftest.makepyfile(
        test_a="def test_a(held): pass",
        test_b="def test_b(held): pass",
    )
    result = base_conftest.runpytest("--leak-check", "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_b*",
            "E   ConnectionLeakError: 1 connection leaked by fixture 'held' (session scope) *",
            "E     http://127.0.0.1:* — leased at conftest.py:* in held",
        ]
    )


def test_session_client_reused_across_tests(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import pytest, requests

        @pytest.fixture(scope="session")
        def client():
            with requests.Session() as s:
                yield s

        @pytest.mark.parametrize("n", range(5))
        def test_uses_client(client, url, n):
            assert client.get(url + "/ok").text == "ok"
            with client.get(url + "/403", stream=True) as r:
                assert r.status_code == 403
        """
    )
    base_conftest.runpytest("--leak-check").assert_outcomes(passed=5)


def test_module_fixture_leak_reported_when_last_test_is_exempt(
    base_conftest: pytest.Pytester,
) -> None:
    """A marker on one test does not excuse a fixture that outlives it."""
    base_conftest.makepyfile(
        """
        import pytest, requests

        @pytest.fixture(scope="module")
        def stream(url):
            return requests.get(url + "/big", stream=True)

        def test_first(stream):
            pass

        @pytest.mark.allow_leaks(reason="its own leaks only")
        def test_last():
            pass
        """
    )
    result = base_conftest.runpytest("--leak-check", "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_last*",
            "E   ConnectionLeakError: 1 connection leaked by fixture 'stream' (module scope) "
            "(still leased when it was finalised)",
        ]
    )


def test_module_marker_excuses_its_module_fixture(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import pytest, requests

        pytestmark = pytest.mark.allow_leaks(reason="legacy module")

        @pytest.fixture(scope="module")
        def stream(url):
            return requests.get(url + "/big", stream=True)

        def test_first(stream):
            pass
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_first: 1 connection leaked (allowed: legacy module)",
            "    http://127.0.0.1:* — leased at *.py:7 in stream "
            "[[]fixture 'stream' (module scope)[]]",
        ]
    )


def test_fixture_of_a_checked_test_is_judged_after_an_unchecked_one(
    base_conftest: pytest.Pytester,
) -> None:
    base_conftest.makepyfile(
        """
        import pytest, requests

        @pytest.fixture(scope="module")
        def stream(url):
            return requests.get(url + "/big", stream=True)

        def test_checked(stream, leak_check):
            pass

        def test_unchecked():
            pass
        """
    )
    result = base_conftest.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_unchecked*",
            "E   ConnectionLeakError: 1 connection leaked by fixture 'stream' (module scope) *",
        ]
    )
