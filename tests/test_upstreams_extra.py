"""The checker without the mock upstreams' extra: it still catches leaks, and the mock
upstreams say which extra to install.

The inner runs hide pytest-httpserver and werkzeug (``None`` in ``sys.modules`` makes
their import fail) from a plugin loaded before pytest-connleak. The ``checker_anywhere``
nox session checks the same thing in an environment where they are really absent.
"""

from __future__ import annotations

import pytest

from pytest_connleak._upstreams.fixtures import SHAPE_NAMES

HIDE_UPSTREAMS = """
import sys

for name in ("pytest_httpserver", "werkzeug"):
    if name not in sys.modules:
        sys.modules[name] = None


def pytest_unconfigure():
    # Nothing imported them behind our back: the blocker is still in place.
    assert sys.modules.get("werkzeug") is None and sys.modules.get("pytest_httpserver") is None
"""

SERVER_CONFTEST = """
import http.server
import threading

import pytest


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok" * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join()
"""

# pytest-httpserver's own plugin is not there either when it is not installed.
HIDDEN = ("-p", "no:pytest_httpserver", "-p", "hide_upstreams")
EXTRA_HINT = "(the 'upstreams' extra of pytest-connleak)"
ALL_HINT = f"pytest-httpserver and werkzeug: pip install pytest-httpserver werkzeug {EXTRA_HINT}"
WERKZEUG_HINT = f"werkzeug: pip install werkzeug {EXTRA_HINT}"


@pytest.fixture
def without_upstreams(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(hide_upstreams=HIDE_UPSTREAMS)
    pytester.makeconftest(SERVER_CONFTEST)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def test_checker_catches_a_leak_without_the_extra(without_upstreams: pytest.Pytester) -> None:
    without_upstreams.makepyfile(
        test_service="""
        import requests

        def test_leaks(url):
            requests.get(url, stream=True, timeout=5)

        def test_clean(url):
            with requests.get(url, stream=True, timeout=5) as response:
                assert response.status_code == 200
        """
    )
    result = without_upstreams.runpytest_subprocess(*HIDDEN, "--leak-check")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "connleak: checking every test for leaked connections*",
            "E   ConnectionLeakError: 1 connection leaked by test_leaks (still leased at teardown)",
            "E     http://127.0.0.1:* — leased at test_service.py:4 in test_leaks",
        ]
    )


def test_mock_upstream_fixtures_name_the_extra(without_upstreams: pytest.Pytester) -> None:
    without_upstreams.makepyfile(
        test_upstreams="""
        def test_server(lb_httpserver):
            pass

        def test_proxy(load_balancer):
            pass

        def test_shape(response_shape):
            pass
        """
    )
    result = without_upstreams.runpytest_subprocess(*HIDDEN, "-k", "server or proxy")
    result.assert_outcomes(errors=2)
    lines = result.stdout.lines
    assert f"the lb_httpserver fixture needs {ALL_HINT}" in lines
    assert f"the load_balancer fixture needs {WERKZEUG_HINT}" in lines
    assert "Traceback" not in result.stdout.str()
    # Every shape is still collected (the names need no werkzeug), each failing clearly.
    result = without_upstreams.runpytest_subprocess(*HIDDEN, "-k", "shape")
    result.assert_outcomes(errors=len(SHAPE_NAMES))
    assert result.stdout.lines.count(f"the response_shape fixture needs {WERKZEUG_HINT}") == len(
        SHAPE_NAMES
    )


def test_public_mock_upstream_names_name_the_extra(without_upstreams: pytest.Pytester) -> None:
    without_upstreams.makepyfile(
        test_names="""
        import pytest
        import pytest_connleak

        @pytest.mark.parametrize("name", ["error_page", "RESPONSE_SHAPES", "ResponseShape"])
        def test_name(name):
            with pytest.raises(ModuleNotFoundError) as info:
                getattr(pytest_connleak, name)
            assert str(info.value) == (
                f"pytest_connleak.{name} needs werkzeug: pip install werkzeug "
                "(the 'upstreams' extra of pytest-connleak)"
            )

        def test_the_checker_api_is_there():
            assert pytest_connleak.no_leaks is not None
        """
    )
    result = without_upstreams.runpytest_subprocess(*HIDDEN)
    result.assert_outcomes(passed=4)
