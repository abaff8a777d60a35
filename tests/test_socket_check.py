"""--leak-check-sockets: TCP sockets left open by a test, through any library.

Leaky inner runs go through ``runpytest_subprocess``: a leaked socket must die with its
own process, not warn (ResourceWarning) in ours.
"""

from __future__ import annotations

import re
import sys

import pytest


@pytest.fixture
def project(base_conftest: pytest.Pytester, keepalive_url: str) -> pytest.Pytester:
    """An inner project whose tests reach a keep-alive server as ``KEEPALIVE``."""
    base_conftest.makeconftest(
        f"""
        import pytest

        KEEPALIVE = {keepalive_url!r}
        HOST, PORT = "127.0.0.1", {int(keepalive_url.rpartition(":")[2])}
        KEPT = []
        """
    )
    return base_conftest


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_http_client_leak_caught_by_socket_check_not_pool_check(
    project: pytest.Pytester, keepalive_url: str
) -> None:
    project.makepyfile(
        """
        import http.client
        from conftest import HOST, PORT, KEPT

        def test_leaky():
            conn = http.client.HTTPConnection(HOST, PORT)
            conn.request("GET", "/ok")
            KEPT.append(conn.getresponse())  # never read, never closed

        def test_clean():
            conn = http.client.HTTPConnection(HOST, PORT)
            conn.request("GET", "/ok")
            assert conn.getresponse().read() == b"ok"
            conn.close()
        """
    )
    port = keepalive_url.rpartition(":")[2]
    result = run(project, "--leak-check", "--leak-check-sockets")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaky*",
            "E   ConnectionLeakError: 1 socket leaked by test_leaky (still open at teardown)",
            f"E     tcp 127.0.0.1:* -> 127.0.0.1:{port} ESTABLISHED",
            "E     close the socket, or the client that owns it*",
            "",
            "test_http_client_leak_caught_by_socket_check_not_pool_check.py:4: ConnectionLeakError",
        ]
    )
    result.stdout.no_fnmatch_line("*connection leaked*")
    # The pool check alone cannot see it: http.client has no pool.
    run(project, "--leak-check").assert_outcomes(passed=2)


def test_raw_socket_leak(project: pytest.Pytester, keepalive_url: str) -> None:
    project.makepyfile(
        """
        import socket
        from conftest import HOST, PORT, KEPT

        def test_leaky():
            KEPT.append(socket.create_connection((HOST, PORT)))

        def test_closed():
            with socket.create_connection((HOST, PORT)):
                pass
        """
    )
    port = keepalive_url.rpartition(":")[2]
    result = run(project, "--leak-check-sockets")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 1 socket leaked by test_leaky (still open at teardown)",
            f"E     tcp 127.0.0.1:* -> 127.0.0.1:{port} ESTABLISHED",
            "ERROR test_raw_socket_leak.py::test_leaky - ConnectionLeakError: 1 socket*",
        ]
    )
    run(project, "--leak-check").assert_outcomes(passed=2)


def test_ini_turns_it_on_and_the_flag_off(project: pytest.Pytester) -> None:
    project.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        leak_check_sockets = true
        """
    )
    project.makepyfile(
        """
        import socket
        from conftest import HOST, PORT, KEPT

        def test_leaky():
            KEPT.append(socket.create_connection((HOST, PORT)))
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["connleak: checking every test for TCP sockets left open*"])
    run(project, "--no-leak-check-sockets").assert_outcomes(passed=1)


def test_in_process_servers_and_their_connections_are_never_reported(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        """
        import http.server, threading
        import pytest, requests, psutil

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        @pytest.fixture
        def keepalive_server():
            # Function scope: started and stopped by the test, listening socket and all.
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever)
            thread.start()
            yield server
            server.shutdown()
            server.server_close()
            thread.join()

        SESSIONS = []

        def test_pytest_httpserver(httpserver):
            httpserver.expect_request("/x").respond_with_data("x")
            assert requests.get(httpserver.url_for("/x")).text == "x"

        def test_lazy_server_started_in_the_test():
            # Never stopped: a server outliving its test is not a socket leak.
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            session = requests.Session()
            SESSIONS.append(session)
            assert session.get(f"http://127.0.0.1:{server.server_port}/").text == "ok"
            session.close()
            # The server may still hold its side of the connection it accepted.

        def test_accepted_connections_still_open(keepalive_server):
            port = keepalive_server.server_port
            session = requests.Session()
            SESSIONS.append(session)
            assert session.get(f"http://127.0.0.1:{port}/").text == "ok"
            # The client keeps its keep-alive connection; close it, the server's side
            # stays open until the handler thread sees the end of the stream.
            session.close()
        """
    )
    result = run(project, "--leak-check-sockets", "-p", "pytest_httpserver")
    result.assert_outcomes(passed=3)


def test_session_client_keep_alive_is_never_reported(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest, requests
        from conftest import KEEPALIVE
        from pytest_connleak import pool_stats

        @pytest.fixture(scope="session")
        def session():
            with requests.Session() as s:
                yield s

        def test_first(session):
            assert session.get(KEEPALIVE + "/ok").text == "ok"

        def test_second(session):
            assert session.get(KEEPALIVE + "/ok").text == "ok"

        def test_the_connection_is_kept_between_tests(session):
            (stats,) = [s for s in pool_stats() if s["origin"] == KEEPALIVE]
            assert stats["idle"] == 1, stats
            assert stats["leases_total"] == 2, stats
        """
    )
    run(project, "--leak-check-sockets").assert_outcomes(passed=3)
    run(project, "--leak-check-sockets", "--leak-check").assert_outcomes(passed=3)


def test_pool_leak_is_reported_once(project: pytest.Pytester, keepalive_url: str) -> None:
    project.makepyfile(
        """
        import requests
        from conftest import KEEPALIVE, KEPT

        def test_leaky():
            KEPT.append(requests.get(KEEPALIVE + "/ok", stream=True))
        """
    )
    both = run(project, "--leak-check-sockets", "--leak-check")
    both.assert_outcomes(passed=1, errors=1)
    both.stdout.fnmatch_lines(
        ["E   ConnectionLeakError: 1 connection leaked by test_leaky (still leased at teardown)"]
    )
    both.stdout.no_fnmatch_line("*socket leaked*")
    # Without the pool check, the socket check still sees the socket behind it.
    alone = run(project, "--leak-check-sockets")
    alone.assert_outcomes(passed=1, errors=1)
    alone.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 1 socket leaked by test_leaky (still open at teardown)",
            f"E     tcp 127.0.0.1:* -> 127.0.0.1:{keepalive_url.rpartition(':')[2]} ESTABLISHED",
        ]
    )


def test_pool_and_socket_leaks_in_one_test_share_one_error(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import socket, requests
        from conftest import HOST, PORT, KEEPALIVE, KEPT

        def test_leaky():
            KEPT.append(requests.get(KEEPALIVE + "/ok", stream=True))
            KEPT.append(socket.create_connection((HOST, PORT)))
        """
    )
    result = run(project, "--leak-check-sockets", "--leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "E   ConnectionLeakError: 1 connection leaked by test_leaky (still leased at teardown)",
            "E     http://127.0.0.1:* — leased at test_pool_and_socket*.py:5 in test_leaky",
            "E   1 socket leaked by test_leaky (still open at teardown)",
            "E     tcp 127.0.0.1:* -> 127.0.0.1:* ESTABLISHED",
        ]
    )


def test_wider_fixtures_and_allow_leaks(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import socket
        import pytest
        from conftest import HOST, PORT, KEPT

        @pytest.fixture(scope="module")
        def channel():
            with socket.create_connection((HOST, PORT)) as sock:
                yield sock

        # First: at the last test's teardown the module fixture closes its socket, and a
        # test that closes as many descriptors as it opens is not looked at.
        @pytest.mark.allow_leaks(reason="kept on purpose")
        def test_allowed():
            KEPT.append(socket.create_connection((HOST, PORT)))

        def test_uses_module_socket(channel):
            assert channel.fileno() >= 0
        """
    )
    result = run(project, "--leak-check-sockets", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*= connection leaks =*",
            "test_wider_fixtures_and_allow_leaks.py::test_allowed: 1 socket leaked "
            "(allowed: kept on purpose)",
            "    tcp 127.0.0.1:* -> 127.0.0.1:* ESTABLISHED",
        ]
    )


SOCKET_LEAK = """
import socket
from conftest import HOST, PORT, KEPT

def test_leaky():
    KEPT.append(socket.create_connection((HOST, PORT)))
"""


def test_socket_leak_in_summary_and_junit(project: pytest.Pytester, keepalive_url: str) -> None:
    project.makepyfile(test_s=SOCKET_LEAK)
    port = keepalive_url.rpartition(":")[2]
    result = run(project, "--leak-check-sockets", "--junitxml=out.xml")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*= connection leaks =*",
            "test_s.py::test_leaky: 1 socket leaked",
            f"    tcp 127.0.0.1:* -> 127.0.0.1:{port} ESTABLISHED",
            "*= short test summary info =*",
        ]
    )
    xml = (project.path / "out.xml").read_text()
    assert re.search(
        rf'<property name="socket_leak" value="tcp 127\.0\.0\.1:\d+ -&gt; 127\.0\.0\.1:{port} '
        r'ESTABLISHED" />',
        xml,
    ), xml


def test_socket_leak_in_warn_mode(project: pytest.Pytester, keepalive_url: str) -> None:
    project.makepyfile(test_s=SOCKET_LEAK)
    result = run(project, "--leak-check-sockets", "--leak-check-mode=warn")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*= warnings summary =*",
            "test_s.py::test_leaky",
            "  */test_s.py:4: LeakWarning: 1 socket leaked by test_leaky (still open at teardown)",
            "*= connection leaks =*",
            "test_s.py::test_leaky: 1 socket leaked (warned: leak_check_mode = warn)",
        ]
    )


def test_an_excused_pool_leak_is_not_a_socket_leak(project: pytest.Pytester) -> None:
    # One leak, one report: the pool check excused it (and says why); the socket check
    # must not fail the test for the socket behind it.
    project.makepyfile(
        test_s="""
        import pytest, requests
        from conftest import KEEPALIVE, KEPT

        @pytest.mark.allow_leaks(origins=["http://127.0.0.1:*"], reason="local stub")
        def test_leaky():
            KEPT.append(requests.get(KEEPALIVE + "/ok", stream=True))
        """
    )
    result = run(project, "--leak-check-sockets", "--leak-check")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*= connection leaks =*",
            "test_s.py::test_leaky: 1 connection leaked "
            "(allowed: origin http://127.0.0.1:*; local stub)",
        ]
    )
    result.stdout.no_fnmatch_line("*socket leaked*")


def test_without_psutil_it_is_a_usage_error(
    base_conftest: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError
    base_conftest.makepyfile("def test_x(): pass")
    result = base_conftest.runpytest("--leak-check-sockets")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --leak-check-sockets needs psutil: pip install psutil "
            "(the 'sockets' extra of pytest-connleak)"
        ]
    )
    # Not asked for, not needed.
    base_conftest.runpytest("--leak-check").assert_outcomes(passed=1)


def test_bad_ini_value(base_conftest: pytest.Pytester) -> None:
    base_conftest.makeini(
        """
        [pytest]
        leak_check_sockets = sometimes
        """
    )
    base_conftest.makepyfile("def test_x(): pass")
    result = base_conftest.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: leak_check_sockets = 'sometimes' is not a boolean; *"])
