"""Under pytest-xdist: the same verdicts as a serial run, and one summary from the reports."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("xdist")

MODULES = {
    "test_service": """
        import requests, urllib3

        def test_leaks_stream(url):
            requests.get(url + "/403", stream=True)

        def test_closes_stream(url):
            with requests.get(url + "/403", stream=True) as r:
                assert r.status_code == 403

        def test_three_at_once(url):
            pool = urllib3.connection_from_url(url, maxsize=4, block=True)
            held = [pool.urlopen("GET", "/ok", preload_content=False) for _ in range(3)]
            for response in held:
                response.read()

        def test_dropped_pools(url):
            for _ in range(3):
                urllib3.PoolManager().request("GET", url + "/ok")
        """,
    "test_client": """
        import pytest, urllib3

        def test_leaks_two(url):
            pm = urllib3.PoolManager(maxsize=2)
            first = pm.request("GET", url + "/ok", preload_content=False)
            second = pm.request("GET", url + "/ok", preload_content=False)

        @pytest.mark.allow_leaks(reason="known")
        def test_allowed(url):
            urllib3.PoolManager().request("GET", url + "/ok", preload_content=False)

        @pytest.mark.parametrize("n", range(6))
        def test_clean(url, n):
            urllib3.PoolManager().request("GET", url + "/ok")
        """,
}

VERDICT = re.compile(r"^(PASSED|FAILED|ERROR) (\S+)")


def verdicts(result: pytest.RunResult) -> list[tuple[str, str]]:
    return sorted(
        (m.group(1), m.group(2)) for line in result.outlines if (m := VERDICT.match(line))
    )


def section(result: pytest.RunResult, title: str) -> list[str]:
    """The lines of the ``=== title ===`` section, up to the next section."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if re.match(rf"=+ {title} =+$", line))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("=="))
    return lines[start + 1 : end]


@pytest.fixture
def project(base_conftest: pytest.Pytester) -> pytest.Pytester:
    base_conftest.makepyfile(**MODULES)
    return base_conftest


def test_same_verdicts_and_one_merged_summary(project: pytest.Pytester) -> None:
    args = ["--leak-check", "--leak-check-pool-warnings", "-rA", "-p", "no:randomly"]
    serial = project.runpytest_subprocess(*args)
    parallel = project.runpytest_subprocess(*args, "-n", "2")

    expected = {"passed": 12, "errors": 2, "warnings": 2}
    serial.assert_outcomes(**expected)
    parallel.assert_outcomes(**expected)
    assert verdicts(parallel) == verdicts(serial)
    assert ("ERROR", "test_client.py::test_leaks_two") in verdicts(serial)
    assert ("ERROR", "test_service.py::test_leaks_stream") in verdicts(serial)

    out = parallel.stdout.str()
    assert out.count("connection pools") == 1
    assert out.count("connection leaks") == 1
    # The controller ran no test: the table is built from the workers' reports, and it
    # is the serial run's table, row for row, count for count.
    assert section(parallel, "connection pools") == section(serial, "connection pools")
    assert sorted(section(parallel, "connection leaks")) == sorted(
        section(serial, "connection leaks")
    )
    parallel.stdout.re_match_lines(
        [
            r"=+ connection pools =+$",
            r"pool +client +leases +leaks +high-water/capacity +waits +health$",
            # test_allowed's lease and leak count too: allowed, not unseen. Pool health
            # is judged on the controller from the workers' reports.
            r"http://127\.0\.0\.1:\d+ +urllib3 +17 +4 +3/4 +0 +reached 75% in 2 tests$",
        ]
    )
    parallel.stdout.no_fnmatch_line("health: *")
    parallel.stdout.fnmatch_lines(
        [
            "*PoolHealthWarning: pool http://127.0.0.1:* reached 3 of 4 connections (75%) "
            "during test_three_at_once (threshold 75%)"
        ]
    )


def test_pool_health_is_quiet_by_default_under_xdist(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nfilterwarnings = error\n")
    result = project.runpytest_subprocess("--leak-check", "-n", "2", "-p", "no:cacheprovider")
    # Only the two leaks: the busy pools are marked in the table, never warned.
    result.assert_outcomes(passed=12, errors=2)
    result.stdout.no_fnmatch_line("*PoolHealthWarning: *")
    result.stdout.re_match_lines(
        [
            r"http://127\.0\.0\.1:\d+ +urllib3 +17 +4 +3/4 +0 +reached 75% in 2 tests$",
            r"health: --leak-check-pool-warnings names the tests \(PoolHealthWarning\)$",
        ]
    )


def test_fixture_only_checks_under_xdist(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_fixture="""
        import requests

        def test_checked(url, leak_check):
            requests.get(url + "/403", stream=True)
        """
    )
    result = project.runpytest_subprocess("-n", "2", "test_fixture.py", "test_client.py")
    result.assert_outcomes(passed=9, errors=1)
    result.stdout.re_match_lines(
        [
            r"=+ connection pools =+$",
            r"pool +client +leases +leaks +high-water/capacity +waits$",
            r"http://127\.0\.0\.1:\d+ +urllib3 +1 +1 +1/10 +0$",
            r"=+ connection leaks =+$",
            r"test_fixture\.py::test_checked: 1 connection leaked$",
        ]
    )


def test_module_fixture_leak_with_loadfile(base_conftest: pytest.Pytester) -> None:
    # With the default --dist load, a module's tests are spread over the workers, and a
    # module-scoped fixture ends (and its leak is reported) at the teardown of the last
    # test of that module *on its worker*, as any fixture teardown error would be.
    # --dist loadfile keeps a module on one worker: the same test carries it as serially.
    base_conftest.makepyfile(
        test_module="""
        import pytest, urllib3

        @pytest.fixture(scope="module")
        def held(url):
            return urllib3.PoolManager().request("GET", url + "/big", preload_content=False)

        def test_uses_held(held):
            assert held.status == 200

        @pytest.mark.parametrize("n", range(4))
        def test_after(n):
            pass
        """,
        test_other="def test_other(): pass",
    )
    args = ["--leak-check", "--leak-check-pool-warnings", "-rA", "-p", "no:randomly"]
    serial = base_conftest.runpytest_subprocess(*args)
    parallel = base_conftest.runpytest_subprocess(*args, "-n", "2", "--dist", "loadfile")
    serial.assert_outcomes(passed=6, errors=1)
    parallel.assert_outcomes(passed=6, errors=1)
    assert verdicts(parallel) == verdicts(serial)
    assert ("ERROR", "test_module.py::test_after[3]") in verdicts(parallel)
    assert section(parallel, "connection pools") == section(serial, "connection pools")
