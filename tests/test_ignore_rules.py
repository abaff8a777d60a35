"""Ignore rules (ini ``leak_check_ignore``) and ``allow_leaks(origins=..., sites=...)``."""

from __future__ import annotations

import pytest

from pytest_connleak._checker.rules import PatternError, parse_rule
from pytest_connleak._core.ledger import Lease, PoolRecord, Site

HELPER = """
import requests

def fetch(url):
    return requests.get(url + "/403", stream=True)
"""

TESTS = """
import requests
from helper_sdk.client import fetch

def test_sdk(url):
    fetch(url)

def test_body(url):
    requests.get(url + "/403", stream=True)
"""


def project(pytester: pytest.Pytester, *ignore: str) -> pytest.Pytester:
    """The base project, a helper package that leaks, and *ignore* as leak_check_ignore."""
    lines = "".join(f"    {pattern}\n" for pattern in ignore)
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        + (f"leak_check_ignore =\n{lines}" if ignore else "")
    )
    package = pytester.mkpydir("helper_sdk")
    (package / "client.py").write_text(HELPER)
    pytester.makepyfile(test_x=TESTS)
    return pytester


@pytest.mark.parametrize(
    ("pattern", "shown"),
    [
        ("helper_sdk.*", "module helper_sdk.*"),
        ("helper_sdk", "module helper_sdk"),
        ("module:helper_sdk.client", "module helper_sdk.client"),
        ("helper_sdk/*", "file helper_sdk/*"),
        ("helper_sdk/", "file helper_sdk/"),
        ("file:helper_sdk/client.py", "file helper_sdk/client.py"),
        ("*/client.py", "file */client.py"),
    ],
)
def test_helper_leak_ignored_body_leak_fails(
    base_conftest: pytest.Pytester, pattern: str, shown: str
) -> None:
    result = project(base_conftest, pattern).runpytest("--leak-check", "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            f"connleak: ignoring leases of {shown}",
            "*ERROR at teardown of test_body*",
            "E   ConnectionLeakError: 1 connection leaked by test_body (still leased at teardown)",
            "E     http://127.0.0.1:* — leased at test_x.py:8 in test_body",
            "*= connection leaks =*",
            f"test_x.py::test_sdk: 1 connection leaked (ignored: {shown})",
            "    http://127.0.0.1:* — leased at helper_sdk/client.py:5 in fetch",
            "test_x.py::test_body: 1 connection leaked",
            "    http://127.0.0.1:* — leased at test_x.py:8 in test_body",
        ]
    )
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_sdk*")


def test_absolute_file_pattern(base_conftest: pytest.Pytester) -> None:
    pattern = f"{base_conftest.path}/helper_sdk/*"
    result = project(base_conftest, pattern).runpytest("--leak-check")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [f"test_x.py::test_sdk: 1 connection leaked (ignored: file {pattern})"]
    )


def test_without_rules_both_fail(base_conftest: pytest.Pytester) -> None:
    result = project(base_conftest).runpytest("--leak-check")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        ["E     http://127.0.0.1:* — leased at helper_sdk/client.py:5 in fetch"]
    )


@pytest.mark.parametrize(
    ("pattern", "ignored"),
    [
        ("http://127.0.0.1:*", True),
        ("http://127.0.0.1", True),  # no port: every port
        ("http://127.0.0.1/", True),
        ("http://127.0.0.*", True),
        ("*://127.0.0.1", True),
        ("origin:HTTP://127.0.0.1", True),  # origins ignore case
        ("http://{port}", True),
        ("http://localhost:*", False),
        ("https://127.0.0.1", False),
        ("http://127.0.0.1:1", False),
        ("https://*.example.com", False),
    ],
)
def test_origin_globs(
    base_conftest: pytest.Pytester, base_url: str, pattern: str, ignored: bool
) -> None:
    pattern = pattern.replace("{port}", base_url.removeprefix("http://"))
    result = project(base_conftest, pattern).runpytest("--leak-check")
    result.assert_outcomes(passed=2, errors=0 if ignored else 2)
    if ignored:
        shown = pattern.removeprefix("origin:")
        result.stdout.fnmatch_lines(
            [
                f"test_x.py::test_sdk: 1 connection leaked (ignored: origin {shown})",
                f"test_x.py::test_body: 1 connection leaked (ignored: origin {shown})",
            ]
        )


def test_rules_do_not_turn_the_check_on(base_conftest: pytest.Pytester) -> None:
    project(base_conftest, "helper_sdk.*").runpytest().assert_outcomes(passed=2)


MARKED = """
import pytest, requests
from helper_sdk.client import fetch

{marker}
def test_it(url):
    fetch(url)
    requests.get(url + "/403", stream=True)
"""


@pytest.mark.parametrize(
    ("marker", "errors", "summary"),
    [
        (
            '@pytest.mark.allow_leaks(origins=["http://127.0.0.1:*"], reason="local")',
            0,
            "test_x.py::test_it: 2 connections leaked (allowed: origin http://127.0.0.1:*; local)",
        ),
        (
            '@pytest.mark.allow_leaks(origins=["http://localhost"])',
            1,
            "test_x.py::test_it: 2 connections leaked",
        ),
        (
            '@pytest.mark.allow_leaks(sites=["helper_sdk.*"])',
            1,
            "test_x.py::test_it: 2 connections leaked (1 allowed)",
        ),
        (
            '@pytest.mark.allow_leaks(sites=["helper_sdk/client.py", "test_x.py"])',
            0,
            "test_x.py::test_it: 2 connections leaked (2 allowed)",
        ),
        (
            "@pytest.mark.allow_leaks(sites=[], origins=())",
            1,
            "test_x.py::test_it: 2 connections leaked",
        ),
        (
            '@pytest.mark.allow_leaks(reason="the SDK leaks (ticket 42)")',
            0,
            "test_x.py::test_it: 2 connections leaked (allowed: the SDK leaks (ticket 42))",
        ),
        (
            "@pytest.mark.allow_leaks",
            0,
            "test_x.py::test_it: 2 connections leaked (allowed)",
        ),
    ],
    ids=["origins", "origins-no-match", "sites-module", "sites-files", "empty", "bare", "bare2"],
)
def test_marker_origins_and_sites(
    base_conftest: pytest.Pytester, marker: str, errors: int, summary: str
) -> None:
    project(base_conftest)
    base_conftest.makepyfile(test_x=MARKED.format(marker=marker))
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1, errors=errors)
    result.stdout.fnmatch_lines(["*= connection leaks =*", summary])
    if '"helper_sdk.*"' in marker:
        # Only the lease the marker does not cover is reported, and it is the test's.
        result.stdout.fnmatch_lines(
            [
                "E   ConnectionLeakError: 1 connection leaked by test_it "
                "(still leased at teardown)",
                "E     http://127.0.0.1:* — leased at test_x.py:7 in test_it",
                "    http://127.0.0.1:* — leased at helper_sdk/client.py:5 in fetch "
                "(allowed: site helper_sdk.*)",
            ]
        )


def test_function_marker_replaces_class_marker(base_conftest: pytest.Pytester) -> None:
    # get_closest_marker semantics: the class's sites= no longer apply to this test.
    project(base_conftest)
    base_conftest.makepyfile(
        test_x="""
        import pytest, requests
        from helper_sdk.client import fetch

        @pytest.mark.allow_leaks(sites=["helper_sdk.*"])
        class TestIt:
            @pytest.mark.allow_leaks(sites=["test_x.py"], reason="own stream")
            def test_it(self, url):
                fetch(url)
                requests.get(url + "/403", stream=True)

            def test_class_marker_applies(self, url):
                fetch(url)
        """
    )
    result = base_conftest.runpytest("--leak-check", "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 1 connection leaked by test_it (still leased at teardown)",
            "E     http://127.0.0.1:* — leased at helper_sdk/client.py:5 in fetch",
            "*= connection leaks =*",
            # Passed tests first, then errors: the summary follows pytest's report order.
            "test_x.py::TestIt::test_class_marker_applies: 1 connection leaked "
            "(allowed: site helper_sdk.*)",
            "    http://127.0.0.1:* — leased at helper_sdk/client.py:5 in fetch",
            "test_x.py::TestIt::test_it: 2 connections leaked (1 allowed)",
            "    http://127.0.0.1:* — leased at helper_sdk/client.py:5 in fetch",
            "    http://127.0.0.1:* — leased at test_x.py:9 in test_it "
            "(allowed: site test_x.py; own stream)",
        ]
    )


def test_function_marker_replaces_module_marker(base_conftest: pytest.Pytester) -> None:
    # The audit's case: a bare module marker no longer excuses a function whose own
    # marker allows one origin only.
    base_conftest.makepyfile(
        test_x="""
        import pytest, requests

        pytestmark = pytest.mark.allow_leaks(reason="legacy module")

        @pytest.mark.allow_leaks(origins=["http://example.com"], reason="example only")
        def test_local(url):
            requests.get(url + "/403", stream=True)

        def test_module_marker_applies(url):
            requests.get(url + "/403", stream=True)
        """
    )
    result = base_conftest.runpytest("--leak-check", "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_local*",
            "E   ConnectionLeakError: 1 connection leaked by test_local (still leased at teardown)",
            "*= connection leaks =*",
            "test_x.py::test_module_marker_applies: 1 connection leaked (allowed: legacy module)",
            "    http://127.0.0.1:* — leased at test_x.py:10 in test_module_marker_applies",
            "test_x.py::test_local: 1 connection leaked",
            "    http://127.0.0.1:* — leased at test_x.py:7 in test_local",
        ]
    )


def test_ini_rule_and_marker_together(base_conftest: pytest.Pytester) -> None:
    project(base_conftest, "helper_sdk.*")
    base_conftest.makepyfile(
        test_x=MARKED.format(marker='@pytest.mark.allow_leaks(sites=["test_*.py"])')
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "test_x.py::test_it: 2 connections leaked (1 ignored, 1 allowed)",
            "    http://127.0.0.1:* — leased at helper_sdk/client.py:5 in fetch "
            "(ignored: module helper_sdk.*)",
            "    http://127.0.0.1:* — leased at test_x.py:7 in test_it (allowed: site test_*.py)",
        ]
    )


def test_pyproject_list(base_conftest: pytest.Pytester) -> None:
    project(base_conftest)
    (base_conftest.path / "tox.ini").unlink()
    base_conftest.makepyprojecttoml(
        '[tool.pytest.ini_options]\nleak_check_ignore = ["helper_sdk.*", "file:test_x.py"]\n'
    )
    base_conftest.runpytest("--leak-check").assert_outcomes(passed=2)


VALID_FORMS = (
    "valid forms: origin:PATTERN or scheme://host[[]:port[]] (http://localhost:*, "
    "https://*.example.com), module:PATTERN or a dotted module name (some_sdk.*), "
    "file:PATTERN or a path with / or ending in .py (tests/legacy/*)"
)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("sdk:foo", "unknown kind 'sdk' in 'sdk:foo'"),
        ("module:", "empty module pattern"),
        ("some sdk", "'some sdk' is not a dotted module name pattern"),
        ("some_sdk.client:fetch", "'some_sdk.client:fetch' is not a dotted module name pattern"),
        ("http://", "'http://' is not an origin pattern: write scheme://host[[]:port[]]"),
        ("://host", "'://host' is not an origin pattern: write scheme://host[[]:port[]]"),
        (
            "http://host/api",
            "'http://host/api': an origin pattern is scheme://host[[]:port[]], without a path",
        ),
        ("http://host:http", "'http://host:http': the port must be digits, * or ?"),
    ],
)
def test_bad_ini_pattern(pytester: pytest.Pytester, pattern: str, problem: str) -> None:
    pytester.makeini(f"[pytest]\nleak_check_ignore =\n    {pattern}\n")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: leak_check_ignore: {problem}; {VALID_FORMS}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_empty_pattern_in_pyproject(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nleak_check_ignore = ["a.b", " "]\n')
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: leak_check_ignore: empty pattern; {VALID_FORMS}"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            'origins="http://localhost:*"',
            "origins must be a list of strings, got 'http://localhost:*' "
            "(write origins=[[]'http://localhost:*'[]])",
        ),
        ("sites=42", "sites must be a list of strings, got 42 (write sites=[[]'some_sdk.*'[]])"),
        ("origins=[1]", "origins must be a list of strings, got 1 in it"),
        (
            'origins=["localhost"]',
            "bad pattern in origins: 'localhost' is not an origin pattern: "
            "write scheme://host[[]:port[]]",
        ),
        ('sites=[""]', "bad pattern in sites: empty pattern"),
    ],
)
def test_bad_marker_patterns(pytester: pytest.Pytester, arguments: str, message: str) -> None:
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
    result.stderr.fnmatch_lines(
        [f"ERROR: @pytest.mark.allow_leaks on test_bad_marker_patterns.py::test_it: {message}"]
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_under_xdist(base_conftest: pytest.Pytester) -> None:
    project(base_conftest, "helper_sdk.*")
    base_conftest.makepyfile(
        test_y=MARKED.format(marker='@pytest.mark.allow_leaks(sites=["test_y.py"])')
    )
    result = base_conftest.runpytest_subprocess("--leak-check", "-n", "2")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["E   ConnectionLeakError: 1 connection leaked by test_body (still leased at teardown)"]
    )
    # Summary lines arrive in whatever order the workers finish.
    for line in (
        "test_x.py::test_sdk: 1 connection leaked (ignored: module helper_sdk.*)",
        "test_x.py::test_body: 1 connection leaked",
        "test_y.py::test_it: 2 connections leaked (1 ignored, 1 allowed)",
    ):
        result.stdout.fnmatch_lines([line])


# -- the pattern syntax itself, without pytest ------------------------------------------


def lease(origin: str, filename: str, module: str) -> Lease:
    site = Site(filename, 3, "fetch", module, "requests")
    return Lease(PoolRecord("urllib3", origin, 10, False), None, site, None, "MainThread")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("http://localhost:*", "origin"),
        ("origin:http://x", "origin"),
        ("some_sdk.*", "module"),
        ("some_sdk", "module"),
        ("tests/legacy/*", "file"),
        ("tests\\legacy\\*", "file"),
        ("test_old.py", "file"),
        ("C:\\src\\x.py", "file"),
        ("FILE:x", "file"),
    ],
)
def test_kind_is_inferred(text: str, kind: str) -> None:
    assert parse_rule(text).kind == kind


@pytest.mark.parametrize(
    ("pattern", "origin", "matches"),
    [
        ("http://[::1]", "http://[::1]:8080", True),
        ("http://[::1]:8080", "http://[::1]:8080", True),
        ("http://[::1]:80", "http://[::1]:8080", False),
        ("https://*.example.com", "https://api.example.com:443", True),
        ("https://*.example.com", "https://example.com:443", False),
        ("https://*.example.com:443", "https://api.example.com:8443", False),
    ],
)
def test_origin_matching(pattern: str, origin: str, matches: bool) -> None:
    rule = parse_rule(pattern)
    assert rule.matches(lease(origin, "/x/y.py", "y"), "/x") is matches


@pytest.mark.parametrize(
    ("pattern", "filename", "module", "matches"),
    [
        ("some_sdk.*", "/venv/some_sdk/__init__.py", "some_sdk", True),
        ("some_sdk", "/venv/some_sdk/a/b.py", "some_sdk.a.b", True),
        ("some_sdk", "/venv/some_sdk_extra.py", "some_sdk_extra", False),
        ("tests/legacy/*", "/proj/tests/legacy/deep/test_a.py", "test_a", True),
        ("tests/legacy/*", "/elsewhere/tests/legacy/test_a.py", "test_a", False),
        ("/venv/*/some_sdk/*", "/venv/lib/some_sdk/x.py", "some_sdk.x", True),
    ],
)
def test_site_matching(pattern: str, filename: str, module: str, matches: bool) -> None:
    rule = parse_rule(pattern)
    assert rule.matches(lease("http://h:80", filename, module), "/proj") is matches


def test_pattern_errors_are_value_errors() -> None:
    with pytest.raises(PatternError, match="empty pattern"):
        parse_rule("   ")
    assert issubclass(PatternError, ValueError)
