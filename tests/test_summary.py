"""The end-of-run report: the pool table, leaking tests, and leak details in test reports."""

from __future__ import annotations

import re

import pytest

AS_WARNING = ("--leak-check-pool-warnings", "-W", "default::pytest_connleak.PoolHealthWarning")

HEADER = r"pool +client +leases +leaks +high-water/capacity +waits"


def row(origin: str, leases: int, leaks: int, high_water: str, waits: int, health: str = "") -> str:
    """A regular expression for one row of the pool table."""
    end = f" +{re.escape(health)}$" if health else "$"
    return rf"{re.escape(origin)} +urllib3 +{leases} +{leaks} +{high_water} +{waits}{end}"


SUITE = """
import requests, urllib3

def test_three_at_once(url):
    pool = urllib3.connection_from_url(url, maxsize=4, block=True)
    held = [pool.urlopen("GET", "/ok", preload_content=False) for _ in range(3)]
    for response in held:
        response.read()

def test_leaks_one(url):
    requests.get(url + "/403", stream=True)

def test_dropped_pools(url):
    for _ in range(3):
        assert urllib3.PoolManager().request("GET", url + "/ok").data == b"ok"

def test_no_requests():
    pass
"""


def test_pool_table_one_row_per_origin(base_conftest: pytest.Pytester, base_url: str) -> None:
    base_conftest.makepyfile(SUITE)
    result = base_conftest.runpytest("--leak-check", *AS_WARNING)
    result.assert_outcomes(passed=4, errors=1, warnings=1)
    # 3 + 1 + 3 leases; the pools of test_dropped_pools were garbage-collected during the
    # test and still count; the highest mark is 3 of the 4-connection pool.
    result.stdout.re_match_lines(
        [
            r"=+ connection pools =+$",
            HEADER + " +health$",
            row(base_url, 7, 1, "3/4", 0, "reached 75% in 1 test"),
            r"=+ connection leaks =+$",
            r"test_pool_table_one_row_per_origin\.py::test_leaks_one: 1 connection leaked$",
            rf"    {re.escape(base_url)} — leased at test_pool_table_one_row_per_origin\.py:10 "
            r"in test_leaks_one$",
        ]
    )


def test_rows_sorted_by_origin_with_their_own_counts(
    base_conftest: pytest.Pytester, base_url: str
) -> None:
    base_conftest.makepyfile(
        """
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import pytest, urllib3

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        @pytest.fixture(scope="module")
        def other_url():
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            yield f"http://127.0.0.1:{server.server_port}"
            server.shutdown()
            server.server_close()
            thread.join()

        def test_both(url, other_url):
            with urllib3.PoolManager(maxsize=2) as pm:
                pm.request("GET", url + "/ok")
                for _ in range(4):
                    pm.request("GET", other_url + "/")
                pm.request("GET", other_url + "/", preload_content=False)
        """
    )
    result = base_conftest.runpytest("--leak-check", *AS_WARNING)
    result.assert_outcomes(passed=1, errors=1)
    text = result.stdout.str()
    other = re.search(r"(http://127\.0\.0\.1:\d+) +urllib3 +5 ", text)
    assert other is not None, text
    rows = [row(base_url, 1, 0, "1/2", 0), row(other.group(1), 5, 1, "1/2", 0)]
    result.stdout.re_match_lines([HEADER + "$", *sorted(rows)])


def test_unbounded_pool_capacity_reads_dash(base_conftest: pytest.Pytester, base_url: str) -> None:
    base_conftest.makepyfile(
        """
        import httpx

        def test_unbounded(url):
            limits = httpx.Limits(max_connections=None)
            with httpx.Client(limits=limits) as client:
                assert client.get(url + "/ok").status_code == 200
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines(
        [
            HEADER + "$",
            rf"{re.escape(base_url)} +httpcore +1 +0 +1/- +0$",
        ]
    )


def test_no_table_without_traffic(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile("def test_quiet(): pass")
    result = base_conftest.runpytest("--leak-check")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*connection pools*")
    result.stdout.no_fnmatch_line("*connection leaks*")


def test_unchecked_tests_are_not_in_the_table(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import urllib3

        def test_unchecked(url):
            urllib3.PoolManager().request("GET", url + "/ok")

        def test_checked(url, leak_check):
            urllib3.PoolManager().request("GET", url + "/ok")
            urllib3.PoolManager().request("GET", url + "/ok")
        """
    )
    result = base_conftest.runpytest(*AS_WARNING)
    result.assert_outcomes(passed=2)
    result.stdout.re_match_lines([HEADER + "$", r"http://127\.0\.0\.1:\d+ +urllib3 +2 +0 "])


def test_junit_xml_carries_properties(base_conftest: pytest.Pytester, base_url: str) -> None:
    base_conftest.makepyfile(
        """
        import requests

        def test_two(url):
            first = requests.get(url + "/403", stream=True)
            second = requests.get(url + "/ok", stream=True)
        """
    )
    base_conftest.runpytest("--leak-check", "--junitxml=out.xml")
    xml = (base_conftest.path / "out.xml").read_text()
    for line in (4, 5):
        assert (
            f'<property name="connection_leak" value="{base_url} — leased at '
            f'test_junit_xml_carries_properties.py:{line} in test_two" />'
        ) in xml
    assert 'message="failed on teardown with &quot;ConnectionLeakError: 2 connections' in xml


def test_leak_details_in_a_report_section(base_conftest: pytest.Pytester, base_url: str) -> None:
    base_conftest.makepyfile(
        """
        import requests

        def test_leaky(url):
            requests.get(url + "/403", stream=True)

        def test_clean(url):
            requests.get(url + "/403")
        """
    )
    reprec = base_conftest.inline_run("--leak-check")
    sections = {
        report.nodeid.rsplit("::", 1)[1]: dict(report.sections)
        for report in reprec.getreports("pytest_runtest_logreport")
        if report.when == "teardown"
    }
    expected = f"{base_url} — leased at test_leak_details_in_a_report_section.py:4 in test_leaky"
    assert sections["test_leaky"]["Captured connleak teardown"] == expected
    assert "Captured connleak teardown" not in sections["test_clean"]


def test_section_shown_in_the_terminal(base_conftest: pytest.Pytester) -> None:
    base_conftest.makepyfile(
        """
        import pytest, requests

        @pytest.fixture
        def held(url):
            return requests.get(url + "/403", stream=True)

        def test_leaky(held):
            pass
        """
    )
    result = base_conftest.runpytest("--leak-check")
    result.stdout.fnmatch_lines(
        [
            "*- Captured connleak teardown -*",
            "http://127.0.0.1:* — leased at test_section_shown_in_the_terminal.py:5 in held",
        ]
    )
