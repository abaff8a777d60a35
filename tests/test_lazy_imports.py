"""What pytest-connleak imports at start-up: only what a run needs (the rest on first use)."""

from __future__ import annotations

import subprocess
import sys

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
