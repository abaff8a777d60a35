"""The profile API behind its load balancer, and the service running as its own process.

The service runs as a real process (``python service.py``), as in production, so that
``connleak watch --pid`` can look at its sockets. Its log (stderr) is read line by line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

HERE = Path(__file__).resolve().parent


def profiles(request: Request) -> Response:
    """The profile API: ada's profile, and an empty 403 for anyone else."""
    if request.path == "/profiles/ada":
        return Response(json.dumps({"user": "ada"}), content_type="application/json")
    return Response(status=403)


# --8<-- [start:upstream]
@pytest.fixture
def profile_api(lb_httpserver: HTTPServer, load_balancer: Callable[..., str]) -> str:
    """The URL the service calls: nginx in front of the profile API, as deployed.

    nginx replaces the API's empty 403 with its HTML page, and closes a client connection
    that stays idle for a second (its keepalive_timeout, 75 s by default).
    """
    lb_httpserver.expect_request(re.compile(r"^/profiles/\w+$")).respond_with_handler(profiles)
    return load_balancer(lb_httpserver.url_for("/").rstrip("/"), idle_timeout=1.0)
    # --8<-- [end:upstream]


class Service:
    """The running service: its URL, its pid and its log lines."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.pid = process.pid
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        (line,) = self.wait_for_log("listening on ")
        self.url = line.rsplit(" ", 1)[1]

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 15) -> list[str]:
        """The first *count* log lines containing *text*, waiting for them up to *timeout*."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if text in line]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"no {count} log lines with {text!r}: {self.lines}")
                self._changed.wait(left)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def metric(self, name: str) -> float:
        """The value of *name* for the service's pool to the profile API, from /metrics."""
        text = self.get("/metrics").text
        values = [
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]
        assert len(values) == 1, text
        return values[0]


@pytest.fixture
def service(profile_api: str) -> Iterator[Service]:
    """``python service.py``, calling *profile_api*, with a 0.5 s leak threshold."""
    env = dict(os.environ, PROFILE_API=profile_api, PORT="0", LEAK_THRESHOLD="0.5")
    process = subprocess.Popen(
        [sys.executable, "service.py"], cwd=HERE, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        yield Service(process)
    finally:
        process.send_signal(signal.SIGINT)  # KeyboardInterrupt: the service stops cleanly
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
