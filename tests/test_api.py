"""The plain-Python API: no_leaks(), LeakCheckMixin and pool_stats(), in and out of pytest."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import urllib3
from urllib3.connectionpool import HTTPConnectionPool

import pytest_connleak
from pytest_connleak import ConnectionLeakError, no_leaks, pool_stats

HERE = Path(__file__).name


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _patched() -> bool:
    return hasattr(HTTPConnectionPool.__dict__["_get_conn"], "__wrapped__")


def test_clean_block_passes_and_unpatches(session: requests.Session, keepalive_url: str) -> None:
    assert not _patched()
    with no_leaks():
        assert _patched()
        session.get(keepalive_url + "/ok").raise_for_status()
        with session.get(keepalive_url + "/ok", stream=True) as r:
            assert r.status_code == 200
    assert not _patched()


def test_leak_raises_the_plugin_report(session: requests.Session, keepalive_url: str) -> None:
    kept = []
    with pytest.raises(ConnectionLeakError) as excinfo, no_leaks():
        kept.append(session.get(keepalive_url + "/ok", stream=True))  # the lease site
    kept[0].close()
    lines = str(excinfo.value).splitlines()
    assert lines[0] == "1 connection leaked by the no_leaks() block (still leased at its end)"
    assert lines[1].startswith(f"  {keepalive_url} — leased at ")
    site = f"{HERE}:{_line_of('# the lease site')}"
    assert lines[1].endswith(f"{site} in test_leak_raises_the_plugin_report")
    assert lines[2].startswith("  close the response")
    assert len(excinfo.value.leases) == 1
    assert not _patched()


def _line_of(comment: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    (number,) = [i for i, line in enumerate(lines, 1) if line.endswith(comment)]
    return number


def test_label_names_the_block(session: requests.Session, keepalive_url: str) -> None:
    kept = []
    leak = pytest.raises(ConnectionLeakError, match=r"^1 connection leaked by nightly sync \(")
    with leak, no_leaks("nightly sync"):
        kept.append(session.get(keepalive_url + "/ok", stream=True))
    kept[0].close()


def test_nesting_restores_the_outer_owner(session: requests.Session, keepalive_url: str) -> None:
    kept = []
    outer_leak = pytest.raises(ConnectionLeakError, match="leaked by outer")
    inner_leak = pytest.raises(ConnectionLeakError, match="leaked by inner")
    with outer_leak as outer_error, no_leaks("outer"):
        with inner_leak as inner_error, no_leaks("inner"):
            kept.append(session.get(keepalive_url + "/inner", stream=True))
        # Still patched: the outer block installed first and has not ended.
        assert _patched()
        kept.append(session.get(keepalive_url + "/outer", stream=True))
    for response in kept:
        response.close()
    # Each leak reported once, by the block it was made in.
    assert len(inner_error.value.leases) == 1
    assert len(outer_error.value.leases) == 1
    assert outer_error.value.leases[0] is not inner_error.value.leases[0]


def test_exception_is_not_masked_and_leak_goes_to_the_enclosing_block(
    session: requests.Session, keepalive_url: str
) -> None:
    kept = []
    with (
        pytest.raises(ConnectionLeakError, match="leaked by outer"),
        no_leaks("outer"),
        pytest.raises(ValueError, match="boom"),
        no_leaks("inner"),
    ):
        kept.append(session.get(keepalive_url + "/ok", stream=True))
        raise ValueError("boom")
    kept[0].close()


def test_decorator_plain_and_async(session: requests.Session, keepalive_url: str) -> None:
    kept = []

    @no_leaks()
    def leaky() -> None:
        kept.append(session.get(keepalive_url + "/ok", stream=True))

    @no_leaks()
    async def leaky_async() -> None:
        kept.append(session.get(keepalive_url + "/ok", stream=True))

    @no_leaks()
    def clean() -> int:
        session.get(keepalive_url + "/ok").raise_for_status()
        return 42

    assert clean() == 42
    with pytest.raises(ConnectionLeakError, match=r"leaked by .*leaky \("):
        leaky()
    with pytest.raises(ConnectionLeakError, match=r"leaked by .*leaky_async \("):
        asyncio.run(leaky_async())
    for response in kept:
        response.close()
    assert not _patched()


def test_pool_stats(keepalive_url: str) -> None:
    def mine() -> dict[str, object]:
        # Other tests' pools to the same server may not be collected yet: ours holds 3.
        (stats,) = [s for s in pool_stats() if s["origin"] == keepalive_url and s["capacity"] == 3]
        return stats

    with urllib3.PoolManager(maxsize=3, block=True) as pm, no_leaks():
        held = [pm.request("GET", keepalive_url + "/ok", preload_content=False) for _ in range(2)]
        during = mine()
        for response in held:
            response.read()
            response.release_conn()
        after = mine()
    assert during["leased"] == 2
    assert during["idle"] == 0
    assert after == {
        "client": "urllib3",
        "origin": keepalive_url,
        "capacity": 3,
        "leased": 0,
        "idle": 2,
        "high_water": 2,
        "leases_total": 2,
        "waits": 0,
    }


def test_public_names() -> None:
    for name in ("no_leaks", "LeakCheckMixin", "pool_stats", "ConnectionLeakError"):
        assert name in pytest_connleak.__all__
        assert getattr(pytest_connleak, name).__doc__


UNITTEST_MODULE = """
    import os
    import unittest

    import requests

    import pytest_connleak

    URL = os.environ["KEEPALIVE_URL"]
    KEPT = []


    class TestService(pytest_connleak.LeakCheckMixin, unittest.TestCase):
        def setUp(self):
            super().setUp()
            self.session = requests.Session()
            # Runs before the leak check (cleanups are last in, first out).
            self.addCleanup(self.session.close)

        def test_clean(self):
            self.assertEqual(self.session.get(URL + "/ok").status_code, 200)

        def test_closed_by_cleanup(self):
            response = self.session.get(URL + "/ok", stream=True)
            self.addCleanup(response.close)

        def test_leaky(self):
            KEPT.append(self.session.get(URL + "/ok", stream=True))


    @pytest_connleak.no_leaks()
    def fetch(session):
        KEPT.append(session.get(URL + "/ok", stream=True))


    class TestDecorated(unittest.TestCase):
        def test_decorated_helper(self):
            with requests.Session() as session:
                fetch(session)


    def tearDownModule():
        for response in KEPT:
            response.close()
"""


def test_mixin_and_no_leaks_under_unittest(tmp_path: Path, keepalive_url: str) -> None:
    (tmp_path / "test_service.py").write_text(textwrap.dedent(UNITTEST_MODULE))
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "unittest", "-v", "test_service"],
        cwd=tmp_path,
        env={**_env(), "KEEPALIVE_URL": keepalive_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stderr
    assert done.returncode == 1, out
    assert "test_clean (test_service.TestService" in out
    assert "close the response (response.close(), or use it as a context manager)" in out
    assert "Ran 4 tests" in out
    assert "FAILED (failures=2)" in out
    assert "FAIL: test_leaky (test_service.TestService" in out
    assert "FAIL: test_decorated_helper (test_service.TestDecorated" in out
    assert (
        "pytest_connleak.ConnectionLeakError: 1 connection leaked by test_leaky "
        "(still leased at its end)" in out
    )
    assert (
        "pytest_connleak.ConnectionLeakError: 1 connection leaked by fetch "
        "(still leased at its end)" in out
    )
    leak_line = (
        textwrap.dedent(UNITTEST_MODULE)
        .splitlines()
        .index('        KEPT.append(self.session.get(URL + "/ok", stream=True))')
    )
    assert f"test_service.py:{leak_line + 1} in test_leaky" in out


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


def test_mixin_and_no_leaks_under_pytest(
    pytester: pytest.Pytester, keepalive_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_service=textwrap.dedent(UNITTEST_MODULE))
    pytester.makepyfile(
        test_plain=f"""
        import requests
        from pytest_connleak import no_leaks

        def test_block():
            with requests.Session() as session:
                with no_leaks():
                    r = session.get({keepalive_url!r} + "/ok", stream=True)
                r.close()
        """
    )
    monkeypatch.setenv("KEEPALIVE_URL", keepalive_url)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(
        [
            "E * pytest_connleak.ConnectionLeakError: 1 connection leaked by the no_leaks() "
            "block (still leased at its end)",
            "E * close the response (response.close(), or use it as a context manager)*",
            "E * pytest_connleak.ConnectionLeakError: 1 connection leaked by test_leaky "
            "(still leased at its end)",
            "E * pytest_connleak.ConnectionLeakError: 1 connection leaked by fetch "
            "(still leased at its end)",
            "FAILED test_plain.py::test_block - *",
            "FAILED test_service.py::TestService::test_leaky - *",
            "FAILED test_service.py::TestDecorated::test_decorated_helper - *",
        ],
        consecutive=False,
    )
    # The plugin and no_leaks() share one instrumentation: with --leak-check too, every
    # leak is still counted once and reported once, by the block that saw it.
    both = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--leak-check")
    both.assert_outcomes(passed=2, failed=3)
    assert "still leased at teardown" not in both.stdout.str()


def test_track_in_a_service_feeds_pool_stats(tmp_path: Path, keepalive_url: str) -> None:
    """A plain script (no pytest): track() at start-up, pool_stats() for a health endpoint."""
    script = tmp_path / "service.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            import urllib3
            import pytest_connleak
            from urllib3.connectionpool import HTTPConnectionPool

            tracking = pytest_connleak.track()
            assert tracking.problems == []
            pm = urllib3.PoolManager(maxsize=2)
            held = pm.request("GET", {keepalive_url!r} + "/ok", preload_content=False)
            print(json.dumps(pytest_connleak.pool_stats()))
            held.read()
            tracking.stop()
            assert not hasattr(HTTPConnectionPool._get_conn, "__wrapped__")
            pm.clear()
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (stats,) = json.loads(done.stdout)
    assert stats["origin"] == keepalive_url
    assert (stats["client"], stats["capacity"], stats["leased"]) == ("urllib3", 2, 1)
