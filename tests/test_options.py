"""Turning the check on and off: flag, ini, override, bad values, help texts."""

from __future__ import annotations

import pytest

LEAKY = """
import requests

def test_leaky(url):
    requests.get(url + "/403", stream=True)
"""


def test_off_by_default(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(LEAKY)
    result = base_conftest.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("connleak: *")
    result.stdout.no_fnmatch_line("*ConnectionLeakError*")


def test_flag_turns_it_on(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(LEAKY)
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "connleak: checking every test for leaked connections (tracking urllib3 *)",
            "E   ConnectionLeakError: 1 connection leaked by test_leaky (still leased at teardown)",
        ]
    )


@pytest.mark.parametrize("value", ["true", "1", "yes", "on", "True"])
def test_ini_turns_it_on(base_conftest: pytest.Pytester, value: str) -> None:
    base_conftest.makeini(f"[pytest]\nleak_check = {value}\n")
    base_conftest.makepyfile(LEAKY)
    base_conftest.runpytest().assert_outcomes(passed=1, errors=1)


def test_pyproject_boolean(base_conftest: pytest.Pytester) -> None:
    (base_conftest.path / "tox.ini").unlink()
    base_conftest.makepyprojecttoml("[tool.pytest.ini_options]\nleak_check = true\n")
    base_conftest.makepyfile(LEAKY)
    base_conftest.runpytest().assert_outcomes(passed=1, errors=1)


def test_no_leak_check_overrides_ini(base_conftest: pytest.Pytester) -> None:
    base_conftest.makeini("[pytest]\nleak_check = true\n")
    base_conftest.makepyfile(LEAKY)
    base_conftest.runpytest("--no-leak-check").assert_outcomes(passed=1)


def test_last_flag_wins(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(LEAKY)
    base_conftest.runpytest("--leak-check", "--no-leak-check").assert_outcomes(passed=1)
    base_conftest.runpytest("--no-leak-check", "--leak-check").assert_outcomes(passed=1, errors=1)


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nleak_check = maybe\n")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: leak_check = 'maybe' is not a boolean; use one of: true, false "
            "(or 1/0, yes/no, on/off)"
        ]
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_disabled_with_p_no(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(LEAKY)
    result = base_conftest.runpytest("-p", "no:connleak")
    result.assert_outcomes(passed=1)
    result = base_conftest.runpytest("-p", "no:connleak", "--leak-check")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unrecognized arguments: --leak-check*"])


def test_help_lists_options_and_ini(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "connection leak checks (pytest-connleak):",
            "  --leak-check *fail every test that leaves a connection leased from a*",
            "  --no-leak-check *turn off the check for every test*",
            "*leak_check (string):*check every test for leaked connections*",
        ]
    )


def test_markers_lists_allow_leaks(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.allow_leaks(reason=..., origins=[[]...[]], sites=[[]...[]]): "
            "do not fail this test*"
        ]
    )


def test_fixtures_lists_leak_check(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(
        [
            "leak_check -- *plugin.py:*",
            "    Fail this test if it leaves a connection leased, even without --leak-check.",
        ]
    )
