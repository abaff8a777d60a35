"""The leak_check fixture and the allow_leaks marker, and how they meet the flag."""

from __future__ import annotations

import pytest

HEADLINE = "E   ConnectionLeakError: 1 connection leaked by {} (still leased at teardown)"


def test_fixture_checks_without_flag(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import requests

        def test_checked(url, leak_check):
            requests.get(url + "/403", stream=True)

        def test_unchecked(url):
            requests.get(url + "/403", stream=True)
        """
    )
    result = base_conftest.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([HEADLINE.format("test_checked")])
    result.stdout.no_fnmatch_line("*leaked by test_unchecked*")


def test_autouse_fixture_in_conftest(base_conftest: pytest.Pytester) -> None:
    sub = base_conftest.mkdir("service")
    (sub / "conftest.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture(autouse=True)\n"
        "def _no_leaks(leak_check):\n"
        "    return leak_check\n"
    )
    (sub / "test_service.py").write_text(
        "import requests\n\n"
        "def test_in_service(url):\n"
        "    requests.get(url + '/403', stream=True)\n"
    )
    base_conftest.makepyfile(
        test_outside="""
        import requests

        def test_outside(url):
            requests.get(url + "/403", stream=True)
        """
    )
    result = base_conftest.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            HEADLINE.format("test_in_service"),
            "E     http://127.0.0.1:* — leased at service/test_service.py:4 in test_in_service",
        ]
    )


def test_fixture_requested_late(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import requests

        def test_late(url, request):
            request.getfixturevalue("leak_check")
            requests.get(url + "/403", stream=True)
        """
    )
    result = base_conftest.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([HEADLINE.format("test_late")])


def test_leased_and_assert_no_leaks(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import pytest, requests
        from pytest_connleak import ConnectionLeakError, Lease

        def test_mid_test(url, leak_check):
            assert leak_check.leased() == []
            r = requests.get(url + "/403", stream=True)
            (lease,) = leak_check.leased()
            assert isinstance(lease, Lease)
            assert lease.origin == url
            assert lease.client == "urllib3"
            assert (lease.site.function, lease.site.lineno) == ("test_mid_test", 6)
            with pytest.raises(ConnectionLeakError, match="1 connection leaked by test_mid_test"):
                leak_check.assert_no_leaks()
            r.close()
            assert leak_check.leased() == []
            leak_check.assert_no_leaks()
        """
    )
    base_conftest.runpytest().assert_outcomes(passed=1)


def test_assert_no_leaks_message(
    base_conftest: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest shortens summary lines to the terminal width except on CI; pin the CI form so the
    # whole line is checked on every machine.
    monkeypatch.setenv("CI", "true")
    base_conftest.makepyfile(
        """
        import requests

        def test_mid(url, leak_check):
            r = requests.get(url + "/403", stream=True)
            leak_check.assert_no_leaks()
        """
    )
    result = base_conftest.runpytest()
    # One leak, one report: the call fails; teardown does not error for it again, and the
    # summary lists it once.
    result.assert_outcomes(failed=1, errors=0)
    result.stdout.fnmatch_lines(
        [
            "E   *ConnectionLeakError: 1 connection leaked by test_mid "
            "(still leased at assert_no_leaks())",
            "E     http://127.0.0.1:* — leased at test_assert_no_leaks_message.py:4 in test_mid",
            "*= connection leaks =*",
            "test_assert_no_leaks_message.py::test_mid: 1 connection leaked",
            "    http://127.0.0.1:* — leased at test_assert_no_leaks_message.py:4 in test_mid",
            "*= short test summary info =*",
            "FAILED test_assert_no_leaks_message.py::test_mid - ConnectionLeakError: "
            "1 connection leaked by test_mid (still leased at assert_no_leaks())",
            "*= 1 failed in *",
        ]
    )
    assert "ERROR at teardown" not in result.stdout.str()


ASSERT_POLICY = """
import pytest, requests

def test_ignored(url, leak_check):
    r = requests.get(url + "/403", stream=True)
    leak_check.assert_no_leaks()

@pytest.mark.allow_leaks(reason="known")
def test_allowed(url, leak_check):
    r = requests.get(url + "/403", stream=True)
    leak_check.assert_no_leaks()

def test_caught_then_closed(url, leak_check):
    r = requests.get(url + "/403", stream=True)
    with pytest.raises(Exception, match="still leased at assert_no_leaks"):
        leak_check.assert_no_leaks()
    r.close()
    leak_check.assert_no_leaks()

def test_caught_and_kept(url, leak_check):
    r = requests.get(url + "/403", stream=True)
    with pytest.raises(Exception, match="still leased at assert_no_leaks"):
        leak_check.assert_no_leaks()
"""


def test_assert_no_leaks_follows_ignore_rules_and_markers(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(test_a=ASSERT_POLICY, test_b=ASSERT_POLICY)
    base_conftest.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "leak_check_ignore =\n    file:test_a.py\n"
    )
    result = base_conftest.runpytest("-p", "no:randomly", "-k", "ignored or allowed")
    # test_a.py's leases are ignored; test_b.py's allowed one passes, its other fails once.
    result.assert_outcomes(passed=3, failed=1)
    for line in [
        "test_a.py::test_ignored: 1 connection leaked (ignored: file test_a.py)",
        "test_a.py::test_allowed: 1 connection leaked (allowed: known)",
        "test_b.py::test_allowed: 1 connection leaked (allowed: known)",
        "test_b.py::test_ignored: 1 connection leaked",
    ]:
        result.stdout.fnmatch_lines(["*= connection leaks =*", line])


def test_assert_no_leaks_caught_by_the_test(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(test_a=ASSERT_POLICY)
    result = base_conftest.runpytest("-p", "no:randomly", "-k", "caught")
    # The test that caught the error and kept the connection did not fail for it: the
    # teardown verdict still does, once.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_caught_and_kept*",
            "E   ConnectionLeakError: 1 connection leaked by test_caught_and_kept "
            "(still leased at teardown)",
        ]
    )


def test_assert_no_leaks_in_warn_mode_warns_once(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        test_a="""
        import requests

        def test_mid(url, leak_check):
            r = requests.get(url + "/403", stream=True)
            leak_check.assert_no_leaks()
            leak_check.assert_no_leaks()
        """
    )
    result = base_conftest.runpytest_subprocess("--leak-check-mode=warn")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*= warnings summary =*",
            "test_a.py::test_mid",
            "  */test_a.py:4: LeakWarning: 1 connection leaked by test_mid "
            "(still leased at assert_no_leaks())",
            "*= connection leaks =*",
            "test_a.py::test_mid: 1 connection leaked (warned: leak_check_mode = warn)",
        ]
    )


def test_assert_no_leaks_respects_the_baseline(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        test_a="""
        import requests

        def test_mid(url, leak_check):
            r = requests.get(url + "/403", stream=True)
            leak_check.assert_no_leaks()
        """
    )
    first = base_conftest.runpytest("--leak-check-baseline=leaks.txt")
    first.assert_outcomes(passed=1)
    second = base_conftest.runpytest("--leak-check-baseline=leaks.txt")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["test_a.py::test_mid: 1 connection leaked (in baseline)"])


@pytest.mark.parametrize(
    "decoration",
    [
        '@pytest.mark.allow_leaks(reason="the SDK leaks, ticket 42")\ndef test_it(url):',
        '@pytest.mark.allow_leaks("positional reason")\ndef test_it(url):',
        "@pytest.mark.allow_leaks\ndef test_it(url):",
        'pytestmark = pytest.mark.allow_leaks(reason="module")\ndef test_it(url):',
        '@pytest.mark.allow_leaks(reason="class")\nclass TestIt:\n  def test_it(self, url):',
    ],
    ids=["function", "positional", "bare", "module", "class"],
)
def test_allow_leaks_exempts(base_conftest: pytest.Pytester, decoration: str) -> None:
    indent = "    " if "class" in decoration else "  "
    base_conftest.makepyfile(
        "import pytest, requests\n\n"
        f"{decoration}\n{indent}requests.get(url + '/403', stream=True)\n"
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1)


def test_allow_leaks_beats_the_fixture(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import pytest, requests

        @pytest.mark.allow_leaks(reason="known")
        def test_it(url, leak_check):
            requests.get(url + "/403", stream=True)
        """
    )
    base_conftest.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            'reasn="typo"',
            "ERROR: @pytest.mark.allow_leaks on test_bad_marker_argument.py::test_it: "
            "unexpected argument 'reasn'; valid arguments: reason=, origins=, sites=",
        ),
        (
            "reason=42",
            "ERROR: @pytest.mark.allow_leaks on test_bad_marker_argument.py::test_it: "
            "reason must be a string, got 42",
        ),
        (
            '"a", "b"',
            "ERROR: @pytest.mark.allow_leaks on test_bad_marker_argument.py::test_it: "
            'takes at most one positional argument, the reason (write allow_leaks(reason="..."))',
        ),
    ],
    ids=["unknown", "not-a-string", "two-positional"],
)
def test_bad_marker_argument(pytester: pytest.Pytester, arguments: str, message: str) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.allow_leaks({arguments})
        def test_it():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_strict_markers_users_stay_green(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import pytest

        @pytest.mark.allow_leaks(reason="x")
        def test_it():
            pass
        """
    )
    base_conftest.runpytest("--strict-markers").assert_outcomes(passed=1)


def test_doctests_are_not_judged(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        helper='''
        def fetch(url):
            """
            >>> import requests, conftest
            >>> requests.get(conftest.BASE_URL + "/403", stream=True).status_code
            403
            """
        '''
    )
    result = base_conftest.runpytest("--leak-check", "--doctest-modules", "helper.py")
    result.assert_outcomes(passed=1)


def test_summary_lists_leaking_tests(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import requests

        def test_a(url):
            requests.get(url + "/403", stream=True)

        def test_b(url):
            with requests.get(url + "/403", stream=True):
                pass

        def test_c(url):
            requests.get(url + "/ok", stream=True)
            requests.get(url + "/ok", stream=True)
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*= connection leaks =*",
            "test_summary_lists_leaking_tests.py::test_a: 1 connection leaked",
            "    http://127.0.0.1:* — leased at test_summary_lists_leaking_tests.py:4 in test_a",
            "test_summary_lists_leaking_tests.py::test_c: 2 connections leaked",
        ]
    )
    result.stdout.no_fnmatch_line("*::test_b: *")


def test_junit_xml_carries_the_leak(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import requests

        def test_a(url):
            requests.get(url + "/403", stream=True)
        """
    )
    base_conftest.runpytest("--leak-check", "--junitxml=out.xml")
    xml = (base_conftest.path / "out.xml").read_text()
    assert '<property name="connection_leak" value="http://127.0.0.1:' in xml
    assert "— leased at test_junit_xml_carries_the_leak.py:4 in test_a" in xml
    assert "ConnectionLeakError: 1 connection leaked by test_a" in xml
