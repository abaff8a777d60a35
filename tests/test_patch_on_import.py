"""A client is patched when it is first imported, never imported by the plugin itself."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_connleak import IncompatibleClientWarning
from pytest_connleak._core import adapters as _adapters
from pytest_connleak._core.adapters import Adapter, Incompatible, Instrumentation, Patcher
from pytest_connleak._core.ledger import Ledger

FAKE = "connleak_fakeclient"


def test_clients_the_suite_never_imports_stay_unimported(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import sys
        import requests

        def test_only_requests(url):
            requests.get(url + "/ok").close()
            for name in ("httpx", "httpcore", "httpx2", "httpcore2", "aiohttp"):
                assert name not in sys.modules, name
        """
    )
    # A subprocess: the modules this outer run imported must not hide an import.
    result = base_conftest.runpytest_subprocess("--leak-check")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            # httpcore2 is listed where it is installed (Python 3.11+).
            "connleak: checking every test for leaked connections (tracking urllib3 *, "
            "httpcore (when imported), *aiohttp (when imported), sqlalchemy (when imported), "
            "psycopg_pool (when imported), redis (when imported), asyncpg (when imported))"
        ]
    )


def test_a_client_imported_inside_a_test_is_tracked_from_then_on(
    base_conftest: pytest.Pytester,
) -> None:
    base_conftest.makepyfile(
        """
        import sys

        def test_leaks_through_late_httpx(url):
            assert "httpcore" not in sys.modules
            import httpx

            client = httpx.Client()
            client.send(client.build_request("GET", url + "/403"), stream=True)
        """
    )
    result = base_conftest.runpytest_subprocess("--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_through_late_httpx*",
            "E   ConnectionLeakError: 1 connection leaked by test_leaks_through_late_httpx "
            "(still leased at teardown)",
        ]
    )


# -- the hook itself, on a fake client ---------------------------------------------------------


class FakeAdapter(Adapter):
    name = "fakeclient"
    module = FAKE

    def patch(self, ledger: Ledger, patcher: Patcher) -> None:
        mod = sys.modules[FAKE]
        if getattr(mod, "INCOMPATIBLE", False):
            raise Incompatible("fakeclient.Pool.get moved")

        def make(original: Any) -> Any:
            return lambda self: ("patched", original(self))

        patcher.wrap(mod.Pool, "get", make)


@pytest.fixture
def fake_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package FAKE on sys.path, the only adapter the instrumentation knows."""
    source = tmp_path / f"{FAKE}.py"
    source.write_text("class Pool:\n    def get(self):\n        return 'original'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_adapters, "load_adapters", lambda: [FakeAdapter()])
    sys.modules.pop(FAKE, None)
    yield source
    sys.modules.pop(FAKE, None)


def test_patched_on_first_import_and_unpatched_by_uninstall(fake_client: Path) -> None:
    before = list(sys.meta_path)
    instrumentation = Instrumentation(Ledger())
    assert instrumentation.install() == []
    assert FAKE not in sys.modules
    assert [a.name for a in instrumentation.pending] == ["fakeclient"]
    assert len(sys.meta_path) == len(before) + 1
    try:
        import connleak_fakeclient as mod  # type: ignore[import-not-found]

        assert mod.Pool().get() == ("patched", "original")
        assert [a.name for a in instrumentation.installed] == ["fakeclient"]
        assert instrumentation.pending == []
        # Nothing left to wait for: the hook is gone already, and the import looks normal.
        assert sys.meta_path == before
        assert sys.modules[FAKE] is mod
        assert type(mod.__loader__).__name__ == "SourceFileLoader"
        assert mod.__spec__.loader is mod.__loader__
    finally:
        instrumentation.uninstall()
    assert mod.Pool().get() == "original"


def test_uninstall_removes_a_hook_still_waiting(fake_client: Path) -> None:
    before = list(sys.meta_path)
    instrumentation = Instrumentation(Ledger())
    instrumentation.install()
    assert sys.meta_path != before
    instrumentation.uninstall()
    assert sys.meta_path == before
    assert instrumentation.pending == []
    import connleak_fakeclient as mod

    assert mod.Pool().get() == "original"


def test_a_failing_import_fails_unchanged_and_the_next_one_is_patched(
    fake_client: Path,
) -> None:
    good = fake_client.read_text()
    fake_client.write_text("raise LookupError('broken on purpose')\n")
    instrumentation = Instrumentation(Ledger())
    instrumentation.install()
    try:
        with pytest.raises(LookupError, match="broken on purpose"):
            import connleak_fakeclient  # noqa: F401
        assert FAKE not in sys.modules
        assert [a.name for a in instrumentation.pending] == ["fakeclient"]
        fake_client.write_text(good)
        sys.modules.pop(FAKE, None)
        import importlib

        importlib.invalidate_caches()
        mod = importlib.import_module(FAKE)
        assert mod.Pool().get() == ("patched", "original")
    finally:
        instrumentation.uninstall()


def test_incompatible_at_import_warns_and_the_import_succeeds(fake_client: Path) -> None:
    fake_client.write_text(fake_client.read_text() + "INCOMPATIBLE = True\n")
    instrumentation = Instrumentation(Ledger())
    instrumentation.install()
    try:
        with pytest.warns(
            IncompatibleClientWarning,
            match=r"cannot track fakeclient \?: fakeclient.Pool.get moved; "
            "leaks through fakeclient will not be reported",
        ):
            import connleak_fakeclient as mod
        assert mod.Pool().get() == "original"
        assert instrumentation.installed == []
        assert [a.name for a, _ in instrumentation.skipped] == ["fakeclient"]
    finally:
        instrumentation.uninstall()


def test_escalated_warning_never_fails_the_import(fake_client: Path) -> None:
    fake_client.write_text(fake_client.read_text() + "INCOMPATIBLE = True\n")
    instrumentation = Instrumentation(Ledger())
    instrumentation.install()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", IncompatibleClientWarning)
            import connleak_fakeclient as mod
        assert mod.Pool().get() == "original"
        (problem,) = instrumentation.escalated
        assert problem.startswith("pytest-connleak cannot track fakeclient")
    finally:
        instrumentation.uninstall()


def test_escalated_import_warning_fails_the_run(
    fake_client: Path, pytester: pytest.Pytester
) -> None:
    fake_client.write_text(fake_client.read_text() + "INCOMPATIBLE = True\n")
    pytester.makeini(
        """
        [pytest]
        filterwarnings = error::pytest_connleak.IncompatibleClientWarning
        """
    )
    pytester.makepyfile(
        f"""
        def test_imports_the_client():
            import {FAKE} as mod

            assert mod.Pool().get() == "original"
        """
    )
    result = pytester.runpytest("--leak-check")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["ERROR: IncompatibleClientWarning: pytest-connleak cannot track fakeclient *"]
    )


def test_a_client_already_imported_is_patched_at_once_without_a_hook(fake_client: Path) -> None:
    import connleak_fakeclient as mod

    before = list(sys.meta_path)
    instrumentation = Instrumentation(Ledger())
    instrumentation.install()
    try:
        assert sys.meta_path == before
        assert mod.Pool().get() == ("patched", "original")
    finally:
        instrumentation.uninstall()
