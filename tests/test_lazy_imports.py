"""What pytest-connleak imports at start-up: only what a run needs (the rest on first use)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pytest_connleak
from pytest_connleak._upstreams.fixtures import SHAPE_NAMES
from pytest_connleak._upstreams.shapes import RESPONSE_SHAPES


def test_the_shape_names_are_the_response_shapes() -> None:
    assert list(SHAPE_NAMES) == list(RESPONSE_SHAPES)


def test_every_public_name_is_there() -> None:
    for name in pytest_connleak.__all__:
        assert getattr(pytest_connleak, name) is not None
    assert set(pytest_connleak.__all__) <= set(dir(pytest_connleak))
    assert pytest_connleak.no_leaks.__module__ == "pytest_connleak"


def test_the_plugin_imports_neither_the_api_nor_the_mock_upstreams() -> None:
    code = (
        "import sys, pytest_connleak.plugin\n"
        "print(sorted(m for m in sys.modules if m.startswith('pytest_connleak.')))\n"
        "pytest_connleak.error_page\n"
        "print('pytest_connleak._upstreams.error_pages' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for lazy in (
        "_runtime.api",
        "_upstreams.error_pages",
        "_upstreams.proxy",
        "_upstreams.shapes",
        "_runtime.watch",
    ):
        assert f"'pytest_connleak.{lazy}'" not in out[0]
    assert out[1] == "True"


def test_a_run_that_checks_nothing_loads_no_checker_and_no_asyncio() -> None:
    # Start-up cost: the checker, the ledger's adapters and the clients' adapters load only
    # when a test is checked; asyncio (about 20 ms) only if something else imports it.
    code = (
        "import sys, pytest_connleak.plugin\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pytest_connleak.', 'asyncio'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for lazy in ("_checker.verdict", "_checker.longrepr", "_core.adapters", "_clients."):
        assert f"'pytest_connleak.{lazy}" not in out
    assert "'asyncio" not in out


# What pytest imports of this package in a whole run (issue 12's start-up figure): printed
# by a conftest at the very end, after the terminal summary.
_PRINT_MODULES = """
import sys

def pytest_unconfigure(config):
    ours = sorted(m for m in sys.modules if m.startswith("pytest_connleak"))
    print("MODULES", " ".join(ours))
"""


def _modules_of_a_run(pytester: pytest.Pytester, *args: str) -> set[str]:
    pytester.makeconftest(_PRINT_MODULES)
    pytester.makepyfile("def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    line = next(line for line in result.outlines if line.startswith("MODULES "))
    return set(line.split()[1:])


def test_a_run_that_checks_nothing_imports_options_settings_and_policy_only(
    pytester: pytest.Pytester,
) -> None:
    assert _modules_of_a_run(pytester) == {
        "pytest_connleak",
        "pytest_connleak.plugin",
        "pytest_connleak._checker",
        "pytest_connleak._checker.internal",
        "pytest_connleak._checker.policy",
        "pytest_connleak._checker.settings",
        "pytest_connleak._upstreams",
        "pytest_connleak._upstreams.fixtures",
    }


def test_a_checked_run_without_leaks_loads_no_rules_baseline_summary_or_socket_check(
    pytester: pytest.Pytester,
) -> None:
    modules = _modules_of_a_run(pytester, "--leak-check")
    assert "pytest_connleak._checker.verdict" in modules
    for lazy in ("rules", "baseline", "summary", "health", "socket_check", "longrepr", "settle"):
        assert f"pytest_connleak._checker.{lazy}" not in modules
    assert "pytest_connleak._core.sockets" not in modules
    # No client imported by the test: no adapter module either.
    assert not [m for m in modules if m.startswith("pytest_connleak._clients")]


def test_the_registry_knows_each_adapters_client_without_importing_it() -> None:
    from pytest_connleak._core import adapters

    assert set(adapters._CLIENTS) == set(adapters.ADAPTERS)
    for path, (name, module) in adapters._CLIENTS.items():
        real = adapters._load(path)
        assert (real.name, real.module) == (name, module)
    code = (
        "import sys\n"
        "from pytest_connleak._core.adapters import acquire_instrumentation\n"
        "instrumentation, _ = acquire_instrumentation()\n"
        "print(sorted(m for m in sys.modules if m.startswith('pytest_connleak._clients.')))\n"
        "import urllib3\n"
        "print(sorted(m for m in sys.modules if m.startswith('pytest_connleak._clients.')))\n"
        "print([a.name for a in instrumentation.installed])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["[]", "['pytest_connleak._clients.urllib3']", "['urllib3']"]
