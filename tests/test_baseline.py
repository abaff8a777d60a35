"""The baseline: record the leaks of today, fail only on new ones, report the fixed ones."""

from __future__ import annotations

import pytest

from pytest_connleak._checker.baseline import HEADER

APP = """
import requests

def test_old(url):
    requests.get(url + "/403", stream=True)

def test_twice(url):
    for _ in range({times}):
        requests.get(url + "/403", stream=True)

def test_clean(url):
    requests.get(url + "/403").close()
{more}
"""

NEW_LEAK = """
def test_new(url):
    requests.get(url + "/ok", stream=True)
"""

FIXTURE = """
import pytest, requests

@pytest.fixture(scope="module")
def held(url):
    return requests.get(url + "/403", stream=True)

def test_a(held):
    pass

def test_b(held):
    pass
"""

RECORDED = HEADER + (
    "fixture 'held' (module scope) | http://127.0.0.1 | test_fix.py:held\n"
    "test_app.py::test_old | http://127.0.0.1 | test_app.py:test_old\n"
    "test_app.py::test_twice | http://127.0.0.1 | test_app.py:test_twice\n"
    "test_app.py::test_twice | http://127.0.0.1 | test_app.py:test_twice\n"
)


def run(pytester: pytest.Pytester, xdist: bool, *args: str) -> pytest.RunResult:
    if xdist:
        return pytester.runpytest_subprocess("--leak-check", "-n", "2", *args)
    return pytester.runpytest("--leak-check", *args)


@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_record_then_new_then_fixed(base_conftest: pytest.Pytester, xdist: bool) -> None:
    pytester = base_conftest
    baseline = pytester.path / "leaks.txt"
    pytester.makepyfile(test_app=APP.format(times=2, more=""), test_fix=FIXTURE)

    # 1. No file yet: this run records its leaks, and passes.
    result = run(pytester, xdist, "--leak-check-baseline=leaks.txt")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "connleak: recording a baseline in leaks.txt",
            "*= connection leaks =*",
            "connleak baseline: recorded 4 leaks in leaks.txt",
        ]
    )
    for line in (
        "test_app.py::test_old: 1 connection leaked (recorded in baseline)",
        "test_app.py::test_twice: 2 connections leaked (recorded in baseline)",
    ):
        result.stdout.fnmatch_lines([line])
    assert baseline.read_text() == RECORDED

    # 2. Same leaks, lines moved (and new server ports): all known, still green.
    pytester.makepyfile(test_app="# moved down\n\n" + APP.format(times=2, more=""))
    result = run(pytester, xdist, "--leak-check-baseline=leaks.txt")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "connleak: baseline leaks.txt (4 known leaks)",
            "connleak baseline: 4 known leaks tolerated, 0 new leaks not in leaks.txt",
        ]
    )
    result.stdout.fnmatch_lines(["test_app.py::test_old: 1 connection leaked (in baseline)"])
    result.stdout.no_fnmatch_line("*entry fixed*")

    # 3. A new test leaks, and an old one leaks once more than recorded: both fail.
    pytester.makepyfile(test_app=APP.format(times=3, more=NEW_LEAK))
    result = run(pytester, xdist, "--leak-check-baseline=leaks.txt")
    result.assert_outcomes(passed=6, errors=2)
    result.stdout.fnmatch_lines(
        ["connleak baseline: 4 known leaks tolerated, 2 new leaks not in leaks.txt"]
    )
    for line in (
        "E   ConnectionLeakError: 1 connection leaked by test_new (still leased at teardown)",
        "E   ConnectionLeakError: 1 connection leaked by test_twice (still leased at teardown)",
        "test_app.py::test_twice: 3 connections leaked (2 in baseline)",
    ):
        result.stdout.fnmatch_lines([line])
    assert baseline.read_text() == RECORDED  # never grows

    # 4. The old leak is fixed: reported as fixed, green, and the file is left alone.
    pytester.makepyfile(
        test_app=APP.format(times=2, more="").replace("stream=True)\n\n", ")\n\n", 1)
    )
    result = run(pytester, xdist, "--leak-check-baseline=leaks.txt")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "connleak baseline: 3 known leaks tolerated, 0 new leaks not in leaks.txt",
            "connleak baseline: 1 entry fixed, remove it from leaks.txt:",
            "    test_app.py::test_old | http://127.0.0.1 | test_app.py:test_old",
        ]
    )
    assert baseline.read_text() == RECORDED


def test_tests_that_did_not_run_are_not_fixed(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(test_app=APP.format(times=2, more=""), test_fix=FIXTURE)
    base_conftest.runpytest("--leak-check", "--leak-check-baseline=leaks.txt")
    result = base_conftest.runpytest(
        "--leak-check", "--leak-check-baseline=leaks.txt", "-k", "twice"
    )
    result.assert_outcomes(passed=1, deselected=4)
    result.stdout.no_fnmatch_line("*fixed, remove*")


def test_fixture_entry_fixed_when_its_module_ran(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(test_fix=FIXTURE)
    base_conftest.runpytest("--leak-check", "--leak-check-baseline=leaks.txt")
    base_conftest.makepyfile(test_fix=FIXTURE.replace("stream=True", "stream=False"))
    result = base_conftest.runpytest("--leak-check", "--leak-check-baseline=leaks.txt")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "connleak baseline: 1 entry fixed, remove it from leaks.txt:",
            "    fixture 'held' (module scope) | http://127.0.0.1 | test_fix.py:held",
        ]
    )


def test_empty_run_records_an_empty_baseline(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(test_app="def test_nothing(): pass")
    result = base_conftest.runpytest("--leak-check", "--leak-check-baseline=leaks.txt")
    result.stdout.fnmatch_lines(["connleak baseline: recorded 0 leaks in leaks.txt"])
    assert (base_conftest.path / "leaks.txt").read_text() == HEADER


def test_collect_only_records_nothing(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(test_app=APP.format(times=1, more=""))
    base_conftest.runpytest("--leak-check", "--leak-check-baseline=leaks.txt", "--co")
    assert not (base_conftest.path / "leaks.txt").exists()


def test_ini_path_is_relative_to_the_ini_file(base_conftest: pytest.Pytester) -> None:
    base_conftest.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "leak_check_baseline = ci/leaks.txt\n"
    )
    base_conftest.mkdir("ci")
    sub = base_conftest.mkdir("sub")
    (sub / "test_sub.py").write_text(
        "import requests\n\ndef test_it(url):\n    requests.get(url + '/403', stream=True)\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sub)
        result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1)
    assert (base_conftest.path / "ci" / "leaks.txt").read_text() == HEADER + (
        "sub/test_sub.py::test_it | http://127.0.0.1 | sub/test_sub.py:test_it\n"
    )


def test_site_outside_rootdir_is_its_module(base_conftest: pytest.Pytester) -> None:
    lib = base_conftest.mkdir("lib")
    (lib / "ext_sdk.py").write_text(
        "import requests\n\ndef fetch(url):\n    return requests.get(url, stream=True)\n"
    )
    base_conftest.syspathinsert(lib)
    proj = base_conftest.mkdir("proj")
    (proj / "conftest.py").write_text(base_conftest.path.joinpath("conftest.py").read_text())
    (proj / "test_p.py").write_text(
        "import ext_sdk\n\ndef test_it(url):\n    ext_sdk.fetch(url + '/403')\n"
    )
    result = base_conftest.runpytest(
        "--leak-check", "--leak-check-baseline=leaks.txt", "--rootdir", str(proj), str(proj)
    )
    result.assert_outcomes(passed=1)
    assert (base_conftest.path / "leaks.txt").read_text() == HEADER + (
        "test_p.py::test_it | http://127.0.0.1 | ext_sdk:fetch\n"
    )


def test_ignored_leaks_are_not_recorded(base_conftest: pytest.Pytester) -> None:
    base_conftest.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nleak_check_ignore = test_fix.py\n"
    )
    base_conftest.makepyfile(test_app=APP.format(times=1, more=""), test_fix=FIXTURE)
    base_conftest.runpytest("--leak-check", "--leak-check-baseline=leaks.txt")
    text = (base_conftest.path / "leaks.txt").read_text()
    assert "held" not in text
    assert text.count("\n") == HEADER.count("\n") + 2


def test_warn_mode_warns_only_new_leaks(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(test_app=APP.format(times=1, more=""))
    base_conftest.runpytest("--leak-check", "--leak-check-baseline=leaks.txt")
    base_conftest.makepyfile(test_app=APP.format(times=1, more=NEW_LEAK))
    result = base_conftest.runpytest_subprocess(
        "--leak-check", "--leak-check-baseline=leaks.txt", "--leak-check-mode=warn"
    )
    result.assert_outcomes(passed=4, warnings=1)
    result.stdout.fnmatch_lines(["*LeakWarning: 1 connection leaked by test_new*"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            HEADER + "test_a.py::test_a http://127.0.0.1 test_a.py:test_a\n",
            "--leak-check-baseline: leaks.txt:5: not a baseline line: "
            "'test_a.py::test_a http://127.0.0.1 test_a.py:test_a'; "
            "expected 'test node id | scheme://host | file:function'",
        ),
        (
            "test_a.py::test_a | 127.0.0.1 | test_a.py:test_a\n",
            "--leak-check-baseline: leaks.txt:1: not a baseline line: *",
        ),
        (
            b"\xff\xfe garbage\n",
            "--leak-check-baseline: cannot read leaks.txt: 'utf-8' codec can't decode *",
        ),
    ],
    ids=["no-separators", "no-scheme", "not-utf8"],
)
def test_malformed_baseline_is_a_usage_error(
    pytester: pytest.Pytester, content: str | bytes, message: str
) -> None:
    path = pytester.path / "leaks.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("--leak-check-baseline=leaks.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_unreadable_baseline_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.mkdir("leaks.txt")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("--leak-check-baseline=leaks.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --leak-check-baseline: cannot read leaks.txt: [[]Errno 21[]] Is a directory: *"]
    )


def test_missing_directory_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("--leak-check-baseline=nowhere/leaks.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --leak-check-baseline: cannot record nowhere/leaks.txt: "
            "directory */nowhere does not exist"
        ]
    )


def test_comments_and_blank_lines_are_allowed(base_conftest: pytest.Pytester) -> None:
    (base_conftest.path / "leaks.txt").write_text(
        "# known since the SDK upgrade\n\n"
        "  test_app.py::test_old | http://127.0.0.1 | test_app.py:test_old  \n"
    )
    base_conftest.makepyfile(test_app=APP.format(times=0, more=""))
    result = base_conftest.runpytest("--leak-check", "--leak-check-baseline=leaks.txt")
    result.assert_outcomes(passed=3)
