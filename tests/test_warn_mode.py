"""Warn mode: a leak becomes one LeakWarning attached to its test, and can be escalated.

These runs use ``runpytest_subprocess``: an in-process run would inherit this suite's own
``filterwarnings = error`` and turn every LeakWarning into an error.
"""

from __future__ import annotations

import pytest

LEAKY = """
import requests

def test_one(url):
    requests.get(url + "/403", stream=True)

def test_two(url):
    requests.get(url + "/403", stream=True)
    requests.get(url + "/ok", stream=True)

def test_clean(url):
    requests.get(url + "/403").close()
"""

WARNINGS = [
    "*= warnings summary =*",
    "test_w.py::test_one",
    "  */test_w.py:4: LeakWarning: 1 connection leaked by test_one (still leased at teardown)",
    "    http://127.0.0.1:* — leased at test_w.py:4 in test_one",
    "    *close the response (response.close(), or use it as a context manager) or read its body",
    "*",
    "test_w.py::test_two",
    "  */test_w.py:7: LeakWarning: 2 connections leaked by test_two (still leased at teardown)",
    "    http://127.0.0.1:* — leased at test_w.py:7 in test_two",
    "    http://127.0.0.1:* — leased at test_w.py:8 in test_two",
    "*= connection leaks =*",
    "test_w.py::test_one: 1 connection leaked (warned: leak_check_mode = warn)",
    "    http://127.0.0.1:* — leased at test_w.py:4 in test_one",
    "test_w.py::test_two: 2 connections leaked (warned: leak_check_mode = warn)",
    "    http://127.0.0.1:* — leased at test_w.py:7 in test_two",
    "    http://127.0.0.1:* — leased at test_w.py:8 in test_two",
]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_w=LEAKY)
    return pytester.runpytest_subprocess("--leak-check", "-p", "no:randomly", *args)


def test_one_warning_per_leaking_test(base_conftest: pytest.Pytester) -> None:
    result = run(base_conftest, "--leak-check-mode=warn")
    result.assert_outcomes(passed=3, warnings=2)
    result.stdout.fnmatch_lines(["connleak: leak_check_mode = warn", "test_w.py ...*", *WARNINGS])
    assert result.stdout.str().count("LeakWarning: ") == 2
    result.stdout.no_fnmatch_line("*ConnectionLeakError*")


def test_ini_mode(base_conftest: pytest.Pytester) -> None:
    base_conftest.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nleak_check_mode = warn\n"
    )
    run(base_conftest).assert_outcomes(passed=3, warnings=2)


def test_option_overrides_ini(base_conftest: pytest.Pytester) -> None:
    base_conftest.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nleak_check_mode = warn\n"
    )
    run(base_conftest, "--leak-check-mode", "fail").assert_outcomes(passed=3, errors=2)


@pytest.mark.parametrize(
    "escalate",
    [
        ["-W", "error::pytest_connleak.LeakWarning"],
        ["-W", "error::pytest_connleak.ConnleakWarning"],
        ["-o", "filterwarnings=error::pytest_connleak.LeakWarning"],
    ],
    ids=["W", "base-class", "ini"],
)
def test_escalation(base_conftest: pytest.Pytester, escalate: list[str]) -> None:
    result = run(base_conftest, "--leak-check-mode=warn", *escalate)
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_one*",
            "E   pytest_connleak.LeakWarning: 1 connection leaked by test_one "
            "(still leased at teardown)",
            "      http://127.0.0.1:* — leased at test_w.py:4 in test_one",
        ]
    )


def test_filterwarnings_marker_escalates_one_test(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        test_w="""
        import pytest, requests

        @pytest.mark.filterwarnings("error::pytest_connleak.LeakWarning")
        def test_strict(url):
            requests.get(url + "/403", stream=True)

        def test_lenient(url):
            requests.get(url + "/403", stream=True)
        """
    )
    result = base_conftest.runpytest_subprocess("--leak-check", "--leak-check-mode=warn")
    result.assert_outcomes(passed=2, errors=1, warnings=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_strict*", "test_w.py::test_lenient"])


def test_ignored_leases_do_not_warn(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        test_w="""
        import pytest, requests

        @pytest.mark.allow_leaks(origins=["http://127.0.0.1"])
        def test_it(url):
            requests.get(url + "/403", stream=True)
        """
    )
    result = base_conftest.runpytest_subprocess("--leak-check", "--leak-check-mode=warn")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*LeakWarning*")


def test_fixture_and_test_leaks_share_one_warning(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        test_w="""
        import pytest, requests

        @pytest.fixture(scope="module")
        def held(url):
            return requests.get(url + "/403", stream=True)

        def test_it(held, url):
            requests.get(url + "/403", stream=True)
        """
    )
    result = base_conftest.runpytest_subprocess("--leak-check", "--leak-check-mode=warn")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "test_w.py::test_it",
            "  */test_w.py:8: LeakWarning: 1 connection leaked by test_it "
            "(still leased at teardown)",
            "    http://127.0.0.1:* — leased at test_w.py:8 in test_it",
            "*",
            "  1 connection leaked by fixture 'held' (module scope) "
            "(still leased when it was finalised)",
            "    http://127.0.0.1:* — leased at test_w.py:5 in held",
        ]
    )


def test_under_xdist(base_conftest: pytest.Pytester) -> None:
    result = run(base_conftest, "--leak-check-mode=warn", "-n", "2")
    result.assert_outcomes(passed=3, warnings=2)
    for line in WARNINGS[1:4] + WARNINGS[6:8]:
        result.stdout.fnmatch_lines([line])
    assert result.stdout.str().count("LeakWarning: ") == 2


def test_under_xdist_escalated(base_conftest: pytest.Pytester) -> None:
    result = run(
        base_conftest,
        "--leak-check-mode=warn",
        "-n",
        "2",
        "-W",
        "error::pytest_connleak.LeakWarning",
    )
    result.assert_outcomes(passed=3, errors=2)


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ["--leak-check-mode=loud"],
            "",
            "--leak-check-mode must be one of: fail, warn (got 'loud')",
        ),
        (["--leak-check-mode", ""], "", "--leak-check-mode must be one of: fail, warn (got '')"),
        ([], "leak_check_mode = error", "leak_check_mode must be one of: fail, warn (got 'error')"),
    ],
    ids=["cli", "empty", "ini"],
)
def test_unknown_mode_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_mode_is_case_insensitive(base_conftest: pytest.Pytester) -> None:
    run(base_conftest, "--leak-check-mode=WARN").assert_outcomes(passed=3, warnings=2)


def test_leak_check_stays_a_plain_flag(base_conftest: pytest.Pytester) -> None:
    # "--leak-check test_w.py" must run test_w.py, not read it as the flag's value.
    base_conftest.makepyfile(test_w=LEAKY, test_other="def test_other(): pass")
    result = base_conftest.runpytest_subprocess(
        "--leak-check", "test_w.py", "--leak-check-mode=warn"
    )
    result.assert_outcomes(passed=3, warnings=2)


def test_help_lists_the_new_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "  --leak-check-mode=MODE",
            "*what a leak does to its test: fail (a teardown error,*",
            "  --leak-check-baseline=FILE",
            "*tolerate the leaks listed in FILE and fail only on new*",
            "*leak_check_mode (string):*",
            "*leak_check_ignore (linelist):*",
            "*leak_check_baseline (string):*",
        ]
    )
